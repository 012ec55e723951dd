"""CLIP-Dissect's similarity functions (Oikarinen & Weng, 2023), batched over neurons.

Inputs: ``clip (N, M)``, the cosine similarity of each probe image's CLIP embedding with each
concept's text embedding, and ``target (N, U)``, each neuron's summary activation (spatial mean)
per image. Each function returns ``(U, M)``: how well concept ``m`` describes neuron ``u``; the
description is the argmax over ``m``. Defaults are those of the CLIP-Dissect release.

- ``soft_wpmi`` (default): soft weighted pointwise mutual information over the neuron's top
  images, each image counting with a probability that falls from ``p_start`` to ``p_end`` by rank.
- ``wpmi``: the same with hard membership of the top images.
- ``rank_reorder``: how little the neuron's top activations change when its top images are
  reordered by the concept's CLIP similarity (``-error``), scaled by the concept's mean similarity.
- ``cos_similarity``: cosine similarity of the columns (each neuron's activations and each concept's
  CLIP similarities over the probe images).
- ``cos_similarity_cubed``: the same on the centred, cubed columns.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

METHODS = ("soft_wpmi", "wpmi", "rank_reorder", "cos_similarity", "cos_similarity_cubed")


def _log_p_given_top(probs: torch.Tensor, inds: torch.Tensor, weights: torch.Tensor | None,
                     min_prob: float, chunk: int) -> torch.Tensor:
    """``Σ_i log(1 + w_i (P[top_i(u), m] - 1) + min_prob)`` -> ``(U, M)``; ``inds (k, U)``,
    ``weights (k,)`` or None for ``w = 1``."""
    out = []
    for s in range(0, inds.shape[1], chunk):
        g = probs[inds[:, s:s + chunk]]                                     # (k, Uc, M)
        if weights is not None:
            g = 1 + weights[:, None, None] * (g - 1)
        out.append(torch.log(g + min_prob).sum(0))
    return torch.cat(out)


def _mutual_info(log_p: torch.Tensor, lam: float) -> torch.Tensor:
    """``log p(m | top(u)) - lam * log mean_u p(m | top(u))`` (logsumexp against underflow)."""
    log_prior = torch.logsumexp(log_p, dim=0, keepdim=True) - math.log(log_p.shape[0])
    return log_p - lam * log_prior


def soft_wpmi(clip: torch.Tensor, target: torch.Tensor, top_k: int = 100, a: float = 10.0, lam: float = 1.0,
              min_prob: float = 1e-7, p_start: float = 0.998, p_end: float = 0.97, chunk: int = 64,
              **_) -> torch.Tensor:
    probs = torch.softmax(a * clip, dim=1)
    k = min(top_k, clip.shape[0])
    inds = target.topk(k, dim=0).indices
    # The weights fall with rank over the requested top_k (as released), even if fewer images exist.
    w = p_start - torch.arange(k, device=clip.device, dtype=clip.dtype) / top_k * (p_start - p_end)
    return _mutual_info(_log_p_given_top(probs, inds, w, min_prob, chunk), lam)


def wpmi(clip: torch.Tensor, target: torch.Tensor, top_k: int = 28, a: float = 2.0, lam: float = 0.6,
         min_prob: float = 1e-7, chunk: int = 64, **_) -> torch.Tensor:
    probs = torch.softmax(a * clip, dim=1)
    inds = target.topk(min(top_k, clip.shape[0]), dim=0).indices
    return _mutual_info(_log_p_given_top(probs, inds, None, min_prob, chunk), lam)


def rank_reorder(clip: torch.Tensor, target: torch.Tensor, p: float = 3.0, top_fraction: float = 0.05,
                 scale_p: float = 0.5, seed: int = 0, chunk: int = 64, **_) -> torch.Tensor:
    n = max(2, int(clip.shape[0] * top_fraction))
    top, inds = target.topk(n, dim=0)                                       # (n, U), descending
    ascending = top.flip(0)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    # The error of a random reordering, per neuron: the scale the concept's error is compared with.
    perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(5)]).to(clip.device)   # (5, n)
    baseline = (ascending[None] - ascending[perms]).abs().pow(p).mean(dim=(0, 1))             # (U,)
    out = []
    for s in range(0, inds.shape[1], chunk):
        g = clip[inds[:, s:s + chunk]]                                      # (n, Uc, M)
        mean_sim = g.mean(0)                                                # (Uc, M)
        ranks = g.argsort(0).argsort(0)                                     # rank of each image per concept
        asc = ascending[:, s:s + chunk]
        reordered = asc[:, :, None].expand_as(ranks).gather(0, ranks)
        error = (top[:, s:s + chunk, None] - reordered).abs().pow(p).mean(0) / baseline[s:s + chunk, None]
        # A concept no top image resembles (mean similarity <= 0, possible with an untrained CLIP)
        # is scored as if barely similar instead of giving NaN.
        out.append(-error / mean_sim.clamp_min(1e-6).pow(scale_p))
    return torch.cat(out)


def cos_similarity(clip: torch.Tensor, target: torch.Tensor, **_) -> torch.Tensor:
    return (target / target.norm(dim=0, keepdim=True)).T @ (clip / clip.norm(dim=0, keepdim=True))


def cos_similarity_cubed(clip: torch.Tensor, target: torch.Tensor, min_norm: float = 1e-3, **_) -> torch.Tensor:
    def prep(x: torch.Tensor) -> torch.Tensor:
        x = (x - x.mean(0, keepdim=True)) ** 3
        return x / x.norm(dim=0, keepdim=True).clamp_min(min_norm)
    return prep(target).T @ prep(clip)


SIMILARITY: dict[str, Callable[..., torch.Tensor]] = {
    "soft_wpmi": soft_wpmi, "wpmi": wpmi, "rank_reorder": rank_reorder, "cos_similarity": cos_similarity,
    "cos_similarity_cubed": cos_similarity_cubed}


def describe(clip: torch.Tensor, target: torch.Tensor, concepts: list[str], method: str = "soft_wpmi",
             seed: int = 0) -> list[dict]:
    """One row per neuron: its best concept and the similarity score."""
    sim = SIMILARITY[method](clip.float(), target.float(), seed=seed)
    best, arg = sim.max(dim=1)
    return [{"unit": u, "description": concepts[c], "similarity": v}
            for u, (v, c) in enumerate(zip(best.tolist(), arg.tolist()))]
