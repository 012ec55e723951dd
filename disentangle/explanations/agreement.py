"""Agreement between explanations, and with the true object: binarised maps, IoU, pointing game.

Reads the folders of ``cam_explain.py`` and ``lime_explain.py`` (``heatmaps.npz``: ``ids``,
``targets`` and one ``(N, S, S)`` map per method; ``images.npz``; ``manifest.json``) after
checking that they explain the same images with the same model and weights, for the same classes.

- **Binarising** a map ``(S, S)`` of ``N = S*S`` pixels: ``top`` (default, fraction ``p = 0.2``):
  the pixels whose value is at least the ``ceil(p N)``-th largest and above 0. Ties stay together
  (LIME's superpixels stay whole, so its mask can hold a little more than ``p N`` pixels) and a map
  with fewer positive pixels gives a smaller mask (an all-zero map an empty one). ``otsu``: the
  pixels above Otsu's threshold of the map's values (``skimage.filters.threshold_otsu``); a
  constant map gives an empty mask.
- **IoU** of two masks: ``|A ∩ B| / |A ∪ B|``; NaN when both are empty (left out of the means).
- **Pointing game** (concept world): a hit when the map's maximum lies on the true object; where
  several pixels share the maximum (a LIME superpixel), when most of them do. Chance: the object's
  share of the image.
- **Chance IoU** with the object: the expected IoU of a mask of the same size placed uniformly at
  random, ``E|A ∩ O| = a o / N`` -> ``(a o / N) / (a + o - a o / N)`` for mask size ``a`` and object size ``o``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.filters import threshold_otsu

from ..core.errors import UserError
from ..io import artifacts, readers
from ..io.schema import GROUND_TRUTH_COLUMNS, HEATMAP_KEYS, PAIRWISE_COLUMNS

BINARIZE = ("top", "otsu")
STAGES = ("cam_explain", "lime_explain")
HEATMAPS, IMAGES, PREDICTIONS = "heatmaps.npz", "images.npz", "predictions.csv"


@dataclass(frozen=True)
class BinarizeConfig:
    how: str = "top"
    top: float = 0.2        # share of pixels kept by "top"

    def __post_init__(self):
        if self.how not in BINARIZE:
            raise UserError(f"unknown --binarize {self.how!r}; choose from {', '.join(BINARIZE)}")
        if not 0 < self.top <= 1:
            raise UserError(f"--top must be in (0, 1], got {self.top}")


def binarize(maps: np.ndarray, cfg: BinarizeConfig) -> np.ndarray:
    """``(N, S, S)`` maps -> ``(N, S, S)`` bool masks (see the module's docstring)."""
    if cfg.how == "top":
        flat = maps.reshape(len(maps), -1)
        k = int(np.ceil(cfg.top * flat.shape[1]))
        kth = -np.partition(-flat, k - 1, axis=1)[:, k - 1]                  # (N,) k-th largest value
        return (maps >= kth[:, None, None]) & (maps > 0)
    masks = np.zeros(maps.shape, dtype=bool)
    for i, m in enumerate(maps):
        if m.min() < m.max():
            masks[i] = m > threshold_otsu(m)
    return masks


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, S, S)`` bool, ``(N, S, S)`` bool -> ``(N,)`` IoU, NaN where both masks are empty."""
    inter = (a & b).sum((1, 2))
    union = (a | b).sum((1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def pointing_hits(maps: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the maximum of each map lies on the object (most of its pixels, if shared)."""
    top = maps == maps.max((1, 2), keepdims=True)                            # (N, S, S)
    return 2 * (top & objects).sum((1, 2)) > top.sum((1, 2))


def chance_iou(mask_size: np.ndarray, object_size: np.ndarray, n_pixels: int) -> np.ndarray:
    """Expected IoU of a uniformly placed mask of ``mask_size`` pixels with an object of ``object_size``."""
    inter = mask_size * object_size / n_pixels
    return inter / np.maximum(mask_size + object_size - inter, 1e-12)


@dataclass
class Explanations:
    """Heatmaps of several methods on the same images, for the same classes."""
    ids: list[str]
    targets: np.ndarray              # (N,)
    maps: dict[str, np.ndarray]      # method -> (N, S, S)
    pixels: np.ndarray               # (N, S, S, 3) uint8
    objects: np.ndarray | None       # (N, S, S) bool, concept world only
    manifests: dict[str, dict]       # folder -> its manifest
    class_names: dict[int, str]      # target -> name, from the inputs' predictions


def load_explanations(folders: list[str | Path]) -> Explanations:
    """Read explanation folders, refusing any that differ in model, weights, data, images or targets."""
    if not folders:
        raise UserError("no --inputs given")
    first = None
    maps: dict[str, np.ndarray] = {}
    manifests: dict[str, dict] = {}
    names: dict[int, str] = {}
    for folder in map(Path, folders):
        manifest = readers.finished(folder, "explanations")
        if manifest.get("stage") not in STAGES:
            raise UserError(f"{folder} holds a {manifest.get('stage')} run, not one of {', '.join(STAGES)}")
        z = artifacts.read_npz(folder / HEATMAPS, (*HEATMAP_KEYS, *manifest["config"]["methods"]), "heatmaps")
        ids, targets = z["ids"].tolist(), z["targets"]
        here = {m: z[m] for m in manifest["config"]["methods"]}
        if first is None:
            first = (folder, manifest, ids, targets)
            z = artifacts.read_npz(folder / IMAGES, ("pixels",), "images")
            pixels, objects = z["pixels"], z.get("objects")
        else:
            f0, m0, ids0, targets0 = first
            readers.same_model(m0, manifest, str(f0), str(folder))
            if ids != ids0:
                raise UserError(f"{f0} and {folder} explain different images; rerun one with the other's --images")
            if not np.array_equal(targets, targets0):
                i = int(np.flatnonzero(targets != targets0)[0])
                raise UserError(f"{f0} and {folder} explain different classes (image {ids[i]}: "
                                f"{targets0[i]} vs {targets[i]}); use the same --target")
        for m, v in here.items():
            if m in maps:
                raise UserError(f"method {m} appears in two inputs; give each method once")
            maps[m] = v
        manifests[str(folder)] = manifest
        predictions = artifacts.read_csv(folder / PREDICTIONS, ("target", "target_name"), "predictions",
                                         dtype={"id": str})
        names.update(zip(predictions["target"].astype(int), predictions["target_name"].astype(str)))
    _, _, ids, targets = first
    return Explanations(ids, targets, maps, pixels, objects, manifests, names)


@dataclass
class Agreement:
    masks: dict[str, np.ndarray]     # method -> (N, S, S) bool
    pairwise: pd.DataFrame           # PAIRWISE_COLUMNS, per image, then image "mean"
    pairwise_mean: pd.DataFrame      # method x method mean IoU (1 on the diagonal)
    ground_truth: pd.DataFrame | None    # GROUND_TRUTH_COLUMNS, concept world only
    summary: dict                    # means per pair and, on the concept world, per method


def compare(ex: Explanations, cfg: BinarizeConfig) -> Agreement:
    """Binarise every map, then IoU of every pair of methods and, with objects, against the object."""
    methods = list(ex.maps)
    masks = {m: binarize(v, cfg) for m, v in ex.maps.items()}
    rows, means = [], {}
    for a, b in itertools.combinations(methods, 2):
        v = iou(masks[a], masks[b])
        rows += [(i, a, b, x) for i, x in zip(ex.ids, v)]
        means[(a, b)] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    pairwise = pd.DataFrame(rows + [("mean", a, b, v) for (a, b), v in means.items()], columns=list(PAIRWISE_COLUMNS))
    matrix = pd.DataFrame(np.eye(len(methods)), index=methods, columns=methods)
    for (a, b), v in means.items():
        matrix.loc[a, b] = matrix.loc[b, a] = v
    summary = {"n_images": len(ex.ids), "methods": methods, "binarize": vars(cfg),
               "pairwise_mean_iou": {f"{a}|{b}": v for (a, b), v in means.items()}}
    truth = None
    if ex.objects is not None:
        n_pixels = ex.objects[0].size
        obj_size = ex.objects.sum((1, 2))
        frames = []
        for m in methods:
            size = masks[m].sum((1, 2))
            frames.append(pd.DataFrame(dict(zip(GROUND_TRUTH_COLUMNS, (
                ex.ids, m, iou(masks[m], ex.objects), chance_iou(size, obj_size, n_pixels),
                pointing_hits(ex.maps[m], ex.objects), obj_size / n_pixels, size / n_pixels)))))
        truth = pd.concat(frames, ignore_index=True)
        summary["ground_truth"] = {
            m: {"iou": float(g["iou"].mean()), "chance_iou": float(g["chance_iou"].mean()),
                "pointing_game": float(g["hit"].mean()), "pointing_chance": float(g["object_share"].mean())}
            for m, g in truth.groupby("method", sort=False)}
    return Agreement(masks, pairwise, matrix.reset_index(names="method"), truth, summary)


def input_hashes(folders: list[str | Path]) -> dict[str, str]:
    """SHA-256 of each input's heatmaps, so a rerun notices a changed input."""
    return {str(f): artifacts.sha256_file(Path(f) / HEATMAPS) for f in folders}
