"""Eval-mode batch norms folded into the convolutions next to them, for the engine's passes.

An eval ``BatchNorm2d`` is a per-channel affine map ``y = a * x + b``. Three rewrites, each exact up
to float rounding, remove most of its elementwise passes over the activations (forward and backward):

- conv -> BN, the conv's output used by nothing else: the BN goes into the conv's weights and bias
  (``W a``, ``bias a + b``) and becomes the identity.
- BN -> ReLU -> conv, each used only by the next, every ``a > 0`` (then ``relu(a x + b) = a relu(x +
  b/a)``): ``a`` goes into the conv's input channels and the BN becomes ``x + b/a``, whose gradient
  is free. Zero padding stays zero under the scaling, so any ``Conv2d`` with one group qualifies.
- any other eval ``BatchNorm2d``: one multiply-add per element (``_Affine``).

Which modules feed which comes from a ``torch.fx`` trace of the model, made once per model. A model
that does not trace keeps only the last rewrite.
"""
from __future__ import annotations

import copy
import weakref
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

# (conv, bn) pairs and (bn, relu, conv) triples of module paths; a functional ReLU has no path ("").
Pattern = tuple[str, ...]
_PLANS: "weakref.WeakKeyDictionary[nn.Module, list[Pattern]]" = weakref.WeakKeyDictionary()


class _Affine(nn.Module):
    """An eval-mode ``BatchNorm2d`` as one multiply-add per element, ``x * scale + shift``: its
    gradient is one multiply, where the CPU's ``native_batch_norm_backward`` takes about four times
    as long as the forward pass."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.view(1, -1, 1, 1))
        self.register_buffer("shift", shift.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)


class _Shift(nn.Module):
    """``x + shift``: what is left of a batch norm whose scale went into the next convolution."""

    def __init__(self, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("shift", shift.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def _affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval batch norm's per-channel ``(a, b)``."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return a.detach(), (bn.bias - bn.running_mean * a).detach()


def _foldable_norm(m: nn.Module) -> bool:
    return type(m) is nn.BatchNorm2d and not m.training and m.running_var is not None and m.affine


class _Tracer(fx.Tracer):
    """Keeps custom modules without children (for example timm's same-padding convolution, whose
    forward branches on the input's size) as opaque calls instead of tracing into them."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return super().is_leaf_module(m, qualname) or not any(m.children())


def _patterns(model: nn.Module) -> list[Pattern]:
    """The model's foldable conv -> BN pairs and BN -> ReLU -> conv triples, by graph structure only."""
    try:
        graph = _Tracer().trace(model)
    except Exception:   # noqa: BLE001 - any untraceable forward: fold nothing, lose only speed
        return []
    calls: dict[str, int] = {}
    for n in graph.nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1

    def module(n: fx.Node, kind: type) -> bool:   # a module of exactly this type, called only here
        return (n.op == "call_module" and type(model.get_submodule(n.target)) is kind
                and calls[n.target] == 1)

    def relu(n: fx.Node) -> bool:
        return module(n, nn.ReLU) or n.op == "call_function" and n.target in (F.relu, torch.relu)

    def only_user(n: fx.Node) -> fx.Node | None:
        return next(iter(n.users)) if len(n.users) == 1 else None

    found = []
    for n in graph.nodes:
        if not module(n, nn.BatchNorm2d):
            continue
        src = n.args[0] if n.args else None
        if isinstance(src, fx.Node) and module(src, nn.Conv2d) and only_user(src) is n:
            found.append((src.target, n.target))
            continue
        r = only_user(n)
        c = only_user(r) if r is not None and relu(r) else None
        if c is not None and module(c, nn.Conv2d) and model.get_submodule(c.target).groups == 1:
            found.append((n.target, r.target if r.op == "call_module" else "", c.target))
    return found


def _straddles(cut: str, pattern: Pattern) -> bool:
    """Whether folding would change what module ``cut`` outputs or is fed: it is one of the
    pattern's modules, or holds some of them but not all."""
    names = [p for p in pattern if p]
    inside = [p.startswith(cut + ".") for p in names]
    return cut in names or any(inside) and not all(inside)


@contextmanager
def folded_norms(model: nn.Module, cuts: Sequence[str] = ()) -> Iterator[nn.Module]:
    """The model with its eval ``BatchNorm2d`` layers folded (see above) for the duration of a ``with``
    block; every module is put back in ``finally``. ``cuts``: module paths whose outputs hooks installed
    inside the block will read or replace. No fold reaches across a cut, so hooks see the values they
    would without folding; modules with hooks already on them count as cuts and stay as they are."""
    if model not in _PLANS:
        _PLANS[model] = _patterns(model)
    hooked = [name for name, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    patterns = [p for p in _PLANS[model] if not any(_straddles(c, p) for c in [*cuts, *hooked])]
    new: dict[str, nn.Module] = {}

    def current(path: str) -> nn.Module:
        return new[path] if path in new else model.get_submodule(path)

    def scaled_conv(path: str, scale: torch.Tensor, shift: torch.Tensor | None = None) -> None:
        """The conv at ``path`` with its weight multiplied by ``scale`` (broadcast over the weight) and
        ``shift`` added to its bias."""
        conv = copy.deepcopy(current(path))
        conv.weight = nn.Parameter(conv.weight * scale, requires_grad=False)   # keeps the memory format
        if shift is not None:
            bias = shift if conv.bias is None else conv.bias * scale.flatten() + shift
            conv.bias = nn.Parameter(bias, requires_grad=False)
        new[path] = conv

    for p in patterns:
        if len(p) == 2 and _foldable_norm(model.get_submodule(p[1])):      # conv -> BN
            a, b = _affine(model.get_submodule(p[1]))
            scaled_conv(p[0], a.view(-1, 1, 1, 1), b)
            new[p[1]] = nn.Identity()
    for p in patterns:
        if len(p) == 3 and p[0] not in new and _foldable_norm(model.get_submodule(p[0])):   # BN -> ReLU -> conv
            a, b = _affine(model.get_submodule(p[0]))
            if bool((a > 0).all()):
                scaled_conv(p[2], a.view(1, -1, 1, 1))
                new[p[0]] = _Shift(b / a)
    for name, m in model.named_modules():
        if name not in new and name not in hooked and _foldable_norm(m):   # a replacement would drop the hooks
            new[name] = _Affine(*_affine(m))

    swapped = []
    try:
        for path, m in new.items():
            parent, _, child = path.rpartition(".")
            owner = model.get_submodule(parent)
            swapped.append((owner, child, getattr(owner, child)))
            setattr(owner, child, m)
        yield model
    finally:
        for owner, child, m in reversed(swapped):
            setattr(owner, child, m)
