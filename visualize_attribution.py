"""Figure of one image's attributions with and without a cluster's gradient path.

Rows IG and Saliency; columns: the input, the baseline map, the map with the cluster blocked (same
colour scale), their difference, and the input masked where the baseline map is highest (what
faithfulness measures). Each image's prediction is explained, as the original; titles carry it and
its probability, and each map's sparsity and faithfulness. Writes
<output_dir>/attr_example_<img_idx>_idx_<c>_k<k>.png (the original's name).
"""
from __future__ import annotations

from disentangle import cli
from disentangle.pipeline.figures import attribution_figures


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add(p, "img_idx", type=int, default=1500, help="image position in the data set's ImageFolder order")
    cli.figure_args(p)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for path in attribution_figures(cli.clusters(args), args.cluster_idx, cli.figure_config(args),
                                    cli.runtime(args), args.output_dir, indices=[args.img_idx], seed=args.seed):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
