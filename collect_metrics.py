"""Gather the baseline, every filtered run and their random controls into outputs/mask_grid_summary.csv.

One row per block, k, cluster, mode, method and measure (sparsity or faithfulness): cluster size,
baseline and filtered means, the mean per-image delta, accuracy, and where the delta sits among the
random-neuron controls of the same size (percentile and empirical p-value) when they were run.
"""
from __future__ import annotations

from pathlib import Path

from disentangle.io import artifacts
from disentangle import cli
from disentangle.pipeline import summary


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--outputs", default="outputs", help="folder holding baseline/, filtered_*/ and control/")
    p.add_argument("--output", default=None, help="default: <outputs>/mask_grid_summary.csv")
    args = p.parse_args(argv)
    root = Path(args.outputs)
    frame = summary.grid_summary(root)
    if frame.empty:
        raise cli.UserError(f"no finished filtered runs under {root}; run filtered_eval.py or run_experiments.py")
    out = Path(args.output or root / "mask_grid_summary.csv")
    artifacts.write_csv(out, frame)
    print(f"{frame[['block', 'k', 'cluster', 'mode']].drop_duplicates().shape[0]} filtered runs, "
          f"{len(frame)} rows -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
