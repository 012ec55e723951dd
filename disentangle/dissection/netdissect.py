"""Mask-IoU network dissection (Bau et al., 2017, as in NetDissect-Lite), batched on the device.

For every unit ``u`` of a layer:

1. ``threshold[u]`` is the ``1 - quantile`` quantile (default: the top 0.5 %) of its activations
   over every spatial position of every probe image. It is exact: a streaming top-k per unit keeps
   the few largest values the quantile's linear interpolation needs (``numpy.quantile``'s default).
2. Each activation map is upsampled (bilinear) to the label resolution and thresholded, giving the
   unit's mask ``M_u``. Over the whole probe set, for every concept ``c`` with label mask ``L_c``:
   ``IoU(u, c) = |M_u ∩ L_c| / (|M_u|_cat(c) + |L_c| - |M_u ∩ L_c|)``, where ``|M_u|_cat(c)``
   counts the unit's mask only on images that carry labels of ``c``'s category (NetDissect's
   rule: a unit is not penalised on images where the category was never annotated).
3. A unit's label is its concept of highest IoU; it is a *detector* when that IoU exceeds the IoU
   threshold (default 0.04).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..core import distributed
from ..core.errors import UserError
from ..data.images import Images, Labels


def quantile_positions(n: int, quantile: float) -> tuple[int, int, float]:
    """Where ``numpy.quantile(v, 1 - quantile)`` of ``n`` values sits, counted from the top:
    ``(k_low, k_high, weight)`` so the value is ``(1 - w) * top[k_low] + w * top[k_high]`` with
    ``top`` sorted descending (0 = largest)."""
    pos = (1.0 - quantile) * (n - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return n - 1 - lo, n - 1 - hi, pos - lo


class TopQuantile:
    """Exact per-unit upper quantile of a stream of ``(B, U, h, w)`` activation batches, keeping only
    the ``k`` largest values per unit on the device; also the ``top_images`` images with the highest
    maximum activation per unit (for image strips)."""

    def __init__(self, n_values: int, quantile: float, top_images: int = 5):
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        self.k_low, self.k_high, self.w = quantile_positions(n_values, quantile)
        self.keep = self.k_low + 1
        self.n_values, self.top_images = n_values, top_images
        self.values: torch.Tensor | None = None      # (U, <= keep) largest activations
        self.image_max: torch.Tensor | None = None   # (U, <= top_images)
        self.image_idx: torch.Tensor | None = None
        self.seen = 0

    @torch.no_grad()
    def update(self, a: torch.Tensor, indices: torch.Tensor) -> None:
        """``a (B, U, h, w)`` activations of the images ``indices (B,)``."""
        b, u = a.shape[:2]
        flat = a.detach().float().transpose(0, 1).reshape(u, -1)
        self.seen += flat.shape[1]
        vals = flat if self.values is None else torch.cat([self.values, flat], 1)
        self.values = vals.topk(min(self.keep, vals.shape[1]), dim=1).values
        peak = a.detach().float().amax(dim=(2, 3)).T                       # (U, B)
        idx = indices.to(peak.device).expand(u, -1)
        if self.image_max is not None:
            peak, idx = torch.cat([self.image_max, peak], 1), torch.cat([self.image_idx, idx], 1)
        self.image_max, self.image_idx = _best_images(peak, idx, self.top_images)

    def merge(self, other: TopQuantile) -> None:
        """Take in another part of the same stream (another rank's batches): the kept values and
        images are those of the whole stream, whatever the split."""
        if other.values is None:
            return
        if self.values is None:
            self.values, self.image_max, self.image_idx = other.values, other.image_max, other.image_idx
        else:
            vals = torch.cat([self.values, other.values.to(self.values.device)], 1)
            self.values = vals.topk(min(self.keep, vals.shape[1]), dim=1).values
            self.image_max, self.image_idx = _best_images(
                torch.cat([self.image_max, other.image_max.to(self.image_max.device)], 1),
                torch.cat([self.image_idx, other.image_idx.to(self.image_idx.device)], 1), self.top_images)
        self.seen += other.seen

    def to(self, device: torch.device | str) -> TopQuantile:
        """This stream's state on ``device`` (to send it to another rank)."""
        for name in ("values", "image_max", "image_idx"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).to(device))
        return self

    def thresholds(self) -> torch.Tensor:
        """``(U,)`` per-unit quantile, equal to ``numpy.quantile(values, 1 - quantile)``."""
        if self.seen != self.n_values:
            raise RuntimeError(f"expected {self.n_values} activations per unit, saw {self.seen}")
        v = self.values.double()
        return ((1 - self.w) * v[:, self.k_low] + self.w * v[:, self.k_high]).float()


def _best_images(peak: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit the ``k`` highest peaks ``(U, n)`` and their image indices, ties to the lower
    index: the same images whichever order the batches came in."""
    by_index = idx.argsort(dim=1, stable=True)
    peak, idx = peak.gather(1, by_index), idx.gather(1, by_index)
    best = peak.argsort(dim=1, descending=True, stable=True)[:, :k]
    return peak.gather(1, best), idx.gather(1, best)


@dataclass
class Tally:
    """Counts accumulated over the probe set (float64 on the device)."""
    intersection: torch.Tensor   # (U, L + 1)  |M_u ∩ L_c|, column 0 unused
    label_pixels: torch.Tensor   # (L + 1,)    |L_c|
    unit_pixels: torch.Tensor    # (U, K)      |M_u| on images annotated in category k

    def iou(self, label_category: torch.Tensor) -> torch.Tensor:
        """``(U, L)`` IoU of every unit with every concept; ``label_category (L + 1,)``, -1 = none."""
        cat = label_category.to(self.unit_pixels.device).clamp_min(0)
        union = self.unit_pixels[:, cat] + self.label_pixels[None] - self.intersection
        iou = self.intersection / union.clamp_min(1e-10)
        iou[:, label_category < 0] = 0
        return iou[:, 1:]


class MaskIoU:
    """Streaming tally of one layer's unit masks against label planes."""

    def __init__(self, thresholds: torch.Tensor, n_labels: int, n_categories: int, unit_chunk: int = 64):
        self.thr = thresholds
        u, dev = len(thresholds), thresholds.device
        self.tally = Tally(torch.zeros(u, n_labels + 1, dtype=torch.float64, device=dev),
                           torch.zeros(n_labels + 1, dtype=torch.float64, device=dev),
                           torch.zeros(u, n_categories, dtype=torch.float64, device=dev))
        self.n_categories, self.unit_chunk = n_categories, unit_chunk

    @torch.no_grad()
    def update(self, a: torch.Tensor, labels: Labels) -> None:
        """``a (B, U, h, w)`` activations; ``labels.planes (B, P, H, W)``."""
        dev = a.device
        planes = labels.planes.to(dev)
        b, p, h, w = planes.shape
        t = self.tally
        ids = planes.reshape(-1)
        t.label_pixels += torch.bincount(ids, minlength=t.label_pixels.numel()).double()
        # Which categories each image is annotated in: (B, K).
        annotated = torch.zeros(b, self.n_categories, device=dev)
        has = (planes > 0).flatten(2).any(2).float()                               # (B, P)
        annotated.index_add_(1, labels.plane_category.to(dev), has)
        annotated = (annotated > 0).double()
        ids_per_image = planes.transpose(0, 1).reshape(p, -1)                       # (P, B*H*W)
        for s in range(0, a.shape[1], self.unit_chunk):
            chunk = a[:, s:s + self.unit_chunk].float()
            up = F.interpolate(chunk, size=(h, w), mode="bilinear", align_corners=False)
            mask = (up > self.thr[s:s + self.unit_chunk, None, None]).float()       # (B, Uc, H, W)
            t.unit_pixels[s:s + self.unit_chunk] += mask.sum((2, 3)).T.double() @ annotated
            flat = mask.transpose(0, 1).reshape(mask.shape[1], -1)                 # (Uc, B*H*W)
            # Float32 counts are exact below 2**24 per batch; totals accumulate in float64.
            inter = torch.zeros(flat.shape[0], t.intersection.shape[1], device=dev)
            for plane in ids_per_image:
                inter.index_add_(1, plane, flat)
            t.intersection[s:s + self.unit_chunk] += inter.double()


def label_units(iou: torch.Tensor, concepts: list[tuple[str, str]], iou_threshold: float) -> list[dict]:
    """One row per unit: best concept, its category and IoU, and whether it is a detector."""
    best, arg = iou.max(dim=1)
    rows = []
    for u, (v, c) in enumerate(zip(best.tolist(), arg.tolist())):
        category, name = concepts[c]
        rows.append({"unit": u, "description": name, "category": category, "iou": v,
                     "similarity": v, "detector": v > iou_threshold})
    return rows


def top_concepts(iou: np.ndarray, concepts: list[tuple[str, str]], n: int = 3) -> list[str]:
    """Per unit, its ``n`` best concepts as ``'name (iou)'`` joined by ``'; '``."""
    order = np.argsort(-iou, axis=1)[:, :n]
    return ["; ".join(f"{concepts[c][1]} ({iou[u, c]:.3f})" for c in row) for u, row in enumerate(order)]


def layer_batches(model: torch.nn.Module, paths: list[str], loader, device: torch.device, desc: str,
                  maps: bool = True):
    """Yield ``(activations {path: (B, U, h, w)}, inputs, indices (B,))`` for every batch of a loader
    whose batches start with the model's input ``(B, 3, S, S)`` and end with the images' indices
    (``Images.loader``: ``(x_1, ..., x_T, labels, indices)``); the first goes through ``model``.
    ``maps=False`` also lets through ``(B, U)`` and token ``(B, T, U)`` outputs."""
    from tqdm import tqdm

    from ..core.hooks import capture

    with torch.no_grad(), capture(model, paths) as rec:
        for *xs, idx in tqdm(loader, desc=desc, unit="batch"):
            model(xs[0].to(device, non_blocking=True))
            acts = {p: rec.outputs.pop(p) for p in paths}
            for p, a in acts.items():
                if maps and a.dim() != 4:
                    raise UserError(f"layer {p} gives {a.dim()}-D outputs; dissection needs (B, C, H, W) maps")
            yield acts, xs, idx


def dissect_layers(model: torch.nn.Module, paths: list[str], images: Images, make_loader: Callable[[], Iterable],
                   device: torch.device, quantile: float, top_images: int) -> dict[str, dict[str, np.ndarray]]:
    """Two passes over the probe images (``make_loader()``: a fresh loader of them in order, through
    the model's preprocessing): per-unit thresholds, then the IoU tally, for every layer at once.

    Returns per layer: ``thresholds (U,)``, ``intersection (U, L+1)``, ``label_pixels (L+1,)``,
    ``unit_pixels (U, K)``, ``top_images (U, top_images)`` dataset indices.
    """
    quant: dict[str, TopQuantile] = {}
    for acts, _, idx in layer_batches(model, paths, make_loader(), device, "dissection: thresholds"):
        for p, a in acts.items():
            if p not in quant:
                quant[p] = TopQuantile(len(images) * a.shape[2] * a.shape[3], quantile, top_images)
            quant[p].update(a, idx)
    thresholds, top = _thresholds(quant, device)
    probe = images.source
    tallies = {p: MaskIoU(thresholds[p], len(probe.concepts), len(probe.categories)) for p in paths}
    for acts, _, idx in layer_batches(model, paths, make_loader(), device, "dissection: IoU tally"):
        labels = probe.labels(idx.numpy())
        for p, a in acts.items():
            tallies[p].update(a, labels)
    out = {p: {"thresholds": thresholds[p].cpu().numpy(), "intersection": t.tally.intersection.cpu().numpy(),
               "label_pixels": t.tally.label_pixels.cpu().numpy(), "unit_pixels": t.tally.unit_pixels.cpu().numpy(),
               "top_images": top[p].cpu().numpy()}
           for p, t in tallies.items()}
    # The tallies are counts (whole numbers in float64): their sum over ranks is exact in any order.
    parts = distributed.everyone(out)
    for p, res in out.items():
        for k in ("intersection", "label_pixels", "unit_pixels"):
            res[k] = np.sum([part[p][k] for part in parts], axis=0)
    return out


def _thresholds(quant: dict[str, TopQuantile], device: torch.device
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per layer the units' thresholds ``(U,)`` and top images ``(U, top_images)``: under torchrun
    every rank's streams merged on rank 0 (in rank order) and the results sent to every rank."""
    if distributed.is_initialized():
        parts = distributed.gather({p: q.to("cpu") for p, q in quant.items()})
        result = None
        if parts is not None:              # rank 0, which holds batch 0 and so every layer
            merged = parts[0]
            for part in parts[1:]:
                for p, q in part.items():
                    merged[p].merge(q)
            result = {p: (q.thresholds(), q.image_idx) for p, q in merged.items()}
        result = distributed.broadcast(result)
        return ({p: t.to(device) for p, (t, _) in result.items()}, {p: i for p, (_, i) in result.items()})
    return {p: q.thresholds() for p, q in quant.items()}, {p: q.image_idx for p, q in quant.items()}


POOLS = ("avg", "max")


def pool_units(a: torch.Tensor, pool: str = "avg", tokens: str = "first") -> torch.Tensor:
    """A layer's output -> ``(B, U)``: the spatial mean (``avg``) or max of ``(B, U, h, w)`` maps;
    for ``(B, T, U)`` tokens, by ``tokens``: the first (class) token, as CLIP-Dissect takes it, or
    the token mean (``avg``) or max, as Linear-Explanations' ``--pool_mode`` does; ``(B, U)`` as it
    is. ``pool="first"`` is for token layers only."""
    if a.dim() == 4:
        if pool == "first":
            raise UserError("--pool_mode first takes a token layer's first (class) token; this layer gives "
                            "(B, C, H, W) maps: use avg or max")
        return a.mean((2, 3)) if pool == "avg" else a.amax((2, 3))
    if a.dim() == 3:
        return a[:, 0] if tokens == "first" else a.mean(1) if tokens == "avg" else a.amax(1)
    return a.reshape(len(a), -1)


def summaries(model: torch.nn.Module, paths: list[str], loader, device: torch.device,
              pool: str = "avg", tokens: str = "first") -> dict[str, np.ndarray]:
    """Per layer, ``(N, U)`` each unit's summary (``pool_units``) per probe image, in loader order."""
    if pool not in (*POOLS, "first"):
        raise UserError(f"unknown pool mode {pool!r}; choose from {', '.join(POOLS)}")
    out: dict[str, list[torch.Tensor]] = {p: [] for p in paths}
    for acts, _, _ in layer_batches(model, paths, loader, device, "activations", maps=False):
        for p, a in acts.items():
            out[p].append(pool_units(a.float(), pool, tokens))
    return {p: torch.cat(v).cpu().numpy() for p, v in out.items()}


@torch.no_grad()
def clip_image_features(clip, loader) -> np.ndarray:
    """``(N, D)`` unit-norm CLIP embeddings of a loader's images (the first element of its batches,
    through CLIP's preprocessing)."""
    from tqdm import tqdm
    return torch.cat([clip.encode_images(x) for x, *_ in tqdm(loader, desc="CLIP images", unit="batch")]).cpu().numpy()
