"""Per-class baseline and filtered metrics: every class's images through the same batched engine.

Each class's images are evaluated in their own batches, so a class's numbers do not depend on
which other classes share the run: ranks of a distributed run give exactly the rows of a single
process. Finished classes are written as parts, so an interrupted run resumes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..io import artifacts
from ..data.images import IndexedSubset
from ..attribution.evaluation import EvalConfig, evaluate_batch, evaluate_masks, predictions
from ..core.hooks import block_hook, hooks

MEASURES = ("sparsity", "faithfulness")


def class_images(targets: np.ndarray, cls: int, per_class: int) -> np.ndarray:
    """Up to ``per_class`` images of class ``cls``, evenly spread over its images."""
    members = np.flatnonzero(np.asarray(targets) == cls)
    q = min(per_class, len(members))
    return members[np.linspace(0, len(members), q, endpoint=False).astype(int)]


def analyse_class(model: nn.Module, dataset, indices: np.ndarray, cfg: EvalConfig, block: str,
                  blocked: torch.Tensor, mode: str, batch_size: int, device: torch.device,
                  ig_batch: int | None, stem: Sequence[str] = ()) -> dict[str, float]:
    """Means over one class's images of accuracy and, per method, sparsity and faithfulness of the
    baseline and of the run with the ``blocked (C,)`` channels of ``block`` blocked (``mode``).
    ``stem``: the model's (``ModelSpec.stem``), for the shared pass of ``mode="detach"``."""
    sums: dict[str, torch.Tensor] = {}     # on the device: one copy to the host per class, not per batch
    for x, labels, _ in DataLoader(IndexedSubset(dataset, indices), batch_size=batch_size):
        x, labels = x.to(device), labels.to(device)
        target = predictions(model(x), labels, cfg)["target"]
        if mode == "detach":
            base, filt = evaluate_masks(model, x, labels, target, cfg, block,
                                        torch.stack([torch.zeros_like(blocked), blocked]), ig_batch, stem=stem)
        else:
            base = evaluate_batch(model, x, labels, cfg, ig_batch, target)
            with hooks(model, [(block, block_hook(blocked, mode))]):
                filt = evaluate_batch(model, x, labels, cfg, ig_batch, target)
        values = {"top1_baseline": base["top1"], "top1_filtered": filt["top1"]}
        for m in cfg.methods:
            for k in MEASURES:
                values[f"baseline_{m}_{k}"] = base[f"{m}_{k}"]
                values[f"filtered_{m}_{k}"] = filt[f"{m}_{k}"]
        for key, v in values.items():
            sums[key] = sums.get(key, 0) + v.double().sum()
    row = {k: float(v) / len(indices) for k, v in sums.items()}
    for m in cfg.methods:
        for k in MEASURES:
            row[f"delta_{m}_{k}"] = row[f"filtered_{m}_{k}"] - row[f"baseline_{m}_{k}"]
    return row


def columns(methods: Sequence[str]) -> tuple[str, ...]:
    """The columns of a per-class table (one row per class) for these methods."""
    per_method = [f"{kind}_{m}_{k}" for kind in ("baseline", "filtered", "delta") for m in methods for k in MEASURES]
    return ("class", "class_name", "n_images", "top1_baseline", "top1_filtered", *per_method)


def write_part(parts: Path, cls: int, row: dict) -> None:
    artifacts.write_json(parts / f"class_{cls:05d}.json", row)


def done(parts: Path, cls: int) -> bool:
    return (parts / f"class_{cls:05d}.json").exists()


def gather(parts: Path, classes: list[int]) -> pd.DataFrame:
    rows = [json.loads((parts / f"class_{c:05d}.json").read_text()) for c in classes]
    return pd.DataFrame(rows)
