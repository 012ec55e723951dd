"""The overview figure of a block's feature visualizations: one tile per unit."""
from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .plots import save_png


def feature_grid(images: np.ndarray, units: np.ndarray, activations: np.ndarray, title: str,
                 path: str | os.PathLike, columns: int = 8) -> Path:
    """``images (U, S, S, 3)`` uint8 in a grid, each titled with its unit and its activation on it."""
    rows = max(1, math.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.55 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, u, a in zip(axes.ravel(), images, units, activations):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(f"unit {int(u)}\n{a:.2f}", fontsize=7)
    fig.suptitle(f"{title}: feature visualizations (title: unit, its activation on the image)", fontsize=9)
    return save_png(fig, path)
