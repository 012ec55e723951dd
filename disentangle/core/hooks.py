"""Forward hooks, always installed through one context manager that removes them in ``finally``.

A hook is a ``(module path, fn)`` pair; ``fn(module, inputs, output)`` may return a replacement
output, as in ``torch.nn.Module.register_forward_hook``.

- ``capture_hooks`` records block outputs.
- ``block_hook`` stops the gradient through chosen channels of a block's output:
  ``mode="detach"`` passes their values forward unchanged (bit-identical forward pass) and removes
  their gradient path; ``mode="zero"`` ablates them (forward value 0, hence no gradient either).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

Hook = tuple[str, Callable]
MODES = ("detach", "zero")


@contextmanager
def hooks(model: nn.Module, fwd_hooks: Sequence[Hook]) -> Iterator[nn.Module]:
    """Install forward hooks for the duration of a ``with`` block, removing them even on error."""
    handles = []
    try:
        for name, fn in fwd_hooks:
            handles.append(model.get_submodule(name).register_forward_hook(fn))
        yield model
    finally:
        for h in handles:
            h.remove()


def capture_hooks(names: Sequence[str]) -> tuple[dict[str, torch.Tensor], list[Hook]]:
    """``(store, hooks)``: inside ``hooks(model, hooks)``, ``store[name]`` is the latest output of
    each named module, ``(B, C, H, W)`` for a conv block."""
    store: dict[str, torch.Tensor] = {}

    def make(name: str) -> Callable:
        def fn(module, inputs, output):
            store[name] = output
        return fn

    return store, [(name, make(name)) for name in names]


def channel_mask(channels: Sequence[int] | torch.Tensor, n_channels: int) -> torch.Tensor:
    """``(C,)`` bool, True for the listed channels; out-of-range channels are an error."""
    idx = torch.as_tensor(channels, dtype=torch.long).reshape(-1)
    if len(idx) and (idx.min() < 0 or idx.max() >= n_channels):
        raise ValueError(f"channel index out of range for a block with {n_channels} channels")
    return torch.zeros(n_channels, dtype=torch.bool).index_fill_(0, idx, True)


def block_hook(mask: torch.Tensor, mode: str = "detach") -> Callable:
    """Forward hook that blocks the channels where ``mask (C,)`` is True, on a ``(B, C, ...)`` output."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")

    def fn(module, inputs, output: torch.Tensor) -> torch.Tensor:
        if output.shape[1] != mask.numel():
            raise ValueError(f"mask has {mask.numel()} channels, the block output has {output.shape[1]}")
        m = mask.to(output.device).view(1, -1, *([1] * (output.dim() - 2)))
        if mode == "detach":
            return torch.where(m, output.detach(), output)
        return output.masked_fill(m, 0.0)

    return fn


def scale_hook(mask: torch.Tensor, factor: float) -> Callable:
    """Forward hook that multiplies the channels where ``mask (C,)`` is True by ``factor``
    (0 ablates, 2 amplifies)."""
    def fn(module, inputs, output: torch.Tensor) -> torch.Tensor:
        m = mask.to(output.device).view(1, -1, *([1] * (output.dim() - 2)))
        return torch.where(m, output * factor, output)
    return fn
