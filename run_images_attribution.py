"""Attribution figures (as visualize_attribution.py) for images spread evenly over the classes.

Writes one figure per image and a contact sheet (one row per image: input, baseline IG, IG with the
cluster blocked, difference) as <output_dir>/attr_<block>_c<c>_k<k>_grid_<metric>.png.
"""
from __future__ import annotations

import visualize_attribution
from disentangle import cli
from disentangle.viz import figures
from disentangle.data.images import even_subset, targets_of


def parser() -> cli.Parser:
    p = visualize_attribution.parser(__doc__, one_image=False)
    p.add_argument("--num_images", type=cli.positive, default=20, help="images, spread evenly over the classes")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.num_images < 1:
        raise cli.UserError(f"--num_images must be at least 1, got {args.num_images}")
    run, clusters, cfg = visualize_attribution.prepare(args)
    indices = even_subset(targets_of(run.dataset), args.num_images).tolist()
    paths = figures.render(run, clusters, indices, cfg, args.output_dir, args.batch_size, grid=True)
    print(f"{len(paths) - 1} figures and the contact sheet {paths[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
