"""The attribution evaluation loop shared by the baseline and (later) the filtered stages.

Per batch, on the model's device: logits, target class, top-1/top-5 hits, attributions for each
method, sparsity and faithfulness. Each finished batch is copied to the CPU once and written
atomically (attributions per method, plus the per-image scalars), so memory does not grow with the
number of images and an interrupted run resumes at the first missing batch. When all batches are
done, the per-image scalars are gathered into ``per_image.csv``, ``metrics.json`` and
``accuracy.json``.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from . import artifacts
from .attribution import METHODS, attribute, masked_attributions
from .errors import UserError
from .hooks import Hook, hooks
from .metrics import METRICS, faithfulness, sparsity, summarize, topk_correct

TARGETS = ("pred", "label")


@dataclass(frozen=True)
class EvalConfig:
    """What an attribution evaluation computes (all of it is recorded in the manifest)."""
    methods: tuple[str, ...] = METHODS
    metric: str = "patch"
    ig_steps: int = 50
    mass: float = 0.9            # sparsity: share of the attribution mass to cover
    drop_fraction: float = 0.1   # faithfulness: share of pixels/patches to mask
    mask_value: float = 0.0      # faithfulness: value of masked inputs, in normalised input space
    target: str = "pred"         # attribute the predicted class or the true label

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise UserError(f"unknown method {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}")
        if self.metric not in METRICS:
            raise UserError(f"unknown metric {self.metric!r}; choose from {', '.join(METRICS)}")
        if self.ig_steps < 1:
            raise UserError(f"--ig-steps must be at least 1, got {self.ig_steps}")
        if not 0 < self.mass <= 1:
            raise UserError(f"--mass must be in (0, 1], got {self.mass}")
        if not 0 < self.drop_fraction < 1:
            raise UserError(f"--drop-fraction must be in (0, 1), got {self.drop_fraction}")
        if self.target not in TARGETS:
            raise UserError(f"unknown target {self.target!r}; choose from {', '.join(TARGETS)}")


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, cfg: EvalConfig,
                target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``pred, target, top1, top5, confidence`` ``(B,)`` of a batch; ``confidence`` is the softmax
    probability of the target class (``target`` given, else chosen by ``cfg.target``)."""
    logits = model(x).float()
    pred = logits.argmax(1)
    if target is None:
        target = pred if cfg.target == "pred" else labels
    return {"pred": pred, "target": target, "top1": pred == labels, "top5": topk_correct(logits, labels, 5),
            "confidence": logits.softmax(1).gather(1, target[:, None]).squeeze(1)}


def evaluate_batch(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, cfg: EvalConfig,
                   ig_internal_batch: int | None = None, target: torch.Tensor | None = None
                   ) -> dict[str, torch.Tensor]:
    """Everything the stage records for one batch ``x (B, C, H, W)``, ``labels (B,)``.

    ``target (B,)``, when given, is the class to explain (a filtered run explains the baseline's
    targets); otherwise ``cfg.target`` decides.

    Returns device tensors: ``pred, target, top1, top5, confidence`` ``(B,)`` and per method
    ``{m}_attr (B, C, H, W)``, ``{m}_sparsity``, ``{m}_faithfulness`` and for IG ``{m}_delta`` ``(B,)``.
    """
    out = predictions(model, x, labels, cfg, target)
    target, confidence = out["target"], out["confidence"]
    for m in cfg.methods:
        attr, delta = attribute(model, x, target, m, cfg.ig_steps, ig_internal_batch)
        out[f"{m}_attr"] = attr
        if delta is not None:
            out[f"{m}_delta"] = delta
        out[f"{m}_sparsity"] = sparsity(attr, cfg.metric, cfg.mass)
        out[f"{m}_faithfulness"] = faithfulness(model, x, attr, target, cfg.metric, cfg.drop_fraction,
                                                cfg.mask_value, p_clean=confidence)
    return out


def run(model: nn.Module, loader, cfg: EvalConfig, out_dir: Path, device: torch.device,
        ig_internal_batch: int | None = None, desc: str = "attributions", fwd_hooks: Sequence[Hook] = (),
        targets: dict[int, int] | None = None, save_attributions: bool = True) -> None:
    """Evaluate every batch of ``loader`` not yet on disk under ``out_dir``, writing as it goes.

    ``fwd_hooks`` are installed around each batch (e.g. a gradient-blocking hook); ``targets``
    maps data-set index -> class to explain.
    """
    parts = out_dir / "parts"
    for b, (x, labels, indices) in enumerate(tqdm(loader, desc=desc, unit="batch")):
        if (parts / f"batch_{b:05d}.npz").exists():
            continue
        x, labels = x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        target = None if targets is None else torch.tensor([targets[int(i)] for i in indices], device=device)
        with hooks(model, fwd_hooks):
            res = evaluate_batch(model, x, labels, cfg, ig_internal_batch, target)
        res = {k: v.cpu().numpy() for k, v in res.items()}
        ids = indices.numpy()
        for m in cfg.methods:
            attr = res.pop(f"{m}_attr")
            if save_attributions:
                extra = {"delta": res[f"{m}_delta"]} if f"{m}_delta" in res else {}
                artifacts.write_npz(out_dir / "attributions" / m / f"batch_{b:05d}.npz", indices=ids,
                                    targets=res["target"], attributions=attr, **extra)
        # Written last: its presence marks the batch as done.
        artifacts.write_npz(parts / f"batch_{b:05d}.npz", index=ids, label=labels.cpu().numpy(), **res)


def evaluate_masks(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, target: torch.Tensor,
                   cfg: EvalConfig, block: str, blocked: torch.Tensor, ig_internal_batch: int | None = None
                   ) -> list[dict[str, torch.Tensor]]:
    """``evaluate_batch`` for every channel mask of ``blocked (M, Cb)`` at once (detach semantics).

    The forward pass is the same for every mask, so predictions are computed once; attributions
    come from one shared pass (``attribution.masked_attributions``). Returns one dict per mask with
    the keys of ``evaluate_batch`` except the attribution maps.
    """
    shared = predictions(model, x, labels, cfg, target)
    confidence = shared["confidence"]
    out = [dict(shared) for _ in range(len(blocked))]
    keep = (~blocked).to(x.device, torch.float32)
    for m in cfg.methods:
        attr, delta = masked_attributions(model, x, target, m, block, keep, cfg.ig_steps, ig_internal_batch)
        spars = sparsity(attr.flatten(0, 1), cfg.metric, cfg.mass).view(len(blocked), -1)   # (M, B)
        for j, res in enumerate(out):
            res[f"{m}_sparsity"] = spars[j]
            res[f"{m}_faithfulness"] = faithfulness(model, x, attr[j], target, cfg.metric, cfg.drop_fraction,
                                                    cfg.mask_value, p_clean=confidence)
            if delta is not None:
                res[f"{m}_delta"] = delta[j]
    return out


def run_shared(model: nn.Module, loader, cfg: EvalConfig, block: str, cells: Sequence[tuple[Path, torch.Tensor]],
               device: torch.device, targets: dict[int, int], ig_internal_batch: int | None = None,
               desc: str = "shared pass") -> None:
    """Like ``run`` with a detach hook, for many ``(out_dir, blocked (Cb,))`` cells of one block in
    one pass over the images. Each cell gets the same per-batch parts as ``run`` writes (no maps)."""
    blocked = torch.stack([mask for _, mask in cells])
    for b, (x, labels, indices) in enumerate(tqdm(loader, desc=desc, unit="batch")):
        name = f"batch_{b:05d}.npz"
        if all((out / "parts" / name).exists() for out, _ in cells):
            continue
        x, labels = x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        target = torch.tensor([targets[int(i)] for i in indices], device=device)
        results = evaluate_masks(model, x, labels, target, cfg, block, blocked, ig_internal_batch)
        for (out, _), res in zip(cells, results):
            artifacts.write_npz(out / "parts" / name, index=indices.numpy(), label=labels.cpu().numpy(),
                                **{k: v.cpu().numpy() for k, v in res.items()})


def finalize(out_dir: Path, cfg: EvalConfig, baseline: pd.DataFrame | None = None) -> dict:
    """Gather the per-batch scalars into ``per_image.csv``, ``metrics.json``, ``accuracy.json``.

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

    metrics = {"metric": cfg.metric, "settings": asdict(cfg), "n_images": len(frame)}
    for m in cfg.methods:
        entry = {}
        for k in ("sparsity", "faithfulness"):
            entry[k] = summarize(frame[f"{m}_{k}"])
            if baseline is not None:
                entry[f"{k}_baseline"] = summarize(frame[f"{m}_{k}_baseline"])
                entry[f"{k}_delta"] = summarize(frame[f"{m}_{k}_delta"])
        if f"{m}_delta" in frame:
            d = frame[f"{m}_delta"].abs()
            entry["convergence_delta_abs"] = {"mean": float(d.mean()), "max": float(d.max())}
        metrics[m] = entry
    artifacts.write_json(out_dir / "metrics.json", metrics)
    accuracy = {"top1": float(frame["top1"].mean()), "top5": float(frame["top5"].mean()), "n_images": len(frame)}
    if baseline is not None:
        accuracy.update(top1_baseline=float(base["top1"].mean()), top5_baseline=float(base["top5"].mean()))
    artifacts.write_json(out_dir / "accuracy.json", accuracy)
    shutil.rmtree(out_dir / "parts")
    return {"metrics": metrics, "accuracy": accuracy}
