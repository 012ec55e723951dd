"""Describe the k-means clusters of a neuron_stats run: centroids in original units and three figures.

Reads outputs/neuron_stats/<block>_k<k>/ (or --stats_dir) and writes into it: cluster_centroids.csv
(per cluster: size and the mean of every statistic over its neurons, in original units),
cluster_tsne.png (t-SNE map of the standardised statistics), cluster_scatter_3d.png and
cluster_scatter_3d_interactive.html (three statistics, --axes, in original units).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from disentangle.io import artifacts
from disentangle import cli
from disentangle.neurons import statistics as neurons
from disentangle.pipeline import readers as pipeline
from disentangle.viz import plots

DEFAULT_BLOCK, DEFAULT_K = "block_1", 3


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--block", default=None, help=f"named block (default {DEFAULT_BLOCK}, or the --stats_dir's)")
    p.add_argument("--k", "--n_clusters", dest="k", type=int, default=None,
                   help=f"number of clusters (default {DEFAULT_K}, or the --stats_dir's)")
    p.add_argument("--stats_dir", default=None, help="neuron_stats output folder; default: outputs/neuron_stats/<block>_k<k>")
    p.add_argument("--axes", default="mean,std,max",
                   help=f"three statistics for the 3-D plots, comma-separated, from: {', '.join(neurons.STATS)}")
    p.add_argument("--seed", type=int, default=0, help="t-SNE seed")
    return p


def parse_axes(text: str) -> tuple[str, str, str]:
    names = tuple(a.strip() for a in text.split(","))
    unknown = [a for a in names if a not in neurons.STATS]
    if unknown:
        raise cli.UserError(f"unknown statistic {unknown[0]!r} in --axes; choose from {', '.join(neurons.STATS)}")
    if len(names) != 3 or len(set(names)) != 3:
        raise cli.UserError(f"--axes needs three different statistics, got {text!r}")
    return names


def load_stats(folder: Path, block: str, n: int) -> dict[str, np.ndarray]:
    """Each statistic as a ``(C,)`` float64 array, checked against the ``n`` cluster labels."""
    path = folder / f"stats_{block}.npz"
    z = artifacts.read_npz(path, neurons.STATS, "neuron statistics")
    stats = {s: z[s].astype(np.float64) for s in neurons.STATS}
    if any(len(v) != n for v in stats.values()):
        raise cli.UserError(f"{path} holds {len(stats['mean'])} neurons but cluster_results.npz {n}; "
                            f"rerun neuron_stats.py for this folder")
    return stats


def centroid_table(stats: dict[str, np.ndarray], labels: np.ndarray, k: int) -> pd.DataFrame:
    """One row per cluster: ``cluster``, ``size`` and each statistic's mean over its neurons."""
    onehot = labels[:, None] == np.arange(k)[None, :]                  # (C, k)
    sizes = onehot.sum(0)                                              # (k,)
    x = neurons.stats_matrix(stats)                                    # (C, S)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (onehot.T.astype(np.float64) @ x) / sizes[:, None]     # (k, S); an empty cluster gives NaN
    frame = pd.DataFrame(means, columns=list(neurons.STATS))
    frame.insert(0, "size", sizes.astype(np.int64))
    frame.insert(0, "cluster", np.arange(k))
    return frame


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    axes = parse_axes(args.axes)
    block, k = args.block or DEFAULT_BLOCK, args.k if args.k is not None else DEFAULT_K
    folder = Path(args.stats_dir) if args.stats_dir else pipeline.stats_dir(block, k)
    clusters = pipeline.load_clusters(folder)
    for flag, asked, there in (("--block", args.block, clusters.block), ("--k", args.k, clusters.k)):
        if asked is not None and asked != there:
            raise cli.UserError(f"{folder} holds {clusters.block} with k={clusters.k}, not {flag} {asked}")
    labels = clusters.labels.astype(np.int64)
    if labels.ndim != 1 or labels.min() < 0 or labels.max() >= clusters.k:
        raise cli.UserError(f"{folder}/cluster_results.npz has labels outside 0..{clusters.k - 1}; rerun neuron_stats.py")
    stats = load_stats(folder, clusters.block, len(labels))
    z = artifacts.read_npz(folder / "cluster_results.npz", ("scaler_mean", "scaler_scale"), "cluster")
    mean, scale = z["scaler_mean"], z["scaler_scale"]
    z_stats = (neurons.stats_matrix(stats) - mean) / scale             # (C, S), as clustered

    table = centroid_table(stats, labels, clusters.k)
    artifacts.hold(folder)                      # neuron_stats.py or another centroid analysis may be writing
    artifacts.write_csv(folder / "cluster_centroids.csv", table)
    what = f"{clusters.block}, k={clusters.k}: {len(labels)} neurons"
    plots.cluster_tsne(z_stats, labels, folder / "cluster_tsne.png", f"t-SNE of neuron statistics ({what})", args.seed)
    plots.cluster_scatter_3d(stats, labels, axes, folder / "cluster_scatter_3d.png", f"Neuron clusters ({what})")
    plots.cluster_scatter_3d_html(stats, labels, axes, folder / "cluster_scatter_3d_interactive.html",
                                  f"Neuron clusters ({what})")

    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 4):
        print(f"cluster centroids of {what} (means in original units):")
        print(table.to_string(index=False))
    print(f"artifacts in {folder}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
