"""Gather the baseline, every filtered run and their random controls into outputs/mask_grid_summary.csv.

mask_grid_summary.csv is the original's table: one row per filtered run and a last row for the
baseline, with the original's columns first (block, k_clusters, clusterId, accuracy_top1, then per
method faithfulness and sparsity mean and std), then ours (mode, cluster size, mean per-image
deltas, where they sit among the random-neuron controls when they were run). mask_grid_long.csv
beside it has one row per run, method and measure. Every run is checked to be made against the
baseline in <outputs>/baseline.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io import layout
from disentangle.pipeline.summary import write_grid_summary


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add(p, "outputs", default="outputs", help="folder holding baseline/, filtered_*/ and control/")
    cli.add(p, "output", default=None, help="default: <outputs>/mask_grid_summary.csv")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out, frame = write_grid_summary(args.outputs, args.output)
    print(f"{frame[['block', 'k', 'cluster', 'mode']].drop_duplicates().shape[0]} filtered runs and the baseline "
          f"-> {out} (long form: {out.with_name(layout.GRID_LONG)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
