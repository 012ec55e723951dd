"""Forward hooks, always installed through one context manager that removes them in ``finally``.

A hook is a ``(module path, fn)`` pair; ``fn(module, inputs, output)`` may return a replacement
output, as in ``torch.nn.Module.register_forward_hook``.

- ``capture`` records module outputs (and can cut the graph there or replace them): the one
  capture primitive.
- ``block_hook`` stops the gradient through chosen channels of a block's output:
  ``mode="detach"`` passes their values forward unchanged (bit-identical forward pass) and removes
  their gradient path; ``mode="zero"`` ablates them (forward value 0, hence no gradient either).
"""
from __future__ import annotations

import threading
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


class Recording(threading.local):
    """What ``capture`` recorded, per thread (hooks are shared by threads that run the same model):
    ``outputs[path]`` each module's latest output as it made it, ``leaves[path]`` (with ``cut``)
    the detached copy the layers above it ran on."""

    def __init__(self):
        self.outputs: dict[str, torch.Tensor] = {}
        self.leaves: dict[str, torch.Tensor] = {}


@contextmanager
def capture(model: nn.Module, paths: Sequence[str], cut: bool = False,
            replace: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> Iterator[Recording]:
    """Record the outputs of the modules at ``paths`` (``(B, C, H, W)`` for a conv block) on every
    forward pass inside the block: the one way activations are captured.

    ``cut``: the layers above each module run on ``leaf = output.detach()`` (requiring grad when
    grad mode is on), so a backward pass from the logits stops there at ``leaves[path]`` while
    ``outputs[path]`` keeps the graph below. ``replace(path, tensor) -> tensor``: what the layers
    above run on instead of the output (of the leaf, with ``cut``).
    """
    rec = Recording()

    def make(path: str) -> Callable:
        def fn(module, inputs, output):
            rec.outputs[path] = output
            if cut and isinstance(output, torch.Tensor):
                output = rec.leaves[path] = output.detach().requires_grad_(torch.is_grad_enabled())
            if replace is not None:
                return replace(path, output)
            return output if cut else None
        return fn

    with hooks(model, [(p, make(p)) for p in paths]):
        yield rec


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


class _Reached(Exception):
    """Raised by ``forward_to``'s hook to stop the forward pass at its module."""


def forward_to(model: nn.Module, path: str, x: torch.Tensor) -> torch.Tensor:
    """The output of the module at ``path`` for ``x (B, 3, S, S)``, without running the layers after
    it (as it is part of the graph when grad mode is on)."""
    def stop(_, output: torch.Tensor) -> torch.Tensor:
        raise _Reached

    with capture(model, [path], replace=stop) as rec:
        try:
            model(x)
        except _Reached:
            pass
    if path not in rec.outputs:
        raise RuntimeError(f"{path} did not run in the model's forward pass")
    return rec.outputs[path]
