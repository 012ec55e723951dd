"""Readers of the stages' artifacts, with the checks that keep runs apart.

A stage that builds on another reads its ``manifest.json`` and refuses it when it is unfinished or
was made for another model, weights or data than the one it is asked to use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts
from ..core.errors import UserError

def finished(folder: Path, what: str) -> dict:
    """The manifest of a finished stage folder, or a clear error."""
    manifest = artifacts.read_manifest(folder)
    if manifest is None:
        raise UserError(f"no {what} in {folder} (no {artifacts.MANIFEST}); run that stage first")
    if not manifest.get("complete"):
        raise UserError(f"the {what} in {folder} is unfinished; rerun its command to complete it")
    return manifest


MODEL_KEYS = ("model", "weights_sha256", "data")


def same_model(a: dict, b: dict, a_name: str, b_name: str) -> None:
    """Refuse to combine artifacts of different models, weights or data."""
    for key in MODEL_KEYS:
        if a["config"].get(key) != b["config"].get(key):
            raise UserError(f"{a_name} and {b_name} come from different runs ({key}: "
                            f"{a['config'].get(key)!r} vs {b['config'].get(key)!r})")


@dataclass
class Clusters:
    folder: Path
    manifest: dict
    block: str
    k: int
    labels: np.ndarray      # (C,) cluster of each channel

    def channels(self, cluster: int) -> np.ndarray:
        if not 0 <= cluster < self.k:
            raise UserError(f"cluster {cluster} does not exist: {self.folder} has k={self.k} clusters "
                            f"(0..{self.k - 1})")
        return np.flatnonzero(self.labels == cluster)


def load_clusters(folder: str | Path) -> Clusters:
    folder = Path(folder)
    manifest = finished(folder, "neuron statistics")
    if manifest.get("stage") != "neuron_stats":
        raise UserError(f"{folder} holds a {manifest.get('stage')} run, not neuron statistics (neuron_stats.py)")
    labels = artifacts.read_npz(folder / "cluster_results.npz", ("labels",), "cluster")["labels"]
    cfg = manifest["config"]
    k = int(cfg["k"])
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) and not 0 <= labels.min() <= labels.max() < k:
        raise UserError(f"{folder}/cluster_results.npz holds no labels of {k} clusters; rerun neuron_stats.py")
    return Clusters(folder, manifest, cfg["block"], k, labels)


@dataclass
class Baseline:
    folder: Path
    manifest: dict
    per_image: pd.DataFrame
    sha256: str             # of per_image.csv: which baseline, not only which settings

    @property
    def targets(self) -> dict[int, int]:
        return dict(zip(self.per_image["index"].tolist(), self.per_image["target"].tolist()))

    def check_made_against(self, manifest: dict, folder: Path, what: str = "filtered run") -> None:
        """Refuse a blocked run (filtered or control) that was not made against this very baseline:
        other settings, or a baseline since replaced."""
        same_model(self.manifest, manifest, f"the baseline ({self.folder})", f"the {what} ({folder})")
        base_cfg = self.manifest["config"]
        problem = artifacts.config_mismatch(base_cfg, {k: manifest["config"].get(k) for k in base_cfg})
        if problem:
            raise UserError(f"the {what} in {folder} was not made against the baseline in {self.folder} "
                            f"({problem.replace(' there,', ' in the baseline,').replace(' now', ' in the run')})")
        if manifest["config"].get("baseline_sha256") != self.sha256:
            raise UserError(f"the {what} in {folder} was made against an earlier baseline in {self.folder} "
                            f"(replaced since); rerun it with --overwrite (run_experiments.py --overwrite for the "
                            f"grid)")


def load_baseline(folder: str | Path) -> Baseline:
    folder = Path(folder)
    manifest = finished(folder, "baseline")
    if manifest.get("stage") != "baseline_eval":
        raise UserError(f"{folder} holds a {manifest.get('stage')} run, not a baseline")
    per_image = artifacts.read_csv(folder / "per_image.csv", ("index", "label", "target", "pred", "top1", "top5"),
                                   "the baseline's per-image table")
    return Baseline(folder, manifest, per_image, artifacts.sha256_file(folder / "per_image.csv"))
