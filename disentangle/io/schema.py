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
CLASS_LEAD = ("class_id", "class_name", "method")
CLASS_STATS = tuple(f"{kind}_{k}_{s}" for kind in ("filtered", "baseline") for k in ("sparsity", "faithfulness")
                    for s in ("mean", "std"))
CLASS_EXTRA = ("n_images", "top1_baseline", "top1_filtered", "sparsity_diff")


def class_columns() -> tuple[str, ...]:
    """The original's columns (one row per class and method; ``mean_diff`` is the baseline's mean
    faithfulness minus the filtered one's), then ours (``sparsity_diff`` likewise)."""
    return (*CLASS_LEAD, *CLASS_STATS, "mean_diff", *CLASS_EXTRA)


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
@dataclass
class UnitDescription:
    """One row of descriptions.csv per layer and unit: its best concept (CLIP-Dissect's columns)."""
    layer: str
    unit: int
    description: str
    similarity: float          # the similarity function's score; for mask-IoU, the IoU
    category: str


@dataclass
class MaskIoUDescription(UnitDescription):
    """A row of a mask-IoU dissection's descriptions.csv."""
    iou: float
    detector: bool             # IoU above --iou_threshold
    threshold: float           # the unit's activation threshold (its top --quantile)
    top_concepts: str          # its three best concepts, 'name (iou); ...'


@dataclass
class DissectionCounts:
    """summary.json holds these under ``SUMMARY_OVERALL`` and, per layer, ``SUMMARY_LAYERS``."""
    units: int
    labelled_units: int        # mask-IoU: detectors; CLIP-Dissect: every unit
    unique_concepts: int
    units_per_concept: dict[str, int]
    category_shares: dict[str, float]


SUMMARY_OVERALL, SUMMARY_LAYERS = "overall", "layers"
# comparison.csv (one row per run and layer) and units.csv (per unit, each run's label).
COMPARISON_LEAD = ("run", "model", "method", "layer", "units", "labelled_units", "unique_concepts")
AGREE = "agree"


def share_column(category: str) -> str:
    """``share_colour``: a category's share of a layer's labelled units, in comparison.csv."""
    return f"share_{category}"


# --- explanations: predictions.csv, heatmaps.npz, pairwise_iou.csv, ground_truth.csv ---------------
PREDICTION_COLUMNS = ("id", "label", "target", "target_name", "probability", "top1", "top1_name")
LIME_PREDICTION_COLUMNS = ("superpixels", "mask_share", "intercept", "score", "local_pred")   # after the above
HEATMAP_KEYS = ("ids", "targets")            # heatmaps.npz: these, then one (N, S, S) map per method
IMAGE_KEYS = ("ids", "pixels", "labels")     # images.npz: these, and "objects" where known
PAIRWISE_COLUMNS = ("image", "method_a", "method_b", "iou")
GROUND_TRUTH_COLUMNS = ("image", "method", "iou", "chance_iou", "hit", "object_share", "mask_share")


# --- linear explanations and simulation: le_{mode}_{target}_{layer}.csv, correlations.csv, ablation.csv
# The original's explanations table: these, then weight{i} and concept{i} for i = 0..max_length-1 (by
# descending weight; 0 in both past an explanation's length), then BIAS, then the simulation
# columns the simulate_*.py scripts add (SIMULATION_COLUMNS).
EXPLANATION_LEAD = ("layer", "unit", "val correlation")
BIAS = "bias"
DESCRIPTION = "description"        # UnitDescription.description: the one concept simulation reads from descriptions.csv
SIM_CORRELATION = "sim correlation"
SIM_ABLATION = {"optim": "sim ablation(optim)", "norm": "sim ablation(norm)"}


def weight_column(i: int) -> str:
    """``weight0``: the weight of an explanation's ``i``-th concept (from 0, as the original)."""
    return f"weight{i}"


def concept_column(i: int) -> str:
    """``concept0``: the name of an explanation's ``i``-th concept (from 0, as the original)."""
    return f"concept{i}"


def explanation_columns(max_length: int) -> tuple[str, ...]:
    terms = [c for i in range(max_length) for c in (weight_column(i), concept_column(i))]
    return (*EXPLANATION_LEAD, *terms, BIAS)


def concept_indices(columns) -> list[int]:
    """The ``i`` of every ``concept{i}`` column of an explanations table, in order (from 0 in the
    original's files, from 1 in this project's earlier ones)."""
    return sorted(int(c[len("concept"):]) for c in columns if c.startswith("concept") and c[len("concept"):].isdigit())


CORRELATION_COLUMNS = ("method", "layer", "unit", "test correlation")                  # correlations.csv
SIMULATION_SUMMARY_COLUMNS = ("method", "kind", "neurons", "simulated", "mean correlation",
                              "median correlation", "sem correlation", "simulator")      # summary.csv
ABLATION_COLUMNS = ("layer", "unit", "sum_abs_dce_simulated", "sum_abs_dce_mean", "score")   # ablation.csv


@dataclass
class AblationResult:
    """ablation.json: the overall ablation score of one explanation file."""
    score: float                   # optim / norm: mean over units of their scores; pooled: 1 - Σ simulated / Σ mean
    mode: str                      # optim, norm (the original's) or pooled (ours)
    sem: float                     # standard error of the per-unit scores (std / √n)
    units: int                     # units simulated
    not_simulated: list[int]       # units whose description is not among the concepts
    test_images: int
    sum_abs_dce_simulated: float
    sum_abs_dce_mean: float


# --- interpretability score: trials (data.csv) and results (results.csv) --------------------------
CATEGORY, GROUND_TRUTH, LEVEL, IMAGE_INDEX = "trial_category", "ground_truth", "level", "image_index"
IMAGE_FILENAME, IMAGE_BASENAME = "image_filename", "image_basename"   # the seed's image columns
EXPERIMENT = "experiment"                      # the trial_category of the trials the score uses
TRIAL_LEAD = (LEVEL, IMAGE_INDEX, GROUND_TRUTH, CATEGORY)       # what --extract writes first
TRIAL_REQUIRED = (CATEGORY, GROUND_TRUTH, LEVEL)                # what scoring needs
# Per neuron: its activation; the image embedding's relative change with the channel x0 and x2
# (causality, the original's definition); the true class's probability change x0 and x2 (the
# probability variant of causality).
TRIAL_KINDS = ("activation", "delta0", "delta2", "ablate", "amplify")
AXES = ("S", "C", "R", "H")
# results.csv: the original's columns, then ours.
RESULT_COLUMNS = ("Neuron", "Concept", *AXES, "InterpScore", "Notes")
RESULT_EXTRA = ("threshold", "hedges_g", "p_value", "significant", "n_concept_clean", "n_non_concept_clean",
                "causality", "causality_images", "weights")


def trial_column(kind: str, neuron: int | str) -> str:
    """``activation_3``, ``delta0_3``, ``ablate_3``, ...: a neuron's column of ``kind`` (``TRIAL_KINDS``)."""
    return f"{kind}_{neuron}"
