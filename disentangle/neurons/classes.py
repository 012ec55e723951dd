"""Per-class baseline and filtered metrics: every class's images through the same batched engine,
one row per class and method as the original's class_analysis.py.

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
from ..io.schema import MEASURES, class_columns, measure_column


def class_images(targets: np.ndarray, cls: int, per_class: int, order: str = "first") -> np.ndarray:
    """Up to ``per_class`` images of class ``cls``: its first ones (in ImageFolder order, as the
    original) or, with ``order`` ``spread``, evenly spread over its images."""
    members = np.flatnonzero(np.asarray(targets) == cls)
    q = min(per_class, len(members))
    if order == "first":
        return members[:q]
    return members[np.linspace(0, len(members), q, endpoint=False).astype(int)]


def analyse_class(session, indices: np.ndarray, cfg: EvalConfig, block: str, blocked: torch.Tensor, mode: str,
                  batch_size: int, ig_batch: int | None) -> list[dict]:
    """One class's rows, one per method (``schema.class_columns``): mean and std (ddof 0) over its
    images (``indices`` of the session's source) of sparsity and faithfulness of the baseline and of
    the run with the ``blocked (C,)`` channels of ``block`` blocked (``mode``), and accuracy, all
    from the engine: ``detach`` in one shared pass with two masks, ``zero`` in a second pass with the
    channels ablated. ``session``: a ``pipeline.session.Session``."""
    model, device, runtime = session.model, session.device, session.runtime
    open_mask = torch.zeros_like(blocked)
    values: dict[str, list[torch.Tensor]] = {}   # on the device: one copy to the host per class, not per batch

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
        for kind, res in (("baseline", base), ("filtered", filt)):
            values.setdefault(f"top1_{kind}", []).append(res["top1"])
            for m in cfg.methods:
                for k in MEASURES:
                    values.setdefault(f"{kind}/{m}/{k}", []).append(res[measure_column(m, k)])
    v = {key: torch.cat(parts).double() for key, parts in values.items()}
    stats = torch.stack([t for key in v for t in (v[key].mean(), v[key].std(correction=0))]).cpu().numpy()
    s = {key: (float(stats[2 * i]), float(stats[2 * i + 1])) for i, key in enumerate(v)}
    rows = []
    for m in cfg.methods:
        row = {"method": m}
        for kind in ("filtered", "baseline"):
            for k in MEASURES:
                row[f"{kind}_{k}_mean"], row[f"{kind}_{k}_std"] = s[f"{kind}/{m}/{k}"]
        rows.append({**row, "mean_diff": row["baseline_faithfulness_mean"] - row["filtered_faithfulness_mean"],
                     "n_images": len(indices), "top1_baseline": s["top1_baseline"][0],
                     "top1_filtered": s["top1_filtered"][0],
                     "sparsity_diff": row["baseline_sparsity_mean"] - row["filtered_sparsity_mean"]})
    return rows


def write_part(parts: Path, cls: int, rows: list[dict]) -> None:
    artifacts.write_json(parts / f"class_{cls:05d}.json", rows)


def done(parts: Path, cls: int) -> bool:
    return (parts / f"class_{cls:05d}.json").exists()


def gather(parts: Path, classes: list[int]) -> pd.DataFrame:
    rows = [r for c in classes for r in json.loads((parts / f"class_{c:05d}.json").read_text())]
    return pd.DataFrame(rows)[list(class_columns())]
