"""Attribution figures: one image's IG and Saliency maps with and without a cluster's gradient path.

``attribution_panels`` computes, for a batch and both methods, with the stages' own evaluation
(``evaluation.evaluate_masks`` with two masks: all channels open, the cluster's channels blocked),
the maps Σ_c|a_c|, their difference, the masked input that faithfulness measures, and every number
the titles show. ``draw_attribution_figure`` draws one image of it; ``draw_grid`` a contact sheet of
many; ``render`` runs both over a list of images. Figures are rendered in memory and written
atomically, so a crash never leaves half a PNG.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib.gridspec
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..attribution.evaluation import EvalConfig, evaluate_masks
from ..attribution.metrics import masked_input
from ..core.hooks import channel_mask
from ..core.layers import resolve_layer
from ..io.readers import Clusters
from .plots import save_png

METHOD_NAMES = {"ig": "Integrated Gradients", "saliency": "Saliency"}
SHORT_NAMES = {"ig": "IG", "saliency": "Saliency"}
MAP_CMAP, DIFF_CMAP = "inferno", "RdBu_r"


@dataclass
class Panels:
    """What the figures of a batch of ``B`` images show, on the CPU.

    ``methods[m]`` (``m`` in ``"ig"``, ``"saliency"``) holds:
    ``baseline``, ``filtered`` ``(B, H, W)``: Σ_c|a_c| of the map without and with the cluster blocked;
    ``difference`` ``(B, H, W)``: filtered − baseline; ``masked`` ``(B, C, H, W)``: the input
    (normalised) with the baseline map's top ``drop_fraction`` set to ``mask_value``;
    ``total_baseline``, ``total_filtered`` ``(B,)``: the signed sum of each map over channels and
    pixels (for IG ≈ f(x) − f(0) of the target logit); ``sparsity_*``, ``faithfulness_*`` ``(B,)``.
    """
    target: np.ndarray          # (B,) class explained: the prediction
    probability: np.ndarray     # (B,) its softmax probability
    methods: dict[str, dict[str, np.ndarray]]


def attribution_panels(model: nn.Module, x: torch.Tensor, block: str, blocked: torch.Tensor, cfg: EvalConfig,
                       target: torch.Tensor | None = None, stem: Sequence[str] = (), labels: torch.Tensor | None = None,
                       ig_batch: int | None = 256, plain: bool = False) -> Panels:
    """Maps and metrics of ``x (B, C, H, W)`` for ``target (B,)`` (default: ``cfg.target``, the
    prediction), with the block channels where ``blocked (Cb,)`` is True open and then detached at
    ``block`` (a submodule path): one ``evaluation.evaluate_masks`` call with both masks, as the
    stages compute them. ``labels (B,)`` only feed the top-1 counts, which the figures do not show."""
    labels = torch.zeros(len(x), dtype=torch.long, device=x.device) if labels is None else labels
    masks = torch.stack([torch.zeros_like(blocked), blocked]).to(x.device)
    base, filt = evaluate_masks(model, x, labels, target, cfg, block, masks, ig_batch, keep_maps=True, stem=stem,
                                plain=plain)
    methods = {}
    for m in cfg.methods:
        a0, a1 = base[f"{m}_attr"], filt[f"{m}_attr"]                                   # (B, C, H, W)
        entry = {"baseline": a0.abs().sum(1), "filtered": a1.abs().sum(1), "difference": a1.abs().sum(1) - a0.abs().sum(1),
                 "masked": masked_input(x, a0, cfg.metric, cfg.drop_fraction, cfg.mask_value),
                 "total_baseline": a0.flatten(1).sum(1), "total_filtered": a1.flatten(1).sum(1),
                 "sparsity_baseline": base[f"{m}_sparsity"], "sparsity_filtered": filt[f"{m}_sparsity"],
                 "faithfulness_baseline": base[f"{m}_faithfulness"], "faithfulness_filtered": filt[f"{m}_faithfulness"]}
        methods[m] = {k: v.detach().cpu().numpy() for k, v in entry.items()}   # one copy per batch
    return Panels(base["target"].cpu().numpy(), base["confidence"].cpu().numpy(), methods)


def denormalise(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised ``(..., C, H, W)`` -> displayable ``(..., H, W, C)`` in [0, 1]."""
    c = len(mean)
    img = x * np.asarray(std).reshape(c, 1, 1) + np.asarray(mean).reshape(c, 1, 1)
    return np.clip(np.moveaxis(img, -3, -1), 0, 1)


# --- Drawing ----------------------------------------------------------------------------------


def _panel_grid(ratios: Sequence[float], rows: int, panel: float, hspace: float, top: float,
                wspace: float = 0.08) -> tuple[plt.Figure, matplotlib.gridspec.GridSpec]:
    """A figure whose ratio-1 cells are ``panel`` inches square (so square images fill them and
    titles sit right above), with ``top`` inches above the first row for the title."""
    n = len(ratios)
    width = panel * (sum(ratios) + wspace * sum(ratios) / n * (n - 1))
    height = panel * (rows + hspace * (rows - 1))
    margin = 0.2
    fig = plt.figure(figsize=(width + 2 * margin, height + top + margin))
    w, h = fig.get_size_inches()
    gs = fig.add_gridspec(rows, n, width_ratios=ratios, wspace=wspace, hspace=hspace, left=margin / w,
                          right=1 - margin / w, bottom=margin / h, top=1 - top / h)
    return fig, gs


def _bare(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _signed(v: float, digits: int = 3) -> str:
    """``+0.012``; a difference that rounds to zero prints as ``+0.000``, never ``-0.000``."""
    return f"{round(float(v), digits) + 0.0:+.{digits}f}"


def _colorbar(fig: plt.Figure, mappable, ax: plt.Axes, label: str | None = None) -> None:
    """A colour bar just right of ``ax``, exactly as tall as it."""
    cb = fig.colorbar(mappable, cax=ax.inset_axes([1.04, 0, 0.05, 1]))
    cb.ax.tick_params(labelsize=7)
    cb.formatter.set_powerlimits((-2, 3))
    cb.ax.yaxis.get_offset_text().set_fontsize(7)
    if label:
        cb.set_label(label, fontsize=8)


def _maps(fig: plt.Figure, axes: Sequence[plt.Axes], base: np.ndarray, filt: np.ndarray, diff: np.ndarray,
          label: bool) -> None:
    """Baseline and filtered ``(H, W)`` on one colour scale (bar right of the filtered map), and
    the difference ``(H, W)`` on a diverging one centred at 0, into ``axes = [baseline, filtered,
    difference]``."""
    vmax = float(max(base.max(), filt.max(), 1e-12))
    dmax = float(max(np.abs(diff).max(), 1e-12))
    axes[0].imshow(base, cmap=MAP_CMAP, vmin=0, vmax=vmax)
    im = axes[1].imshow(filt, cmap=MAP_CMAP, vmin=0, vmax=vmax)
    _colorbar(fig, im, axes[1], r"$\Sigma_c\,|a_c|$ (both maps)" if label else None)
    dim = axes[2].imshow(diff, cmap=DIFF_CMAP, vmin=-dmax, vmax=dmax)
    _colorbar(fig, dim, axes[2], "blocked − baseline" if label else None)
    for ax in axes:
        _bare(ax)


def draw_attribution_figure(image: np.ndarray, masked: dict[str, np.ndarray], panels: Panels, i: int,
                            class_name: str, path: str | os.PathLike, title: str, cfg: EvalConfig, cluster: int) -> Path:
    """One figure: a row per method; columns input, baseline map, filtered map (same scale, colour
    bar), filtered − baseline (diverging, centred at 0, colour bar), the masked input.

    ``image (H, W, 3)`` and ``masked[m] (H, W, 3)`` displayable in [0, 1]; ``i``: the image's
    position in the batch of ``panels``.
    """
    methods = list(panels.methods)
    ratios = [1, 1, 1, 0.5, 1, 0.5, 1]          # input | baseline | filtered | bar | difference | bar | masked
    fig, gs = _panel_grid(ratios, len(methods), panel=2.3, hspace=0.42, top=1.15)
    p, unit = float(panels.probability[i]), "patches" if cfg.metric == "patch" else "pixels"
    for r, m in enumerate(methods):
        d, short = panels.methods[m], SHORT_NAMES.get(m, m)
        img_ax, base_ax, filt_ax, diff_ax, mask_ax = (fig.add_subplot(gs[r, c]) for c in (0, 1, 2, 4, 6))
        img_ax.imshow(image)
        img_ax.set_title(f"input\npredicted {class_name}\np = {p:.2f}", fontsize=9)
        img_ax.set_ylabel(METHOD_NAMES.get(m, m), fontsize=11, fontweight="bold")
        _maps(fig, [base_ax, filt_ax, diff_ax], d["baseline"][i], d["filtered"][i], d["difference"][i], label=True)
        sb, sf = d["sparsity_baseline"][i], d["sparsity_filtered"][i]
        fb, ff = d["faithfulness_baseline"][i], d["faithfulness_filtered"][i]
        base_ax.set_title(f"{short} baseline\nsparsity {sb:.3f}\nfaithfulness {fb:.3f}", fontsize=9)
        filt_ax.set_title(f"{short}, cluster {cluster} blocked\nsparsity {sf:.3f}\nfaithfulness {ff:.3f}",
                          fontsize=9)
        diff_ax.set_title(f"blocked − baseline\nΔ sparsity {_signed(sf - sb)}\nΔ faithfulness {_signed(ff - fb)}",
                          fontsize=9)
        mask_ax.imshow(masked[m])
        mask_ax.set_title(f"top {cfg.drop_fraction:.0%} {unit} of {short}\nbaseline masked\n"
                          f"p = {p:.2f} → {p - fb:.2f}", fontsize=9)
        _bare(img_ax)
        _bare(mask_ax)
    fig.suptitle(title, fontsize=10.5, y=1 - 0.12 / fig.get_size_inches()[1], va="top")
    return save_png(fig, path)


@dataclass
class GridRow:
    """One image of the contact sheet: ``image (H, W, 3)``, IG ``baseline``/``filtered``/``difference``
    ``(H, W)`` and their metrics."""
    caption: str
    image: np.ndarray
    baseline: np.ndarray
    filtered: np.ndarray
    difference: np.ndarray
    metrics: tuple[float, float, float, float]   # sparsity, faithfulness of the baseline; of the filtered


def grid_row(image: np.ndarray, panels: Panels, i: int, caption: str, method: str = "ig") -> GridRow:
    """Row ``i`` of a batch's ``panels`` for the contact sheet."""
    d = panels.methods[method]
    return GridRow(caption, image, d["baseline"][i], d["filtered"][i], d["difference"][i],
                   tuple(float(d[k][i]) for k in ("sparsity_baseline", "faithfulness_baseline",
                                                  "sparsity_filtered", "faithfulness_filtered")))


def draw_grid(rows: Sequence[GridRow], path: str | os.PathLike, title: str, cluster: int) -> Path:
    """Contact sheet: one row per image (input, baseline IG, filtered IG, difference); colour
    scales per row (the maps share one, the difference is centred at 0)."""
    ratios = [1, 1, 1, 0.5, 1, 0.5]             # input | baseline | filtered | bar | difference | bar
    fig, gs = _panel_grid(ratios, len(rows), panel=1.9, hspace=0.3, top=0.95)
    for r, row in enumerate(rows):
        img_ax, base_ax, filt_ax, diff_ax = (fig.add_subplot(gs[r, c]) for c in (0, 1, 2, 4))
        img_ax.imshow(row.image)
        _bare(img_ax)
        img_ax.set_ylabel(row.caption, fontsize=8)
        _maps(fig, [base_ax, filt_ax, diff_ax], row.baseline, row.filtered, row.difference, label=False)
        sb, fb, sf, ff = row.metrics
        base_ax.set_xlabel(f"sparsity {sb:.2f} · faithf. {fb:.2f}", fontsize=7.5, labelpad=2)
        filt_ax.set_xlabel(f"sparsity {sf:.2f} · faithf. {ff:.2f}", fontsize=7.5, labelpad=2)
        diff_ax.set_xlabel(f"Δsparsity {_signed(sf - sb, 2)} · Δfaithf. {_signed(ff - fb, 2)}", fontsize=7.5,
                           labelpad=2)
        if r == 0:
            for ax, name in zip((img_ax, base_ax, filt_ax, diff_ax),
                                ("input", "IG baseline", f"IG, cluster {cluster} blocked", "blocked − baseline")):
                ax.set_title(name, fontsize=10)
    fig.suptitle(title, fontsize=10.5, y=1 - 0.1 / fig.get_size_inches()[1], va="top")
    return save_png(fig, path)


# --- Running over images ----------------------------------------------------------------------


def figure_name(clusters: Clusters, cluster: int, cfg: EvalConfig, image: int | None = None) -> str:
    """The original's ``attr_example_<image>_idx_<c>_k<k>.png`` for one image, and
    ``attr_<block>_c<c>_k<k>_grid_<metric>.png`` for the contact sheet (``image`` None)."""
    if image is None:
        return f"attr_{clusters.block}_c{cluster}_k{clusters.k}_grid_{cfg.metric}.png"
    return f"attr_example_{image}_idx_{cluster}_k{clusters.k}.png"


def render(session, clusters: Clusters, cluster: int, indices: dict[int, int], cfg: EvalConfig,
           output_dir: str | os.PathLike, batch_size: int, grid: bool = False) -> list[Path]:
    """One figure per data-set index of ``indices`` (index -> the number naming the image; computed
    ``batch_size`` images at a time) with ``cluster`` blocked, and with ``grid`` a contact sheet of
    all of them. ``session``: a ``pipeline.session.Session`` on the clusters' model and data.
    Returns the paths written."""
    source = session.images.source
    channels = clusters.channels(cluster)
    spec, model, classes = session.spec, session.model, source.classes
    block = resolve_layer(spec, clusters.block)
    blocked = channel_mask(channels, len(clusters.labels))
    out = Path(output_dir)
    what = (f"{clusters.block} cluster {cluster} of k={clusters.k} ({len(channels)} of {len(clusters.labels)} "
            f"neurons) blocked · {cfg.metric} metric, top {cfg.drop_fraction:.0%} masked to "
            f"{cfg.mask_value:g} (normalised)")
    paths, rows = [], []
    for x, labels, idx in tqdm(session.loader(batch_size, indices=list(indices)), desc="attribution figures",
                               unit="batch"):
        x, labels = x.to(session.device), labels.to(session.device)
        panels = attribution_panels(model, x, block, blocked, cfg, stem=spec.stem, labels=labels,
                                    ig_batch=session.runtime.ig_batch, plain=session.runtime.plain)
        images = denormalise(x.cpu().numpy(), spec.mean, spec.std)                     # (B, H, W, 3)
        masked = {m: denormalise(d["masked"], spec.mean, spec.std) for m, d in panels.methods.items()}
        for j, (index, label) in enumerate(zip(idx.tolist(), labels.tolist())):
            i = indices[index]
            name = classes[int(panels.target[j])]
            title = f"image {i} (true class {classes[label]}) · {what}"
            paths.append(draw_attribution_figure(images[j], {m: v[j] for m, v in masked.items()}, panels, j, name,
                                                 out / figure_name(clusters, cluster, cfg, i), title, cfg,
                                                 cluster))
            if grid:
                caption = f"image {i}\ntrue {classes[label]}\npred. {name}\np = {panels.probability[j]:.2f}"
                rows.append(grid_row(images[j], panels, j, caption))
    if grid:
        paths.append(draw_grid(rows, out / figure_name(clusters, cluster, cfg), what.replace(" · ", "\n"),
                               cluster))
    return paths
