"""Split an attribution over a block's clusters: the map with only one cluster's path open.

Because the block output is a cut, the signed input gradient is the sum over its channels'
paths, so the maps of the clusters (a partition of the channels) add up to the full map for
Saliency's signed gradient and for IG; the remainder ``full - sum(clusters)`` is rounding only.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..attribution.engine import masked_attributions, path_gradients


def cluster_maps(model: nn.Module, x: torch.Tensor, target: torch.Tensor, block: str, labels: torch.Tensor,
                 method: str, ig_steps: int = 50, chunk: int | None = None, stem: Sequence[str] = (),
                 plain: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (B, C, H, W)`` -> full signed map ``(B, C, H, W)`` and one map per cluster ``(k, B, C, H, W)``.

    ``labels (Cb,)``: each block channel's cluster. Saliency maps are the signed gradients here.
    ``stem``: the model's (``ModelSpec.stem``), run once per image; ``plain``: the engine without
    its speed tricks.
    """
    k = int(labels.max()) + 1
    only = torch.nn.functional.one_hot(labels.long(), k).T.float()                 # (k, Cb): one path open
    keep = torch.cat([torch.ones(1, len(labels)), only]).to(x.device)
    if method == "ig":
        maps, _ = masked_attributions(model, x, target, ["ig"], block, keep, ig_steps, chunk, stem, plain=plain)["ig"]
    elif method == "saliency":
        one = torch.ones(1, device=x.device)
        maps = path_gradients(model, x, target, block, keep, one, one, chunk, stem, plain=plain)[0]
    else:
        raise ValueError(f"unknown method {method!r}")
    return maps[0], maps[1:]


def shares(full: torch.Tensor, parts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image: each cluster's percentage ``(k, B)`` as the original computes it (its map's L2
    norm over the sum of the clusters' L2 norms, x100: the percentages add up to 100), its signed
    share of the map's sum ``(k, B)``, its absolute mass over the full map's ``(k, B)`` (these add
    up to more than 1 where clusters' maps cancel), and the remainder's absolute mass relative to
    the full map's ``(B,)``."""
    total = full.flatten(1).sum(1)                                                  # (B,)
    mass = full.abs().flatten(1).sum(1).clamp_min(1e-30)
    remainder = full - parts.sum(0)
    norms = parts.flatten(2).norm(dim=2)                                            # (k, B)
    return {"cluster_percentages": 100 * norms / norms.sum(0).clamp_min(1e-30),
            "signed_share": parts.flatten(2).sum(2) / total,
            "mass_share": parts.abs().flatten(2).sum(2) / mass,
            "remainder": remainder.abs().flatten(1).sum(1) / mass}


def original_stats(full: torch.Tensor, parts: torch.Tensor) -> dict[str, torch.Tensor]:
    """The original decomposition_analysis.py's numbers per image, from the full map ``full (B, C, H, W)``
    and the clusters' maps ``parts (k, B, C, H, W)``: ``cluster_magnitudes (k, B)`` (L2 norm of each
    map), ``cluster_percentages (k, B)`` (norm over the sum of norms, x100), ``cluster_sparsity
    (k, B)`` (the original's pixel sparsity of each map), ``reconstruction_error (B,)`` (mean
    absolute difference of the full map and the sum of the clusters' maps) and
    ``cluster_independence (B,)`` (mean absolute Pearson correlation over pairs of clusters' maps,
    pairs without one left out; 0 when none is left)."""
    from ..attribution.metrics import sparsity
    k, b = parts.shape[:2]
    flat = parts.flatten(2).double()                                               # (k, B, D)
    norms = flat.norm(dim=2)
    centred = flat - flat.mean(2, keepdim=True)
    scale = centred.norm(dim=2)                                                    # (k, B)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    corr = torch.stack([(centred[i] * centred[j]).sum(1) / (scale[i] * scale[j]) for i, j in pairs]) \
        if pairs else torch.full((1, b), float("nan"), dtype=torch.float64)        # (P, B), NaN for a flat map
    valid = ~torch.isnan(corr)
    independence = torch.where(valid, corr.abs(), 0).sum(0) / valid.sum(0).clamp_min(1)
    return {"cluster_magnitudes": norms,
            "cluster_percentages": 100 * norms / norms.sum(0).clamp_min(1e-300),
            "cluster_sparsity": sparsity(parts.flatten(0, 1), "pixel", 0.9, "original").view(k, b).double(),
            "reconstruction_error": (full.double() - flat.sum(0).view_as(full)).abs().flatten(1).mean(1),
            "cluster_independence": independence}
