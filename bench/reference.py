"""The yardstick: baseline + one filtered cluster, implemented the straightforward way, one image at a time.

Under the original protocol (the default) the metrics are the original utils.py's, written the
way it writes them (NumPy, Python loops over patches); under the extended one, this project's.

Per image: the model's prediction; then twice, without and with the cluster's channels detached at the
block (a forward hook, as filtered_eval.py's hooked path installs it): captum ``IntegratedGradients``
(Gauss-Legendre, all steps of the image in one captum call, captum's convergence delta) and captum
``Saliency``; each map's sparsity and its top-fraction mask in NumPy; and each masked image through the
model on its own. This is what the engine (``disentangle.attribution.evaluation.run``) is measured against;
the library never imports it.
"""
from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn

from disentangle.attribution.evaluation import EvalConfig
from disentangle.core.hooks import block_hook, hooks
from disentangle.attribution.metrics import PATCH_GRID

CELLS = ("baseline", "filtered")


def importance(attr: np.ndarray, metric: str) -> np.ndarray:
    """``(C, H, W)`` map -> ``(N,)`` importance per pixel or per patch of the 14x14 grid."""
    a = np.abs(attr).sum(0)                                                       # (H, W)
    if metric == "patch":
        h, w = a.shape
        a = a.reshape(PATCH_GRID, h // PATCH_GRID, PATCH_GRID, w // PATCH_GRID).sum((1, 3))
    return a.ravel()


def sparsity(attr: np.ndarray, metric: str, mass: float) -> float:
    """Fraction of elements not needed to hold ``mass`` of the importance (all-zero: uniform)."""
    s = importance(attr, metric).astype(np.float64)
    if s.sum() == 0:
        s = np.ones_like(s)
    ordered = np.sort(s)[::-1]
    before = np.cumsum(ordered) - ordered
    return float(1 - np.count_nonzero(before < mass * s.sum() * (1 - 1e-9)) / s.size)


def original_patch_sums(a: np.ndarray) -> np.ndarray:
    """``(196,)`` sums of an ``(H, W)`` map over the original's 14x14 grid (patch H // 14, a
    remainder ignored), as its loops compute them."""
    ph, pw = a.shape[0] // PATCH_GRID, a.shape[1] // PATCH_GRID
    return np.array([a[i * ph:(i + 1) * ph, j * pw:(j + 1) * pw].sum() for i in range(PATCH_GRID)
                     for j in range(PATCH_GRID)], dtype=np.float64)


def original_sparsity(attr: np.ndarray, metric: str, mass: float) -> float:
    """The original's: pixel over every value of the map, patch over the 14x14 grid of the
    channel-summed map (patch H // 14, a remainder ignored); 1 - k / N with k = searchsorted(descending
    cumulative mass, mass * total) + 1; 0.0 for an all-zero map."""
    a = np.abs(attr)
    s = a.ravel().astype(np.float64) if metric == "pixel" else original_patch_sums(a.sum(0))
    total = s.sum()
    if total == 0:
        return 0.0
    k = np.searchsorted(np.cumsum(np.sort(s)[::-1]), mass * total) + 1
    return float(1 - k / s.size)


def original_masked_image(x: np.ndarray, attr: np.ndarray, metric: str, fraction: float) -> np.ndarray:
    """The original's masking: ``x (C, H, W)`` times a 0/1 mask of its top ``fraction`` of pixels (of
    the channel-summed map) or of the 14x14 grid's patches (a remainder never masked)."""
    a = np.abs(attr).sum(0)
    h, w = a.shape
    mask = np.ones((h, w), dtype=np.float32)
    if metric == "pixel":
        top = np.argsort(-a.ravel())[:max(1, int(round(fraction * a.size)))]
        mask.ravel()[top] = 0.0
    else:
        ph, pw = h // PATCH_GRID, w // PATCH_GRID
        scores = original_patch_sums(a)
        for flat in np.argsort(-scores)[:max(1, int(round(fraction * scores.size)))]:
            i, j = divmod(int(flat), PATCH_GRID)
            mask[i * ph:(i + 1) * ph, j * pw:(j + 1) * pw] = 0.0
    return x * mask


def masked_image(x: np.ndarray, attr: np.ndarray, metric: str, fraction: float, mask_value: float) -> np.ndarray:
    """``x (C, H, W)`` with its top ``fraction`` of pixels or patches by ``attr`` set to ``mask_value``."""
    s = importance(attr, metric)
    top = np.argsort(-s, kind="stable")[:max(1, round(fraction * s.size))]
    keep = np.ones(s.size, dtype=bool)
    keep[top] = False
    h, w = x.shape[1:]
    if metric == "patch":
        keep = keep.reshape(PATCH_GRID, PATCH_GRID).repeat(h // PATCH_GRID, 0).repeat(w // PATCH_GRID, 1)
    return np.where(keep.reshape(1, h, w), x, np.float32(mask_value))


def probability(model: nn.Module, x: np.ndarray, target: int, device: torch.device) -> float:
    """Softmax probability of ``target`` for one image ``x (C, H, W)``."""
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None].to(device))[0].float()
    return float(torch.softmax(logits, 0)[target])


def evaluate_image(model: nn.Module, x: torch.Tensor, label: int, cfg: EvalConfig, block: str,
                   blocked: torch.Tensor) -> dict[str, dict]:
    """One image ``x (1, C, H, W)``: per cell (baseline, filtered) the scalars the stages record and
    the maps ``{m}_attr (C, H, W)``, as NumPy values."""
    with torch.no_grad():
        logits = model(x)[0].float()
    pred = int(logits.argmax())
    target = pred if cfg.target == "pred" else label
    confidence = float(torch.softmax(logits, 0)[target])
    original = cfg.protocol == "original"
    # The original measures faithfulness on the clean image's predicted class.
    faith_class, p_faith = (pred, float(torch.softmax(logits, 0)[pred])) if original else (target, confidence)
    shared = {"pred": pred, "target": target, "top1": pred == label, "confidence": confidence,
              "top5": label in logits.topk(min(5, len(logits))).indices.tolist()}
    image = x[0].cpu().numpy()
    out = {}
    for cell, fwd_hooks in zip(CELLS, ([], [(block, block_hook(blocked, "detach"))])):
        res = dict(shared)
        with hooks(model, fwd_hooks):
            for m in cfg.methods:
                if m == "ig":
                    attr, delta = IntegratedGradients(model).attribute(
                        x, baselines=0.0, target=target, n_steps=cfg.ig_steps, method="gausslegendre",
                        return_convergence_delta=True)
                    res["ig_delta"] = float(delta[0])
                else:
                    attr = Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=True)
                attr = attr[0].detach().cpu().numpy()
                res[f"{m}_attr"] = attr
                if original:
                    res[f"{m}_sparsity"] = original_sparsity(attr, cfg.metric, cfg.mass)
                    masked = original_masked_image(image, attr, cfg.metric, cfg.drop_fraction)
                else:
                    res[f"{m}_sparsity"] = sparsity(attr, cfg.metric, cfg.mass)
                    masked = masked_image(image, attr, cfg.metric, cfg.drop_fraction, cfg.mask_value)
                res[f"{m}_faithfulness"] = p_faith - probability(model, masked, faith_class, x.device)
        out[cell] = res
    return out


def run(model: nn.Module, images, cfg: EvalConfig, block: str, blocked: torch.Tensor,
        device: torch.device) -> dict[str, dict[str, np.ndarray]]:
    """Every ``(x (1, C, H, W), label (1,), index (1,))`` of ``images`` (a loader of single images).
    Returns per cell the per-image values stacked: scalars ``(N,)``, maps ``(N, C, H, W)``, ``index (N,)``."""
    rows: dict[str, list[dict]] = {cell: [] for cell in CELLS}
    for x, label, index in images:
        result = evaluate_image(model, x.to(device), int(label), cfg, block, blocked)
        for cell in CELLS:
            rows[cell].append({"index": int(index), **result[cell]})
    return {cell: {k: np.stack([r[k] for r in rows[cell]]) for k in rows[cell][0]} for cell in CELLS}
