"""The explanation stages: CAM heatmaps (``run_cams``), LIME (``run_lime``) and the agreement
between their folders (``compare``).

``run_cams`` and ``run_lime`` explain a session's images into a stage folder: ``heatmaps.npz``
(``ids``, ``targets`` and one ``(N, S, S)`` map per method), ``images.npz`` (the pictures the model
saw, their labels and, on the concept world, the true object masks), ``predictions.csv``,
``overlays/<method>/<id>.png``, for the CAMs ``masks/<method>/<id>.png`` (each map as an 8-bit
greyscale image, seed 003's mask export) and ``manifest.json``. A finished folder is not redone.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..core import distributed
from ..core.errors import UserError
from ..core.layers import resolve_layer
from ..data.images import pixel_transform
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
    rank = distributed.group(session.device)
    manifest, complete = distributed.decide(lambda: _start(session, "cam_explain", vars(cfg), out, overwrite))
    if complete:
        return _read_back(out)
    # Under torchrun each rank explains every N-th batch; rank 0 joins them in order and writes.
    size = session.runtime.images_per_batch(session.device)
    labels = session.images.labels

    def explain(a: int, b: int) -> cams.CamResult:
        return cams.explain_images(session.model, session.spec, pixels[a:b], cfg, size, session.device,
                                   None if labels is None else labels[a:b])
    parts = distributed.over_batches(rank, len(pixels), size, explain)
    if not rank.main:
        return distributed.broadcast(None)
    result = cams.join(parts)
    ids = session.images.ids
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    _write_images(out, session, pixels)
    artifacts.write_npz(out / HEATMAPS, ids=ids, targets=result.target, **result.maps)
    table = _predictions(session, result.target, result.probability, result.top1)
    artifacts.write_csv(out / PREDICTIONS, table)
    for m, maps in result.maps.items():
        for i, picture, heat in zip(ids, pixels, maps):
            artifacts.write_bytes(out / "overlays" / m / f"{i}.png", pictures.overlay_png(picture, heat))
            artifacts.write_bytes(out / "masks" / m / f"{i}.png", pictures.grey_png(heat))
    return distributed.broadcast(Explained(out, False, table, _finish(out, manifest, result.seconds, len(ids))))


def reference_masks(session: Session, folder: str | Path | None, size: int) -> np.ndarray | None:
    """``(N, S, S)`` bool reference masks of the session's images: the files ``<id>.<ext>`` of
    ``folder`` (non-zero = object; through the pictures' resize and crop, then above half), or
    without a folder the data's own object masks (the concept world's); None if neither."""
    if folder is None:
        return session.images.objects(size)
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"reference mask folder {folder} not found")
    files = {p.stem: p for p in folder.iterdir() if p.is_file()}
    missing = [i for i in session.images.ids if i not in files]
    if missing:
        raise UserError(f"{folder} has no mask for image {missing[0]!r} (a file named {missing[0]}.png)")
    to_pixels = pixel_transform(session.spec, session.images.source.square)
    masks = []
    for i in session.images.ids:
        with Image.open(files[i]) as im:
            grey = np.asarray(to_pixels(im.convert("L").convert("RGB")))[..., 0]
        masks.append(grey > 127)
    return np.stack(masks)


def grading(ids: Sequence[str], masks: np.ndarray, references: np.ndarray, times: np.ndarray,
            params: dict) -> dict:
    """grading.json, as seed 003 graded LIME: ``avg_iou`` of LIME's masks with the references (an
    image where both are empty is left out) and ``avg_time`` (seconds per image), then per image."""
    m, r = masks.astype(bool).reshape(len(ids), -1), references.astype(bool).reshape(len(ids), -1)
    union = (m | r).sum(1)
    iou = np.where(union > 0, (m & r).sum(1) / np.maximum(union, 1), np.nan)
    rows = [{"id": i, "iou": None if np.isnan(v) else float(v), "time": float(t), **params.get(i, {})}
            for i, v, t in zip(ids, iou, times)]
    return {"avg_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else None,
            "avg_time": float(np.mean(times)), "images": rows}


def run_lime(session: Session, cfg: lime.LimeConfig, out: str | Path, overwrite: bool = False,
             params: dict | None = None, references: str | Path | None = None) -> Explained:
    """LIME explanations of the session's images into ``out``: the stage folder (see the module's
    docstring; overlays of the mask) plus ``lime.npz`` (``labels``, ``label_heatmaps``, ``masks``,
    ``segments``), ``parameters.json`` (every LIME setting, and the per-image ``params``: image id or
    file name -> settings) and, where there are reference masks (``references``, a folder, or the
    data's object masks), ``grading.json``."""
    out = Path(out)
    check_target(session, cfg.target)
    params = params or {}
    configs = lime.per_image_configs(cfg, session.images.ids, params)
    top = max(c.top_labels for c in configs)
    if top > session.n_outputs:
        raise UserError(f"--top_labels {top} is more than the model's {session.n_outputs} classes")
    pixels = session.images.pixels(session.spec)                               # (N, S, S, 3)
    refs = reference_masks(session, references, pixels.shape[1])
    per_image = {session.images.ids[k]: {f: getattr(c, f) for f in lime.PER_IMAGE if getattr(c, f) != getattr(cfg, f)}
                 for k, c in enumerate(configs) if c != cfg}
    config = {"methods": ["lime"], **cfg.parameters(), "per_image": per_image,
              "references": None if references is None else str(Path(references).resolve())}
    rank = distributed.group(session.device)
    manifest, complete = distributed.decide(lambda: _start(session, "lime_explain", config, out, overwrite))
    if complete:
        return _read_back(out)
    # Under torchrun each rank explains every N-th batch (each image's LIME has its own seed);
    # rank 0 joins them in order and writes.
    size = session.runtime.images_per_batch(session.device)
    labels = session.images.labels

    def explain(a: int, b: int) -> lime.LimeResult:
        return lime.explain_images(session.model, session.spec, pixels[a:b], cfg, size, session.device,
                                   None if labels is None else labels[a:b], configs[a:b])
    parts = distributed.over_batches(rank, len(pixels), size, explain)
    if not rank.main:
        return distributed.broadcast(None)
    result = lime.join(parts)
    ids, target = session.images.ids, result.labels[:, 0]
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    _write_images(out, session, pixels)
    artifacts.write_npz(out / HEATMAPS, ids=ids, targets=target, lime=result.heatmaps[:, 0])
    artifacts.write_npz(out / "lime.npz", labels=result.labels, label_heatmaps=result.heatmaps, masks=result.masks,
                        segments=result.segments)
    artifacts.write_json(out / "parameters.json", {**cfg.parameters(), "per_image": per_image})
    if refs is not None:
        artifacts.write_json(out / "grading.json", grading(ids, result.masks, refs, result.times, per_image))
    n = len(ids)
    fit = (result.segments.reshape(n, -1).max(1) + 1, result.masks.reshape(n, -1).mean(1), result.intercept,
           result.score, result.local_pred)
    table = _predictions(session, target, result.probability, result.top1).assign(
        **dict(zip(LIME_PREDICTION_COLUMNS, fit)))
    artifacts.write_csv(out / PREDICTIONS, table)
    for i, picture, mask in zip(ids, pixels, result.masks):
        artifacts.write_bytes(out / "overlays" / "lime" / f"{i}.png", pictures.mask_overlay_png(picture, mask))
    return distributed.broadcast(Explained(out, False, table, _finish(out, manifest, {"lime": result.seconds}, n)))


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
