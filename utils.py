"""The original's ``utils.py`` names and signatures (seed 000), NumPy maps in and floats out.

Implemented once, in the ``disentangle`` package (``attribution.metrics`` under the ``original``
protocol, ``core.seeding``, ``data.images``); this module only adapts the calling convention.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from disentangle.attribution import metrics
from disentangle.core.seeding import set_seeds as _set_seeds
from disentangle.data.images import imagenet_dataloader

__all__ = ["set_seeds", "get_imagenet_dataloader", "compute_sparsity_pixel_wise", "compute_sparsity_patch_wise",
           "probability_drop_pixel_wise", "probability_drop_patch_wise"]


def set_seeds(seed: int = 42) -> None:
    """Seed every generator, and make cuDNN deterministic, as the original."""
    _set_seeds(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def get_imagenet_dataloader(root: str | Path = "./data/ILSVRC2012_img_val", batch_size: int = 32,
                            num_workers: int = 4, shuffle: bool = False, n_samples: Optional[int] = None
                            ) -> DataLoader:
    """``(images (B, 3, 224, 224), labels (B,))`` batches of an ImageFolder, resized to 256 and
    centre-cropped to 224; ``n_samples`` draws that many images with ``default_rng(0)``."""
    return imagenet_dataloader(root, batch_size, num_workers, shuffle, n_samples)


def _batch(attr: np.ndarray) -> torch.Tensor:
    """A ``(C, H, W)`` or ``(H, W)`` map as ``(1, C, H, W)`` float64."""
    a = torch.as_tensor(np.asarray(attr), dtype=torch.float64)
    return a.reshape(1, *(a.shape if a.ndim == 3 else (1, *a.shape)))


def compute_sparsity_pixel_wise(attr: np.ndarray, mass_fraction: float = 0.9) -> float:
    """Share of the map's values (all of them, every channel) not needed to hold ``mass_fraction``
    of its absolute mass; 0.0 for an all-zero map."""
    flat = torch.as_tensor(np.abs(np.asarray(attr)).reshape(1, -1), dtype=torch.float64)
    return float(metrics.mass_sparsity(flat, mass_fraction)[0])


def compute_sparsity_patch_wise(attr: np.ndarray, mass_fraction: float = 0.9, grid_size: int = 14) -> float:
    """The same over ``grid_size x grid_size`` patches of the channel-summed map (patch ``H // grid_size``)."""
    return float(metrics.mass_sparsity(metrics.importance(_batch(attr), "patch", "original", grid_size),
                                       mass_fraction)[0])


def _probability_drop(model: torch.nn.Module, img: torch.Tensor, attr: np.ndarray, drop_fraction: float,
                      metric: str, grid_size: int = 14) -> float:
    x = img[None] if img.dim() == 3 else img[None, None]
    with torch.no_grad():
        probs = model(x).float().softmax(1)
    pred = probs.argmax(1)                              # the original always explains the top class
    a = _batch(attr).to(device=x.device, dtype=torch.float32)
    return float(metrics.faithfulness(model, x, a, pred, metric, drop_fraction, p_clean=probs.gather(1, pred[:, None])
                                      .squeeze(1), protocol="original", grid=grid_size)[0])


def probability_drop_pixel_wise(model: torch.nn.Module, img: torch.Tensor, attr: np.ndarray,
                                drop_fraction: float = 0.1) -> float:
    """Drop of the top class's probability when the ``drop_fraction`` most important pixels are zeroed."""
    return _probability_drop(model, img, attr, drop_fraction, "pixel")


def probability_drop_patch_wise(model: torch.nn.Module, img: torch.Tensor, attr: np.ndarray,
                                drop_fraction: float = 0.1, grid_size: int = 14) -> float:
    """The same for the ``drop_fraction`` most important of ``grid_size x grid_size`` patches."""
    return _probability_drop(model, img, attr, drop_fraction, "patch", grid_size)
