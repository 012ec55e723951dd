"""Per-class baseline and filtered metrics: every class's images through the same batched engine.

Each class's images are evaluated in their own batches, so a class's numbers do not depend on
which other classes share the run: ranks of a distributed run give exactly the rows of a single
process. Finished classes are written as parts, so an interrupted run resumes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..attribution.evaluation import EvalConfig, evaluate_masks, predictions
from ..core.hooks import block_hook, hooks
from ..io import artifacts
from ..io.schema import MEASURES, class_column, measure_column


def class_images(targets: np.ndarray, cls: int, per_class: int) -> np.ndarray:
    """Up to ``per_class`` images of class ``cls``, evenly spread over its images."""
    members = np.flatnonzero(np.asarray(targets) == cls)
    q = min(per_class, len(members))
    return members[np.linspace(0, len(members), q, endpoint=False).astype(int)]


def analyse_class(session, indices: np.ndarray, cfg: EvalConfig, block: str, blocked: torch.Tensor, mode: str,
                  batch_size: int, ig_batch: int | None) -> dict[str, float]:
    """Means over one class's images (``indices`` of the session's source) of accuracy and, per
    method, sparsity and faithfulness of the baseline and of the run with the ``blocked (C,)``
    channels of ``block`` blocked (``mode``), all from the engine: ``detach`` in one shared pass with
    two masks, ``zero`` in a second pass with the channels ablated. ``session``: a
    ``pipeline.session.Session``."""
    model, device, runtime = session.model, session.device, session.runtime
    open_mask = torch.zeros_like(blocked)
    sums: dict[str, torch.Tensor] = {}     # on the device: one copy to the host per class, not per batch

    def evaluate(x, labels, target, masks):
        return evaluate_masks(model, x, labels, target, cfg, block, torch.stack(masks), ig_batch,
                              stem=session.spec.stem, plain=runtime.plain)

    for x, labels, _ in session.loader(batch_size, indices=indices):
        x, labels = x.to(device), labels.to(device)
        target = predictions(model(x), labels, cfg)["target"]
        if mode == "detach":
            base, filt = evaluate(x, labels, target, [open_mask, blocked])
        else:
            base, = evaluate(x, labels, target, [open_mask])
            with hooks(model, [(block, block_hook(blocked, mode))]):
                filt, = evaluate(x, labels, target, [open_mask])
        values = {"top1_baseline": base["top1"], "top1_filtered": filt["top1"]}
        for m in cfg.methods:
            for k in MEASURES:
                values[class_column("baseline", m, k)] = base[measure_column(m, k)]
                values[class_column("filtered", m, k)] = filt[measure_column(m, k)]
        for key, v in values.items():
            sums[key] = sums.get(key, 0) + v.double().sum()
    row = {k: float(v) / len(indices) for k, v in sums.items()}
    for m in cfg.methods:
        for k in MEASURES:
            row[class_column("delta", m, k)] = row[class_column("filtered", m, k)] - row[class_column("baseline", m, k)]
    return row


def write_part(parts: Path, cls: int, row: dict) -> None:
    artifacts.write_json(parts / f"class_{cls:05d}.json", row)


def done(parts: Path, cls: int) -> bool:
    return (parts / f"class_{cls:05d}.json").exists()


def gather(parts: Path, classes: list[int]) -> pd.DataFrame:
    rows = [json.loads((parts / f"class_{c:05d}.json").read_text()) for c in classes]
    return pd.DataFrame(rows)
