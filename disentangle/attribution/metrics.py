"""Attribution metrics, computed on the device for a whole batch.

An attribution ``(B, C, H, W)`` is first reduced to a non-negative importance per *element*:
``|a|`` summed over channels per pixel (``metric="pixel"``, ``H*W`` elements) or further summed
over a 14x14 grid of patches (``metric="patch"``, 196 elements; ``H`` and ``W`` must be divisible
by 14, e.g. 56 or 224).

- **Sparsity** (mass ``q``, default 0.9): the fraction of elements *not* needed to accumulate ``q``
  of the total importance, taking elements from the largest down: ``1 - k/N`` where ``k`` is the
  smallest count whose top-``k`` sum reaches ``q * total``. Higher = more concentrated. Ties do not
  matter (``k`` depends only on the sorted values). An all-zero map is treated as uniform
  (``k = ceil(q N)``): no attribution carries no concentration.
- **Protocols.** ``original`` (the seed's ``utils.py``): pixel sparsity runs over every one of
  the ``C*H*W`` values of ``|a|`` (faithfulness still ranks the ``H*W`` channel sums); the patch
  grid is ``H // 14`` pixels a side and a remainder is left out (never counted, never masked);
  ``k`` is ``searchsorted(cumsum, q * total) + 1``; an all-zero map has sparsity 0.
  ``extended`` (this project's): sparsity over the ``H*W`` channel sums, ``H`` and ``W`` must be
  divisible by 14, an all-zero map counts as uniform (``k = ceil(q N)``), as described above.
- **Faithfulness** (drop fraction ``f``, default 0.1): the drop in the target class's softmax
  probability when the top ``round(f N)`` elements by importance are replaced by ``mask_value``
  in every channel: ``p(x)[t] - p(x_masked)[t]``. ``mask_value`` is in the model's *normalised*
  input space, so the default 0 is the data set's mean colour. Ties are broken by element order
  (stable sort), so an all-zero map masks the first elements.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

PATCH_GRID = 14
METRICS = ("pixel", "patch")
PROTOCOLS = ("original", "extended")


def _patch_size(h: int, w: int, protocol: str, grid: int) -> tuple[int, int]:
    if protocol == "original":
        if h < grid or w < grid:
            raise ValueError(f"grid_size {grid} too large for attribution map of size {h}x{w}.")
    elif h % grid or w % grid:
        raise ValueError(f"patch metric needs H and W divisible by {grid}, got {h}x{w}")
    return h // grid, w // grid


def importance(attr: torch.Tensor, metric: str, protocol: str = "extended", grid: int = PATCH_GRID
               ) -> torch.Tensor:
    """``(B, C, H, W)`` attributions -> ``(B, N)`` non-negative importance per pixel or patch (the
    ``H*W`` channel sums, or their sums over a ``grid x grid`` grid of patches)."""
    a = attr.abs().sum(1)                                                   # (B, H, W)
    if metric == "pixel":
        return a.flatten(1)
    if metric == "patch":
        b, h, w = a.shape
        ph, pw = _patch_size(h, w, protocol, grid)
        a = a[:, :grid * ph, :grid * pw].reshape(b, grid, ph, grid, pw)    # (B, g, ph, g, pw)
        return a.sum((2, 4)).flatten(1)                                     # (B, g*g)
    raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")


def mass_sparsity(values: torch.Tensor, mass: float = 0.9) -> torch.Tensor:
    """The original's sparsity of ``(B, N)`` non-negative values -> ``(B,)``: ``1 - k/N`` with
    ``k = searchsorted(descending cumsum, mass * total) + 1``, in float64; 0 for an all-zero row."""
    v = values.double()
    total = v.sum(1, keepdim=True)                                          # (B, 1)
    cum = torch.sort(v, dim=1, descending=True).values.cumsum(1)            # (B, N)
    k = torch.searchsorted(cum, mass * total) + 1                           # (B, 1)
    return torch.where(total[:, 0] > 0, 1 - k[:, 0].double() / v.shape[1], 0.0)


def sparsity(attr: torch.Tensor, metric: str = "pixel", mass: float = 0.9, protocol: str = "extended",
             grid: int = PATCH_GRID) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B,)`` fraction of elements not needed to hold ``mass`` of the importance."""
    if protocol == "original":
        values = attr.abs().flatten(1) if metric == "pixel" else importance(attr, metric, protocol, grid)
        return mass_sparsity(values, mass).float()
    s = importance(attr, metric).double()                                   # (B, N)
    total = s.sum(1, keepdim=True)
    s = torch.where(total > 0, s, torch.ones_like(s))
    total = s.sum(1, keepdim=True)
    ordered = torch.sort(s, dim=1, descending=True).values
    before = ordered.cumsum(1) - ordered                                    # mass of the larger elements
    # An element is needed while the mass before it is short of the goal (tolerance for rounding).
    needed = (before < mass * total * (1 - 1e-9)).sum(1)
    return (1 - needed.double() / s.shape[1]).float()


def top_mask(attr: torch.Tensor, metric: str = "pixel", fraction: float = 0.1, protocol: str = "extended",
             grid: int = PATCH_GRID) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, 1, H, W)`` bool: the top ``fraction`` of pixels or patches by importance
    (under ``original``, a remainder beyond the patch grid is never in the mask)."""
    s = importance(attr, metric, protocol, grid)                            # (B, N)
    b, n = s.shape
    k = max(1, round(fraction * n))
    top = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :k]
    mask = torch.zeros(b, n, dtype=torch.bool, device=s.device).scatter_(1, top, True)
    h, w = attr.shape[-2:]
    if metric == "patch":
        ph, pw = _patch_size(h, w, protocol, grid)
        cells = mask.view(b, grid, grid).repeat_interleave(ph, 1).repeat_interleave(pw, 2)
        mask = torch.zeros(b, h, w, dtype=torch.bool, device=s.device)
        mask[:, :grid * ph, :grid * pw] = cells                             # the remainder stays unmasked
    return mask.view(b, 1, h, w)


def target_probability(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                       target: torch.Tensor) -> torch.Tensor:
    """``(B,)`` softmax probability of each image's target class."""
    return F.softmax(forward(x).float(), dim=1).gather(1, target[:, None]).squeeze(1)


def masked_input(x: torch.Tensor, attr: torch.Tensor, metric: str = "pixel", fraction: float = 0.1,
                 mask_value: float = 0.0, protocol: str = "extended", grid: int = PATCH_GRID) -> torch.Tensor:
    """``x (B, C, H, W)`` with its top-``fraction`` elements by ``attr`` set to ``mask_value``."""
    return x.masked_fill(top_mask(attr, metric, fraction, protocol, grid), mask_value)


@torch.inference_mode()
def faithfulness(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, attr: torch.Tensor,
                 target: torch.Tensor, metric: str = "pixel", fraction: float = 0.1,
                 mask_value: float = 0.0, p_clean: torch.Tensor | None = None, chunk: int | None = None,
                 protocol: str = "extended", grid: int = PATCH_GRID) -> torch.Tensor:
    """Drop of the target probability when the top ``fraction`` is masked, ``(B,)`` for an
    ``attr (B, C, H, W)`` or ``(K, B)`` for ``K`` maps of every image ``attr (K, B, C, H, W)``.

    The ``K x B`` masked images go through the model together, ``chunk`` rows per forward pass
    (default: all). ``p_clean`` (``(B,)``), when given, saves the unmasked forward pass.
    """
    if p_clean is None:
        p_clean = target_probability(forward, x, target)
    maps = attr.reshape(-1, *x.shape[1:])                                   # (K*B, C, H, W)
    b, n = len(x), len(maps)
    step = chunk or n
    p = []
    for start in range(0, n, step):
        r = torch.arange(start, min(start + step, n), device=x.device)  # rows (map, image), map-major
        masked = masked_input(x[r % b], maps[r], metric, fraction, mask_value, protocol, grid)
        p.append(target_probability(forward, masked, target[r % b]))
    return (p_clean - torch.cat(p).view(-1, b)).view(attr.shape[:-3])    # (K, B) or (B,)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int = 5) -> torch.Tensor:
    """``(B,)`` bool: label among the top ``k`` logits (``k`` capped at the class count)."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(1)


def summarize(values, ddof: int = 1) -> dict[str, float]:
    """Mean and standard deviation (``ddof`` 1, or the original's 0) of per-image values (any array-like)."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=ddof)) if len(v) > ddof else 0.0}
