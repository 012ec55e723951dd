"""Decompose attributions over a block's clusters: the map with only one cluster's path open.

For image --img_idx (--num_images 1), or N images evenly spaced over the data set (--num_images N,
as the original), each cluster's map beside the full map and the remainder (full − Σ clusters,
zero up to rounding: the clusters partition the block, a cut of the network). Per image
cluster_analysis_<method>_<idx>.json (the original's keys: cluster_magnitudes, cluster_percentages
(L2 norms, adding up to 100), cluster_sparsity, reconstruction_error, cluster_independence; then
ours) and .png, and aggregate_stats_<method>.json over them, in outputs/decomposition_analysis/.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io import layout, readers
from disentangle.pipeline.decomposition import decompose


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add(p, "img_idx", type=int, default=1050,
            help="image position in the data set's ImageFolder order (--num_images 1)")
    cli.add(p, "images", type=cli.positive, default=1,
            help="1: image --img_idx; N > 1: N images evenly spaced over the data set in ImageFolder order "
                 "(the original's default was 20)")
    cli.add(p, "stats_dir", default=str(layout.stats_dir("block_1", 3)), help="output of neuron_stats.py")
    cli.add(p, "method", default="ig", help="ig or saliency (signed gradient, so that the maps add up)")
    cli.add(p, "ig_steps", type=cli.positive, default=50, help="Integrated Gradients steps")
    cli.runtime_args(p, engine=True)
    cli.output_args(p, str(layout.decomposition_dir()), "where figures and JSON go", overwrite=False)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    clusters = readers.load_clusters(args.stats_dir)
    _, content = decompose(clusters, args.method, cli.runtime(args), args.output_dir, args.img_idx, args.images,
                           args.ig_steps)
    for c, share in content["cluster_percentages"].items():
        print(f"cluster {c} ({content['cluster_sizes'][int(c)]} neurons): {share['mean']:.1f}% of the map's L2 norm "
              f"(± {share['std']:.1f}), sparsity {content['cluster_sparsity'][c]['mean']:.3f}")
    print(f"reconstruction error {content['reconstruction_errors']['mean']:.2e}, cluster independence "
          f"{content['cluster_independence']['mean']:.3f}")
    return cli.artifacts_in(args.output_dir)


if __name__ == "__main__":
    raise SystemExit(main())
