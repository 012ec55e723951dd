"""The explanation stages: CAM heatmaps (``run_cams``), LIME (``run_lime``) and the agreement
between their folders (``compare``).

``run_cams`` and ``run_lime`` explain a session's images into a stage folder: ``heatmaps.npz``
(``ids``, ``targets`` and one ``(N, S, S)`` map per method), ``images.npz`` (the pictures the model
saw, their labels and, on the concept world, the true object masks), ``predictions.csv``,
``overlays/<method>/<id>.png`` and ``manifest.json``. A finished folder is not redone.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import UserError
from ..core.layers import resolve_layer
from ..explanations import agreement, cams, lime
from ..explanations.agreement import HEATMAPS, IMAGES, PREDICTIONS, Agreement, BinarizeConfig
from ..io import artifacts
from ..io.schema import IMAGE_KEYS, LIME_PREDICTION_COLUMNS, PREDICTION_COLUMNS
from ..viz import explanations as pictures
from .session import Session


@dataclass
class Explained:
    """What ``run_cams`` or ``run_lime`` did: ``skipped`` when its folder was already complete for
    these settings (nothing was computed; the table and timings are read back from it)."""
    folder: Path
    skipped: bool
    predictions: pd.DataFrame           # predictions.csv
    seconds_per_image: dict[str, float]


@dataclass
class Compared:
    """What ``compare`` did: ``skipped`` when its folder was already complete (``agreement`` None)."""
    folder: Path
    skipped: bool
    agreement: Agreement | None


def class_to_explain(target: str | int) -> int | str | None:
    """``--target`` (``cli.target``: ``pred``, ``label`` or an index) as the configs take it: each
    image's prediction is None, as the manifests of earlier runs record it."""
    return None if target == "pred" else target


def check_target(session: Session, target: int | str | None) -> None:
    """A one-line error unless ``target`` (None, ``"label"`` or a class index) can be explained for
    every image of the session."""
    n = session.n_outputs
    if target is None:
        return
    if target == "label":
        unknown = [i for i, label in zip(session.images.ids, session.images.labels) if label < 0]
        if unknown:
            raise UserError(f"--target label explains each image's true class, but {len(unknown)} of the images "
                            f"have none (such as {unknown[0]}: photos carry no labels); use --target pred or a "
                            f"class index")
    elif not isinstance(target, int):
        raise UserError(f"--target must be 'pred', 'label' or a class index, got {target!r}")
    elif not 0 <= target < n:
        raise UserError(f"--target {target} is out of range: the model has {n} classes (0..{n - 1})")


def _start(session: Session, stage: str, config: dict, out: Path, overwrite: bool) -> tuple[dict, bool]:
    """The stage's manifest, and whether ``out`` is already complete for it (else it is open)."""
    # The images by their ids, not their count: photos have no count, and earlier runs recorded the ids.
    manifest = artifacts.make_manifest(
        stage, {**session.config(), "images": session.images.ids, **config},
        {"device": str(session.device), "batch_size": session.runtime.images_per_batch(session.device)},
        weights_path=session.loaded.weights["path"])
    return manifest, artifacts.open_output(out, manifest, overwrite) == "complete"


def _read_back(out: Path) -> Explained:
    table = artifacts.read_csv(out / PREDICTIONS, PREDICTION_COLUMNS, "predictions", dtype={"id": str})
    return Explained(out, True, table, artifacts.read_manifest(out).get("seconds_per_image", {}))


def _write_images(out: Path, session: Session, pixels: np.ndarray) -> None:
    """``images.npz``: ``ids``, ``pixels (N, S, S, 3)`` uint8, ``labels (N,)`` (-1: unknown) and, where
    known, ``objects (N, S, S)`` bool."""
    objects = session.images.objects(pixels.shape[1])
    arrays = dict(zip(IMAGE_KEYS, (np.array(session.images.ids), pixels, session.images.labels)))
    artifacts.write_npz(out / IMAGES, **arrays, **({} if objects is None else {"objects": objects}))


def _predictions(session: Session, target: np.ndarray, probability: np.ndarray, top1: np.ndarray) -> pd.DataFrame:
    """``PREDICTION_COLUMNS``: per image its id, label (-1: unknown), the class explained, its name
    and softmax probability, the top-1 prediction and its name."""
    names = np.array(session.class_names())
    return pd.DataFrame(dict(zip(PREDICTION_COLUMNS, (session.images.ids, session.images.labels, target,
                                                      names[target], probability, top1, names[top1]))))


def _finish(out: Path, manifest: dict, seconds: dict[str, float], n: int) -> dict[str, float]:
    per_image = {m: s / n for m, s in seconds.items()}
    manifest.update(complete=True, seconds_per_image={m: round(s, 4) for m, s in per_image.items()})
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    return per_image


def run_cams(session: Session, cfg: cams.CamConfig, out: str | Path, overwrite: bool = False) -> Explained:
    """CAM heatmaps of every method of ``cfg`` for the session's images into ``out`` (see the
    module's docstring; the overlays blend each map over its image in jet)."""
    out = Path(out)
    check_target(session, cfg.target)
    cfg = replace(cfg, layer=resolve_layer(session.spec, cfg.layer, session.model))   # a block name or a path
    pixels = session.images.pixels(session.spec)                               # (N, S, S, 3)
    cams.probe(session.model, session.spec, pixels, cfg, session.device)
    manifest, complete = _start(session, "cam_explain", vars(cfg), out, overwrite)
    if complete:
        return _read_back(out)
    result = cams.explain_images(session.model, session.spec, pixels, cfg,
                                 session.runtime.images_per_batch(session.device), session.device,
                                 session.images.labels)
    ids = session.images.ids
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    _write_images(out, session, pixels)
    artifacts.write_npz(out / HEATMAPS, ids=ids, targets=result.target, **result.maps)
    table = _predictions(session, result.target, result.probability, result.top1)
    artifacts.write_csv(out / PREDICTIONS, table)
    for m, maps in result.maps.items():
        for i, picture, heat in zip(ids, pixels, maps):
            artifacts.write_bytes(out / "overlays" / m / f"{i}.png", pictures.overlay_png(picture, heat))
    return Explained(out, False, table, _finish(out, manifest, result.seconds, len(ids)))


def run_lime(session: Session, cfg: lime.LimeConfig, out: str | Path, overwrite: bool = False) -> Explained:
    """LIME explanations of the session's images into ``out``: the stage folder (see the module's
    docstring; overlays of the mask) plus ``lime.npz`` (``labels``, ``label_heatmaps``, ``masks``,
    ``segments``) and ``parameters.json`` (every LIME setting)."""
    out = Path(out)
    check_target(session, cfg.target)
    if cfg.top_labels > session.n_outputs:
        raise UserError(f"--top_labels {cfg.top_labels} is more than the model's {session.n_outputs} classes")
    pixels = session.images.pixels(session.spec)                               # (N, S, S, 3)
    manifest, complete = _start(session, "lime_explain", {"methods": ["lime"], **cfg.parameters()}, out, overwrite)
    if complete:
        return _read_back(out)
    result = lime.explain_images(session.model, session.spec, pixels, cfg,
                                 session.runtime.images_per_batch(session.device), session.device,
                                 session.images.labels)
    ids, target = session.images.ids, result.labels[:, 0]
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    _write_images(out, session, pixels)
    artifacts.write_npz(out / HEATMAPS, ids=ids, targets=target, lime=result.heatmaps[:, 0])
    artifacts.write_npz(out / "lime.npz", labels=result.labels, label_heatmaps=result.heatmaps, masks=result.masks,
                        segments=result.segments)
    artifacts.write_json(out / "parameters.json", cfg.parameters())
    n = len(ids)
    fit = (result.segments.reshape(n, -1).max(1) + 1, result.masks.reshape(n, -1).mean(1), result.intercept,
           result.score, result.local_pred)
    table = _predictions(session, target, result.probability, result.top1).assign(
        **dict(zip(LIME_PREDICTION_COLUMNS, fit)))
    artifacts.write_csv(out / PREDICTIONS, table)
    for i, picture, mask in zip(ids, pixels, result.masks):
        artifacts.write_bytes(out / "overlays" / "lime" / f"{i}.png", pictures.mask_overlay_png(picture, mask))
    return Explained(out, False, table, _finish(out, manifest, {"lime": result.seconds}, n))


def compare(inputs: list[str | Path], cfg: BinarizeConfig, out: str | Path, overwrite: bool = False,
            figure_images: int = 8) -> Compared:
    """Agreement of the explanation folders ``inputs`` (which must explain the same images with the
    same model, for the same classes) into ``out``: ``pairwise_iou.csv``, ``pairwise_iou_mean.csv``,
    ``ground_truth.csv`` (concept world), ``summary.json``, ``grid.png`` (the first ``figure_images``
    images; 0: none) and ``manifest.json``."""
    if figure_images < 0:
        raise UserError(f"--figure_images must be 0 or more, got {figure_images}")
    out = Path(out)
    ex = agreement.load_explanations(inputs)
    first = next(iter(ex.manifests.values()))["config"]
    manifest = artifacts.make_manifest(
        "compare_explanations",
        {key: first[key] for key in ("model", "weights_sha256", "data", "images")} |
        {"methods": list(ex.maps), "binarize": cfg.how, "top": cfg.top,
         "heatmaps_sha256": agreement.input_hashes(inputs)},
        {}, inputs={f: m["stage"] for f, m in ex.manifests.items()})
    if artifacts.open_output(out, manifest, overwrite) == "complete":
        return Compared(out, True, None)
    ag = agreement.compare(ex, cfg)
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    artifacts.write_csv(out / "pairwise_iou.csv", ag.pairwise)
    artifacts.write_csv(out / "pairwise_iou_mean.csv", ag.pairwise_mean)
    if ag.ground_truth is not None:
        artifacts.write_csv(out / "ground_truth.csv", ag.ground_truth)
    artifacts.write_json(out / "summary.json", ag.summary)
    if figure_images:
        how = f"top {cfg.top:.0%}" if cfg.how == "top" else "Otsu"
        pictures.grid_figure(ex, ag, figure_images, out / "grid.png",
                             f"{first['model']}: heatmaps, binarised masks ({how}) in white"
                             + (", true object in green" if ex.objects is not None else ""))
    manifest["complete"] = True
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    return Compared(out, False, ag)
