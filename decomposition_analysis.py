"""Decompose attributions over a block's clusters: the map with only one cluster's path open.

With --num_images 1: for image --img_idx, the full map beside each cluster's map and the remainder
(full − Σ clusters, zero up to rounding: the clusters partition the block, a cut of the network),
with each cluster's share; figure and JSON in outputs/decomposition_analysis/. With --num_images N > 1:
the same over N evenly spread images, aggregated to aggregate_stats_<block>_k<k>_<method>.json and a bar chart.
"""
from __future__ import annotations

import json

from disentangle import cli
from disentangle.io import layout, readers
from disentangle.pipeline.decomposition import decompose


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add(p, "img_idx", type=int, default=1050, help="image index in the data set (--num_images 1)")
    cli.add(p, "images", type=cli.positive, default=1, help="1: one image; N > 1: N evenly spread images, aggregated")
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
    print(json.dumps({k: v for k, v in content.items() if k not in ("block", "k", "method", "stats_dir")},
                     indent=1)[:800])
    return cli.artifacts_in(args.output_dir)


if __name__ == "__main__":
    raise SystemExit(main())
