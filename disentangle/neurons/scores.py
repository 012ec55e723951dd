"""InterpScore: selectivity, causality, robustness and human alignment of a neuron for a concept,
as the seed's ``InterpScore`` package computes them (ernestoBocini/Interpretability-Score).

Input: one row per trial (an image shown at a perturbation ``level``; 5 = clean, 1-3 noisy with
level 1 the strongest, 4 the unit's feature visualizations) with ``trial_category`` (the score
uses the rows whose category is ``experiment``), ``ground_truth`` (the concept the image shows,
lower case), one ``activation_<neuron>`` column per neuron and a human score column (1 when the
participant recognised the concept). A neuron's concept trials are those with
``ground_truth == concept.lower()``.

- **S, selectivity**: Hedges' g of the clean concept activations vs the clean other ones,
  ``S = Φ(g / √2)`` (0.5 = no separation); fewer than 2 activations on either side give 0.5.
- **C, causality**: the image embedding ``E`` with the neuron's channel multiplied by 0 and by 2,
  ``Δλ = ‖E^λ − E‖ / ‖E‖``, ``C = 1 − exp(−(mean Δ0 + mean Δ2) / 2)`` over ``n_images`` (1)
  clean concept images drawn with ``DataFrame.sample(random_state=seed)``. The trials carry the
  deltas (``delta0_<n>``, ``delta2_<n>``) or an ``intervene`` function computes them from images.
- **R, robustness**: ``μ`` = mean absolute activation of the concept trials at the clean level;
  ``R_inv`` from the benign levels 1-2 and ``R_adv`` from the stress level 3, each from the concept
  trials that humans recognised: ``σ(μ_level / μ)`` with ``σ(r) = min(r, 1/r)``; R is the mean of
  the parts available, 0 if none.
- **H, human alignment**: ``t`` = the ``threshold_percentile`` quantile of the clean other
  activations; H = mean human score over the concept trials (every level) with activation > t,
  0 if none.
- **InterpScore** = Σ w·axis with the weights normalised to sum 1; an axis that could not be
  computed counts as 0, as in the original (``missing_axes="skip"`` renormalises over the rest).

An axis whose input is absent (C without images or deltas, H without a human score column) is
reported as NaN ("not available") with a note, never invented.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..core.errors import UserError
from ..io.schema import (AXES, CATEGORY, EXPERIMENT, GROUND_TRUTH, LEVEL, RESULT_COLUMNS, RESULT_EXTRA, TRIAL_KINDS,
                         TRIAL_REQUIRED, trial_column)

BENIGN_LEVELS = (1, 2)        # R_inv: benign perturbations
STRESS_LEVELS = (3,)          # R_adv: the stress (adversarial) level
EPS = 1e-8                    # the original's guard in the robustness ratios
CAUSALITY_MODES = ("embedding", "probability")
MISSING_AXES = ("zero", "skip")

# (rows, neuron id) -> (Δ0, Δ2) per row: the embedding's relative change with the channel x0 and x2.
Intervene = Callable[[pd.DataFrame, str], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ScoreConfig:
    """The scoring protocol; the defaults are the seed's (``weights`` its README's 0.3 0.3 0.2 0.2;
    the original's code sums with 0.25 each)."""
    clean_level: float = 5
    threshold_percentile: float = 0.95
    recognizable_levels: tuple[float, ...] = ()   # levels whose trials count as recognised without a human score
    min_p_value: float = 0.05                     # the 'significant' column: one-sided Welch p <= this
    human_score_col: str = "soft_correct"
    weights: tuple[float, float, float, float] = (0.3, 0.3, 0.2, 0.2)
    causality: str = "embedding"                  # or "probability": Δ of the true class's probability
    causality_images: int = 1                     # clean concept images C averages over (0: all)
    missing_axes: str = "zero"                    # an axis not available counts as 0, or "skip" it
    seed: int = 0                                 # the draw of C's images

    def __post_init__(self):
        if not 0 <= self.threshold_percentile <= 1:
            raise UserError(f"--threshold_percentile must be in [0, 1], got {self.threshold_percentile}")
        if not 0 < self.min_p_value <= 1:
            raise UserError(f"--min_p_value must be in (0, 1], got {self.min_p_value}")
        if len(self.weights) != 4 or any(not w >= 0 for w in self.weights) or sum(self.weights) <= 0:
            raise UserError(f"--weights takes four non-negative numbers (S C R H) with a positive sum, "
                            f"got {' '.join(map(str, self.weights))}")
        if self.causality not in CAUSALITY_MODES:
            raise UserError(f"--causality must be one of {', '.join(CAUSALITY_MODES)}, got {self.causality!r}")
        if self.missing_axes not in MISSING_AXES:
            raise UserError(f"--missing_axes must be one of {', '.join(MISSING_AXES)}, got {self.missing_axes!r}")
        if self.causality_images < 0:
            raise UserError(f"--causality_images must be 0 (all) or more, got {self.causality_images}")


# --- the five functions of the seed's API --------------------------------------------------------
def hedges_g(x: np.ndarray, y: np.ndarray) -> float:
    """Bias-corrected standardised mean difference of ``x`` over ``y`` (pooled sample SD); with
    (near) zero pooled SD: +inf, -inf or 0 by the sign of the mean difference."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    nx, ny = len(x), len(y)
    sp = math.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))
    diff = float(x.mean() - y.mean())
    if sp <= 1e-12:
        return 0.0 if np.isclose(x.mean(), y.mean()) else math.copysign(math.inf, diff)
    return diff / sp * (1.0 - 3.0 / (4.0 * (nx + ny) - 9.0))


def calculate_selectivity_score(target_activations_clean: Sequence[float],
                                non_target_activations_clean: Sequence[float]) -> float:
    """S = Φ(g / √2) of Hedges' g (clean concept vs clean other activations); 0.5 with fewer than
    2 activations on either side."""
    x = np.asarray(target_activations_clean, float)
    y = np.asarray(non_target_activations_clean, float)
    if x.size < 2 or y.size < 2:
        return 0.5
    return float(stats.norm.cdf(hedges_g(x, y) / math.sqrt(2.0)))


def selectivity_p_value(target: Sequence[float], other: Sequence[float]) -> float:
    """One-sided Welch t-test p of ``target > other`` (NaN with fewer than 2 on either side)."""
    x, y = np.asarray(target, float), np.asarray(other, float)
    if x.size < 2 or y.size < 2:
        return math.nan
    if x.var() == 0 and y.var() == 0:
        return 0.0 if x.mean() > y.mean() else 1.0
    return float(stats.ttest_ind(x, y, equal_var=False, alternative="greater").pvalue)


def causality_rows(df: pd.DataFrame, concept_name: str, n_images: int = 1, clean_only: bool = True,
                   seed: int = 0, clean_level: float = 5) -> pd.DataFrame:
    """The concept trials C uses: clean ones (``clean_only``), ``n_images`` of them (0: all) drawn
    as the original does (``DataFrame.sample(k, random_state=seed)``)."""
    mask = df[GROUND_TRUTH] == concept_name.lower()
    if clean_only:
        mask &= df[LEVEL] == clean_level
    rows = df[mask]
    k = len(rows) if n_images == 0 else min(n_images, len(rows))
    return rows.sample(k, random_state=seed) if k else rows


def calculate_causality_score(df: pd.DataFrame, neuron_id: int | str, concept_name: str, activation_col: str,
                              n_images: int = 1, clean_only: bool = True, seed: int = 0, *,
                              clean_level: float = 5, intervene: Intervene | None = None) -> float:
    """C = 1 − exp(−(mean Δ0 + mean Δ2) / 2) over the rows of ``causality_rows``; the deltas come
    from ``intervene(rows, neuron_id)`` or the trials' ``delta0_<n>``/``delta2_<n>`` columns (non-finite
    deltas, e.g. of a missing image, are left out). NaN when there are none: C is not available.
    ``activation_col`` is accepted for the original's signature; C does not read it."""
    rows = causality_rows(df, concept_name, n_images, clean_only, seed, clean_level)
    if not len(rows):
        return math.nan
    neuron = str(neuron_id)
    if intervene is not None:
        d0, d2 = intervene(rows, neuron)
    elif {trial_column("delta0", neuron), trial_column("delta2", neuron)} <= set(df.columns):
        d0, d2 = rows[trial_column("delta0", neuron)].to_numpy(), rows[trial_column("delta2", neuron)].to_numpy()
    else:
        return math.nan
    d0, d2 = np.asarray(d0, float), np.asarray(d2, float)
    keep = np.isfinite(d0) & np.isfinite(d2)
    if not keep.any():
        return math.nan
    return float(1.0 - math.exp(-0.5 * (d0[keep].mean() + d2[keep].mean())))


def calculate_probability_causality_score(df: pd.DataFrame, neuron_id: int | str, concept_name: str,
                                          clean_level: float = 5) -> float:
    """Our variant of C: clip((mean(−Δp ×0) + mean(Δp ×2)) / 2, 0, 1) of the true class's
    probability over the clean concept trials (``ablate_<n>``, ``amplify_<n>``); NaN without them."""
    ablate, amplify = trial_column("ablate", neuron_id), trial_column("amplify", neuron_id)
    rows = df[(df[GROUND_TRUTH] == concept_name.lower()) & (df[LEVEL] == clean_level)]
    if ablate not in df.columns or amplify not in df.columns or not len(rows):
        return math.nan
    return float(np.clip((-rows[ablate].mean() + rows[amplify].mean()) / 2, 0, 1))


def recognised(df: pd.DataFrame, human_score_col: str = "soft_correct",
               recognizable_levels: Sequence[float] = ()) -> pd.Series:
    """Bool per trial: humans recognised its concept (human score 1), or its level is one of
    ``recognizable_levels``; every trial when there is no human score column."""
    if human_score_col not in df.columns:
        return pd.Series(True, index=df.index)
    return (df[human_score_col] == 1) | df[LEVEL].isin(list(recognizable_levels))


def calculate_robustness_score(exp_df: pd.DataFrame, concept_name: str, activation_col: str,
                               clean_level: float = 5, human_score_col: str = "soft_correct",
                               recognizable_levels: Sequence[float] = ()) -> float:
    """R = mean of σ(r_inv) (levels 1-2) and σ(r_adv) (level 3), σ(r) = min(r, 1/r), r = mean |a|
    of the recognised concept trials at those levels over mean |a| at the clean level (see module
    doc); 0 when the clean level or both parts have no trials."""
    concept = exp_df[exp_df[GROUND_TRUTH] == concept_name.lower()]
    clean = concept.loc[concept[LEVEL] == clean_level, activation_col].dropna()
    if clean.empty:
        return 0.0
    mu_clean = float(np.mean(np.abs(clean)))
    ok = recognised(concept, human_score_col, recognizable_levels)
    parts = []
    for levels in (BENIGN_LEVELS, STRESS_LEVELS):
        acts = concept.loc[concept[LEVEL].isin(levels) & ok, activation_col].dropna()
        if not acts.empty:
            r = max((float(np.mean(np.abs(acts))) + EPS) / (mu_clean + EPS), EPS)
            parts.append(math.exp(-abs(math.log(r))))
    return float(np.mean(parts)) if parts else 0.0


def calculate_human_consistency_score(high_activation_images: Sequence[float], human_labels: Sequence[float]) -> float:
    """H = mean human score of the strongly activating concept trials; 0 when there are none."""
    if len(high_activation_images) == 0:
        return 0.0
    return float(np.mean(np.asarray(human_labels, float)))


def calculate_interpretability_score(S: float, C: float, R: float, H: float,
                                     weights: Mapping[str, float] | Sequence[float] | None = None, *,
                                     missing: str = "zero") -> float:
    """Σ w·axis with ``weights`` (S C R H as a sequence or a dict; None: 0.25 each, the original's)
    normalised to sum 1. A NaN axis counts as 0 (``missing="zero"``, the original's value for an
    axis it cannot compute) or is left out with the weights renormalised (``"skip"``)."""
    if weights is None:
        weights = (0.25, 0.25, 0.25, 0.25)
    if isinstance(weights, Mapping):
        weights = tuple(weights[a] for a in AXES)
    axes = dict(zip(AXES, (S, C, R, H)))
    use = {a: w for a, w in zip(AXES, weights) if missing == "zero" or not math.isnan(axes[a])}
    total = sum(use.values())
    if total <= 0:
        return math.nan
    return float(sum(w / total * (0.0 if math.isnan(axes[a]) else axes[a]) for a, w in use.items()))


# --- reading the trials and the neuron map ------------------------------------------------------
def _human_scores(column: pd.Series) -> pd.Series:
    if column.dtype == bool:
        return column.astype(float)
    as_bool = column.astype(str).str.strip().str.lower().map({"true": 1.0, "false": 0.0})
    return as_bool.where(as_bool.notna(), pd.to_numeric(column, errors="coerce"))


def load_trials(path: str | Path, human_col: str = "soft_correct") -> pd.DataFrame:
    """The trials of ``path`` (the seed's data format), checked cell by cell: one line naming the
    file, line and column of the first bad cell. Empty activation cells are kept as NaN (the
    original drops them); ``True``/``False`` human scores are read as 1/0."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} not found")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty: it needs a header ({', '.join(TRIAL_REQUIRED)}, "
                        f"{trial_column('activation', '<neuron>')}) and one row per trial") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a readable CSV: {str(e).splitlines()[0]}") from None
    missing = [c for c in TRIAL_REQUIRED if c not in frame.columns]
    if missing:
        raise UserError(f"{path} lacks the column {missing[0]!r} (needs {', '.join(TRIAL_REQUIRED)}, "
                        f"{trial_column('activation', '<neuron>')})")
    if frame.empty:
        raise UserError(f"{path} has a header but no trials")

    def bad(col: str, rows: np.ndarray, what: str) -> None:
        if rows.any():
            row = int(np.flatnonzero(rows)[0])
            value = "the cell" if what == "is empty" else repr(str(frame[col].iloc[row]))
            raise UserError(f"{path}, line {row + 2} (data row {row + 1}), column {col!r}: {value} {what}")

    for col in (CATEGORY, GROUND_TRUTH):
        bad(col, frame[col].isna().to_numpy() | (frame[col].astype(str).str.strip() == "").to_numpy(), "is empty")
        frame[col] = frame[col].astype(str)
    bad(LEVEL, frame[LEVEL].isna().to_numpy(), "is empty")
    per_neuron = tuple(trial_column(k, "") for k in TRIAL_KINDS)
    for col in [LEVEL, *(c for c in frame.columns if c.startswith(per_neuron))]:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad(col, (values.isna() & frame[col].notna()).to_numpy(), "is not a number")
        bad(col, np.isinf(values.to_numpy(dtype=float)), "is not a finite number")
        frame[col] = values
    if human_col in frame.columns:
        values = _human_scores(frame[human_col])
        bad(human_col, frame[human_col].isna().to_numpy(), "is empty")
        bad(human_col, values.isna().to_numpy(), "is not a number or True/False (a human score)")
        bad(human_col, ~values.between(0, 1).to_numpy(), "is outside [0, 1] (a human score)")
        frame[human_col] = values
    return frame


def load_neuron_map(path: str | Path) -> dict[str, str]:
    """``{"89": "Trump", ...}`` from a JSON object of neuron id -> concept."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"neuron map {path} not found")
    try:
        mapping = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise UserError(f'{path} must be a JSON object of neuron id -> concept, e.g. {{"89": "cat"}}')
    for key, concept in mapping.items():
        if not isinstance(concept, str) or not concept.strip():
            raise UserError(f"{path}: neuron {key!r} maps to {concept!r}, not a concept name")
    return {str(k): v for k, v in mapping.items()}


# --- the benchmark: every neuron of a map --------------------------------------------------------
@dataclass
class Scores:
    table: pd.DataFrame                      # results.csv: RESULT_COLUMNS, RESULT_EXTRA; by InterpScore
    skipped: dict[str, str] = field(default_factory=dict)   # neuron -> why it was not scored


def experiment_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The rows the score uses (``trial_category == 'experiment'``); one line if there are none."""
    exp = trials[trials[CATEGORY] == EXPERIMENT]
    if exp.empty:
        found = ", ".join(repr(c) for c in sorted(trials[CATEGORY].unique())[:5])
        raise UserError(f"no trial has {CATEGORY} {EXPERIMENT!r}, the trials the score uses (found {found})")
    return exp


def score_neurons(trials: pd.DataFrame, mapping: Mapping[str, str], cfg: ScoreConfig = ScoreConfig(),
                  intervene: Intervene | None = None) -> Scores:
    """Score every neuron of ``mapping`` on the experiment trials of ``trials`` (module doc).
    A neuron without an activation column, or without clean concept or clean other trials, is
    skipped (``Scores.skipped`` says why), as the original skips it."""
    exp = experiment_trials(trials)
    clean = exp[LEVEL] == cfg.clean_level
    has_human = cfg.human_score_col in exp.columns
    rows, skipped = [], {}
    for neuron, concept in mapping.items():
        col = trial_column("activation", neuron)
        if col not in exp.columns:
            skipped[neuron] = f"no column {col!r} in the data"
            continue
        is_concept = exp[GROUND_TRUTH] == concept.lower()
        target, other = exp.loc[is_concept & clean, col].dropna(), exp.loc[~is_concept & clean, col].dropna()
        if (is_concept & clean).sum() == 0 or (~is_concept & clean).sum() == 0:
            side = "concept" if (is_concept & clean).sum() == 0 else "other"
            skipped[neuron] = (f"no clean (level {cfg.clean_level:g}) {side} trials for {concept!r} "
                               f"({GROUND_TRUTH} == {concept.lower()!r})")
            continue
        notes = []
        s = calculate_selectivity_score(target, other)
        if min(len(target), len(other)) < 2:
            notes.append("S = 0.5: fewer than 2 clean activations on a side")
        if cfg.causality == "embedding":
            c = calculate_causality_score(exp, neuron, concept, col, cfg.causality_images, seed=cfg.seed,
                                          clean_level=cfg.clean_level, intervene=intervene)
            n_c = len(causality_rows(exp, concept, cfg.causality_images, seed=cfg.seed, clean_level=cfg.clean_level))
            why = "no images or delta0_/delta2_ columns"
        else:
            c = calculate_probability_causality_score(exp, neuron, concept, cfg.clean_level)
            n_c = int((is_concept & clean).sum())
            why = "no ablate_/amplify_ columns"
        if math.isnan(c):
            notes.append(f"C not available ({why}); {'counted as 0' if cfg.missing_axes == 'zero' else 'left out'}"
                         f" in InterpScore")
        r = calculate_robustness_score(exp, concept, col, cfg.clean_level, cfg.human_score_col, cfg.recognizable_levels)
        if not has_human:
            notes.append(f"R uses every trial: no column {cfg.human_score_col!r} to keep the recognised ones")
        threshold = float(np.quantile(other, cfg.threshold_percentile)) if len(other) else math.nan
        high = exp[is_concept & (exp[col] > threshold)]
        if has_human:
            h = calculate_human_consistency_score(high[col], high[cfg.human_score_col])
        else:
            h = math.nan
            notes.append(f"H not available (no column {cfg.human_score_col!r}); "
                         f"{'counted as 0' if cfg.missing_axes == 'zero' else 'left out'} in InterpScore")
        p = selectivity_p_value(target, other)
        score = calculate_interpretability_score(s, c, r, h, cfg.weights, missing=cfg.missing_axes)
        rows.append({"Neuron": neuron, "Concept": concept, "S": s, "C": c, "R": r, "H": h, "InterpScore": score,
                     "Notes": "; ".join([f"Threshold: {threshold:.4f}", *notes]),
                     "threshold": threshold, "hedges_g": hedges_g(target, other) if min(len(target), len(other)) >= 2
                     else math.nan, "p_value": p, "significant": bool(p <= cfg.min_p_value),
                     "n_concept_clean": len(target), "n_non_concept_clean": len(other), "causality": cfg.causality,
                     "causality_images": n_c, "weights": " ".join(f"{a}={w:g}" for a, w in zip(AXES, cfg.weights))})
    table = pd.DataFrame(rows, columns=[*RESULT_COLUMNS, *RESULT_EXTRA])
    table = table.sort_values("InterpScore", ascending=False, kind="stable", na_position="last")
    return Scores(table.reset_index(drop=True), skipped)
