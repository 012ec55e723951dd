"""The yardstick of the attribution engine: captum's Integrated Gradients and Saliency, image
batch by image batch, with any forward hooks the caller installs (a blocked cluster).

Only the tests and ``bench/`` use it; every attribution a stage writes comes from ``engine``.
IG integrates from an all-zero baseline in the model's normalised input space with the
Gauss-Legendre rule, its (image, step) pairs folded into one batch dimension and split into chunks
of at most ``internal_batch_size`` rows.
"""
from __future__ import annotations

import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn

from .engine import METHODS


def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, ig_steps: int = 50,
              internal_batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attributions ``(B, C, H, W)`` for each image's target class, and for IG the convergence
    delta ``(B,)``: ``sum(attr) - (f(x) - f(baseline))`` (zero for exact integration)."""
    if method == "ig":
        ig = IntegratedGradients(model)
        attr, delta = ig.attribute(x, baselines=0.0, target=target, n_steps=ig_steps, method="gausslegendre",
                                   internal_batch_size=internal_batch_size, return_convergence_delta=True)
        return attr.detach(), delta.detach()
    if method == "saliency":
        x = x.detach().requires_grad_()  # captum warns if it has to do this itself
        return Saliency(model).attribute(x, target=target, abs=True).detach(), None
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
