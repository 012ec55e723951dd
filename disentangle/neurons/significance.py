"""Paired significance tests of a blocked run against the baseline, and multiple-comparison corrections.

Every test pairs one measure (say IG sparsity) of the same images with and without a cluster
blocked: ``a`` is the blocked run, ``b`` the baseline, and the differences are ``a - b`` (the sign
of the ``_delta`` columns of a filtered run's ``per_image.csv``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..core.errors import UserError

# Resampled values held at once by the bootstrap (8 bytes each): bounds memory for large image counts.
_BOOT_CHUNK = 1 << 21

HOLM_NOTE = ("Holm step-down: the i-th smallest of m p-values becomes max over j <= i of "
             "min(1, (m - j + 1) p_(j)); controls the family-wise error rate under any dependence.")
BH_NOTE = ("Benjamini-Hochberg step-up: the i-th smallest of m p-values becomes min over j >= i of "
           "min(1, m p_(j) / j); controls the false discovery rate for independent or positively "
           "dependent tests (equals scipy.stats.false_discovery_control).")


def _pvalues(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be one-dimensional, got shape {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):            # also refuses NaN
        raise ValueError("p-values must lie in [0, 1]")
    return p


def holm(p) -> np.ndarray:
    """Holm-adjusted p-values of ``p (m,)``, in the input order."""
    p = _pvalues(p)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])    # (m,) in ascending order
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini-Hochberg-adjusted p-values (q-values) of ``p (m,)``, in the input order."""
    p = _pvalues(p)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)                          # (m,) in ascending order
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def cohens_dz(diff) -> float:
    """Effect size of paired differences ``diff (n,)``: mean / sd (ddof 1); 0 when all differences are equal."""
    diff = np.asarray(diff, dtype=np.float64)
    if len(diff) < 2 or np.ptp(diff) == 0:
        return 0.0
    return float(diff.mean() / diff.std(ddof=1))


def bootstrap_ci(diff, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``diff (n,)``.

    Draws ``n_boot`` resamples of n with replacement from ``numpy.random.default_rng(seed)``, as one
    ``(n_boot, n)`` index array (in chunks that bound memory; the draws do not depend on the chunking).
    """
    diff = np.asarray(diff, dtype=np.float64)
    n = len(diff)
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CHUNK // max(n, 1))
    means = np.concatenate([diff[rng.integers(0, n, size=(min(rows, n_boot - start), n))].mean(axis=1)
                            for start in range(0, n_boot, rows)])               # (n_boot,)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_tests(a, b, n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired comparison of ``a (n,)`` (blocked run) with ``b (n,)`` (baseline), differences ``a - b``.

    Returns ``n``, ``mean_a``, ``mean_b``, ``mean_difference``, ``sd_difference`` (ddof 1), the paired
    t-test (``t``, ``p_ttest``; scipy.stats.ttest_rel), the Wilcoxon signed-rank test
    (``wilcoxon_statistic``, ``p_wilcoxon``;
    scipy.stats.wilcoxon with its defaults: zero differences dropped, exact p for n <= 50 without
    ties, else the normal approximation), ``cohens_dz`` and the percentile bootstrap interval
    (``ci_low``, ``ci_high``, ``ci_level``, ``n_boot``).

    When every difference is the same value, the tests are decided without scipy (which divides by
    zero there): all zero gives t = 0, W = 0, p = 1 for both; the same non-zero value gives
    t = +-inf with p_ttest = 0 (Wilcoxon is then well defined and computed). d_z is 0 in both cases.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need equal one-dimensional shapes, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError(f"paired tests need at least 2 pairs, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired samples must be finite")
    diff = a - b
    constant = np.ptp(diff) == 0
    if constant and diff[0] == 0:
        t, p_t, w, p_w = 0.0, 1.0, 0.0, 1.0
    else:
        if constant:
            t, p_t = float(np.copysign(np.inf, diff[0])), 0.0
        else:
            res = stats.ttest_rel(a, b)
            t, p_t = float(res.statistic), float(res.pvalue)
        res = stats.wilcoxon(a, b)
        w, p_w = float(res.statistic), float(res.pvalue)
    low, high = bootstrap_ci(diff, n_boot, seed, level)
    return {"n": int(len(a)), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "mean_difference": float(diff.mean()), "sd_difference": float(diff.std(ddof=1)),
            "t": t, "p_ttest": p_t, "wilcoxon_statistic": w, "p_wilcoxon": p_w, "cohens_dz": cohens_dz(diff),
            "ci_low": low, "ci_high": high, "ci_level": level, "n_boot": int(n_boot)}


def original_summary(filtered, baseline, n_boot: int = 10000, seed: int = 42) -> dict:
    """The original statistic.py's numbers for one method, with its keys in its order: ``n_samples``,
    ``baseline_mean``/``_std``, ``filtered_mean``/``_std``, ``mean_difference``, ``std_difference``
    (std ddof 0), ``ttest_statistic``/``_pvalue`` (scipy.stats.ttest_rel(filtered, baseline)),
    ``cohens_d`` (mean / std ddof 1 of the differences), ``bootstrap_ci_lower``/``_upper`` (2.5th and
    97.5th percentiles of ``n_boot`` resampled means, drawn as the original by
    ``numpy.random.RandomState(seed).choice(n, n)`` one resample after another), ``percent_improved``
    (share of differences > 0, in %), ``percentile_5`` ... ``percentile_95`` of the differences.
    Pairs with a NaN are dropped, as the original does."""
    f, b = np.asarray(filtered, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    keep = ~(np.isnan(f) | np.isnan(b))
    f, b = f[keep], b[keep]
    d = f - b
    n = len(d)
    res = stats.ttest_rel(f, b)
    rng = np.random.RandomState(seed)
    # choice(n, n) with replacement is randint(0, n, n); consecutive draws equal one (rows, n) draw.
    rows = max(1, _BOOT_CHUNK // max(n, 1))
    means = np.concatenate([d[rng.randint(0, n, size=(min(rows, n_boot - start), n))].mean(axis=1)
                            for start in range(0, n_boot, rows)])
    out = {"n_samples": n, "baseline_mean": float(b.mean()), "baseline_std": float(b.std()),
           "filtered_mean": float(f.mean()), "filtered_std": float(f.std()), "mean_difference": float(d.mean()),
           "std_difference": float(d.std()), "ttest_statistic": float(res.statistic),
           "ttest_pvalue": float(res.pvalue), "cohens_d": float(d.mean() / d.std(ddof=1)),
           "bootstrap_ci_lower": float(np.percentile(means, 2.5)),
           "bootstrap_ci_upper": float(np.percentile(means, 97.5)),
           "percent_improved": float((d > 0).sum() / n * 100)}
    out.update({f"percentile_{p}": float(np.percentile(d, p)) for p in (5, 25, 50, 75, 95)})
    return out


def pair_images(baseline: pd.DataFrame, filtered: pd.DataFrame, columns: list[str],
                num_images: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of two ``per_image.csv`` frames for the same images, in the baseline's order (the
    order the images were attributed in: the original's file numbers) and cut to the first
    ``num_images`` (all when there are fewer, as the original). Refuses frames whose image indices
    or explained classes differ."""
    for name, frame in (("baseline", baseline), ("filtered run", filtered)):
        missing = [c for c in ["index", *columns] if c not in frame]
        if missing:
            raise UserError(f"the {name}'s per_image.csv has no column {missing[0]!r}")
        twice = frame["index"][frame["index"].duplicated()]
        if len(twice):
            raise UserError(f"the {name}'s per_image.csv lists image {twice.iloc[0]} twice")
    base = baseline.reset_index(drop=True)
    if sorted(base["index"].tolist()) != sorted(filtered["index"].tolist()):
        only = sorted(set(base["index"]) ^ set(filtered["index"]))
        raise UserError(f"the baseline ({len(base)} images) and the filtered run ({len(filtered)} images) hold "
                        f"different images (index {only[0]} is in only one); pair runs made on the same images")
    filt = filtered.set_index("index").loc[base["index"]].reset_index()
    if "target" in base and "target" in filt and (base["target"] != filt["target"]).any():
        i = int(np.flatnonzero(base["target"].to_numpy() != filt["target"].to_numpy())[0])
        raise UserError(f"image {base['index'][i]} is explained for class {base['target'][i]} in the baseline but "
                        f"{filt['target'][i]} in the filtered run; they were not made against this baseline")
    if num_images is not None:
        base, filt = base.iloc[:num_images], filt.iloc[:num_images]
    return base, filt


def compare_all(pairs: dict[str, tuple[np.ndarray, np.ndarray]], n_boot: int, seed: int,
                alpha: float = 0.05) -> dict[str, dict]:
    """``paired_tests`` for every ``key: (a, b)``, each with the same seed and a (1 - alpha) interval,
    then the t-test p-values and the Wilcoxon p-values each adjusted across all keys by Holm
    (``p_ttest_holm``, ``p_wilcoxon_holm``) and Benjamini-Hochberg (``p_ttest_bh``, ``p_wilcoxon_bh``)."""
    results = {key: paired_tests(a, b, n_boot, seed, 1 - alpha) for key, (a, b) in pairs.items()}
    for test in ("ttest", "wilcoxon"):
        raw = np.array([r[f"p_{test}"] for r in results.values()])
        for name, adjust in (("holm", holm), ("bh", benjamini_hochberg)):
            for r, q in zip(results.values(), adjust(raw)):
                r[f"p_{test}_{name}"] = float(q)
    return results
