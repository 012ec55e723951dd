"""The block x k grid, end to end: baseline, neuron statistics and clusters, centroid analyses,
filtered runs of every cluster, random-neuron controls, accuracy, and the summary CSV.

It prints its plan first, skips every step whose artifacts are complete and consistent with their
manifest (so an interrupted grid resumes where it stopped), and can run part of the grid
(--blocks, --ks). Detach-mode runs of one block share one forward and backward pass.
"""
from __future__ import annotations

import time

from disentangle.io import artifacts
from disentangle import cli
from disentangle.pipeline import grid
from disentangle.core.hooks import MODES


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    g = p.add_argument_group("grid")
    g.add_argument("--blocks", default=None, help="comma-separated named blocks; default: block_1..block_4 "
                                                   "(all the model's blocks if it has no block_1)")
    g.add_argument("--ks", default="2,3,4,5", help="comma-separated numbers of clusters")
    g.add_argument("--modes", default="detach", help=f"comma-separated, from {', '.join(MODES)}")
    g.add_argument("--control_ks", default=None,
                   help="clusterings whose clusters get random controls, among --ks ('' for none); "
                        "default: 3 when it is among --ks, else the smallest of --ks")
    g.add_argument("--repeats", type=cli.positive, default=5, help="random neuron sets per controlled cluster")
    g.add_argument("--stats_images", type=cli.positive, default=1000, help="images for the neuron statistics")
    g.add_argument("--n_init", type=cli.positive, default=10, help="k-means restarts")
    cli.add_model_data_args(p, images=100, engine=True)
    a = p.add_argument_group("attributions")
    a.add_argument("--metric", default="patch", help="pixel or patch")
    a.add_argument("--methods", default="ig,saliency", help="comma-separated, from ig, saliency")
    a.add_argument("--ig-steps", type=cli.positive, default=50, help="Integrated Gradients steps")
    a.add_argument("--ig-batch", type=cli.positive, default=256, help="rows per IG forward/backward")
    a.add_argument("--precision", default="fp32",
                   help="fp32, or bf16/fp16: the attribution stages' forward passes under autocast (mixed precision)")
    p.add_argument("--outputs", default="outputs", help="root folder of every artifact")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the stages' folders that hold runs with other settings (never other files)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    start = time.time()
    steps = grid.plan(args)
    print(grid.describe(steps, args))
    if args.dry_run:
        return 0
    artifacts.hold(args.outputs)   # one grid per outputs folder at a time
    grid.execute(steps, args)
    print(f"grid finished in {time.time() - start:.0f} s; summary in {args.outputs}/mask_grid_summary.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
