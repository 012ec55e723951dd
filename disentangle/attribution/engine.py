"""The attribution engine: Integrated Gradients and Saliency of a batch for many channel masks of
one block in one shared pass.

IG integrates from an all-zero baseline in the model's normalised input space (the data set's mean
colour) with the Gauss-Legendre rule; Saliency is ``|d logit_t / d x|``. The model's parameters are
frozen at load time, so only input gradients are computed. Every attribution the stages write
comes from here (the baseline is the mask that blocks nothing); ``reference.attribute`` (captum)
is the yardstick the tests and ``bench/`` check it against.
"""
from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from .folding import folded_norms
from ..core.hooks import Recording, capture

METHODS = ("ig", "saliency")
# Fewest rows a CPU pass of the engine gets: smaller operators than this cost more in dispatch (and
# in the GIL the passes share) than a thread of their own wins (measured on 2 cores only).
MIN_PASS_ROWS = 32
T = TypeVar("T")


# --- The shared-pass engine -------------------------------------------------------------------
# A block's output h is a cut of the network: every path from input to logits passes through it,
# so dy/dx = sum_c (dy/dh_c)(dh_c/dx). Blocking (detaching) a set of channels removes exactly their
# terms. So one forward pass and one backward pass down to the block serve every channel mask; only
# the last step, the vector-Jacobian product from h back to the input with (keep * dy/dh), differs.
#
# The stem. IG's rows are alpha * x. A stem of affine layers A (convolutions, batch norm in eval
# mode) gives A(alpha x) = A(0) + alpha (A(x) - A(0)), and with one convolution first A(0) is the
# same at every pixel of a channel (its bias, then per-channel affine maps); a max-pool after a ReLU
# then commutes with both (for alpha > 0 the window's argmax does not depend on alpha, and
# max(relu(.)) = relu(max(.))). So the stem runs once per image, each row enters after it as relu(A0
# + alpha * D) with D = pool(A(x) - A(0)), and because everything from there back to x is linear and
# the same for every step, the rows' gradients are summed over the steps first and taken back
# through the stem once per image. Exact up to float rounding; it removes the most memory-heavy
# layers (full resolution) from every IG row.


def gauss_legendre(steps: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """IG interpolation points ``alphas (S,)`` in (0, 1) and weights ``(S,)`` summing to 1 (as captum)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (torch.tensor(0.5 * (nodes + 1), dtype=torch.float32, device=device),
            torch.tensor(0.5 * weights, dtype=torch.float32, device=device))


@dataclass
class Entry:
    """Where the engine's rows enter the model. A row of image ``i`` at step ``alpha`` is
    ``offset + alpha * direction[i]``, fed as ``act(row)`` in place of module ``feed``'s output
    while the modules up to it run on ``stand_in``, a 1x1 image (``feed`` None: the row is the
    model's input). ``back(g, retain_graph)`` takes a gradient with respect to rows ``(B, ...)`` to
    one with respect to the images ``(B, C, H, W)``."""
    direction: torch.Tensor
    offset: torch.Tensor
    feed: str | None = None
    stand_in: torch.Tensor | None = None
    act: Callable[[torch.Tensor], torch.Tensor] = lambda r: r
    back: Callable[[torch.Tensor, bool], torch.Tensor] = lambda g, retain: g


def _stem_modules(model: nn.Module, stem: Sequence[str]) -> tuple[list[nn.Module], nn.Module | None]:
    """The stem's affine layers and its max-pool (None without one); anything else is an error."""
    modules = [model.get_submodule(p) for p in stem]
    n = 1 if modules and isinstance(modules[0], nn.Conv2d) else 0
    while n and n < len(modules) and type(modules[n]) is nn.BatchNorm2d and not modules[n].training:
        n += 1
    rest = modules[n:]
    if n == 0 or rest and [type(m) for m in rest] != [nn.ReLU, nn.MaxPool2d]:
        raise ValueError(f"stem {list(stem)} is not affine layers (one Conv2d, then eval BatchNorm2d), "
                         f"optionally followed by ReLU and MaxPool2d")
    return modules[:n], rest[1] if rest else None


def entry(model: nn.Module, x: torch.Tensor, stem: Sequence[str] = ()) -> Entry:
    """The rows' entry for images ``x (B, C, H, W)``: after the model's ``stem`` (module paths in
    forward order, see above), or at the input when ``stem`` is empty."""
    if not stem:
        return Entry(x, x.new_zeros(()))
    affine, pool = _stem_modules(model, stem)

    def apply(t: torch.Tensor) -> torch.Tensor:
        for m in affine:
            t = m(t)
        return t

    with torch.autocast(x.device.type, enabled=False):   # the stem's one pass per image stays fp32
        base = apply(torch.zeros_like(x[:1]))                                   # (1, C', H', W')
        xr = x.detach().requires_grad_()
        mapped = apply(xr)
        if pool is not None:
            mapped, base = pool(mapped), pool(base)
        direction = (mapped - base).detach()

    def back(g: torch.Tensor, retain: bool) -> torch.Tensor:
        return torch.autograd.grad(mapped, xr, grad_outputs=g.to(mapped.dtype), retain_graph=retain)[0]

    return Entry(direction, base, stem[-1], x[:1, :, :1, :1], F.relu if pool is not None else lambda r: r, back)


class _Pass:
    """A pass's rows and what it recorded at the block, each per thread (the passes of
    ``side_by_side`` share the hooks)."""

    def __init__(self, block: str, rec: Recording):
        self.block, self.rec, self._local = block, rec, threading.local()

    @property
    def rows(self) -> torch.Tensor:
        return self._local.rows

    @rows.setter
    def rows(self, value: torch.Tensor) -> None:
        self._local.rows = value

    @property
    def h(self) -> torch.Tensor:
        return self.rec.outputs[self.block]

    @property
    def leaf(self) -> torch.Tensor:
        return self.rec.leaves[self.block]


@contextmanager
def _pass_hooks(model: nn.Module, at: Entry, block: str) -> Iterator[_Pass]:
    """Hooks for ``masked_gradients``: feed the thread's rows at ``at`` and cut the graph at
    ``block`` (its output ``h`` is replaced by a detached ``leaf`` that the layers above use)."""
    with ExitStack() as stack:
        rec = stack.enter_context(capture(model, [block], cut=True))
        state = _Pass(block, rec)
        if at.feed is not None:
            stack.enter_context(capture(model, [at.feed], replace=lambda path, output: at.act(state.rows)))
        yield state


def masked_gradients(model: nn.Module, rows: torch.Tensor, target: torch.Tensor, keep: torch.Tensor, at: Entry,
                     state: _Pass, seed: torch.Tensor) -> Iterator[torch.Tensor]:
    """Gradients of each row's target logit with respect to the rows, once per channel mask.

    ``rows (N, ...)``: rows entering the model at ``at`` (its input when ``at.feed`` is None), inside
    ``_pass_hooks``, whose ``state`` they go through. ``target (N,)``, ``keep (M, Cb)``: 1 where a
    block channel's gradient path stays open; ``seed (N,)``: each row's gradient is scaled by it,
    which is free here and saves a pass over the gradients. Yields M tensors shaped like ``rows``,
    each equal to the gradient with that mask's blocked channels detached at the block (the forward
    pass is the same for every mask). Yielding lets the caller fold each into its sum before the
    next exists (memory: one gradient, not M).
    """
    state.rows = rows = rows.detach().requires_grad_()
    with record_function("engine: forward"):
        logits = model(rows if at.feed is None else at.stand_in)
    with record_function("engine: backward to the block"):
        picked = logits.gather(1, target[:, None])                                              # (N, 1)
        upper, = torch.autograd.grad(picked, state.leaf, seed.to(picked.dtype)[:, None])
    del logits, picked
    keep = keep.to(upper.dtype).view(len(keep), 1, -1, *(1,) * (upper.dim() - 2))   # (M, 1, Cb, 1, 1)
    for m in range(len(keep)):
        with record_function("engine: VJP below the block"):
            g, = torch.autograd.grad(state.h, rows, grad_outputs=upper * keep[m], retain_graph=m < len(keep) - 1)
        yield g


def side_by_side(work: Callable[[int], T], n: int) -> list[T]:
    """``[work(0), ..., work(n - 1)]``, with ``n > 1`` in as many threads, each running its CPU
    operators single-threaded (PyTorch releases the GIL inside them) under the caller's CPU autocast
    state (autocast is per thread)."""
    if n == 1:
        return [work(0)]
    threads = torch.get_num_threads()
    autocast = dict(dtype=torch.get_autocast_dtype("cpu"), enabled=torch.is_autocast_enabled("cpu"))

    def single(k: int) -> T:
        torch.set_num_threads(1)          # this thread's OpenMP team
        with torch.autocast("cpu", **autocast):
            return work(k)

    try:
        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(single, range(n)))
    finally:
        torch.set_num_threads(threads)    # the process-wide default that new threads start from


def path_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor, block: str, keep: torch.Tensor,
                   alphas: torch.Tensor, weights: torch.Tensor, chunk: int | None = None,
                   stem: Sequence[str] = (), groups: Sequence[int] | None = None, plain: bool = False
                   ) -> torch.Tensor:
    """``sum_s weights[s] * d logit_t / dx`` at ``alphas[s] * x``, for every mask of ``keep (M, Cb)``
    and every group of steps: ``(G, M, B, C, H, W)`` for ``x (B, C, H, W)``, ``target (B,)``,
    ``alphas, weights (S,)`` and ``groups`` (S ints on the host, each step's sum; default: one sum).

    The ``S x B`` rows (step-major, as captum orders them) go through shared passes of at most
    ``chunk`` rows; with a ``stem`` they enter after it (see above) unless ``block`` is part of it.
    On the CPU, as many passes as torch has threads run side by side (at most one per
    ``MIN_PASS_ROWS`` rows of ``chunk``), each single-threaded and with its share of the ``chunk``
    rows, so memory stays that of ``chunk`` rows: the layers here are too small for one operator to
    keep two cores busy (2 cores, tiny_densenet: 17% faster). The model's eval batch norms are
    folded into its convolutions meanwhile (``folding``). ``plain``: none of these speed tricks
    (no stem, one pass at a time, no folding): the same numbers to float rounding, for debugging.
    """
    e = entry(model, x, () if plain or block in stem else stem)
    groups = list(groups or [0] * len(alphas))
    b, total, n_groups = len(x), len(alphas) * len(x), max(groups) + 1
    cpu = x.device.type == "cpu"
    passes = min(torch.get_num_threads(), max(1, (chunk or total) // MIN_PASS_ROWS)) if cpu and not plain else 1
    n = -(-total // max(1, (chunk or total) // passes))                   # passes' chunks ...
    n = -(-n // passes) * passes if n > 1 else 1                          # ... a multiple of passes
    size = -(-total // n)
    starts = list(range(0, total, size))
    shape = (-1, *(1,) * (x.dim() - 1))

    def work(k: int) -> list[torch.Tensor]:
        acc = [torch.zeros_like(e.direction) for _ in range(n_groups * len(keep))]   # keeps the memory format
        for start in starts[k::passes]:
            stop = min(start + size, total)
            r = torch.arange(start, stop, device=x.device)
            step, img = r // b, r % b
            rows = e.offset + e.direction[img] * alphas[step].view(shape)
            # The rows are runs of consecutive images at one step each: (step, first, end), on the host.
            runs = [(s, max(start - s * b, 0), min(stop - s * b, b)) for s in range(start // b, (stop - 1) // b + 1)]
            for m, g in enumerate(masked_gradients(model, rows, target[img], keep, e, state, weights[step])):
                for s, i, j in runs:
                    acc[groups[s] * len(keep) + m][i:j] += g[s * b + i - start:s * b + j - start]
        return acc

    folds = nullcontext() if plain else folded_norms(model, [block] + ([e.feed] if e.feed else []))
    with folds, _pass_hooks(model, e, block) as state:
        accs = side_by_side(work, min(passes, len(starts)))
    sums = [functools.reduce(torch.add, parts) for parts in zip(*accs)]   # G*M sums (B, ...), group-major
    grads = torch.stack([e.back(g, i < len(sums) - 1) for i, g in enumerate(sums)])
    return grads.unflatten(0, (n_groups, len(keep)))


def masked_attributions(model: nn.Module, x: torch.Tensor, target: torch.Tensor, methods: Sequence[str],
                        block: str, keep: torch.Tensor, ig_steps: int = 50, chunk: int | None = None,
                        stem: Sequence[str] = (), logits: torch.Tensor | None = None, plain: bool = False
                        ) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """IG and/or Saliency of ``x (B, C, H, W)`` for every mask of ``keep (M, Cb)``, all in one shared pass
    (Saliency's gradient at ``x`` is one more step of IG's path).

    Returns per method attributions ``(M, B, C, H, W)`` and for IG the convergence delta ``(M, B)``
    (``sum(attr) - (f(x) - f(0))``, as captum computes it with the mask's hook installed), else None.
    Rows (image, step) are processed ``chunk`` at a time; ``stem``: see ``path_gradients``;
    ``logits (B, K)``: ``model(x)`` where the caller has it already (IG's delta needs f(x)).
    """
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"unknown method {', '.join(map(repr, bad)) or '(none)'}; choose from {METHODS}")
    one = torch.ones(1, device=x.device)
    alphas, weights = gauss_legendre(ig_steps, x.device) if "ig" in methods else (one[:0], one[:0])
    groups = [0] * len(alphas)
    if "saliency" in methods:                                             # the last group
        alphas, weights = torch.cat([alphas, one]), torch.cat([weights, one])
        groups.append(1 if groups else 0)
    grads = path_gradients(model, x, target, block, keep, alphas, weights, chunk, stem, groups, plain)  # (G, M, B, ...)
    out = {}
    if "saliency" in methods:
        out["saliency"] = grads[-1].abs(), None
    if "ig" in methods:
        attr = x[None] * grads[0]
        with torch.no_grad():   # f(baseline) is one row: the all-zero baseline is the same for every image
            fx = model(x) if logits is None else logits
            gap = (fx.float() - model(torch.zeros_like(x[:1])).float()).gather(1, target[:, None]).squeeze(1)  # (B,)
        out["ig"] = attr, attr.flatten(2).sum(2) - gap[None]
    return {m: out[m] for m in methods}


def blocked_attributions(loaded, x: torch.Tensor, block: str, blocked: Sequence[Sequence[int]],
                         target: torch.Tensor | None = None, methods: Sequence[str] = METHODS, ig_steps: int = 50,
                         chunk: int | None = 256, plain: bool = False) -> dict[str, torch.Tensor]:
    """IG and/or Saliency of ``x (B, C, H, W)`` with each set of channels in ``blocked`` detached at
    the named ``block`` (``block_2``, ``layer3`` or a module path) of a loaded model
    (``core.models.LoadedModel``): ``{method: (M, B, C, H, W)}`` for ``M = len(blocked)`` sets (an
    empty set is the plain attribution). ``target (B,)``: the classes to explain (default: the
    prediction). The library form of what the attribution stages compute."""
    from ..core.hooks import channel_mask
    from ..core.layers import layer_width, resolve_layer
    path = resolve_layer(loaded.spec, block, loaded.model)
    x = x.to(next(loaded.model.parameters()).device)
    n = layer_width(loaded.model, path, x[:1])
    keep = (~torch.stack([channel_mask(c, n) for c in blocked])).to(x.device, x.dtype)
    with torch.no_grad():
        logits = loaded.model(x)
    target = logits.argmax(1) if target is None else target.to(x.device)
    maps = masked_attributions(loaded.model, x, target, methods, path, keep, ig_steps, chunk, loaded.spec.stem,
                               logits, plain)
    return {m: attr for m, (attr, _) in maps.items()}
