"""The attribution evaluation loop of every attribution stage: the baseline, blocked runs, controls,
per-class analysis and figures.

Per batch, on the model's device: logits, target class, top-1/top-5 hits, attributions for each
method and channel mask from the engine's shared pass (the baseline is the mask that blocks
nothing), sparsity and faithfulness (the masked images of every method and mask in one forward pass).
Nothing is copied to the host inside a batch: each finished batch is copied to the CPU once and
written atomically (attributions per method, plus the per-image scalars), so memory does not grow
with the number of images and an interrupted run resumes at the first missing batch. When all
batches are done, the per-image scalars are gathered into ``per_image.csv``, ``metrics.json`` and
``accuracy.json``.

``precision`` ``bf16``/``fp16`` runs the model's forward passes under autocast (mixed precision);
inputs, gradients with respect to them, attributions and metrics stay fp32.
"""
from __future__ import annotations

import itertools

import shutil
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.profiler import record_function
from tqdm import tqdm

from ..io import artifacts
from .engine import METHODS, masked_attributions
from ..core.runtime import AutoBatch
from ..core.errors import UserError
from ..core.hooks import Hook, hooks
from .metrics import METRICS, PROTOCOLS, faithfulness, sparsity, summarize, topk_correct

TARGETS = ("pred", "label")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
R = TypeVar("R")


@dataclass(frozen=True)
class EvalConfig:
    """What an attribution evaluation computes (all of it is recorded in the manifest)."""
    methods: tuple[str, ...] = METHODS
    metric: str = "patch"
    ig_steps: int = 50
    mass: float = 0.9            # sparsity: share of the attribution mass to cover
    drop_fraction: float = 0.1   # faithfulness: share of pixels/patches to mask
    mask_value: float = 0.0      # faithfulness: value of masked inputs, in normalised input space
    target: str | int = "label"  # attribute the true label (the original), the predicted class or one class
    precision: str = "fp32"      # forward passes in fp32, or under bf16/fp16 autocast
    protocol: str = "original"   # metric definitions: the seed's ("original") or this project's

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise UserError(f"unknown method {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}")
        if self.metric not in METRICS:
            raise UserError(f"unknown metric {self.metric!r}; choose from {', '.join(METRICS)}")
        if self.ig_steps < 1:
            raise UserError(f"--ig_steps must be at least 1, got {self.ig_steps}")
        if not 0 < self.mass <= 1:
            raise UserError(f"--mass must be in (0, 1], got {self.mass}")
        if not 0 < self.drop_fraction < 1:
            raise UserError(f"--drop_fraction must be in (0, 1), got {self.drop_fraction}")
        if self.target not in TARGETS and not (isinstance(self.target, int) and self.target >= 0):
            raise UserError(f"unknown target {self.target!r}; choose from {', '.join(TARGETS)} or a class index")
        if self.protocol not in PROTOCOLS:
            raise UserError(f"unknown protocol {self.protocol!r}; choose from {', '.join(PROTOCOLS)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")

    def recorded(self) -> dict:
        """The settings for a manifest's config. fp32 is left out, so that runs made before the
        precision setting existed still match."""
        return {k: v for k, v in asdict(self).items() if not (k == "precision" and v == "fp32")}

    @classmethod
    def from_recorded(cls, config: dict) -> "EvalConfig":
        """The settings recorded in a manifest's config (by ``recorded``); a manifest without a
        protocol predates the original protocol, so it used the extended one."""
        config = {"protocol": "extended", **config}
        return cls(**{k: tuple(config[k]) if k == "methods" else config[k]
                      for k in cls.__dataclass_fields__ if k in config})


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast context of a precision (nothing for fp32)."""
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def predictions(logits: torch.Tensor, labels: torch.Tensor, cfg: EvalConfig,
                target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``pred, target, top1, top5, confidence`` ``(B,)`` of a batch from its ``logits (B, K)``;
    ``confidence`` is the softmax probability of the target class (``target`` given, else chosen by
    ``cfg.target``)."""
    logits = logits.float()
    pred = logits.argmax(1)
    if target is None:
        target = {"pred": pred, "label": labels}.get(cfg.target)
        target = torch.full_like(pred, cfg.target) if target is None else target
    return {"pred": pred, "target": target, "top1": pred == labels, "top5": topk_correct(logits, labels, 5),
            "confidence": logits.softmax(1).gather(1, target[:, None]).squeeze(1)}


def _in_parts(auto: AutoBatch | None, n: int, ig_rows: int | None,
              evaluate: Callable[[slice, int | None], R]) -> R:
    """``evaluate(images, ig_rows)`` for ``n`` images: at once, or with ``auto`` (``--batch_size
    auto``) in parts of ``auto.size`` images and proportionally fewer IG rows per pass, the parts'
    results concatenated along the image dimension."""
    if auto is None:
        return evaluate(slice(0, n), ig_rows)
    return auto(lambda size: _cat([evaluate(slice(s, s + size), auto.scaled(ig_rows)) for s in range(0, n, size)]))


def _cat(parts: list):
    """Concatenate per-part results: tensors ``(b, ...)``, or dicts / lists of them."""
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], dict):
        return {k: _cat([p[k] for p in parts]) for k in parts[0]}
    if isinstance(parts[0], list):
        return [_cat(list(p)) for p in zip(*parts)]
    return torch.cat(parts)


ATTRIBUTION_FORMATS = ("npy", "npz")
"""How attribution maps are kept: ``npy`` one ``attributions/<method>_<i>.npy`` ``(C, H, W)``
float32 per image, ``i`` its position in the run (the original's files); ``npz`` one
``attributions/<method>/batch_<b>.npz`` per batch (``indices``, ``targets``, ``attributions
(B, C, H, W)``, for IG ``delta``), compact and quicker to write."""


def _write_batch(out_dir: Path, b: int, start: int, indices: torch.Tensor, labels: torch.Tensor,
                 res: dict[str, torch.Tensor], methods: Sequence[str], attribution_format: str | None) -> None:
    """One batch's artifacts (its first image is the run's ``start``-th): the results are copied to
    the host here, once per batch."""
    res = {k: v.cpu().numpy() for k, v in res.items()}
    ids = indices.numpy()
    for m in methods:
        attr = res.pop(f"{m}_attr", None)
        if attr is None or attribution_format is None:
            continue
        if attribution_format == "npy":
            for j, a in enumerate(attr):
                artifacts.write_npy(out_dir / "attributions" / f"{m}_{start + j}.npy", a)
        else:
            extra = {"delta": res[f"{m}_delta"]} if f"{m}_delta" in res else {}
            artifacts.write_npz(out_dir / "attributions" / m / f"batch_{b:05d}.npz", indices=ids,
                                targets=res["target"], attributions=attr, **extra)
    # Written last: its presence marks the batch as done.
    artifacts.write_npz(out_dir / "parts" / f"batch_{b:05d}.npz", index=ids, label=labels.numpy(), **res)


def evaluate_masks(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None,
                   cfg: EvalConfig, block: str, blocked: torch.Tensor, ig_internal_batch: int | None = None,
                   keep_maps: bool = False, stem: Sequence[str] = (), plain: bool = False
                   ) -> list[dict[str, torch.Tensor]]:
    """Everything a stage records for one batch ``x (B, C, H, W)``, ``labels (B,)``, for every
    channel mask of ``blocked (M, Cb)`` of ``block`` (True: the channel's gradient path is detached;
    a mask of no channels is the plain attribution).

    ``target (B,)``, when given, is the class to explain (a blocked run explains the baseline's
    targets); otherwise ``cfg.target`` decides. The forward pass is the same for every mask, so
    predictions are computed once; attributions come from one shared pass
    (``engine.masked_attributions``), and the faithfulness images of every mask go through the
    model together (``ig_internal_batch`` rows per pass). ``stem``: the model's stem
    (``ModelSpec.stem``), run once per image instead of once per IG step; ``plain``: the engine
    without its speed tricks.

    Returns one dict of device tensors per mask: ``pred, target, top1, top5, confidence`` ``(B,)``
    and per method ``{m}_sparsity``, ``{m}_faithfulness`` and for IG ``{m}_delta`` ``(B,)``, with
    ``keep_maps`` also the attribution maps ``{m}_attr (B, C, H, W)``.
    """
    with autocast(x.device, cfg.precision):
        with torch.no_grad():
            logits = model(x)
        shared = predictions(logits, labels, cfg, target)
        target, confidence = shared["target"], shared["confidence"]
        out = [dict(shared) for _ in range(len(blocked))]
        keep = (~blocked).to(x.device, torch.float32)
        maps = masked_attributions(model, x, target, cfg.methods, block, keep, cfg.ig_steps, ig_internal_batch, stem,
                                   logits, plain)
        # The original always measures faithfulness on the clean image's predicted class.
        faith_class, p_faith = target, confidence
        if cfg.protocol == "original":
            faith_class = shared["pred"]
            p_faith = logits.float().softmax(1).gather(1, faith_class[:, None]).squeeze(1)
        for m, (attr, delta) in maps.items():
            with record_function("engine: metrics"):
                spars = sparsity(attr.flatten(0, 1), cfg.metric, cfg.mass, cfg.protocol).view(len(blocked), -1)
                drops = faithfulness(model, x, attr, faith_class, cfg.metric, cfg.drop_fraction, cfg.mask_value,
                                     p_faith, ig_internal_batch, cfg.protocol)             # (M, B)
            for j, res in enumerate(out):
                res[f"{m}_sparsity"], res[f"{m}_faithfulness"] = spars[j], drops[j]
                if delta is not None:
                    res[f"{m}_delta"] = delta[j]
                if keep_maps:
                    res[f"{m}_attr"] = attr[j]
    return out


def run(model: nn.Module, loader, cfg: EvalConfig, block: str, cells: Sequence[tuple[Path, torch.Tensor]],
        device: torch.device, targets: dict[int, int] | None = None, ig_internal_batch: int | None = None,
        desc: str = "attributions", attribution_format: str | None = None, auto: AutoBatch | None = None,
        stem: Sequence[str] = (), plain: bool = False, fwd_hooks: Sequence[Hook] = (),
        batches: Sequence[int] | None = None) -> None:
    """Evaluate every batch of ``loader`` not yet on disk, for many ``(out_dir, blocked (Cb,))``
    cells of one block in one shared pass, writing each cell's per-batch parts as it goes (and with
    ``attribution_format``, one of ``ATTRIBUTION_FORMATS``, its maps).

    ``targets`` maps data-set index -> class to explain (None: ``cfg.target`` decides);
    ``fwd_hooks`` are installed around each batch (``zero`` mode ablates the cluster's channels
    with one; its cell then blocks nothing more); ``auto`` (``--batch_size auto``) backs off on
    out-of-memory by evaluating each batch in smaller parts; ``stem``, ``plain``: as in
    ``evaluate_masks``. ``batches``: the batch numbers the loader yields (a rank's shard, from a
    loader made with the same numbers; None: every batch), which name the parts.
    """
    if attribution_format not in (None, *ATTRIBUTION_FORMATS):
        raise UserError(f"unknown attribution format {attribution_format!r}; "
                        f"choose from {', '.join(ATTRIBUTION_FORMATS)}")
    blocked = torch.stack([mask for _, mask in cells]).to(device)
    numbers = itertools.count() if batches is None else iter(batches)
    # Each batch's first position in the run: from a DataLoader's batches (a rank's shard starts
    # anywhere), else counted along a plain sequence of batches.
    sampler = getattr(loader, "batch_sampler", None)
    firsts = iter(chunk[0] for chunk in sampler) if sampler is not None else None
    start = 0
    for b, (x, labels, indices) in zip(numbers, tqdm(loader, desc=desc, unit="batch")):
        first = next(firsts) if firsts is not None else start
        start = first + len(x)
        name = f"batch_{b:05d}.npz"
        if all((out / "parts" / name).exists() for out, _ in cells):
            continue
        x_dev, labels_dev = x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        target = None if targets is None else torch.tensor([targets[int(i)] for i in indices], device=device)
        with hooks(model, fwd_hooks):
            results = _in_parts(auto, len(x), ig_internal_batch, lambda i, rows: evaluate_masks(
                model, x_dev[i], labels_dev[i], None if target is None else target[i], cfg, block, blocked, rows,
                keep_maps=attribution_format is not None, stem=stem, plain=plain))
        for (out, _), res in zip(cells, results):
            _write_batch(out, b, first, indices, labels, res, cfg.methods, attribution_format)


def finalize(out_dir: Path, cfg: EvalConfig, baseline: pd.DataFrame | None = None, whole: dict | None = None,
             extra: dict | None = None) -> dict:
    """Gather the per-batch scalars into ``per_image.csv``, ``metrics.json``, ``accuracy.json``.

    ``whole``: the accuracy over the whole data set (``{"top1", "top5", "n_images"}``), then the
    accuracy file's leading keys, with the run's images' own under ``images``; ``extra``: keys
    added to ``metrics.json`` after the methods' entries.

    With ``baseline`` (the baseline's ``per_image.csv`` for the same images), every metric also gets
    ``<m>_<metric>_baseline`` and ``<m>_<metric>_delta`` (this run minus baseline) columns and summaries.
    """
    parts = sorted((out_dir / "parts").glob("batch_*.npz"))
    columns: dict[str, list[np.ndarray]] = {}
    for p in parts:
        with np.load(p) as z:
            for k in z.files:
                columns.setdefault(k, []).append(z[k])
    frame = pd.DataFrame({k: np.concatenate(v) for k, v in columns.items()})
    lead = ["index", "label", "target", "pred", "top1", "top5", "confidence"]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    if baseline is not None:
        base = baseline.set_index("index").loc[frame["index"]]
        for m in cfg.methods:
            for k in ("sparsity", "faithfulness"):
                frame[f"{m}_{k}_baseline"] = base[f"{m}_{k}"].to_numpy()
                frame[f"{m}_{k}_delta"] = frame[f"{m}_{k}"] - frame[f"{m}_{k}_baseline"]
    artifacts.write_csv(out_dir / "per_image.csv", frame)

    # The original's keys first (per method sparsity_mean, sparsity_std, faithfulness_mean,
    # faithfulness_std; accuracy_top1 for a blocked run); every top-level value of a baseline's file
    # is a dict, as the original's collect_metrics.py expects.
    ddof = 0 if cfg.protocol == "original" else 1
    metrics: dict = {}
    for m in cfg.methods:
        entry = {}
        for part in ("", "_baseline", "_delta") if baseline is not None else ("",):
            for k in ("sparsity", "faithfulness"):
                s = summarize(frame[f"{m}_{k}{part}"], ddof)
                entry[f"{k}{part}_mean"], entry[f"{k}{part}_std"] = s["mean"], s["std"]
        if f"{m}_delta" in frame:
            d = frame[f"{m}_delta"].abs()
            entry["convergence_delta_abs_mean"], entry["convergence_delta_abs_max"] = float(d.mean()), float(d.max())
        metrics[m] = entry
    metrics.update(extra or {})
    if baseline is not None:
        metrics["accuracy_top1"] = float(frame["top1"].mean())
    metrics["settings"] = {**asdict(cfg), "n_images": len(frame), "std_ddof": ddof}
    artifacts.write_json(out_dir / "metrics.json", metrics)
    accuracy = {"top1": float(frame["top1"].mean()), "top5": float(frame["top5"].mean()), "n_images": len(frame)}
    if whole is not None:
        accuracy = {**whole, "over": "the whole data set", "images": accuracy}
    if baseline is not None:
        accuracy.update(top1_baseline=float(base["top1"].mean()), top5_baseline=float(base["top5"].mean()))
    artifacts.write_json(out_dir / "accuracy.json", accuracy)
    shutil.rmtree(out_dir / "parts")
    return {"metrics": metrics, "accuracy": accuracy}


def read_result(out_dir: Path) -> dict:
    """``finalize``'s result of a finished run, read back from its ``metrics.json`` and ``accuracy.json``."""
    return {"metrics": artifacts.read_json(Path(out_dir) / "metrics.json", "metrics"),
            "accuracy": artifacts.read_json(Path(out_dir) / "accuracy.json", "accuracy")}
