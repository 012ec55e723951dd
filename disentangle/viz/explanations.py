"""Pictures of explanations: a heatmap over its image, LIME's mask, and the agreement grid.

Every picture is rendered in memory (PNG bytes, or a figure written atomically by ``save_png``).
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colormaps
from skimage.segmentation import find_boundaries

from ..explanations.agreement import Agreement, Explanations
from .plots import png_bytes, save_png


def overlay_png(pixels: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> bytes:
    """PNG bytes of ``pixels (S, S, 3)`` uint8 blended with ``heat (S, S)`` in [0, 1] (jet)."""
    colour = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    blend = (1 - alpha) * pixels / 255 + alpha * colour
    return png_bytes(np.round(255 * blend).astype(np.uint8))


def grey_png(heat: np.ndarray) -> bytes:
    """PNG bytes of ``heat (S, S)`` in [0, 1] as an 8-bit greyscale image (0 -> black, 1 -> white):
    the mask export of seed 003."""
    return png_bytes(np.round(255 * np.clip(heat, 0, 1)).astype(np.uint8))


def mask_overlay_png(pixels: np.ndarray, mask: np.ndarray) -> bytes:
    """PNG bytes of ``pixels (S, S, 3)`` uint8 with everything outside ``mask (S, S)`` dimmed and
    the mask's outline in yellow: LIME's usual picture of an explanation."""
    out = np.where(mask[..., None] > 0, pixels, (0.3 * pixels).astype(np.uint8))
    out[find_boundaries(mask > 0, mode="inner")] = (255, 230, 0)
    return png_bytes(out)


def _outline(ax: plt.Axes, mask: np.ndarray, colour: str) -> None:
    if mask.any() and not mask.all():
        ax.contour(mask, levels=[0.5], colors=colour, linewidths=0.8)


def _unit_range(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m, dtype=float)


def grid_figure(ex: Explanations, ag: Agreement, rows: int, path: str | os.PathLike, title: str) -> Path:
    """Image x method grid for the first ``rows`` images: each map over the image, the outline of its
    binarised mask in white and, on the concept world, the object's in green, with a colour bar of
    the map values and a legend of the outlines and of the pointing game's "hit"."""
    methods = list(ex.maps)
    n = min(rows, len(ex.ids))
    fig, axes = plt.subplots(n, len(methods) + 1, figsize=(1.9 * (len(methods) + 1) + 0.6, 2.0 * n + 1.0),
                             squeeze=False)
    shown = None
    for r in range(n):
        axes[r, 0].imshow(ex.pixels[r])
        target = int(ex.targets[r])
        axes[r, 0].set_title(f"{ex.ids[r]}: {ex.class_names.get(target, target)}", fontsize=7)
        for c, m in enumerate(methods, start=1):
            ax = axes[r, c]
            ax.imshow(ex.pixels[r])
            shown = ax.imshow(_unit_range(ex.maps[m][r]), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            _outline(ax, ag.masks[m][r], "white")
            label = m
            if ex.objects is not None:
                _outline(ax, ex.objects[r], "lime")
                g = ag.ground_truth
                row = g[(g["method"] == m) & (g["image"] == ex.ids[r])].iloc[0]
                label = f"{m}\nIoU {row['iou']:.2f}{' hit' if row['hit'] else ''}"
            ax.set_title(label, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    legend = "white: binarised map"
    if ex.objects is not None:
        legend += "; green: the object; IoU of the two; hit: the map's maximum lies on the object (pointing game)"
    fig.suptitle(title, fontsize=9, y=0.995)
    fig.text(0.5, 0.005, legend, ha="center", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 0.93, 0.97))
    if shown is not None:
        bar = fig.colorbar(shown, cax=fig.add_axes((0.94, 0.15, 0.015, 0.7)))
        bar.set_label("map value (each map scaled to [0, 1])", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    return save_png(fig, path)
