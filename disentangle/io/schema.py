"""The column names of every table and the keys of every JSON result, defined once.

Writers build their rows from these names and readers look columns up by them, so a table's
schema lives here and nowhere else. ``outputs/README.md`` documents what each column means.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

MEASURES = ("sparsity", "faithfulness")          # per attribution method, per image


# --- per_image.csv of attribution runs (baseline, filtered, control) ------------------------------
PER_IMAGE_LEAD = ("index", "label", "target", "pred", "top1", "top5", "confidence")


def measure_column(method: str, measure: str) -> str:
    """``ig_sparsity``: a run's own value."""
    return f"{method}_{measure}"


def convergence_column(method: str) -> str:
    """``ig_delta``: IG's convergence delta, Σ attribution − (f(x) − f(baseline))."""
    return f"{method}_delta"


def against_baseline_column(method: str, measure: str, kind: str) -> str:
    """``ig_sparsity_baseline`` / ``ig_sparsity_delta`` (this run − baseline) of a blocked run."""
    return f"{method}_{measure}_{kind}"


# --- class_analysis_metrics_<start>_<end>.csv -----------------------------------------------------
CLASS_LEAD = ("class", "class_name", "n_images", "top1_baseline", "top1_filtered")


def class_column(kind: str, method: str, measure: str) -> str:
    """``baseline_ig_sparsity``, ``filtered_ig_sparsity``, ``delta_ig_sparsity``: a class's means."""
    return f"{kind}_{method}_{measure}"


def class_columns(methods) -> tuple[str, ...]:
    per_method = [class_column(kind, m, k) for kind in ("baseline", "filtered", "delta") for m in methods
                  for k in MEASURES]
    return (*CLASS_LEAD, *per_method)


def columns(row_type) -> list[str]:
    """The column names of a row dataclass, in order."""
    return [f.name for f in fields(row_type)]


# --- mask_grid_summary.csv ------------------------------------------------------------------------
@dataclass
class GridRow:
    """One row per block, k, cluster, mode, method and measure."""
    block: str
    k: int
    cluster: int
    mode: str
    method: str
    metric: str
    measure: str
    n_blocked: int
    n_neurons: int
    n_images: int
    baseline_mean: float
    filtered_mean: float
    delta_mean: float
    delta_std: float
    top1_baseline: float
    top1_filtered: float


@dataclass
class ControlColumns:
    """Added to a ``GridRow`` when the cluster has random controls."""
    control_n: int
    control_delta_mean: float
    control_delta_std: float
    control_percentile: float
    control_p: float


# --- dissection: descriptions.csv, summary.json (dissect_neurons.py, compare_dissections.py) -------


# --- explanations: predictions.csv, heatmaps.npz, pairwise_iou.csv, ground_truth.csv ---------------


# --- linear explanations and simulation: explanations.csv, correlations.csv, ablation.csv ---------


# --- interpretability score: trials (data.csv) and results -----------------------------------------
