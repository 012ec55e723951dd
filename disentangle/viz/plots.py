"""Figures of neuron clusters: a t-SNE map, a 3-D scatter of three statistics, and its interactive twin.

Every figure is rendered to bytes in memory and written atomically (``artifacts.write_bytes``), so a
crash never leaves half a file. Cluster ``i`` has the same colour in every figure.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from matplotlib.colors import to_hex
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from ..io import artifacts

DPI = 150


def cluster_colour(cluster: int) -> str:
    """Hex colour of a cluster (tab10, cycling)."""
    return to_hex(plt.get_cmap("tab10")(cluster % 10))


def _clusters(labels: np.ndarray) -> range:
    return range(int(labels.max()) + 1 if len(labels) else 0)


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG bytes of ``pixels (H, W, 3)`` or ``(H, W)`` uint8."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def save_png(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Render ``fig`` in memory, close it, and write the PNG atomically."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return artifacts.write_bytes(path, buf.getvalue())


def tsne_embedding(z: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE of the rows of ``z (C, S)`` -> ``(C, 2)``; perplexity ``min(30, (C-1)/3)``, at least 2."""
    c = len(z)
    perplexity = max(2.0, min(30.0, (c - 1) / 3))
    if perplexity >= c:
        raise ValueError(f"t-SNE needs more than {perplexity:g} points, got {c}")
    # One OpenMP thread: on a small shared machine multi-threaded Barnes-Hut sometimes stalls at its
    # barriers (0.1 s becomes 40 s for 32 points), and one thread sums in a fixed order.
    with threadpool_limits(limits=1, user_api="openmp"):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)


def cluster_tsne(z: np.ndarray, labels: np.ndarray, path: str | os.PathLike, title: str, seed: int) -> None:
    """t-SNE map of the neurons, coloured by cluster, as a PNG at ``path``.

    ``z (C, S)``: each neuron's statistics, standardised; ``labels (C,)``: each neuron's cluster.
    """
    xy = tsne_embedding(np.asarray(z, dtype=np.float64), seed)              # (C, 2)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    for c in _clusters(labels):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=28, color=cluster_colour(c), edgecolor="k", linewidth=0.3,
                   label=f"cluster {c} ({int(m.sum())})")
    ax.set(title=title, xlabel="t-SNE 1", ylabel="t-SNE 2")
    ax.legend(loc="best", fontsize="small")
    save_png(fig, path)


def cluster_scatter_3d(raw: dict[str, np.ndarray], labels: np.ndarray, axes: tuple[str, str, str],
                       path: str | os.PathLike, title: str, names: dict[int, str] | None = None) -> None:
    """3-D scatter of the statistics ``axes`` (original units), coloured by cluster, as a PNG.

    ``raw``: statistic name -> ``(C,)`` values; ``labels (C,)``: each neuron's cluster (or group,
    named in the legend by ``names``).
    """
    fig = plt.figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    x, y, w = (np.asarray(raw[a]) for a in axes)
    for c in _clusters(labels):
        m = labels == c
        ax.scatter(x[m], y[m], w[m], s=24, color=cluster_colour(c), edgecolor="k", linewidth=0.3,
                   depthshade=True, label=f"{(names or {}).get(c, f'cluster {c}')} ({int(m.sum())})")
    ax.set_xlabel(axes[0], labelpad=8)
    ax.set_ylabel(axes[1], labelpad=8)
    ax.set_zlabel(axes[2], labelpad=12)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    save_png(fig, path)


def cluster_scatter_3d_html(raw: dict[str, np.ndarray], labels: np.ndarray, axes: tuple[str, str, str],
                            path: str | os.PathLike, title: str) -> None:
    """Interactive (plotly) 3-D scatter of the statistics ``axes``, one trace per cluster, as a
    self-contained HTML page. Hovering a point shows ``neuron <index>``, its cluster and every
    statistic in ``raw`` (4 significant digits).

    ``raw``: statistic name -> ``(C,)`` values; ``labels (C,)``: each neuron's cluster.
    """
    raw = {name: np.asarray(v) for name, v in raw.items()}
    fig = go.Figure()
    for c in _clusters(labels):
        idx = np.flatnonzero(labels == c)
        text = ["<br>".join([f"neuron {i}", f"cluster {c}", *(f"{name}: {v[i]:.4g}" for name, v in raw.items())])
                for i in idx]
        fig.add_trace(go.Scatter3d(
            x=raw[axes[0]][idx], y=raw[axes[1]][idx], z=raw[axes[2]][idx], mode="markers",
            name=f"cluster {c} ({len(idx)})", text=text, hovertemplate="%{text}<extra></extra>",
            marker={"size": 4, "color": cluster_colour(c), "line": {"width": 0.5, "color": "black"}}))
    fig.update_layout(title=title, legend={"itemsizing": "constant"},
                      scene={"xaxis_title": axes[0], "yaxis_title": axes[1], "zaxis_title": axes[2]})
    # A fixed div id keeps the page byte-identical from run to run (plotly's default is a random uuid).
    html = fig.to_html(include_plotlyjs=True, full_html=True, div_id="cluster-scatter-3d")
    artifacts.write_bytes(path, html.encode())


def control_distribution(random: dict[tuple[str, str], np.ndarray], effect: dict[tuple[str, str], float],
                         comparison: dict[str, dict], path: str | os.PathLike, title: str) -> None:
    """One panel per (method, measure): the random sets' mean deltas as dots over a box, the
    cluster's mean delta as a red line, with its percentile and empirical p-value."""
    keys = list(effect)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        r = random[key]
        ax.boxplot(r, widths=0.5, showfliers=False)
        ax.scatter(np.ones(len(r)) + np.linspace(-0.12, 0.12, len(r)), r, s=14, color="0.35", zorder=3,
                   label=f"random sets (n={len(r)})")
        ax.axhline(effect[key], color="crimson", lw=2, label="cluster")
        ax.axhline(0, color="0.7", lw=0.8, ls=":")
        c = comparison[f"{key[0]}_{key[1]}"]
        ax.set_title(f"{key[0]} {key[1]}\npercentile {c['percentile']:.0f}, p = {c['p_value']:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_ylabel("mean Δ vs baseline (filtered − baseline)", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def decomposition_figure(image: np.ndarray, full: np.ndarray, parts: np.ndarray, remainder: np.ndarray,
                         share: np.ndarray, sizes: np.ndarray, path: str | os.PathLike, title: str) -> None:
    """Image, full map and one map per cluster (all ``(H, W)`` of Σ_c|a_c|, one colour scale), and
    the remainder. ``image (H, W, 3)`` in [0, 1]; ``parts (k, H, W)``; ``share (k,)`` percentages
    (each cluster map's L2 norm over the sum of the clusters' norms; they add up to 100)."""
    k = len(parts)
    fig, axes = plt.subplots(1, k + 3, figsize=(2.4 * (k + 3), 2.9))
    vmax = float(max(full.max(), parts.max(), 1e-12))
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    panels = [("full map", full)] + [(f"cluster {c} only\n({sizes[c]} neurons, {share[c]:.0f}% of norms)", parts[c])
                                     for c in range(k)] + [("remainder\n(full − Σ clusters)", remainder)]
    for ax, (name, m) in zip(axes[1:], panels):
        im = ax.imshow(m, cmap="inferno", vmin=0, vmax=vmax)
        ax.set_title(name, fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes.tolist(), fraction=0.015, pad=0.01, label="Σ_c |attribution|")
    fig.suptitle(title, fontsize=10)
    save_png(fig, path)


def decomposition_bars(mean: np.ndarray, std: np.ndarray, sizes: np.ndarray, path: str | os.PathLike,
                       title: str) -> None:
    """Mean (± std over images) percentage per cluster: its map's L2 norm over the sum of the
    clusters' norms (per image, the percentages add up to 100)."""
    fig, ax = plt.subplots(figsize=(1.2 * len(mean) + 2.5, 3.2))
    ax.bar(range(len(mean)), mean, yerr=std, color=[cluster_colour(c) for c in range(len(mean))], capsize=4)
    ax.set_xticks(range(len(mean)), [f"cluster {c}\n({sizes[c]} neurons)" for c in range(len(mean))], fontsize=8)
    ax.set_ylabel("% of the clusters' summed L2 norms")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)

