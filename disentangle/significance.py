"""Paired significance of a filtered run's change against the baseline, and multiple-comparison
corrections across many such tests."""
from __future__ import annotations

import numpy as np
from scipy import stats


def cohens_dz(diff: np.ndarray) -> float:
    """Standardised mean of paired differences, mean / sd (ddof 1); 0 when sd is 0."""
    sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else 0.0
    return float(np.mean(diff) / sd) if sd > 0 else 0.0


def bootstrap_ci(diff: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diff (N,)``; all resamples drawn at once."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(1)   # (n_boot,)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def paired_tests(filtered: np.ndarray, baseline: np.ndarray, n_boot: int = 10_000, seed: int = 0) -> dict:
    """Paired t-test, Wilcoxon signed-rank, Cohen's d_z and a bootstrap 95 % CI of the mean change.

    All-zero differences give p = 1 for both tests (no change is no evidence of one).
    """
    filtered, baseline = np.asarray(filtered, float), np.asarray(baseline, float)
    diff = filtered - baseline
    if np.all(diff == 0):
        t, p_t, w, p_w = 0.0, 1.0, 0.0, 1.0
    else:
        t, p_t = stats.ttest_rel(filtered, baseline)
        w, p_w = stats.wilcoxon(filtered, baseline)
    low, high = bootstrap_ci(diff, n_boot, seed)
    return {"n": int(len(diff)), "mean_baseline": float(baseline.mean()), "mean_filtered": float(filtered.mean()),
            "mean_difference": float(diff.mean()), "t": float(t), "p_ttest": float(p_t),
            "wilcoxon_statistic": float(w), "p_wilcoxon": float(p_w), "cohens_dz": cohens_dz(diff),
            "ci95_mean_difference": [low, high]}


def holm(p: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p, float)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1)
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (false discovery rate; step-up, monotone, capped at 1)."""
    p = np.asarray(p, float)
    n = len(p)
    order = np.argsort(p)
    scaled = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1)
    return out
