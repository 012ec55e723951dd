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

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..core.hooks import capture

STATS = ("mean", "std", "min", "max", "frac_active", "skewness", "kurtosis", "mean_image_max")
ORIGINAL = ("activation_rate", "mean_activation", "variance")
FEATURES = {"original": ORIGINAL, "extended": STATS}
ACTIVE_THRESHOLD = 0.1      # the original's threshold on an image's spatial-mean activation


class ChannelMoments:
    """Streaming per-channel moments of ``(B, C, ...)`` activations."""

    def __init__(self):
        self.n = 0
        self.images = 0
        self.shift = None

    def update(self, a: torch.Tensor) -> None:
        a = a.detach().double().flatten(2)                       # (B, C, P)
        if self.shift is None:
            c = a.shape[1]
            self.shift = a.mean((0, 2))                          # (C,)
            self.power = torch.zeros(4, c, dtype=torch.float64, device=a.device)
            self.max = torch.full((c,), -torch.inf, dtype=torch.float64, device=a.device)
            self.min = torch.full((c,), torch.inf, dtype=torch.float64, device=a.device)
            self.active = torch.zeros(c, dtype=torch.float64, device=a.device)
            self.image_max = torch.zeros(c, dtype=torch.float64, device=a.device)
        d = a - self.shift[None, :, None]
        d2 = d * d
        self.power += torch.stack([d.sum((0, 2)), d2.sum((0, 2)), (d2 * d).sum((0, 2)), (d2 * d2).sum((0, 2))])
        peak = a.amax(2)                                         # (B, C)
        self.max = torch.maximum(self.max, peak.amax(0))
        self.min = torch.minimum(self.min, a.amin((0, 2)))
        self.active += (a > 0).sum((0, 2))
        self.image_max += peak.sum(0)
        self.n += a.shape[0] * a.shape[2]
        self.images += a.shape[0]

    def result(self) -> dict[str, np.ndarray]:
        """Each statistic as a ``(C,)`` float64 array."""
        m1, m2, m3, m4 = self.power / self.n                     # raw moments of d = x - shift
        mu = m1                                                  # mean of d
        var = (m2 - mu ** 2).clamp_min(0)
        c3 = m3 - 3 * mu * m2 + 2 * mu ** 3
        c4 = m4 - 4 * mu * m3 + 6 * mu ** 2 * m2 - 3 * mu ** 4
        std = var.sqrt()
        # Numerically constant channels (std below float32 resolution of the mean) get 0.
        flat = std <= 1e-6 * (self.shift + mu).abs().clamp_min(1e-12)
        safe = torch.where(flat, torch.ones_like(std), std)
        skew = torch.where(flat, torch.zeros_like(std), c3 / safe ** 3)
        kurt = torch.where(flat, torch.zeros_like(std), c4 / safe ** 4 - 3)
        out = {"mean": self.shift + mu, "std": torch.where(flat, torch.zeros_like(std), std), "min": self.min,
               "max": self.max, "frac_active": self.active / self.n, "skewness": skew, "kurtosis": kurt,
               "mean_image_max": self.image_max / self.images}
        return {k: out[k].cpu().numpy() for k in STATS}


class ImageMeanMoments:
    """Streaming ``original`` features of ``(B, C, H, W)`` activations (see module doc)."""

    def __init__(self, threshold: float = ACTIVE_THRESHOLD):
        self.threshold = threshold
        self.n = 0
        self.shift = None

    def update(self, a: torch.Tensor) -> None:
        m = a.detach().double().flatten(2).mean(2)               # (B, C) spatial means
        if self.shift is None:
            self.shift = m.mean(0)                               # (C,) keeps the power sums well conditioned
            self.sums = torch.zeros(3, m.shape[1], dtype=torch.float64, device=m.device)
        d = m - self.shift
        self.sums += torch.stack([d.sum(0), (d * d).sum(0), (m > self.threshold).double().sum(0)])
        self.n += m.shape[0]

    def result(self) -> dict[str, np.ndarray]:
        """Each feature as a ``(C,)`` float64 array."""
        s1, s2, active = self.sums / self.n
        out = {"activation_rate": active, "mean_activation": self.shift + s1,
               "variance": (s2 - s1 ** 2).clamp_min(0)}
        return {k: out[k].cpu().numpy() for k in ORIGINAL}


@torch.no_grad()
def collect_stats(model: nn.Module, block_path: str, loader, device: torch.device,
                  desc: str = "activations", features: str = "extended") -> dict[str, np.ndarray]:
    """The ``features`` (see module doc) of every channel of ``block_path`` over the loader's images."""
    moments = ImageMeanMoments() if features == "original" else ChannelMoments()
    with capture(model, [block_path]) as rec:
        for x, _, _ in tqdm(loader, desc=desc, unit="batch"):
            model(x.to(device, non_blocking=True))
            moments.update(rec.outputs.pop(block_path))
    return moments.result()


def stats_matrix(stats: dict[str, np.ndarray], names: tuple[str, ...] = STATS) -> np.ndarray:
    """``(C, S)`` matrix of the statistics ``names``, in that order."""
    return np.stack([stats[k] for k in names], axis=1)
