"""Where every stage's artifacts live, below one root (``outputs/`` by default).

Every default output path of a stage is named here, and nowhere else; ``outputs/README.md``
describes what each folder holds.
"""
from __future__ import annotations

from pathlib import Path

OUTPUTS = Path("outputs")


def _suffix(mode: str) -> str:
    return "" if mode == "detach" else f"_{mode}"


def baseline_dir(root: Path = OUTPUTS) -> Path:
    return root / "baseline"


def stats_dir(block: str, k: int, root: Path = OUTPUTS) -> Path:
    return root / "neuron_stats" / f"{block}_k{k}"


def filtered_dir(block: str, cluster: int, k: int, mode: str = "detach", root: Path = OUTPUTS) -> Path:
    return root / f"filtered_{block}_cluster_{cluster}_k{k}{_suffix(mode)}"


def control_dir(block: str, cluster: int, k: int, mode: str = "detach", root: Path = OUTPUTS) -> Path:
    return root / "control" / f"{block}_cluster_{cluster}_k{k}{_suffix(mode)}"


def control_random_dir(metric: str, root: Path = OUTPUTS) -> Path:
    """The original's random control of one metric (its published ``control_random/patch_wise``)."""
    return root / "control_random" / f"{metric}_wise"


def repeat_dir(control: Path, repeat: int) -> Path:
    return control / f"repeat_{repeat:02d}"


def accuracy_file(block: str, cluster: int, k: int, root: Path = OUTPUTS) -> Path:
    return root / "accuracy" / f"acc_{block}_c{cluster}_k{k}.json"


GRID_LONG = "mask_grid_long.csv"


def grid_summary_file(root: Path = OUTPUTS) -> Path:
    return root / "mask_grid_summary.csv"


def class_analysis_file(start: int, end: int, root: Path = OUTPUTS) -> Path:
    return root / f"class_analysis_metrics_{start}_{end}.csv"


def statistics_dir(name: str, root: Path = OUTPUTS) -> Path:
    """``name``: the filtered run's folder name, or ``all``."""
    return root / "statistics" / name


def decomposition_dir(root: Path = OUTPUTS) -> Path:
    return root / "decomposition_analysis"


def visualizations_dir(root: Path = OUTPUTS) -> Path:
    return root / "visualizations"


def cams_dir(root: Path = OUTPUTS) -> Path:
    return root / "cams"


def lime_dir(root: Path = OUTPUTS) -> Path:
    return root / "lime"


def compare_dir(root: Path = OUTPUTS) -> Path:
    return root / "compare"


def dissect_dir(model: str, method: str, probe: str, root: Path = OUTPUTS) -> Path:
    return root / "dissect" / f"{model}_{method}_{probe}"


def dissect_compare_dir(names: list[str], root: Path = OUTPUTS) -> Path:
    return root / "dissect" / ("compare_" + "_vs_".join(names))


def activations_dir(root: Path = OUTPUTS) -> Path:
    return root / "activations"


def simulation_dir(model: str, layer: str, mode: str, ablation: bool = False, root: Path = OUTPUTS) -> Path:
    return root / "simulation" / f"{model}_{layer}_{mode}{'_ablation' if ablation else ''}"


def features_dir(model: str, block: str, root: Path = OUTPUTS) -> Path:
    return root / "features" / f"{model}_{block}"


def feature_image(unit: int) -> str:
    """The file name of a unit's feature visualization in its ``features_dir``."""
    return f"unit_{unit:04d}_feature.png"


def interpscore_dir(model: str, block: str, root: Path = OUTPUTS) -> Path:
    """InterpScore of every unit of a block, as the atlas runs it."""
    return root / "interpscore" / f"{model}_{block}"


def atlas_dir(model: str, root: Path = OUTPUTS) -> Path:
    return root / "atlas" / model
