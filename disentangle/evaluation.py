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

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from . import artifacts
from .attribution import METHODS, attribute
from .errors import UserError
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


def evaluate_batch(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, cfg: EvalConfig,
                   ig_internal_batch: int | None = None) -> dict[str, torch.Tensor]:
    """Everything the stage records for one batch ``x (B, C, H, W)``, ``labels (B,)``.

    Returns device tensors: ``pred, target, top1, top5, confidence`` ``(B,)`` and per method
    ``{m}_attr (B, C, H, W)``, ``{m}_sparsity``, ``{m}_faithfulness`` and for IG ``{m}_delta`` ``(B,)``.
    """
    with torch.no_grad():
        logits = model(x).float()
    pred = logits.argmax(1)
    target = pred if cfg.target == "pred" else labels
    confidence = logits.softmax(1).gather(1, target[:, None]).squeeze(1)
    out = {"pred": pred, "target": target, "top1": pred == labels, "top5": topk_correct(logits, labels, 5),
           "confidence": confidence}
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
        ig_internal_batch: int | None = None, desc: str = "attributions") -> None:
    """Evaluate every batch of ``loader`` not yet on disk under ``out_dir``, writing as it goes."""
    parts = out_dir / "parts"
    for b, (x, labels, indices) in enumerate(tqdm(loader, desc=desc, unit="batch")):
        if (parts / f"batch_{b:05d}.npz").exists():
            continue
        x, labels = x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        res = {k: v.cpu().numpy() for k, v in evaluate_batch(model, x, labels, cfg, ig_internal_batch).items()}
        ids = indices.numpy()
        for m in cfg.methods:
            extra = {"delta": res[f"{m}_delta"]} if f"{m}_delta" in res else {}
            artifacts.write_npz(out_dir / "attributions" / m / f"batch_{b:05d}.npz", indices=ids,
                                targets=res["target"], attributions=res.pop(f"{m}_attr"), **extra)
        # Written last: its presence marks the batch as done.
        artifacts.write_npz(parts / f"batch_{b:05d}.npz", index=ids, label=labels.cpu().numpy(), **res)


def finalize(out_dir: Path, cfg: EvalConfig) -> dict:
    """Gather the per-batch scalars into ``per_image.csv``, ``metrics.json``, ``accuracy.json``."""
    parts = sorted((out_dir / "parts").glob("batch_*.npz"))
    columns: dict[str, list[np.ndarray]] = {}
    for p in parts:
        with np.load(p) as z:
            for k in z.files:
                columns.setdefault(k, []).append(z[k])
    frame = pd.DataFrame({k: np.concatenate(v) for k, v in columns.items()})
    lead = ["index", "label", "target", "pred", "top1", "top5", "confidence"]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    artifacts.write_csv(out_dir / "per_image.csv", frame)

    metrics = {"metric": cfg.metric, "settings": asdict(cfg), "n_images": len(frame)}
    for m in cfg.methods:
        entry = {k: summarize(frame[f"{m}_{k}"]) for k in ("sparsity", "faithfulness")}
        if f"{m}_delta" in frame:
            d = frame[f"{m}_delta"].abs()
            entry["convergence_delta_abs"] = {"mean": float(d.mean()), "max": float(d.max())}
        metrics[m] = entry
    artifacts.write_json(out_dir / "metrics.json", metrics)
    accuracy = {"top1": float(frame["top1"].mean()), "top5": float(frame["top5"].mean()), "n_images": len(frame)}
    artifacts.write_json(out_dir / "accuracy.json", accuracy)
    shutil.rmtree(out_dir / "parts")
    return {"metrics": metrics, "accuracy": accuracy}

