"""InterpScore figures: one page per neuron (activation by level, selectivity, robustness, human
score against activation) and a summary of S, C, R, H across neurons. Colours of the axes are the
seed's (its Visualizations/config.yaml)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..io.schema import AXES, GROUND_TRUTH, LEVEL, trial_column
from ..neurons import scores
from .plots import save_png

COLOURS = {"S": "#1f77b4", "C": "#d62728", "R": "#2ca02c", "H": "#ff7f0e", "InterpScore": "#9467bd"}
NAMES = {"S": "Selectivity", "C": "Causality", "R": "Robustness", "H": "Human consistency"}
CONCEPT, OTHER = "#1f77b4", "#7f7f7f"


def _level_name(level: float, clean: float) -> str:
    return f"{level:g}\n(clean)" if level == clean else f"{level:g}"


def _mean_sem(values: pd.Series) -> tuple[float, float]:
    v = values.dropna().to_numpy(float)
    if not len(v):
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def neuron_figure(exp: pd.DataFrame, row: dict, cfg: scores.ScoreConfig, path: str | Path) -> Path:
    """The page of one scored neuron (``row``: a results.csv row) on the experiment trials ``exp``."""
    neuron, concept = row["Neuron"], row["Concept"]
    col = trial_column("activation", neuron)
    is_concept = exp[GROUND_TRUTH] == concept.lower()
    levels = sorted(exp[LEVEL].unique())
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    fig.suptitle(f"Neuron {neuron} - {concept}:  InterpScore {row['InterpScore']:.3f}  "
                 + "  ".join(f"{a} {row[a]:.3f}" if not math.isnan(row[a]) else f"{a} n/a" for a in AXES))

    a = ax[0, 0]
    x = np.arange(len(levels))
    for offset, (name, sel, colour) in enumerate((("concept", is_concept, CONCEPT), ("other", ~is_concept, OTHER))):
        stats = [_mean_sem(exp.loc[sel & (exp[LEVEL] == lv), col]) for lv in levels]
        a.errorbar(x + (offset - 0.5) * 0.1, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o",
                   capsize=3, color=colour, label=f"{name} trials")
    a.set_xticks(x, [_level_name(lv, cfg.clean_level) for lv in levels])
    a.set(title="Activation by perturbation level (mean ± SEM)", xlabel="level", ylabel="activation")
    a.legend(frameon=False)

    a = ax[0, 1]
    clean = exp[LEVEL] == cfg.clean_level
    target, other = exp.loc[is_concept & clean, col].dropna(), exp.loc[~is_concept & clean, col].dropna()
    both = np.concatenate([target, other])
    bins = np.linspace(both.min(), both.max(), 31) if len(both) and both.min() < both.max() else 10
    a.hist(other, bins=bins, density=True, alpha=0.6, color=OTHER, label=f"other (n={len(other)})")
    a.hist(target, bins=bins, density=True, alpha=0.6, color=CONCEPT, label=f"{concept} (n={len(target)})")
    a.axvline(row["threshold"], color="k", ls="--", lw=1, label=f"H threshold {row['threshold']:.3g}")
    a.set(title=f"Selectivity at the clean level: S = Φ(g/√2) = {row['S']:.3f}, g = {row['hedges_g']:.2f}",
          xlabel="activation", ylabel="density")
    a.legend(frameon=False, fontsize=8)

    a = ax[1, 0]
    concept_rows = exp[is_concept]
    ok = scores.recognised(concept_rows, cfg.human_score_col, cfg.recognizable_levels)
    mu = float(np.mean(np.abs(concept_rows.loc[concept_rows[LEVEL] == cfg.clean_level, col].dropna())))
    ratios = [float(np.mean(np.abs(concept_rows.loc[(concept_rows[LEVEL] == lv) & (ok | (lv == cfg.clean_level)),
                                                    col].dropna()))) / mu if mu else math.nan for lv in levels]
    colours = [COLOURS["R"] if lv in (*scores.BENIGN_LEVELS, *scores.STRESS_LEVELS) else "#c7c7c7" for lv in levels]
    a.bar(x, ratios, color=colours)
    a.axhline(1, color="k", lw=1)
    a.set_xticks(x, [_level_name(lv, cfg.clean_level) for lv in levels])
    a.set(title=f"Robustness: mean |activation| / clean (recognised concept trials); R = {row['R']:.3f}",
          xlabel="level (green: used by R)", ylabel="ratio to clean")

    a = ax[1, 1]
    if cfg.human_score_col in exp.columns and len(concept_rows):
        acts = concept_rows[col].to_numpy(float)
        human = concept_rows[cfg.human_score_col].to_numpy(float)
        edges = np.unique(np.nanquantile(acts, np.linspace(0, 1, 11)))
        which = np.clip(np.searchsorted(edges, acts, side="right") - 1, 0, max(len(edges) - 2, 0))
        bins = [b for b in np.unique(which) if np.isfinite(acts[which == b]).any()]
        centres = [np.nanmean(acts[which == b]) for b in bins]
        means = [np.nanmean(human[which == b]) for b in bins]
        a.plot(centres, means, marker="o", color=COLOURS["H"], label="concept trials, activation deciles")
        a.axvline(row["threshold"], color="k", ls="--", lw=1, label="threshold t")
        a.set_ylim(-0.05, 1.05)
        a.legend(frameon=False, fontsize=8)
        title = f"Human score against activation; H = {row['H']:.3f}"
    else:
        a.text(0.5, 0.5, f"no human scores ({cfg.human_score_col!r})", ha="center", va="center", transform=a.transAxes)
        title = "Human score against activation; H not available"
    a.set(title=title, xlabel="activation", ylabel=f"mean {cfg.human_score_col}")
    for a in ax.flat:
        a.title.set_fontsize(9)
    fig.tight_layout()
    return save_png(fig, path)


def summary_figure(table: pd.DataFrame, path: str | Path) -> Path:
    """S, C, R, H (bars) and InterpScore (diamonds) of every neuron, ranked by InterpScore."""
    labels = [f"{c}\n({n})" for n, c in zip(table["Neuron"], table["Concept"])]
    x = np.arange(len(table))
    width = 0.2
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(table) + 2), 4.5))
    for i, axis in enumerate(AXES):
        values = table[axis].to_numpy(float)
        ax.bar(x + (i - 1.5) * width, np.nan_to_num(values), width, color=COLOURS[axis], label=NAMES[axis])
        for xi in x[np.isnan(values)]:
            ax.text(xi + (i - 1.5) * width, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.plot(x, table["InterpScore"], "D", color=COLOURS["InterpScore"], markeredgecolor="k", label="InterpScore")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="score", title="InterpScore and its axes per neuron (ranked)")
    ax.legend(ncol=5, frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    return save_png(fig, path)
