"""Integrated Gradients and Saliency through captum, for a whole batch at once.

IG integrates from an all-zero baseline in the model's normalised input space (the data set's mean
colour) with the Gauss-Legendre rule; its (image, step) pairs are folded into one batch dimension,
split into chunks of at most ``internal_batch_size`` rows. Saliency is ``|d logit_t / d x|``.
The model's parameters are frozen at load time, so only input gradients are computed.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn
from torch.profiler import record_function

from .hooks import hooks

METHODS = ("ig", "saliency")


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


# --- The shared-pass engine -------------------------------------------------------------------
# A block's output h is a cut of the network: every path from input to logits passes through it,
# so dy/dx = sum_c (dy/dh_c)(dh_c/dx). Blocking (detaching) a set of channels removes exactly their
# terms. So one forward pass and one backward pass down to the block serve every channel mask; only
# the last step, the vector-Jacobian product from h back to the input with (keep * dy/dh), differs.


def gauss_legendre(steps: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """IG interpolation points ``alphas (S,)`` in (0, 1) and weights ``(S,)`` summing to 1 (as captum)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (torch.tensor(0.5 * (nodes + 1), dtype=torch.float32, device=device),
            torch.tensor(0.5 * weights, dtype=torch.float32, device=device))


def masked_gradients(model: nn.Module, rows: torch.Tensor, target: torch.Tensor, block: str,
                     keep: torch.Tensor) -> Iterator[torch.Tensor]:
    """Input gradients of each row's target logit, once per channel mask, one mask at a time.

    ``rows (N, C, H, W)``, ``target (N,)``, ``keep (M, Cb)``: 1 where a block channel's gradient
    path stays open. Yields M tensors ``(N, C, H, W)``, each equal to the gradient with that mask's
    blocked channels detached at ``block`` (the forward pass is the same for every mask). Yielding
    lets the caller fold each into its sum before the next exists (memory: one gradient, not M).
    """
    rows = rows.detach().requires_grad_()
    store: dict[str, torch.Tensor] = {}

    def split(module, inputs, output):
        store["h"] = output
        store["leaf"] = output.detach().requires_grad_()
        return store["leaf"]

    with hooks(model, [(block, split)]), record_function("engine: forward"):
        logits = model(rows)
    with record_function("engine: backward to the block"):
        upper, = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), store["leaf"])   # (N, Cb, h, w)
    del logits
    keep = keep.to(upper.dtype).view(len(keep), 1, -1, *(1,) * (upper.dim() - 2))   # (M, 1, Cb, 1, 1)
    for m in range(len(keep)):
        with record_function("engine: VJP below the block"):
            g, = torch.autograd.grad(store["h"], rows, grad_outputs=upper * keep[m],
                                     retain_graph=m < len(keep) - 1)
        yield g


def masked_attributions(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, block: str,
                        keep: torch.Tensor, ig_steps: int = 50, chunk: int | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """IG or Saliency of ``x (B, C, H, W)`` for every mask of ``keep (M, Cb)`` in one shared pass.

    Returns attributions ``(M, B, C, H, W)`` and for IG the convergence delta ``(M, B)``
    (``sum(attr) - (f(x) - f(0))``, as captum computes it with the mask's hook installed).
    IG rows (image, step) are processed ``chunk`` at a time in captum's step-major order.
    """
    if method == "saliency":
        return torch.stack([g.abs() for g in masked_gradients(model, x, target, block, keep)]), None
    if method != "ig":
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    b = len(x)
    alphas, weights = gauss_legendre(ig_steps, x.device)
    total = ig_steps * b
    chunk = chunk or total
    acc = torch.zeros((len(keep),) + tuple(x.shape), dtype=x.dtype, device=x.device)   # (M, B, C, H, W)
    for start in range(0, total, chunk):
        r = torch.arange(start, min(start + chunk, total), device=x.device)
        step, img = r // b, r % b                                                  # step-major rows
        rows = x[img] * alphas[step].view(-1, 1, 1, 1)                             # (n, C, H, W), zero baseline
        w = weights[step].view(-1, 1, 1, 1)
        for m, g in enumerate(masked_gradients(model, rows, target[img], block, keep)):   # g: (n, C, H, W)
            acc[m].index_add_(0, img, g * w)
    attr = x[None] * acc
    with torch.no_grad():   # f(baseline) is one row: the all-zero baseline is the same for every image
        gap = (model(x) - model(torch.zeros_like(x[:1]))).float().gather(1, target[:, None]).squeeze(1)  # (B,)
    return attr, attr.flatten(2).sum(2) - gap[None]
