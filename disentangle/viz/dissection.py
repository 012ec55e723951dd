"""Figures of dissection runs: units per concept, category shares, unique concepts of several runs
side by side, and the image strips of a layer's best units."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ..dissection.report import labelled
from ..io.schema import SUMMARY_LAYERS, SUMMARY_OVERALL
from .plots import save_png


def _concept_bars(ax: plt.Axes, lab: pd.DataFrame, layer: str, min_units: int, more_than: bool = False) -> None:
    """Bars of labelled units per concept of ``layer``, for concepts with at least ``min_units``
    units (more than, with ``more_than``), coloured by category."""
    vc = lab[lab["layer"] == layer]["description"].value_counts()
    vc = vc[vc > min_units] if more_than else vc[vc >= min_units]
    colours = None
    if "category" in lab and len(vc):
        cat = lab.drop_duplicates("description").set_index("description")["category"].fillna("")
        cats = sorted(set(cat))
        colours = [plt.get_cmap("tab10")(cats.index(cat[d]) % 10) for d in vc.index]
    ax.bar(range(len(vc)), vc.values, color=colours, width=0.7)
    ax.set_xticks(range(len(vc)), vc.index, rotation=60 if len(vc) <= 40 else 90, ha="right",
                  fontsize=8 if len(vc) <= 40 else 6)
    ax.set_xlim(-0.5, max(len(vc), 10) - 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("units")
    if not len(vc):
        ax.set_yticks([])
        ax.text(0.5, 0.5, f"no concept with {'more than ' if more_than else ''}{min_units}"
                          f"{'' if more_than else ' or more'} units", transform=ax.transAxes,
                ha="center", va="center", fontsize=8, color="grey")


def units_per_concept_figure(frame: pd.DataFrame, path: str | os.PathLike, title: str, min_units: int = 4) -> Path:
    """One bar chart per layer: labelled units per concept, for concepts with at least ``min_units``
    units (Network Dissection's figures use more than 3), coloured by category."""
    lab = labelled(frame)
    layers = list(frame["layer"].drop_duplicates())
    fig, axes = plt.subplots(len(layers), 1, figsize=(8, 2.4 * len(layers)), squeeze=False)
    for ax, layer in zip(axes[:, 0], layers):
        _concept_bars(ax, lab, layer, min_units)
        ax.set_title(f"{layer}: {lab[lab['layer'] == layer]['description'].nunique()} unique concepts", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def units_per_concept_side_by_side(frames: dict[str, pd.DataFrame], layer: str, path: str | os.PathLike,
                                   min_units: int = 3) -> Path:
    """The units per concept of one layer for each run, side by side (concepts with more than
    ``min_units`` units, as the seeds' charts)."""
    shown = []
    for frame in frames.values():
        vc = labelled(frame)[lambda f: f["layer"] == layer]["description"].value_counts()
        shown.append(int((vc > min_units).sum()))
    widths = [max(5.0, 0.14 * n + 1.5) for n in shown]          # room for every concept's name
    fig, axes = plt.subplots(1, len(frames), figsize=(sum(widths), 3.8), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (run, frame) in zip(axes[0], frames.items()):
        lab = labelled(frame)
        _concept_bars(ax, lab, layer, min_units, more_than=True)
        ax.set_title(f"{run}: {lab[lab['layer'] == layer]['description'].nunique()} unique concepts", fontsize=9)
    fig.suptitle(f"{layer}: units per concept (concepts with more than {min_units} units) - "
                 f"{' vs '.join(frames)}", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def category_shares_figure(summaries: dict[str, dict], path: str | os.PathLike) -> Path:
    """Stacked bars of the share of labelled units per category, per layer, one group per run."""
    rows = [(run, layer, cat, share) for run, s in summaries.items() for layer, v in s[SUMMARY_LAYERS].items()
            for cat, share in v.get("category_shares", {}).items()]
    table = pd.DataFrame(rows, columns=["run", "layer", "category", "share"])
    cats = sorted(table["category"].unique()) if len(table) else []
    bars = [(run, layer) for run, s in summaries.items() for layer in s[SUMMARY_LAYERS]]
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(bars) + 2), 3.5))
    bottom = np.zeros(len(bars))
    for i, cat in enumerate(cats):
        vals = np.array([table[(table.run == r) & (table.layer == l) & (table.category == cat)]["share"].sum()
                         for r, l in bars])
        ax.bar(range(len(bars)), vals, bottom=bottom, label=cat, color=plt.get_cmap("tab10")(i % 10))
        bottom += vals
    for x, (r, l) in enumerate(bars):
        v = summaries[r][SUMMARY_LAYERS][l]
        ax.text(x, 1.01, f"{v['labelled_units']}/{v['units']}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(bars)), [l for _, l in bars], fontsize=7)
    if len(summaries) > 1:          # each run's name once, under its group of layers
        for run in summaries:
            at = [x for x, (r, _) in enumerate(bars) if r == run]
            ax.text(np.mean(at), -0.1, run, transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=7)
    ax.set_ylabel("share of labelled units")
    ax.set_ylim(0, 1.08)
    ax.set_title("category shares of labelled units (labelled / all units above each bar)", fontsize=8)
    if cats:
        ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return save_png(fig, path)


def unique_concepts_figure(summaries: dict[str, dict], path: str | os.PathLike) -> Path:
    """Unique concepts per layer, one bar per run (the side-by-side of two runs)."""
    layers = list(dict.fromkeys(layer for s in summaries.values() for layer in s[SUMMARY_LAYERS]))
    width = 0.8 / len(summaries)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(layers) + 2), 3.2))
    for i, (run, s) in enumerate(summaries.items()):
        vals = [s[SUMMARY_LAYERS].get(layer, {}).get("unique_concepts", 0) for layer in layers]
        overall = s[SUMMARY_OVERALL]["unique_concepts"]
        ax.bar(np.arange(len(layers)) + i * width, vals, width, label=f"{run} ({overall} overall)")
    ax.set_xticks(np.arange(len(layers)) + width * (len(summaries) - 1) / 2, layers)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("unique concepts")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)


def strips_figure(images: np.ndarray, maps: np.ndarray, titles: list[str], path: str | os.PathLike,
                  thresholds: np.ndarray | None = None) -> Path:
    """One row per unit: its top-activating images with the activation map over them.

    ``images (R, T, H, W, 3)`` in [0, 1], ``maps (R, T, H, W)`` upsampled activations; with
    ``thresholds (R,)`` the unit's mask (activation above threshold) is shown, else the map scaled
    to the row's maximum.
    """
    r, t = images.shape[:2]
    fig, axes = plt.subplots(r, t, figsize=(1.6 * t, 1.75 * r), squeeze=False)
    for i in range(r):
        scale = max(float(maps[i].max()), 1e-12)
        for j in range(t):
            ax = axes[i, j]
            ax.imshow(images[i, j])
            overlay = maps[i, j] > thresholds[i] if thresholds is not None else maps[i, j] / scale
            ax.imshow(np.ma.masked_where(overlay <= 0, overlay), cmap="autumn", alpha=0.55, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(titles[i], fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return save_png(fig, path)
