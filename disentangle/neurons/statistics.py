"""Per-neuron (channel) activation statistics of a block, accumulated batch by batch on the device.

Two feature sets (``FEATURES``), the clustering's input:

- ``original`` (the seed's ``neuron_stats.py``, the default): per channel, over the images of its
  spatial-mean activation ``m (N,)``: ``activation_rate`` (share of images with ``m > 0.1``),
  ``mean_activation`` (mean of ``m``) and ``variance`` (population variance of ``m``).
- ``extended``: eight statistics over every value of the channel, below.

For each channel ``c`` of a block output ``(B, C, H, W)`` the statistics run over all its values
(every image and spatial position, ``n`` values in all):

- ``mean``, ``std`` (population), ``min``, ``max``
- ``frac_active``: share of values > 0
- ``skewness``: third standardised central moment; ``kurtosis``: fourth, minus 3 (excess)
- ``mean_image_max``: the channel's peak response per image, averaged over images

Memory does not grow with the number of images: only per-channel running sums are kept, in
float64, of powers of ``x - shift`` where ``shift`` is the channel's mean in the first batch (which
keeps the power sums well conditioned). A constant channel has std 0 and skewness and kurtosis 0.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..core import distributed
from ..core.hooks import capture

STATS = ("mean", "std", "min", "max", "frac_active", "skewness", "kurtosis", "mean_image_max")
ORIGINAL = ("activation_rate", "mean_activation", "variance")
FEATURES = {"original": ORIGINAL, "extended": STATS}
ACTIVE_THRESHOLD = 0.1      # the original's threshold on an image's spatial-mean activation


class _Moments:
    """Per-batch sums of a stream of ``(B, C, ...)`` activations, added in batch order by
    ``result``: the same numbers whether one process saw every batch or several ranks each saw
    some (``merge``). ``shift`` comes from the first batch (batch 0)."""

    def __init__(self):
        self.shift: torch.Tensor | None = None
        self.parts: dict[int, dict[str, torch.Tensor]] = {}

    def begin(self, a: torch.Tensor) -> torch.Tensor:
        """Set (once) and return the shift: the first batch's mean."""
        if self.shift is None:
            self.shift = self._shift(a)
        return self.shift

    def update(self, a: torch.Tensor, batch: int | None = None) -> None:
        """Take in batch number ``batch`` (default: the next one)."""
        self.begin(a)
        self.parts[len(self.parts) if batch is None else batch] = self._part(a)

    def merge(self, parts: dict[int, dict[str, torch.Tensor]]) -> None:
        """Take in the batches another rank saw."""
        self.parts.update(parts)

    def _total(self, name: str, start: torch.Tensor, add=torch.add) -> torch.Tensor:
        total = start
        for b in sorted(self.parts):
            total = add(total, self.parts[b][name].to(start.device))
        return total


class ChannelMoments(_Moments):
    """Streaming per-channel moments of ``(B, C, ...)`` activations."""

    def _shift(self, a: torch.Tensor) -> torch.Tensor:
        return a.detach().double().flatten(2).mean((0, 2))          # (C,)

    def _part(self, a: torch.Tensor) -> dict[str, torch.Tensor]:
        a = a.detach().double().flatten(2)                         # (B, C, P)
        d = a - self.shift[None, :, None]
        d2 = d * d
        peak = a.amax(2)                                           # (B, C)
        count = torch.tensor([a.shape[0] * a.shape[2], a.shape[0]], dtype=torch.float64)
        return {"power": torch.stack([d.sum((0, 2)), d2.sum((0, 2)), (d2 * d).sum((0, 2)), (d2 * d2).sum((0, 2))]),
                "max": peak.amax(0), "min": a.amin((0, 2)), "active": (a > 0).sum((0, 2)).double(),
                "image_max": peak.sum(0), "count": count}

    def result(self) -> dict[str, np.ndarray]:
        """Each statistic as a ``(C,)`` float64 array."""
        shift = self.shift
        zeros = torch.zeros_like(shift)
        n, images = self._total("count", torch.zeros(2, dtype=torch.float64)).tolist()
        m1, m2, m3, m4 = self._total("power", torch.zeros(4, len(shift), dtype=torch.float64,
                                                          device=shift.device)) / n   # raw moments of d = x - shift
        mu = m1                                                    # mean of d
        var = (m2 - mu ** 2).clamp_min(0)
        c3 = m3 - 3 * mu * m2 + 2 * mu ** 3
        c4 = m4 - 4 * mu * m3 + 6 * mu ** 2 * m2 - 3 * mu ** 4
        std = var.sqrt()
        # Numerically constant channels (std below float32 resolution of the mean) get 0.
        flat = std <= 1e-6 * (shift + mu).abs().clamp_min(1e-12)
        safe = torch.where(flat, torch.ones_like(std), std)
        skew = torch.where(flat, zeros, c3 / safe ** 3)
        kurt = torch.where(flat, zeros, c4 / safe ** 4 - 3)
        out = {"mean": shift + mu, "std": torch.where(flat, zeros, std),
               "min": self._total("min", torch.full_like(shift, torch.inf), torch.minimum),
               "max": self._total("max", torch.full_like(shift, -torch.inf), torch.maximum),
               "frac_active": self._total("active", zeros) / n, "skewness": skew, "kurtosis": kurt,
               "mean_image_max": self._total("image_max", zeros) / images}
        return {k: out[k].cpu().numpy() for k in STATS}


class ImageMeanMoments(_Moments):
    """Streaming ``original`` features of ``(B, C, H, W)`` activations (see module doc)."""

    def __init__(self, threshold: float = ACTIVE_THRESHOLD):
        super().__init__()
        self.threshold = threshold

    def _shift(self, a: torch.Tensor) -> torch.Tensor:
        return a.detach().double().flatten(2).mean(2).mean(0)       # (C,) keeps the power sums well conditioned

    def _part(self, a: torch.Tensor) -> dict[str, torch.Tensor]:
        m = a.detach().double().flatten(2).mean(2)                 # (B, C) spatial means
        d = m - self.shift
        return {"sums": torch.stack([d.sum(0), (d * d).sum(0), (m > self.threshold).double().sum(0)]),
                "count": torch.tensor([float(m.shape[0])], dtype=torch.float64)}

    def result(self) -> dict[str, np.ndarray]:
        """Each feature as a ``(C,)`` float64 array."""
        n = self._total("count", torch.zeros(1, dtype=torch.float64)).item()
        s1, s2, active = self._total("sums", torch.zeros(3, len(self.shift), dtype=torch.float64,
                                                         device=self.shift.device)) / n
        out = {"activation_rate": active, "mean_activation": self.shift + s1,
               "variance": (s2 - s1 ** 2).clamp_min(0)}
        return {k: out[k].cpu().numpy() for k in ORIGINAL}


@torch.no_grad()
def collect_stats(model: nn.Module, block_path: str, loader, device: torch.device,
                  desc: str = "activations", features: str = "extended",
                  batches: Sequence[int] | None = None) -> dict[str, np.ndarray] | None:
    """The ``features`` (see module doc) of every channel of ``block_path`` over the loader's images.

    Under torchrun the loader yields this rank's ``batches`` (``Rank.shard`` of the batch numbers):
    rank 0's first batch (batch 0) sets the shift of every rank, rank 0 adds every batch's sums in
    batch order and returns the statistics (the other ranks None), equal to one process's."""
    moments = ImageMeanMoments() if features == "original" else ChannelMoments()
    numbers = itertools.count() if batches is None else iter(batches)
    with capture(model, [block_path]) as rec:
        def activations(x: torch.Tensor) -> torch.Tensor:
            model(x.to(device, non_blocking=True))
            return rec.outputs.pop(block_path)
        stream = iter(tqdm(loader, desc=desc, unit="batch"))
        if distributed.is_initialized():
            first = activations(next(stream)[0]) if distributed.is_main() else None
            shift = distributed.broadcast(None if first is None else moments.begin(first).cpu())
            moments.shift = shift.to(device)
            if first is not None:
                moments.update(first, next(numbers))
        for x, *_ in stream:
            moments.update(activations(x), next(numbers))
    if not distributed.is_initialized():
        return moments.result()
    parts = distributed.gather({b: {k: v.cpu() for k, v in part.items()} for b, part in moments.parts.items()})
    if parts is None:
        return None
    moments.parts = {}
    for part in parts:
        moments.merge(part)
    return moments.result()


def stats_matrix(stats: dict[str, np.ndarray], names: tuple[str, ...] = STATS) -> np.ndarray:
    """``(C, S)`` matrix of the statistics ``names``, in that order."""
    return np.stack([stats[k] for k in names], axis=1)
