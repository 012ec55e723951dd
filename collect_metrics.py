"""Gather the baseline, every filtered run and their random controls into outputs/mask_grid_summary.csv.

One row per block, k, cluster, mode, method and measure (sparsity or faithfulness): cluster size,
baseline and filtered means, the mean per-image delta, accuracy, and where the delta sits among the
random-neuron controls of the same size (percentile and empirical p-value) when they were run.
Every run is checked to be made against the baseline in <outputs>/baseline.
"""
from __future__ import annotations

from disentangle import cli
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
    print(f"{frame[['block', 'k', 'cluster', 'mode']].drop_duplicates().shape[0]} filtered runs, "
          f"{len(frame)} rows -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
