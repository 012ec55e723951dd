"""Per-neuron interpretability score: selectivity, causality, robustness and human alignment.

Input: one row per trial (an image shown at a perturbation ``level``) with ``trial_category``,
``ground_truth``, ``level``, one ``activation_<neuron>`` column per neuron, optionally
``ablate_<neuron>`` / ``amplify_<neuron>`` (change of the model's target-class probability when the
neuron is zeroed / doubled on that trial) and a human score column in [0, 1]. A trial shows concept
``c`` when its ``trial_category`` is ``c`` or has ``c`` among its ``_``-separated words.

Each axis is in [0, 1]:

- **S, selectivity**: Hedges' g of the neuron's activation on concept trials vs the other trials at
  the clean level, with a one-sided Welch t-test; ``S = tanh(g / 2)`` if ``p <= min_p_value`` and
  ``g > 0``, else 0.
- **C, causality**: on the concept's clean trials, ``C = clip((mean(-ablate) + mean(amplify)) / 2, 0, 1)``:
  zeroing the neuron should lower the target probability and doubling it should raise it.
- **R, robustness**: for each recognisable perturbed level ``l`` (recognisable levels other than the
  clean one), ``r_l`` = mean activation on concept trials at ``l`` / at the clean level;
  ``R = mean_l clip(1 - |1 - r_l|, 0, 1)``.
- **H, human alignment**: the threshold ``t`` is the ``threshold_percentile`` quantile of the
  neuron's activation over all trials; ``H`` = mean human score over trials with activation >= t.

The score is the weighted mean of the axes that could be computed, the weights renormalised over
those axes (``weights_used`` records it); an axis that cannot be computed is reported as NaN with
a note, never invented.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..core.errors import UserError
from ..io.schema import (AXES, CATEGORY, GROUND_TRUTH, LEVEL, RANK, TRIAL_KINDS, TRIAL_REQUIRED, ScoreRow,
                         trial_column)


@dataclass(frozen=True)
class ScoreConfig:
    clean_level: float = 5
    threshold_percentile: float = 0.95
    recognizable_levels: tuple[float, ...] = (3, 4, 5)
    min_p_value: float = 0.05
    human_score_col: str = "soft_correct"
    weights: tuple[float, float, float, float] = (0.3, 0.3, 0.2, 0.2)

    def __post_init__(self):
        if not 0 < self.threshold_percentile < 1:
            raise UserError(f"--threshold_percentile must be in (0, 1), got {self.threshold_percentile}")
        if not 0 < self.min_p_value <= 1:
            raise UserError(f"--min_p_value must be in (0, 1], got {self.min_p_value}")
        if len(self.weights) != 4 or any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise UserError(f"--axis_weights takes four non-negative numbers (S C R H) with a positive sum, "
                            f"got {' '.join(map(str, self.weights))}")


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Bias-corrected standardised mean difference ``(mean(a) - mean(b)) / pooled sd * J``."""
    na, nb = len(a), len(b)
    pooled = math.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2))
    diff = float(np.mean(a) - np.mean(b))
    if pooled == 0:
        return math.copysign(math.inf, diff) if diff else 0.0
    return diff / pooled * (1 - 3 / (4 * (na + nb) - 9))


def calculate_selectivity_score(target: np.ndarray, other: np.ndarray, min_p_value: float = 0.05
                                ) -> tuple[float, float, float]:
    """``(S, hedges_g, p)`` for activations on concept trials vs other trials (clean level)."""
    target, other = np.asarray(target, float), np.asarray(other, float)
    if len(target) < 2 or len(other) < 2:
        return math.nan, math.nan, math.nan
    g = hedges_g(target, other)
    if np.var(target) == 0 and np.var(other) == 0:
        p = 0.0 if g > 0 else 1.0
    else:
        p = float(stats.ttest_ind(target, other, equal_var=False, alternative="greater").pvalue)
    s = math.tanh(g / 2) if g > 0 and p <= min_p_value else 0.0
    return s, g, p


def calculate_causality_score(ablation: np.ndarray, amplification: np.ndarray) -> float:
    """``C`` from per-trial changes of the target probability under ablation and amplification."""
    ablation, amplification = np.asarray(ablation, float), np.asarray(amplification, float)
    if not len(ablation) or not len(amplification):
        return math.nan
    return float(np.clip((np.mean(-ablation) + np.mean(amplification)) / 2, 0, 1))


def calculate_robustness_score(by_level: dict[float, np.ndarray], clean_level: float,
                               recognizable_levels: tuple[float, ...]) -> float:
    """``R`` from concept-trial activations per level (see module doc); NaN if undefined."""
    clean = by_level.get(clean_level)
    levels = [l for l in recognizable_levels if l != clean_level and l in by_level and len(by_level[l])]
    if clean is None or not len(clean) or not levels or np.mean(clean) <= 0:
        return math.nan
    ratios = [np.mean(by_level[l]) / np.mean(clean) for l in levels]
    return float(np.mean([np.clip(1 - abs(1 - r), 0, 1) for r in ratios]))


def calculate_human_consistency_score(activations: np.ndarray, human: np.ndarray | None, threshold: float) -> float:
    """``H``: mean human score over trials whose activation reaches ``threshold``; NaN without scores."""
    if human is None:
        return math.nan
    chosen = np.asarray(activations, float) >= threshold
    return float(np.clip(np.mean(np.asarray(human, float)[chosen]), 0, 1)) if chosen.any() else math.nan


def calculate_interpretability_score(axes: dict[str, float], weights: tuple[float, ...]
                                     ) -> tuple[float, dict[str, float]]:
    """Weighted mean of the finite axes, weights renormalised over them -> ``(score, weights used)``."""
    use = {a: w for a, w in zip(AXES, weights) if not math.isnan(axes.get(a, math.nan)) and w > 0}
    total = sum(use.values())
    if not total:
        return math.nan, {}
    used = {a: w / total for a, w in use.items()}
    return float(sum(axes[a] * w for a, w in used.items())), used


def shows(categories: pd.Series, concept: str) -> np.ndarray:
    """Bool per trial: the trial's category is the concept or has it as a ``_``-separated word."""
    return categories.astype(str).map(lambda c: c == concept or concept in c.split("_")).to_numpy()


def load_trials(path: str | Path, human_col: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} not found")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path} is not a readable CSV: {str(e).splitlines()[0]}") from None
    missing = [c for c in TRIAL_REQUIRED if c not in frame.columns]
    if missing:
        raise UserError(f"{path} lacks the column {missing[0]!r} (needs {', '.join(TRIAL_REQUIRED)}, "
                        f"{trial_column('activation', '<neuron>')})")
    if frame.empty:
        raise UserError(f"{path} has no trials")

    def bad(col: str, rows: np.ndarray, what: str) -> None:
        if rows.any():
            row = int(np.flatnonzero(rows)[0])
            value = "the cell" if what == "is empty" else repr(str(frame[col].iloc[row]))
            raise UserError(f"{path}, line {row + 2} (data row {row + 1}), column {col!r}: {value} {what}")

    for col in (CATEGORY, GROUND_TRUTH):
        bad(col, frame[col].isna().to_numpy() | (frame[col].astype(str).str.strip() == "").to_numpy(), "is empty")
        frame[col] = frame[col].astype(str)
    numeric = [c for c in frame.columns if c.startswith(tuple(trial_column(k, "") for k in TRIAL_KINDS))] + [LEVEL]
    if human_col in frame.columns:
        numeric.append(human_col)
    for col in numeric:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad(col, values.isna().to_numpy(), "is not a number")
        bad(col, ~np.isfinite(values.to_numpy(dtype=float)), "is not a finite number")
        frame[col] = values
    if human_col in frame.columns:
        bad(human_col, ~frame[human_col].between(0, 1).to_numpy(), "is outside [0, 1] (a human score)")
    return frame


def load_neuron_map(path: str | Path, trials: pd.DataFrame) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"neuron map {path} not found")
    try:
        mapping = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise UserError(f'{path} must be a JSON object of neuron id -> concept, e.g. {{"89": "cat"}}')
    for key, concept in mapping.items():
        if not isinstance(concept, str) or not concept:
            raise UserError(f"{path}: neuron {key!r} maps to {concept!r}, not a concept name")
        if trial_column("activation", key) not in trials.columns:
            raise UserError(f"{path}: neuron {key!r} has no column {trial_column('activation', key)!r} in the data")
    return {str(k): v for k, v in mapping.items()}


def score_neurons(trials: pd.DataFrame, mapping: dict[str, str], cfg: ScoreConfig) -> pd.DataFrame:
    """One row per mapped neuron with its axes, score, thresholds, p-values and notes; ranked."""
    levels = trials[LEVEL].to_numpy()
    clean = levels == cfg.clean_level
    if not clean.any():
        raise UserError(f"no trial has the clean level {cfg.clean_level:g} (levels present: "
                        f"{', '.join(f'{l:g}' for l in sorted(set(levels)))})")
    human = trials[cfg.human_score_col].to_numpy() if cfg.human_score_col in trials.columns else None
    rows = []
    for neuron, concept in mapping.items():
        act = trials[trial_column("activation", neuron)].to_numpy()
        target = shows(trials[CATEGORY], concept)
        notes = []
        if not (target & clean).any():
            notes.append(f"no clean trial shows {concept!r}")
        s, g, p = calculate_selectivity_score(act[target & clean], act[~target & clean], cfg.min_p_value)
        ablate, amplify = trial_column("ablate", neuron), trial_column("amplify", neuron)
        if ablate in trials.columns and amplify in trials.columns:
            sel = target & clean
            c = calculate_causality_score(trials.loc[sel, ablate], trials.loc[sel, amplify])
        else:
            c = math.nan
            notes.append("C not available: no ablate_/amplify_ columns")
        r = calculate_robustness_score({l: act[target & (levels == l)] for l in set(levels)}, cfg.clean_level,
                                       cfg.recognizable_levels)
        if math.isnan(r):
            notes.append("R not available: no concept trials at recognisable perturbed levels or non-positive clean mean")
        threshold = float(np.quantile(act, cfg.threshold_percentile))
        h = calculate_human_consistency_score(act, human, threshold)
        if human is None:
            notes.append(f"H not available: no column {cfg.human_score_col!r}")
        if p == p and p > cfg.min_p_value:
            notes.append(f"selectivity not significant (p={p:.3g} > {cfg.min_p_value:g})")
        axes = dict(zip(AXES, (s, c, r, h)))
        score, used = calculate_interpretability_score(axes, cfg.weights)
        rows.append(ScoreRow(neuron, concept, **axes, score=score, activation_threshold=threshold, hedges_g=g,
                             p_value=p, n_concept_clean=int((target & clean).sum()),
                             n_other_clean=int((~target & clean).sum()),
                             weights_used=" ".join(f"{a}={w:.3f}" for a, w in used.items()), notes="; ".join(notes)))
    out = pd.DataFrame([asdict(r) for r in rows]).sort_values("score", ascending=False, na_position="last",
                                                              kind="stable")
    out.insert(0, RANK, np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)
