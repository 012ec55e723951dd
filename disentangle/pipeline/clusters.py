"""The neuron-statistics stage (per-channel statistics of a block and k-means clusters of its
neurons) and the cluster description that follows it (centroids and figures)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core import distributed
from ..core.errors import UserError
from ..core.layers import layer_width, resolve_layer
from ..io import artifacts
from ..io.readers import Clusters, load_clusters
from ..neurons import clustering, statistics
from .baseline import Outcome
from .session import Session

CLUSTERING_KEYS = ("k", "n_init", "kmeans")


def reusable_stats(out: Path, config: dict) -> Path | None:
    """A finished sibling folder whose statistics were computed with the same settings (any k)."""
    for sibling in sorted(out.parent.glob(f"{config['block']}_k*")):
        m = artifacts.read_manifest(sibling)
        if sibling != out and m and m.get("complete") and m.get("stage") == "neuron_stats" and \
                artifacts.config_mismatch(*({k: v for k, v in c.items() if k not in CLUSTERING_KEYS}
                                            for c in (m["config"], config))) is None:
            return sibling / f"stats_{config['block']}.npz"
    return None


def _check_clustering(k: int, n_channels: int, what: str, n_init: int, features: str, variant: str) -> None:
    if not 2 <= k <= n_channels - 1:
        raise UserError(f"k={k} is out of range for {what}, which has {n_channels} "
                        f"neurons (need 2 <= k <= {n_channels - 1})")
    if n_init < 1:
        raise UserError(f"--n_init must be at least 1, got {n_init}")
    if features not in statistics.FEATURES:
        raise UserError(f"unknown --features {features!r}; choose from {', '.join(statistics.FEATURES)}")
    if variant not in clustering.KMEANS:
        raise UserError(f"unknown --kmeans {variant!r}; choose from {', '.join(clustering.KMEANS)}")


def _cluster_and_write(out: Path, manifest: dict, block: str, stats: dict[str, np.ndarray], names: tuple[str, ...],
                       k: int, seed: int, n_init: int, variant: str, n_images: int | None) -> dict:
    """Write ``stats_<block>.npz``, cluster the z-scored statistics into ``cluster_results.npz``
    (the original's keys ``selected_block, labels, n_clusters`` first) and the finished manifest
    (the original's keys ``selected_block, n_clusters, num_neurons, stats_files`` among ours)."""
    extra = {} if n_images is None else {"n_images": n_images}
    artifacts.write_npz(out / f"stats_{block}.npz", **{n: stats[n] for n in names}, names=np.array(names), **extra)
    z, mean, scale = clustering.standardize(statistics.stats_matrix(stats, names))
    result = clustering.kmeans(z, k, seed, n_init, variant)
    artifacts.write_npz(out / "cluster_results.npz", selected_block=np.array(block), labels=result["labels"],
                        n_clusters=np.array(k), **{n: v for n, v in result.items() if n != "labels"},
                        scaler_mean=mean, scaler_scale=scale, stat_names=np.array(names))
    manifest.update(selected_block=block, n_clusters=k, num_neurons=len(result["labels"]),
                    stats_files={block: f"stats_{block}.npz"}, complete=True)
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    return result


def run_neuron_stats(session: Session, block: str, k: int, n_init: int, out: str | Path,
                     overwrite: bool = False, features: str = "original", variant: str = "original") -> Outcome:
    """The ``features`` of every channel of ``block`` over the session's images (reused from a
    sibling folder of another k when they match) and k-means clusters of them (``variant``:
    ``original`` or ``stable``), into ``out`` (``stats_<block>.npz``, ``cluster_results.npz``,
    ``manifest.json``). ``result``: the clustering (``labels``, ``sizes``, ``silhouette``,
    ``inertia`` ...) and ``n_channels``."""
    out = Path(out)
    path = resolve_layer(session.spec, block)
    n_channels = layer_width(session.model, path, session.example())
    _check_clustering(k, n_channels, f"{block} of {session.spec.name}", n_init, features, variant)
    names = statistics.FEATURES[features]
    manifest = artifacts.make_manifest(
        "neuron_stats", {**session.config(), "block": block, "features": features, "statistics": list(names),
                         "k": k, "kmeans": variant, "n_init": n_init},
        {"device": str(session.device), "batch_size": session.runtime.batch_size, "workers": session.workers},
        weights_path=session.loaded.weights["path"])

    def start() -> tuple[str, Path | None]:
        state = artifacts.open_output(out, manifest, overwrite)
        return state, None if state == "complete" else reusable_stats(out, manifest["config"])
    distributed.group(session.device)                 # the ranks join before rank 0 decides for them
    state, source = distributed.decide(start)          # under torchrun rank 0 opens the folder
    if state == "complete":
        z = artifacts.read_npz(out / "cluster_results.npz", ("labels",), "cluster")
        return Outcome(out, True, {**z, "n_channels": n_channels})
    if source is not None:
        z = artifacts.read_npz(source, names, "neuron statistics")
        stats = {s: z[s] for s in names}
        manifest["inputs"] = {"statistics": str(source.parent)}
    else:
        # Under torchrun each rank takes every N-th batch; rank 0 joins the sums and clusters.
        size = session.runtime.batch_size
        mine = session.shard(size)
        stats = statistics.collect_stats(session.model, path, session.loader(size, batches=mine), session.device,
                                         f"{block} activations", features, mine)
    result = distributed.decide(lambda: _cluster_and_write(out, manifest, block, stats, names, k, session.seed,
                                                           n_init, variant, len(session.images)))
    return Outcome(out, False, {**result, "n_channels": n_channels})


def cluster_saved_stats(stats_file: str | Path, block: str, k: int, out: str | Path, overwrite: bool = False,
                        variant: str = "original", n_init: int = 10, seed: int = 0) -> Outcome:
    """Cluster statistics saved by a neuron-statistics run (this project's or the original's
    ``stats_block_N.npz``: ``activation_rate, mean_activation, variance``), without a model."""
    stats_file, out = Path(stats_file), Path(out)
    z = artifacts.read_npz(stats_file, (), "neuron statistics")
    names = _feature_names(z, stats_file)
    stats = {n: np.asarray(z[n], dtype=np.float64) for n in names}
    n_channels = len(stats[names[0]])
    if any(v.shape != (n_channels,) for v in stats.values()):
        raise UserError(f"{stats_file}: every statistic must be one value per neuron")
    features = next((f for f, ns in statistics.FEATURES.items() if ns == names), "custom")
    _check_clustering(k, n_channels, f"{stats_file}", n_init, "original", variant)
    manifest = artifacts.make_manifest(
        "neuron_stats", {"from_stats": str(stats_file), "stats_sha256": artifacts.sha256_file(stats_file),
                         "block": block, "features": features, "statistics": list(names), "k": k, "kmeans": variant,
                         "n_init": n_init, "seed": seed}, {})
    if artifacts.open_output(out, manifest, overwrite) == "complete":
        return Outcome(out, True, {**artifacts.read_npz(out / "cluster_results.npz", ("labels",), "cluster"),
                                   "n_channels": n_channels})
    n_images = int(z["n_images"]) if "n_images" in z else None
    result = _cluster_and_write(out, manifest, block, stats, names, k, seed, n_init, variant, n_images)
    return Outcome(out, False, {**result, "n_channels": n_channels})


def _feature_names(z: dict, path: Path) -> tuple[str, ...]:
    """The statistics a stats file holds: its ``names``, else one of the known feature sets."""
    if "names" in z:
        return tuple(str(n) for n in z["names"])
    for names in statistics.FEATURES.values():
        if all(n in z for n in names):
            return names
    raise UserError(f"{path} holds none of the known statistics ({', '.join(statistics.ORIGINAL)}, or "
                    f"{', '.join(statistics.STATS)})")


def load_stats(folder: Path, block: str, n: int) -> dict[str, np.ndarray]:
    """Each statistic as a ``(C,)`` float64 array, checked against the ``n`` cluster labels."""
    path = folder / f"stats_{block}.npz"
    z = artifacts.read_npz(path, (), "neuron statistics")
    stats = {s: np.asarray(z[s], dtype=np.float64) for s in _feature_names(z, path)}
    if any(len(v) != n for v in stats.values()):
        raise UserError(f"{path} holds {len(next(iter(stats.values())))} neurons but cluster_results.npz {n}; "
                        f"rerun neuron_stats.py for this folder")
    return stats


ORIGINAL_CENTROID_COLUMNS = {"mean_activation": "mean", "activation_rate": "rate", "variance": "variance"}


def centroid_table(stats: dict[str, np.ndarray], labels: np.ndarray, k: int) -> pd.DataFrame:
    """One row per cluster: each statistic's mean over its neurons and their number. For the
    original features, the original's columns ``cluster, mean, rate, variance, n_neurons``; else
    ``cluster, n_neurons`` and the statistics."""
    onehot = labels[:, None] == np.arange(k)[None, :]                  # (C, k)
    sizes = onehot.sum(0)                                              # (k,)
    names = tuple(stats)
    x = statistics.stats_matrix(stats, names)                          # (C, S)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (onehot.T.astype(np.float64) @ x) / sizes[:, None]     # (k, S); an empty cluster gives NaN
    frame = pd.DataFrame(means, columns=list(names))
    frame.insert(0, "cluster", np.arange(k))
    if set(names) == set(statistics.ORIGINAL):
        frame = frame.rename(columns=ORIGINAL_CENTROID_COLUMNS)[["cluster", "mean", "rate", "variance"]]
        frame["n_neurons"] = sizes.astype(np.int64)
        return frame
    frame.insert(1, "n_neurons", sizes.astype(np.int64))
    return frame


def describe_clusters(clusters: Clusters, axes: tuple[str, ...] | None = None, seed: int = 0) -> pd.DataFrame:
    """Into the clusters' folder: ``cluster_centroids.csv`` (the centroid table, returned),
    ``cluster_tsne.png``, ``cluster_scatter_3d.png`` and ``cluster_scatter_3d_interactive.html``
    (three statistics ``axes``, default: the first three, in original units)."""
    from ..viz import plots
    folder, labels = clusters.folder, clusters.labels.astype(np.int64)
    stats = load_stats(folder, clusters.block, len(labels))
    axes = check_axes(axes or default_axes(tuple(stats)), tuple(stats))
    z = artifacts.read_npz(folder / "cluster_results.npz", ("scaler_mean", "scaler_scale"), "cluster")
    z_stats = (statistics.stats_matrix(stats, tuple(stats)) - z["scaler_mean"]) / z["scaler_scale"]   # (C, S), as clustered
    table = centroid_table(stats, labels, clusters.k)
    artifacts.hold(folder)                      # neuron_stats.py or another description may be writing
    artifacts.write_csv(folder / "cluster_centroids.csv", table)
    what = f"{clusters.block}, k={clusters.k}: {len(labels)} neurons"
    plots.cluster_tsne(z_stats, labels, folder / "cluster_tsne.png", f"t-SNE of neuron statistics ({what})", seed)
    plots.cluster_scatter_3d(stats, labels, axes, folder / "cluster_scatter_3d.png", f"Neuron clusters ({what})")
    plots.cluster_scatter_3d_html(stats, labels, axes, folder / "cluster_scatter_3d_interactive.html",
                                  f"Neuron clusters ({what})")
    return table


def default_axes(available: tuple[str, ...]) -> tuple[str, str, str]:
    """The 3-D plots' statistics: ``mean, std, max`` of the extended set, else the first three."""
    return ("mean", "std", "max") if available == statistics.STATS else available[:3]


def check_axes(names: tuple[str, ...], available: tuple[str, ...]) -> tuple[str, str, str]:
    """Three different statistics among ``available`` for the 3-D plots."""
    unknown = [a for a in names if a not in available]
    if unknown:
        raise UserError(f"unknown statistic {unknown[0]!r} in --axes; choose from {', '.join(available)}")
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
