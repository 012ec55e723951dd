"""The block x k grid, end to end: baseline, neuron statistics and clusters, centroid analyses,
filtered runs of every cluster, random-neuron controls, accuracy, and the summary CSV.

It prints its plan first, skips every step whose artifacts are complete and consistent with their
manifest (so an interrupted grid resumes where it stopped), and can run part of the grid
(--blocks, --ks). Detach-mode runs of one block share one forward and backward pass.
"""
from __future__ import annotations

import time
from pathlib import Path

from disentangle import cli
from disentangle.core.errors import UserError
from disentangle.core.hooks import MODES
from disentangle.pipeline import grid


def ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in cli.names(text))
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}") from None


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    g = p.add_argument_group("grid")
    cli.add(g, "blocks", type=cli.names, default=None,
            help="comma-separated named blocks; default: block_1..block_4 (all the model's blocks if it has no block_1)")
    cli.add(g, "ks", default="2,3,4,5", help="comma-separated numbers of clusters")
    cli.add(g, "modes", default="detach", help=f"comma-separated, from {', '.join(MODES)}")
    cli.add(g, "control_ks", default=None,
            help="clusterings whose clusters get random controls, among --ks ('' for none); "
                 "default: 3 when it is among --ks, else the smallest of --ks")
    cli.add(g, "repeats", type=cli.positive, default=5, help="random neuron sets per controlled cluster")
    cli.add(g, "stats_images", type=cli.positive, default=1000, help="images for the neuron statistics")
    cli.clustering_method_args(g)
    cli.model_args(p, images=100, order="grid")
    cli.runtime_args(p, engine=True)
    cli.attribution_args(p, target_flag=False, metrics=False)
    cli.add(p, "outputs", default="outputs", help="root folder of every artifact")
    cli.add(p, "overwrite", action="store_true",
            help="replace the stages' folders that hold runs with other settings (never other files)")
    cli.add(p, "dry_run", action="store_true", help="print the plan and stop")
    return p


def config(args) -> grid.GridConfig:
    return grid.GridConfig(
        model=args.model, weights=args.weights, data=args.data, data_root=args.data_root, images=args.images,
        image_order=args.image_order, seed=args.seed, blocks=args.blocks, ks=ints(args.ks),
        modes=cli.names(args.modes),
        control_ks=None if args.control_ks is None else ints(args.control_ks), repeats=args.repeats,
        stats_images=args.stats_images, n_init=args.n_init, features=args.features, kmeans=args.kmeans,
        eval=cli.eval_config(args), outputs=Path(args.outputs),
        overwrite=args.overwrite, runtime=cli.runtime(args))


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    start = time.time()
    cfg = config(args)
    steps = grid.plan(cfg)
    print(grid.describe(steps, cfg))
    if args.dry_run:
        return 0
    summary = grid.execute(steps, cfg, lambda line: print(line, flush=True))
    print(f"grid finished in {time.time() - start:.0f} s; summary in {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
