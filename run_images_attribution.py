"""Attribution figures (as visualize_attribution.py) for images evenly spaced over the data set.

As the original, --images (20) images at linspace(0, len - 1, N) of the ImageFolder order. Writes
one figure per image (attr_example_<idx>_idx_<c>_k<k>.png) and a contact sheet (one row per image:
input, baseline IG, IG with the cluster blocked, difference) as
<output_dir>/attr_<block>_c<c>_k<k>_grid_<metric>.png.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.pipeline.figures import attribution_figures


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add(p, "images", type=cli.positive, default=20, help="images, evenly spaced over the data set")
    cli.figure_args(p)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    paths = attribution_figures(cli.clusters(args), args.cluster_idx, cli.figure_config(args), cli.runtime(args),
                                args.output_dir, n_images=args.images, seed=args.seed)
    print(f"{len(paths) - 1} figures and the contact sheet {paths[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
