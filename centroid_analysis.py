"""Describe the k-means clusters of a neuron_stats run: centroids in original units and three figures.

Reads outputs/neuron_stats/<block>_k<k>/ (or --stats_dir) and writes into it: cluster_centroids.csv
(per cluster: the mean of every statistic over its neurons and their number, in original units;
the original's columns cluster, mean, rate, variance, n_neurons for its features),
cluster_tsne.png (t-SNE map of the standardised statistics), cluster_scatter_3d.png and
cluster_scatter_3d_interactive.html (three statistics, --axes, in original units).
"""
from __future__ import annotations

import pandas as pd

from disentangle import cli
from disentangle.neurons.statistics import ORIGINAL, STATS
from disentangle.pipeline.clusters import describe_clusters


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.clustering_args(p)
    cli.add(p, "axes", type=cli.names, default=None,
            help=f"three statistics for the 3-D plots, comma-separated, from those clustered: "
                 f"{', '.join(ORIGINAL)} (default) or {', '.join(STATS)} (default mean,std,max)")
    cli.add(p, "seed", type=int, default=0, help="t-SNE seed")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    clusters = cli.clusters(args)
    table = describe_clusters(clusters, args.axes, args.seed)
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 4):
        print(f"cluster centroids of {clusters.block}, k={clusters.k}: {len(clusters.labels)} neurons "
              f"(means in original units):")
        print(table.to_string(index=False))
    return cli.artifacts_in(clusters.folder)


if __name__ == "__main__":
    raise SystemExit(main())
