"""The neuron-statistics stage (per-channel statistics of a block and k-means clusters of its
neurons) and the cluster description that follows it (centroids and figures)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import UserError
from ..core.layers import layer_width, resolve_layer
from ..io import artifacts
from ..io.readers import Clusters, load_clusters
from ..neurons import clustering, statistics
from .baseline import Outcome
from .session import Session

CLUSTERING_KEYS = ("k", "n_init")


def reusable_stats(out: Path, config: dict) -> Path | None:
    """A finished sibling folder whose statistics were computed with the same settings (any k)."""
    for sibling in sorted(out.parent.glob(f"{config['block']}_k*")):
        m = artifacts.read_manifest(sibling)
        if sibling != out and m and m.get("complete") and m.get("stage") == "neuron_stats" and \
                artifacts.config_mismatch(*({k: v for k, v in c.items() if k not in CLUSTERING_KEYS}
                                            for c in (m["config"], config))) is None:
            return sibling / f"stats_{config['block']}.npz"
    return None


def run_neuron_stats(session: Session, block: str, k: int, n_init: int, out: str | Path,
                     overwrite: bool = False) -> Outcome:
    """Statistics of every channel of ``block`` over the session's images (reused from a sibling
    folder of another k when they match) and k-means clusters of them, into ``out``
    (``stats_<block>.npz``, ``cluster_results.npz``, ``manifest.json``). ``result``: the clustering
    (``labels``, ``sizes``, ``silhouette``, ``inertia`` ...) and ``n_channels``."""
    out = Path(out)
    path = resolve_layer(session.spec, block)
    n_channels = layer_width(session.model, path, session.example())
    if not 2 <= k <= n_channels - 1:
        raise UserError(f"k={k} is out of range for {block} of {session.spec.name}, which has {n_channels} "
                        f"neurons (need 2 <= k <= {n_channels - 1})")
    if n_init < 1:
        raise UserError(f"--n_init must be at least 1, got {n_init}")
    manifest = artifacts.make_manifest(
        "neuron_stats", {**session.config(), "block": block, "statistics": list(statistics.STATS), "k": k,
                         "n_init": n_init},
        {"device": str(session.device), "batch_size": session.runtime.batch_size, "workers": session.workers},
        weights_path=session.loaded.weights["path"])
    if artifacts.open_output(out, manifest, overwrite) == "complete":
        z = artifacts.read_npz(out / "cluster_results.npz", ("labels",), "cluster")
        return Outcome(out, True, {**z, "n_channels": n_channels})
    source = reusable_stats(out, manifest["config"])
    if source is not None:
        z = artifacts.read_npz(source, statistics.STATS, "neuron statistics")
        stats = {s: z[s] for s in statistics.STATS}
        manifest["inputs"] = {"statistics": str(source.parent)}
    else:
        stats = statistics.collect_stats(session.model, path, session.loader(session.runtime.batch_size),
                                         session.device, desc=f"{block} activations")
    artifacts.write_npz(out / f"stats_{block}.npz", **stats, names=np.array(statistics.STATS),
                        n_images=len(session.images))
    z, mean, scale = clustering.standardize(statistics.stats_matrix(stats))
    result = clustering.kmeans(z, k, session.seed, n_init)
    artifacts.write_npz(out / "cluster_results.npz", **result, scaler_mean=mean, scaler_scale=scale,
                        stat_names=np.array(statistics.STATS))
    manifest["complete"] = True
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    return Outcome(out, False, {**result, "n_channels": n_channels})


def load_stats(folder: Path, block: str, n: int) -> dict[str, np.ndarray]:
    """Each statistic as a ``(C,)`` float64 array, checked against the ``n`` cluster labels."""
    path = folder / f"stats_{block}.npz"
    z = artifacts.read_npz(path, statistics.STATS, "neuron statistics")
    stats = {s: z[s].astype(np.float64) for s in statistics.STATS}
    if any(len(v) != n for v in stats.values()):
        raise UserError(f"{path} holds {len(stats['mean'])} neurons but cluster_results.npz {n}; "
                        f"rerun neuron_stats.py for this folder")
    return stats


def centroid_table(stats: dict[str, np.ndarray], labels: np.ndarray, k: int) -> pd.DataFrame:
    """One row per cluster: ``cluster``, ``size`` and each statistic's mean over its neurons."""
    onehot = labels[:, None] == np.arange(k)[None, :]                  # (C, k)
    sizes = onehot.sum(0)                                              # (k,)
    x = statistics.stats_matrix(stats)                                 # (C, S)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (onehot.T.astype(np.float64) @ x) / sizes[:, None]     # (k, S); an empty cluster gives NaN
    frame = pd.DataFrame(means, columns=list(statistics.STATS))
    frame.insert(0, "size", sizes.astype(np.int64))
    frame.insert(0, "cluster", np.arange(k))
    return frame


def describe_clusters(clusters: Clusters, axes: tuple[str, str, str], seed: int = 0) -> pd.DataFrame:
    """Into the clusters' folder: ``cluster_centroids.csv`` (the centroid table, returned),
    ``cluster_tsne.png``, ``cluster_scatter_3d.png`` and ``cluster_scatter_3d_interactive.html``
    (three statistics ``axes``, in original units)."""
    from ..viz import plots
    folder, labels = clusters.folder, clusters.labels.astype(np.int64)
    stats = load_stats(folder, clusters.block, len(labels))
    z = artifacts.read_npz(folder / "cluster_results.npz", ("scaler_mean", "scaler_scale"), "cluster")
    z_stats = (statistics.stats_matrix(stats) - z["scaler_mean"]) / z["scaler_scale"]   # (C, S), as clustered
    table = centroid_table(stats, labels, clusters.k)
    artifacts.hold(folder)                      # neuron_stats.py or another description may be writing
    artifacts.write_csv(folder / "cluster_centroids.csv", table)
    what = f"{clusters.block}, k={clusters.k}: {len(labels)} neurons"
    plots.cluster_tsne(z_stats, labels, folder / "cluster_tsne.png", f"t-SNE of neuron statistics ({what})", seed)
    plots.cluster_scatter_3d(stats, labels, axes, folder / "cluster_scatter_3d.png", f"Neuron clusters ({what})")
    plots.cluster_scatter_3d_html(stats, labels, axes, folder / "cluster_scatter_3d_interactive.html",
                                  f"Neuron clusters ({what})")
    return table


def check_axes(names: tuple[str, ...]) -> tuple[str, str, str]:
    """Three different statistics for the 3-D plots."""
    unknown = [a for a in names if a not in statistics.STATS]
    if unknown:
        raise UserError(f"unknown statistic {unknown[0]!r} in --axes; choose from {', '.join(statistics.STATS)}")
    if len(names) != 3 or len(set(names)) != 3:
        raise UserError(f"--axes needs three different statistics, got {','.join(names)!r}")
    return names


def check_clustering(folder: Path, block: str | None, k: int | None) -> Clusters:
    """The clusters of ``folder``, which must be of ``block`` and ``k`` where they are given."""
    clusters = load_clusters(folder)
    for flag, asked, there in (("--block", block, clusters.block), ("--k", k, clusters.k)):
        if asked is not None and asked != there:
            raise UserError(f"{folder} holds {clusters.block} with k={clusters.k}, not {flag} {asked}")
    return clusters
