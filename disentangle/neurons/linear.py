"""Linear explanations of neurons (after Oikarinen & Weng, 2024), fitted for a whole layer at once.

A neuron's summary activation ``y`` (spatial mean or max per image) is explained as
``y ≈ Σ_k w_k · P(concept_k | image) + b`` with at most ``max_length`` concepts:

1. **Candidates**: an elastic-net path over every neuron of the layer at once (batched proximal
   gradient on standardised columns, warm-started from the largest penalty down). A concept's
   rank is the step of the path at which it first gets a non-zero weight; each neuron keeps its
   ``n_candidates`` earliest.
2. **Greedy search**: starting from no concept, add the candidate that most improves the Pearson
   correlation of the least-squares fit (on the train split) with the real activations on the
   validation split; stop when the best gain is below ``tolerance`` or at ``max_length`` concepts.
   Every fit is solved from covariance matrices, for all neurons and candidates in one batch.

The train/validation/test split is a seeded permutation of the images (70/10/20, the original's fractions).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

SPLITS = ("train", "val", "test")


def split_indices(n: int, seed: int, fractions: tuple[float, float] = (0.7, 0.1)) -> dict[str, np.ndarray]:
    """Seeded split of ``range(n)`` into sorted train/val/test index arrays."""
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(round(fractions[0] * n)), int(round((fractions[0] + fractions[1]) * n))
    if a < 2 or b - a < 2 or n - b < 2:
        raise ValueError(f"{n} images are too few for a train/val/test split")
    return {"train": np.sort(perm[:a]), "val": np.sort(perm[a:b]), "test": np.sort(perm[b:])}


def _standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)) / x.std(0).clamp_min(1e-8)


def elastic_net_path(x: torch.Tensor, y: torch.Tensor, alpha: float = 0.99, n_lambdas: int = 30,
                     lambda_ratio: float = 1e-3, iters: int = 200, tol: float = 1e-6) -> torch.Tensor:
    """Entry step of every concept for every neuron along an elastic-net path.

    Solves ``min_W 1/(2n) ||Y - X W||² + λ_u (α ||W_u||₁ + (1 - α)/2 ||W_u||²)`` for standardised
    ``x (n, M)`` and ``y (n, U)``, with each neuron's ``λ_u`` going geometrically from the
    smallest value giving all-zero weights down by ``lambda_ratio``. Returns ``(U, M)`` int: the
    first path step with a non-zero weight (``n_lambdas`` if never). Each step runs FISTA until
    no weight moves by more than ``tol`` (checked every 10 iterations) or ``iters`` iterations.
    """
    with _few_threads(x.shape[1] * y.shape[1] < 1_000_000 and x.device.type == "cpu"):
        return _path(_standardise(x.double()), _standardise(y.double()), alpha, n_lambdas, lambda_ratio, iters, tol)


@contextmanager
def _few_threads(on: bool):
    """One CPU thread for small problems: thousands of tiny matmuls lose more to waking threads
    than they gain (on a busy 2-core machine, 600 times slower)."""
    before = torch.get_num_threads()
    if on:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def elastic_net(gram: torch.Tensor, xty: torch.Tensor, lam: torch.Tensor, alpha: float,
                w: torch.Tensor | None = None, iters: int = 200, tol: float = 1e-6) -> torch.Tensor:
    """``(M, U)`` elastic-net weights for every neuron at once by FISTA, from ``gram = XᵀX / n``
    ``(M, M)``, ``xty = XᵀY / n`` ``(M, U)`` and penalties ``lam (U,)`` (objective in
    ``elastic_net_path``), warm-started from ``w``. Stops when no weight moves by more than ``tol``
    (checked every 10 iterations) or after ``iters`` iterations."""
    step = 1.0 / torch.linalg.eigvalsh(gram)[-1].clamp_min(1e-12)
    l1, l2 = step * lam * alpha, step * lam * (1 - alpha)
    w = torch.zeros_like(xty) if w is None else w
    z, t = w.clone(), 1.0
    for it in range(iters):
        v = z - step * (gram @ z - xty)
        w_new = torch.sign(v) * (v.abs() - l1).clamp_min(0) / (1 + l2)
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        z = w_new + (t - 1) / t_new * (w_new - w)
        moved = (w_new - w).abs().max() if it % 10 == 9 else None
        w, t = w_new, t_new
        if moved is not None and moved < tol:
            break
    return w


def _path(x: torch.Tensor, y: torch.Tensor, alpha: float, n_lambdas: int, lambda_ratio: float, iters: int,
          tol: float) -> torch.Tensor:
    n = x.shape[0]
    gram, xty = x.T @ x / n, x.T @ y / n                                    # (M, M), (M, U)
    lam_max = xty.abs().amax(0).clamp_min(1e-12) / alpha                   # (U,)
    w = torch.zeros_like(xty)
    entry = torch.full(w.T.shape, n_lambdas, dtype=torch.long, device=x.device)
    for i, scale in enumerate(np.geomspace(1.0, lambda_ratio, n_lambdas)):
        w = elastic_net(gram, xty, lam_max * scale, alpha, w, iters, tol)
        entry = torch.where((w.T != 0) & (entry == n_lambdas), i, entry)
    return entry


@dataclass
class Moments:
    """Centred second moments of concepts ``x`` and activations ``y`` on one split."""
    mx: torch.Tensor     # (M,)
    my: torch.Tensor     # (U,)
    cxx: torch.Tensor    # (M, M)
    cxy: torch.Tensor    # (M, U)
    vy: torch.Tensor     # (U,)

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor) -> "Moments":
        x, y = x.double(), y.double()
        mx, my = x.mean(0), y.mean(0)
        xc, yc = x - mx, y - my
        n = x.shape[0]
        return cls(mx, my, xc.T @ xc / n, xc.T @ yc / n, (yc * yc).mean(0))


def _gather_sets(c: torch.Tensor, sets: torch.Tensor) -> torch.Tensor:
    """``c (M, M)``, ``sets (..., k)`` -> ``(..., k, k)`` sub-matrices."""
    return c[sets[..., :, None], sets[..., None, :]]


def _fit_and_score(train: Moments, val: Moments, units: torch.Tensor, sets: torch.Tensor,
                   ridge: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares weights on train and Pearson correlation on val for concept sets.

    ``units (B,)``, ``sets (B, k)`` -> ``weights (B, k)``, ``corr (B,)``. A tiny ridge keeps
    collinear sets (red + green + blue = 1 on every image) solvable.
    """
    w = _least_squares(train.cxx, train.cxy, units, sets, ridge)
    return w, val_correlation(val, units, sets, w)


def _least_squares(cxx: torch.Tensor, cxy: torch.Tensor, units: torch.Tensor, sets: torch.Tensor,
                   ridge: float = 1e-8) -> torch.Tensor:
    """``(B, k)`` least-squares weights of each concept set from centred moments ``cxx (M, M)`` and
    ``cxy (M, U)``; a tiny ridge keeps collinear sets solvable."""
    g = _gather_sets(cxx, sets)
    eye = torch.eye(sets.shape[1], dtype=g.dtype, device=g.device)
    g = g + ridge * (g.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None] + 1e-12) * eye
    return torch.linalg.solve(g, cxy[sets, units[:, None]][..., None])[..., 0]


@dataclass
class Explanation:
    concepts: list[int]      # concept indices, in the order they were added
    weights: list[float]
    bias: float
    val_corr: float


def candidates(entry: torch.Tensor, n: int) -> torch.Tensor:
    """``(U, n)`` each neuron's ``n`` concepts that enter the path first (ties: lower index)."""
    return torch.argsort(entry, dim=1, stable=True)[:, :min(n, entry.shape[1])]


def greedy_explanations(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                        candidates: torch.Tensor, max_length: int = 10, tolerance: float = 0.02) -> list[Explanation]:
    """Greedy forward selection among ``candidates (U, C)`` for every neuron at once (see module doc)."""
    train, val = Moments.of(x_train, y_train), Moments.of(x_val, y_val)
    u_count, c_count = candidates.shape
    dev = candidates.device
    chosen = torch.empty(u_count, 0, dtype=torch.long, device=dev)
    active = torch.ones(u_count, dtype=torch.bool, device=dev)
    best_corr = torch.zeros(u_count, dtype=torch.float64, device=dev)
    lengths = torch.zeros(u_count, dtype=torch.long, device=dev)
    for step in range(min(max_length, c_count)):
        # Every neuron tries every candidate: sets (U, C, step + 1); a candidate already chosen
        # scores no gain.
        sets = torch.cat([chosen[:, None, :].expand(-1, c_count, -1), candidates[:, :, None]], 2)
        units = torch.arange(u_count, device=dev)[:, None].expand(-1, c_count)
        _, corr = _fit_and_score(train, val, units.reshape(-1), sets.reshape(-1, step + 1))
        corr = corr.reshape(u_count, c_count)
        taken = (candidates[:, :, None] == chosen[:, None, :]).any(2)
        corr = torch.where(taken, torch.full_like(corr, -2.0), corr)
        gain, pick = (corr - best_corr[:, None]).max(1)
        # The first concept is always taken (an explanation has at least one); later ones need the gain.
        accept = active & ((gain >= tolerance) | (lengths == 0))
        new = candidates.gather(1, pick[:, None])
        # Neurons that stop keep their set; pad their row by repeating its last concept (ignored via lengths).
        chosen = torch.cat([chosen, torch.where(accept[:, None], new, chosen[:, -1:] if step else new)], 1)
        best_corr = torch.where(accept, best_corr + gain, best_corr)
        lengths += accept.long()
        active &= accept
        if not active.any():
            break
    out = []
    for u in range(u_count):
        k = int(lengths[u])
        s = chosen[u, :k]
        w, corr = _fit_and_score(train, val, torch.tensor([u], device=dev), s[None])
        bias = train.my[u] - (train.mx[s] * w[0]).sum()
        out.append(Explanation(s.tolist(), w[0].tolist(), float(bias), float(corr[0])))
    return out


# --- the original's protocol (Linear-Explanations' explain_neurons.py) ----------------------------
FIT_LR, FIT_STEPS = 0.3, 100       # its train_linear_model: Adam, full batch, MSE


def active_concepts(x: torch.Tensor) -> torch.Tensor:
    """``(M,)`` bool: the concepts the original keeps, mean of the top 5 probabilities at least 0.5
    and (unbiased) standard deviation at least 1e-5 over all images ``x (N, M)``."""
    top5 = x.float().topk(min(5, x.shape[0]), dim=0).values.mean(0)
    return (top5 >= 0.5) & (x.float().std(0) >= 1e-5)


def glm_weights(x_train: torch.Tensor, y_train: torch.Tensor, y_all: torch.Tensor, lam: float = 0.05,
                alpha: float = 0.99, iters: int = 20000, tol: float = 1e-9) -> torch.Tensor:
    """``(U, M)`` the weights of the original's candidate model: one elastic net
    ``min ½ mean((X w + b - y)²) + λ (α |w|₁ + (1 - α)/2 |w|²)`` (intercept free) per neuron on
    ``x_train (n, M)`` standardised with its own mean and unbiased std, and ``y_train (n, U)``
    standardised with the mean and std of ``y_all`` (every image), as its GLM-SAGA call; solved to
    convergence here."""
    x, y = x_train.double(), y_train.double()
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-12)
    y = (y - y_all.double().mean(0)) / y_all.double().std(0).clamp_min(1e-12)
    n = x.shape[0]
    lams = torch.full((y.shape[1],), lam, dtype=x.dtype, device=x.device)
    with _few_threads(x.shape[1] * y.shape[1] < 1_000_000 and x.device.type == "cpu"):
        w = elastic_net(x.T @ x / n, x.T @ (y - y.mean(0)) / n, lams, alpha, iters=iters, tol=tol)
    return w.T


def glm_ranking(weights: torch.Tensor) -> torch.Tensor:
    """``(U, M)`` each neuron's concepts by descending signed weight (the original's ranking);
    ties (zero weights) keep the concepts' order."""
    return torch.argsort(-weights, dim=1, stable=True)


@dataclass
class RawMoments:
    """Uncentred moments of concepts ``x`` and activations ``y``: what a fit with a free intercept needs."""
    sxx: torch.Tensor    # (M, M) mean of x xᵀ
    sx: torch.Tensor     # (M,)
    sxy: torch.Tensor    # (M, U)
    sy: torch.Tensor     # (U,)

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor) -> "RawMoments":
        x, y = x.double(), y.double()
        n = x.shape[0]
        return cls(x.T @ x / n, x.mean(0), x.T @ y / n, y.mean(0))


def adam_fit(train: RawMoments, units: torch.Tensor, sets: torch.Tensor, gen: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's fit of each concept set: a ``Linear(k, 1)`` initialised as PyTorch does
    (weights and bias uniform in ±1/√k, here from ``gen``), then ``FIT_STEPS`` full-batch Adam steps
    (lr ``FIT_LR``, betas 0.9/0.999, eps 1e-8) on the mean squared error; batched over ``units (B,)``
    and ``sets (B, k)``. Returns weights ``(B, k)`` and biases ``(B,)``."""
    b_count, k = sets.shape
    bound = 1 / math.sqrt(k)
    w = (torch.rand(b_count, k, generator=gen, dtype=torch.float64) * 2 - 1).to(sets.device) * bound
    b = (torch.rand(b_count, generator=gen, dtype=torch.float64) * 2 - 1).to(sets.device) * bound
    g, gx = _gather_sets(train.sxx, sets), train.sx[sets]
    gxy, gy = train.sxy[sets, units[:, None]], train.sy[units]
    m = [torch.zeros_like(w), torch.zeros_like(b)]
    v = [torch.zeros_like(w), torch.zeros_like(b)]
    for t in range(1, FIT_STEPS + 1):
        grads = (2 * ((g @ w[..., None])[..., 0] + gx * b[:, None] - gxy), 2 * ((gx * w).sum(1) + b - gy))
        for i, (p, grad) in enumerate(zip((w, b), grads)):
            m[i] = 0.9 * m[i] + 0.1 * grad
            v[i] = 0.999 * v[i] + 0.001 * grad * grad
            p -= FIT_LR * (m[i] / (1 - 0.9 ** t)) / ((v[i] / (1 - 0.999 ** t)).sqrt() + 1e-8)
    return w, b


def exact_fit(train: RawMoments, units: torch.Tensor, sets: torch.Tensor, ridge: float = 1e-8
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares weights ``(B, k)`` and biases ``(B,)`` of each concept set (our ``--fit exact``)."""
    cxx = train.sxx - train.sx[:, None] * train.sx[None, :]
    cxy = train.sxy - train.sx[:, None] * train.sy[None, :]
    w = _least_squares(cxx, cxy, units, sets, ridge)
    return w, train.sy[units] - (train.sx[sets] * w).sum(1)


def val_correlation(val: Moments, units: torch.Tensor, sets: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(B,)`` Pearson correlation on the validation split of each fit with the activations."""
    cov = (val.cxy[sets, units[:, None]] * w).sum(-1)
    var = (w[:, None, :] @ _gather_sets(val.cxx, sets) @ w[:, :, None])[:, 0, 0]
    corr = cov / (var.clamp_min(1e-30) * val.vy[units]).sqrt()
    return torch.where(var > 1e-24, corr, torch.zeros_like(corr))


def windowed_search(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                    ranked: torch.Tensor, max_length: int = 10, tolerance: float = 0.02, width: int = 10,
                    fit: str = "adam", seed: int = 0) -> list[Explanation]:
    """The original's greedy search, for every neuron at once (rounds in lockstep).

    Each round a neuron tries the first ``width`` concepts of its ranking ``ranked (U, M)`` that are
    neither selected nor bad: each is fitted with the selected ones on the train split (``fit``:
    ``adam``, the original's, or ``exact`` least squares) and scored by validation correlation.
    After the first round, a concept gaining less than ``tolerance`` over the best correlation so
    far is bad for good; among the others the best (first on ties) is selected if it beats that
    correlation. The search stops when a round selects nothing or at ``max_length`` concepts."""
    fitter = {"adam": adam_fit, "exact": exact_fit}[fit]
    train, val = RawMoments.of(x_train, y_train), Moments.of(x_val, y_val)
    gen = torch.Generator().manual_seed(seed)
    u_count = ranked.shape[0]
    selected = [[] for _ in range(u_count)]          # concept ids, in the order selected
    bad = [set() for _ in range(u_count)]
    best = [(0.0, [], 0.0) for _ in range(u_count)]  # (corr, weights, bias)
    active = list(range(u_count))
    ranked_list = ranked.tolist()
    for step in range(max_length):
        tries = []                                    # (neuron, candidate concept)
        for u in active:
            tries += [(u, c) for c in _window(ranked_list[u], set(selected[u]) | bad[u], width)]
        if not tries:
            break
        units = torch.tensor([u for u, _ in tries], device=ranked.device)
        sets = torch.tensor([selected[u] + [c] for u, c in tries], device=ranked.device)
        w, b = fitter(train, units, sets) if fit == "exact" else fitter(train, units, sets, gen)
        corr = val_correlation(val, units, sets, w).tolist()
        choice: dict[int, int] = {}
        for j, (u, c) in enumerate(tries):
            if step > 0 and corr[j] - best[u][0] < tolerance:
                bad[u].add(c)
            elif corr[j] > (corr[choice[u]] if u in choice else best[u][0]):
                choice[u] = j
        for u, j in choice.items():
            selected[u].append(tries[j][1])
            best[u] = (corr[j], w[j].tolist(), float(b[j]))
        active = [u for u in active if u in choice]
        if not active:
            break
    return [Explanation(selected[u], best[u][1], best[u][2], best[u][0]) for u in range(u_count)]


def top_explanations(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                     ranked: torch.Tensor, length: int = 5, fit: str = "adam", seed: int = 0) -> list[Explanation]:
    """The original's explanations without greedy search (explain_neurons_no_gs.py): each neuron's
    first ``length`` concepts of its ranking, fitted once (``fit``) on the train split and scored on
    the validation split; all neurons in one batch."""
    sets = ranked[:, :length]
    units = torch.arange(ranked.shape[0], device=ranked.device)
    train, val = RawMoments.of(x_train, y_train), Moments.of(x_val, y_val)
    gen = torch.Generator().manual_seed(seed)
    w, b = adam_fit(train, units, sets, gen) if fit == "adam" else exact_fit(train, units, sets)
    corr = val_correlation(val, units, sets, w)
    return [Explanation(sets[u].tolist(), w[u].tolist(), float(b[u]), float(corr[u])) for u in range(len(units))]


def _window(ranking: list[int], taken: set[int], width: int) -> list[int]:
    out = []
    for c in ranking:
        if c not in taken:
            out.append(c)
            if len(out) == width:
                break
    return out


def simulate(x: torch.Tensor, concept_idx: list[int], weights: list[float], bias: float) -> torch.Tensor:
    """``x (N, M)`` concept probabilities -> ``(N,)`` simulated activation."""
    w = torch.tensor(weights, dtype=x.dtype, device=x.device)
    return x[:, concept_idx] @ w + bias


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two ``(N,)`` vectors; 0 when either is constant."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = (a.norm() * b.norm()).item()
    return float((a @ b).item() / den) if den > 1e-12 else 0.0
