"""Scoring explanations by simulation: how well an explanation, read alone, predicts a neuron.

An explanation file is either a linear explanation (``concept{i}``, ``weight{i}``, ``bias``: the
original's files, from 0 with 0 in unused slots, explain_neurons.py's, and this project's earlier
ones, from 1 with empty slots) or a one-concept description (``description``: CLIP-Dissect's,
NetDissect's or MILAN's published files, dissect_neurons.py's), so methods share one table.

- **Correlation**: Pearson correlation, on the test split, between the neuron's real summary
  activation and the simulated one (``Σ w_k P(concept_k | image) + b``; for a description,
  ``P(description | image)``).
- **Ablation**: the neuron's activation level (its spatial mean, or max with ``--pool_mode max``)
  is replaced, keeping the map's spatial pattern, by the simulated activation scaled and shifted to
  fit the real one on the validation split; the change of the model's cross-entropy on the test
  images is compared with mean ablation (level replaced by its train-split mean):
  ``1 - Σ|ΔCE(simulated)| / Σ|ΔCE(mean ablation)|`` over neurons and images. 1 means the
  explanation carries everything the level tells the rest of the network; 0, no more than its mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..io import artifacts
from ..io.schema import BIAS, DESCRIPTION, EXPLANATION_LEAD, concept_column, concept_indices, weight_column
from ..core.errors import UserError
from ..core.hooks import capture, hooks
from .linear import simulate


@dataclass
class Simulator:
    """Explanations of one layer's units as ``unit -> (concept indices, weights, bias)``."""
    method: str
    units: dict[int, tuple[list[int], list[float], float]]
    missing: list[int]         # units whose description is not among the concepts


SPLIT_KEYS = ("data", "images", "seed", "pool_mode", "split")   # what makes the test split and the activations


def read_explanations(path: str | Path, layer_names: set[str], names: list[str], config: dict) -> Simulator:
    """Read a linear-explanation or description CSV, keeping the rows of the layer being simulated.

    The file's ``manifest.json`` (if present beside it) must name the same model and weights and,
    for linear explanations (fitted on the train and validation splits), the same data, images,
    split seed and pooling, so that the test images here were never seen by the fit.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"explanation file {path} not found")
    manifest = artifacts.read_manifest(path) or artifacts.read_manifest(path.parent)
    if manifest is not None:
        theirs = manifest.get("config", {})
        keys = ("model", "weights_sha256") + (SPLIT_KEYS if manifest.get("stage") == "explain_neurons" else ())
        for key in keys:
            if key in theirs and artifacts.config_mismatch({key: theirs[key]}, {key: config[key]}):
                raise UserError(f"{path} was made with {key} {theirs[key]!r}, not {config[key]!r} as asked here"
                                + (" (the test split must be the explanations' own)" if key in SPLIT_KEYS else ""))
    layer, unit = EXPLANATION_LEAD[:2]
    frame = artifacts.read_csv(path, (unit,), "explanation file")
    if layer in frame:          # the original's files hold one layer and may lack the column
        frame = frame[frame[layer].astype(str).isin(layer_names)]
        if frame.empty:
            raise UserError(f"{path} has no rows for layer {' or '.join(sorted(layer_names))}")
    index = {n: i for i, n in enumerate(names)}
    units, missing = {}, []
    slots = concept_indices(frame.columns)
    if slots:
        for _, row in frame.iterrows():
            pairs = [(row[concept_column(i)], row[weight_column(i)]) for i in slots if _named(row[concept_column(i)])]
            unknown = [c for c, _ in pairs if c not in index]
            if unknown:
                raise UserError(f"{path}: unit {row[unit]} uses concepts {unknown[:3]} that are not in this "
                                f"concept set; simulate with the --mode and data it was explained with")
            units[int(row[unit])] = ([index[c] for c, _ in pairs], [float(w) for _, w in pairs], float(row[BIAS]))
        method = "linear explanation"
    elif DESCRIPTION in frame:
        for _, row in frame.iterrows():
            if row[DESCRIPTION] in index:
                units[int(row[unit])] = ([index[row[DESCRIPTION]]], [1.0], 0.0)
            else:
                missing.append(int(row[unit]))
        method = "description"
    else:
        raise UserError(f"{path} has neither concept0.. columns nor a {DESCRIPTION} column")
    return Simulator(method, units, missing)


def concepts_of(path: str | Path) -> list[str]:
    """Every concept an explanation file names (its linear explanations' or descriptions'), in
    first-seen order: what a SigLIP or CLIP simulator must score, as the original encodes each."""
    frame = artifacts.read_csv(path, (EXPLANATION_LEAD[1],), "explanation file")
    cells = [frame[concept_column(i)] for i in concept_indices(frame.columns)] or \
        ([frame[DESCRIPTION]] if DESCRIPTION in frame else [])
    return list(dict.fromkeys(str(c).strip() for col in cells for c in col if _named(c)))


def _named(cell) -> bool:
    """A filled concept slot: a name, not the original's 0 or an empty cell."""
    return isinstance(cell, str) and cell.strip() not in ("", "0")


def simulated(concepts: torch.Tensor, sim: Simulator) -> tuple[list[int], torch.Tensor]:
    """``(units, (N, len(units)))`` the simulated activation of every explained unit."""
    units = sorted(sim.units)
    return units, torch.stack([simulate(concepts, *sim.units[u]) for u in units], 1)


def fit_scale(s: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column, ``a, b`` minimising ``||a s + b - y||²``; a constant simulation gets ``a = 0``."""
    sc, yc = s - s.mean(0), y - y.mean(0)
    var = (sc * sc).sum(0)
    a = torch.where(var > 1e-12, (sc * yc).sum(0) / var.clamp_min(1e-12), torch.zeros_like(var))
    return a, y.mean(0) - a * s.mean(0)


def level_hook(units: torch.Tensor, level: torch.Tensor, pool: str, replicas: int):
    """Forward hook for a batch of ``replicas`` copies of ``B`` images, ``(replicas * B, C, H, W)``:
    in copy ``j``, channel ``units[j]`` gets its level (spatial mean or max) set to ``level[j]``
    ``(replicas, B)`` while its spatial pattern is kept."""
    def fn(module, inputs, output: torch.Tensor) -> torch.Tensor:
        out = output.reshape(replicas, -1, *output.shape[1:]).clone()
        r = torch.arange(replicas, device=out.device)
        maps = out[r, :, units]                                            # (R, B, H, W)
        current = maps.mean((2, 3)) if pool == "avg" else maps.amax((2, 3))
        out[r, :, units] = maps + (level - current)[..., None, None].to(maps.dtype)
        return out.reshape(output.shape)
    return fn


@torch.no_grad()
def ablation_deltas(model: torch.nn.Module, path: str, x: torch.Tensor, y: torch.Tensor, units: list[int],
                    levels: dict[str, torch.Tensor], pool: str, chunk: int, temperature: float = 1.0
                    ) -> dict[str, torch.Tensor]:
    """``|ΔCE|`` per unit and image, ``(U, N)``, for each named level replacement ``(U, N)``, the
    cross-entropy of the logits divided by ``temperature`` (the original calibrates with 1.1).

    ``x (N, 3, S, S)`` images and ``y (N,)`` labels on the model's device; ``chunk`` units are
    processed per forward pass (the images repeated once per unit). For a layer whose spatial mean
    feeds a linear classifier (ResNet's ``layer4``) this is the original's ``fc(acts) / T`` with the
    unit's pooled activation replaced.
    """
    base = F.cross_entropy(model(x) / temperature, y, reduction="none")
    out = {k: torch.zeros(len(units), len(x), dtype=torch.float64) for k in levels}
    u_all = torch.tensor(units, device=x.device)
    for s in tqdm(range(0, len(units), chunk), desc="ablation", unit="chunk"):
        uc = u_all[s:s + chunk]
        r = len(uc)
        xr, yr = x.repeat(r, 1, 1, 1), y.repeat(r)
        for name, lv in levels.items():
            with hooks(model, [(path, level_hook(uc, lv[s:s + chunk].to(x.device), pool, r))]):
                ce = F.cross_entropy(model(xr) / temperature, yr, reduction="none").reshape(r, -1)
            out[name][s:s + r] = (ce - base).abs().double().cpu()
    return out


def head_after(model: torch.nn.Module, path: str) -> torch.nn.Module | None:
    """The part of ``model`` after the module ``path``, as a module of that module's output (torch.fx,
    with ``path`` traced as one leaf), or None where the rest of the network also reads earlier
    activations (a layer inside a dense block) or the model does not trace. It lets a search that
    changes only that output run the rest alone."""
    import torch.fx as fx

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
            return qualname == path or super().is_leaf_module(m, qualname)
    try:
        graph = Tracer().trace(model)
    except Exception:  # noqa: BLE001 - a model fx cannot trace keeps the full forward pass
        return None
    nodes = list(graph.nodes)
    start = next((n for n in nodes if n.op == "call_module" and n.target == path), None)
    if start is None:
        return None
    head = fx.Graph()
    env = {start: head.placeholder("layer_output")}
    for n in nodes[nodes.index(start) + 1:]:
        inputs = n.all_input_nodes
        if n.op == "get_attr" or (inputs and all(i in env for i in inputs)):
            env[n] = head.node_copy(n, lambda i: env[i])
        elif inputs and any(i in env for i in inputs):
            return None                                    # mixes the layer's output with earlier activations
        elif n.op == "output":
            return None
    if not any(n.op == "output" for n in head.nodes):
        return None
    return fx.GraphModule(model, head)


def optim_levels(model: torch.nn.Module, path: str, x: torch.Tensor, y: torch.Tensor, units: list[int],
                 sim: torch.Tensor, pool: str, chunk: int, temperature: float = 1.1, steps: int = 100,
                 lr: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's ``optim`` mode: per unit, ``c, d`` (from 1 and 0) of the level ``c s + d``
    that minimise ``Σ|ΔCE|`` over the validation images ``x (N, ...)``, ``y (N,)``, by ``steps``
    Adam steps at ``lr``; ``sim (U, N)`` the simulated activations. Units are fitted ``chunk`` at a
    time; Adam is elementwise, so this equals fitting each unit alone. Returns ``c, d`` ``(U,)``."""
    head = head_after(model, path)
    with torch.no_grad():
        if head is not None:        # the layer's output once; each step then runs only the rest
            with capture(model, [path]) as rec:
                base = F.cross_entropy(model(x) / temperature, y, reduction="none")
            layer_out = rec.outputs[path]
        else:
            base = F.cross_entropy(model(x) / temperature, y, reduction="none")
    cs, ds = [], []
    u_all = torch.tensor(units, device=x.device)
    for s in tqdm(range(0, len(units), chunk), desc="ablation: fit c, d", unit="chunk"):
        uc, sc = u_all[s:s + chunk], sim[s:s + chunk].to(x.device).float()
        r = len(uc)
        c = torch.ones(r, device=x.device, requires_grad=True)
        d = torch.zeros(r, device=x.device, requires_grad=True)
        opt = torch.optim.Adam([c, d], lr=lr)
        yr = y.repeat(r)
        inputs = layer_out.repeat(r, *[1] * (layer_out.dim() - 1)) if head is not None else x.repeat(r, 1, 1, 1)
        for _ in range(steps):
            opt.zero_grad()
            hook = level_hook(uc, c[:, None] * sc + d[:, None], pool, r)
            if head is not None:
                logits = head(hook(None, None, inputs))
            else:
                with hooks(model, [(path, hook)]):
                    logits = model(inputs)
            ce = F.cross_entropy(logits / temperature, yr, reduction="none").reshape(r, -1)
            (ce - base).abs().sum().backward()
            opt.step()
        cs.append(c.detach().cpu())
        ds.append(d.detach().cpu())
    return torch.cat(cs).double(), torch.cat(ds).double()


def norm_levels(sim_val: torch.Tensor, real_val: torch.Tensor, sim_test: torch.Tensor) -> torch.Tensor:
    """The original's ``norm`` mode: the test simulation ``sim_test (N_test, U)`` z-scored (over the
    test images), times the validation activations' std and the validation correlation of simulation
    and activation, plus their mean -> ``(N_test, U)``."""
    def z(t: torch.Tensor) -> torch.Tensor:       # a constant column scores 0, not NaN
        return torch.nan_to_num((t - t.mean(0)) / t.std(0), nan=0.0, posinf=0.0, neginf=0.0)
    corr = (z(sim_val) * z(real_val)).sum(0) / (len(sim_val) - 1)
    return z(sim_test) * real_val.std(0) * corr + real_val.mean(0)
