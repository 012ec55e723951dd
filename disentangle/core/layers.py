"""Layers by name: the one resolver of block names and module paths, and the one width probe."""
from __future__ import annotations

import re

import torch
from torch import nn

from .errors import UserError
from .hooks import capture
from .models import ModelSpec


def resolve_layer(spec: ModelSpec, name: str, model: nn.Module | None = None) -> str:
    """The submodule path of a named block (``block_1``, ``layer4``) or of a path itself; with
    ``model``, any module path of it (checked to exist)."""
    if name in spec.blocks:
        return spec.blocks[name]
    if name in spec.blocks.values():
        return name
    if model is not None:
        # The originals' Python spelling of a path: features[43] is features.43.
        path = re.sub(r"\[(\d+)\]", r".\1", name)
        try:
            model.get_submodule(path)
            return path
        except AttributeError:
            pass
        raise UserError(f"unknown layer {name!r} for {spec.name}; use a block ({', '.join(spec.blocks)}) "
                        f"or a module path")
    raise UserError(f"unknown block {name!r} for {spec.name}; choose from {', '.join(spec.blocks)}")


@torch.no_grad()
def layer_width(model: nn.Module, path: str, x: torch.Tensor) -> int:
    """Units of the output of ``path`` for an input batch ``x (B, 3, S, S)``: the channels of
    ``(B, C, H, W)`` maps or ``(B, U)`` vectors, the last dimension of ``(B, T, U)`` tokens (as
    ``netdissect.pool_units`` summarises them)."""
    with capture(model, [path]) as rec:
        model(x)
    out = rec.outputs[path]
    return int(out.shape[-1] if out.dim() == 3 else out.shape[1])
