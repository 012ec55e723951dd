"""The linear-explanation stages: explanations of a layer's neurons (explain_neurons.py) and their
scores by simulation, as test-split correlation (simulate_correlation.py) and by ablation
(simulate_ablation.py). See ``neurons.linear`` and ``neurons.simulation`` for the methods."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from ..core import distributed
from ..core.errors import UserError
from ..core.layers import layer_width, resolve_layer
from ..io import artifacts, layout
from ..io.schema import (ABLATION_COLUMNS, BIAS, CORRELATION_COLUMNS, EXPLANATION_LEAD, SIM_ABLATION, SIM_CORRELATION,
                         SIMULATION_SUMMARY_COLUMNS, AblationResult, concept_column, weight_column)
from ..neurons import linear as le, simulation
from ..neurons.activations import NeuronData, NeuronDataConfig, load_activations
from .session import Session


SEARCHES, FITS, CANDIDATES = ("original", "exhaustive", "none"), ("adam", "exact"), ("glm", "path")


@dataclass(frozen=True)
class FitConfig:
    """Which neurons to explain (``start_neuron`` to one before ``end_neuron``, None: the last) and
    how (see ``neurons.linear``). The defaults are the original's protocol: candidates ranked by one
    elastic net at ``glm_lambda`` (``candidates_from="glm"``), the windowed greedy search
    (``search="original"``, ``width`` concepts a step) with Adam fits (``fit="adam"``). Ours:
    ``candidates_from="path"`` (the ``candidates`` earliest on an elastic-net path) and
    ``search="exhaustive"`` (every candidate each step, exact least squares). ``search="none"`` is
    the original's explain_neurons_no_gs.py: the first ``max_length`` concepts of the ranking, one fit."""
    start_neuron: int = 0
    end_neuron: int | None = None
    max_length: int = 10             # most concepts in one explanation
    tolerance: float = 0.02          # least gain in validation correlation that adds a concept
    search: str = "original"
    fit: str = "adam"                # the original search's fits
    candidates_from: str = "glm"
    glm_lambda: float = 0.05         # the candidate model's penalty
    glm_neuron_batch: int = 128      # neurons per candidate-model solve
    width: int = 10                  # concepts the original search tries per step
    candidates: int = 20             # candidates_from="path": concepts kept per neuron
    alpha: float = 0.99              # elastic-net mixing: 1 the lasso, 0 ridge
    neuron_batch: int = 256          # neurons searched together (under torchrun each rank takes every N-th batch)

    def __post_init__(self):
        if min(self.max_length, self.candidates, self.width, self.glm_neuron_batch, self.neuron_batch) < 1:
            raise UserError("--max_length, --candidates, --width, --glm_neuron_batch and --neuron_batch must be at "
                            "least 1")
        if not 0 < self.alpha <= 1:
            raise UserError(f"--alpha must be in (0, 1], got {self.alpha}")
        if not self.glm_lambda > 0:
            raise UserError(f"--glm_lambda must be positive, got {self.glm_lambda}")
        for name, value, allowed in (("search", self.search, SEARCHES), ("fit", self.fit, FITS),
                                     ("candidates_from", self.candidates_from, CANDIDATES)):
            if value not in allowed:
                raise UserError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")

    def units(self, n_units: int) -> range:
        """The neurons to explain of a layer of ``n_units``, checked to lie within it."""
        end = n_units if self.end_neuron is None else self.end_neuron
        if not 0 <= self.start_neuron < end <= n_units:
            raise UserError(f"neuron range [{self.start_neuron}, {end}) is not within the layer's {n_units} neurons")
        return range(self.start_neuron, end)

    def recorded(self) -> dict:
        """What the manifest records of the fit."""
        keys = ["max_length", "tolerance", "search", "candidates_from", "alpha", "neuron_batch"]
        keys += ["fit", "width"] if self.search == "original" else ["fit"] if self.search == "none" else []
        keys += ["glm_lambda"] if self.candidates_from == "glm" else ["candidates"]
        return {k: getattr(self, k) for k in keys}


@dataclass
class Explanations:
    """What explain() did: ``skipped`` when ``path`` already held these explanations (read back)."""
    path: Path                       # le_{mode}_{target}_{layer}.csv
    skipped: bool
    table: pd.DataFrame              # one row per neuron


def explanation_file(folder: str | Path, mode: str, model: str, layer: str) -> Path:
    """The original's name of an explanations file: ``<folder>/le_{mode}_{target}_{layer}.csv``."""
    return Path(folder) / f"le_{mode}_{model}_{layer}.csv"


def explanation_table(layer: str, units: range, explanations: list[le.Explanation], names: list[str],
                      max_length: int) -> pd.DataFrame:
    """The original's explanations table: per neuron its validation correlation, then
    ``weight0, concept0, ..., weight{L-1}, concept{L-1}`` (by descending weight; 0 in both past its
    length), then its bias."""
    rows = []
    for u, e in zip(units, explanations):
        row = dict(zip(EXPLANATION_LEAD, (layer, u, e.val_corr)))
        order = sorted(range(len(e.concepts)), key=lambda i: -e.weights[i])
        for i in range(max_length):
            row[weight_column(i)] = e.weights[order[i]] if i < len(order) else 0.0
            row[concept_column(i)] = names[e.concepts[order[i]]] if i < len(order) else 0
        row[BIAS] = e.bias
        rows.append(row)
    return pd.DataFrame(rows)


def fit_explanations(data: NeuronData, units: range, fit: FitConfig, device: torch.device, seed: int = 0
                     ) -> list[le.Explanation]:
    """Explanations of ``units`` fitted on the train split and searched on the validation split,
    over the concepts the original keeps (``le.active_concepts``; every concept in our ``clip``
    mode, whose softmax probabilities over the concept set rarely reach 0.5); concept indices are
    into ``data.names``."""
    active = le.active_concepts(data.concepts) if data.config["mode"] != "clip" else \
        torch.ones(data.concepts.shape[1], dtype=torch.bool)
    keep = torch.nonzero(active).flatten()
    if not len(keep):
        raise UserError("no concept is active enough (top-5 mean probability at least 0.5 and some variation)")
    sel = list(units)
    x_train, y_train = (t.to(device) for t in data.part("train"))
    x_val, y_val = (t.to(device) for t in data.part("val"))
    x_train, x_val, y_train, y_val = x_train[:, keep], x_val[:, keep], y_train[:, sel], y_val[:, sel]
    if fit.candidates_from == "glm":
        y_all = data.acts[:, sel].to(device)
        ranked = torch.cat([le.glm_ranking(le.glm_weights(x_train, y_train[:, i:i + fit.glm_neuron_batch],
                                                          y_all[:, i:i + fit.glm_neuron_batch], fit.glm_lambda,
                                                          fit.alpha))
                            for i in range(0, len(sel), fit.glm_neuron_batch)])
    else:
        ranked = le.candidates(le.elastic_net_path(x_train, y_train, alpha=fit.alpha), fit.candidates)
    if fit.search == "none":
        found = le.top_explanations(x_train, y_train, x_val, y_val, ranked, fit.max_length, fit.fit, seed)
    elif fit.search == "original":
        found = le.windowed_search(x_train, y_train, x_val, y_val, ranked, fit.max_length, fit.tolerance, fit.width,
                                   fit.fit, seed)
    else:
        found = le.greedy_explanations(x_train, y_train, x_val, y_val, ranked[:, :fit.candidates], fit.max_length,
                                       fit.tolerance)
    back = keep.tolist()
    return [le.Explanation([back[c] for c in e.concepts], e.weights, e.bias, e.val_corr) for e in found]


def explain(session: Session, data: NeuronDataConfig, fit: FitConfig, out: str | Path = "results",
            overwrite: bool = False) -> Explanations:
    """Linear explanations of the neurons of ``data.layer`` into the folder ``out``: the original's
    ``le_{mode}_{target}_{layer}.csv`` and its manifest beside it. A file already holding these
    explanations is left as it is."""
    units = fit.units(layer_width(session.model, resolve_layer(session.spec, data.layer, session.model),
                                  session.example()))
    d = load_activations(session, data)
    config = {**d.config, "units": [units.start, units.stop], **fit.recorded()}
    path = explanation_file(out, data.concepts.mode, session.spec.name, data.layer)
    manifest = artifacts.make_manifest("explain_neurons", config, {"device": str(session.device),
                                                                   "batch_size": session.runtime.batch_size})
    rank = distributed.group(session.device)
    if distributed.decide(lambda: artifacts.open_output_file(path, manifest, overwrite)) == "complete":
        return Explanations(path, True, artifacts.read_csv(path, EXPLANATION_LEAD, "explanations"))
    # The neurons are searched in batches of fit.neuron_batch (the Adam fits of a batch share one
    # generator), so a batch's explanations are the same on whichever rank searches it.
    parts = distributed.over_batches(rank, len(units), fit.neuron_batch, lambda a, b: fit_explanations(
        d, units[a:b], fit, session.device, session.seed))

    def write() -> pd.DataFrame:
        table = explanation_table(data.layer, units, [e for part in parts for e in part], d.names, fit.max_length)
        artifacts.write_csv(path, table)
        artifacts.write_manifest(path, {**manifest, "complete": True})
        return table
    return Explanations(path, False, distributed.decide(write))


# What simulates the explanations, by concept mode: never to be read as the paper's SigLIP simulation.
SIMULATORS = {"label": "labels (label protocol)", "siglip": "SigLIP sigmoid probabilities (the original's protocol)",
              "clip": "CLIP softmax (clip protocol)"}
EXPLANATION_METHODS = ("le_label", "le_siglip", "net_dissect", "milan", "clip_dissect")
# Where the Linear-Explanations release keeps each method's published explanations.
RELEASE_DIRS = {"le_label": "results/ours/LE_label", "le_siglip": "results/ours/LE_siglip",
                "net_dissect": "results/baselines/NetDissect", "milan": "results/baselines/MILAN",
                "clip_dissect": "results/baselines/CLIP_Dissect"}


def method_file(method: str, model: str, layer: str, result_dir: str | Path = "results") -> Path:
    """The explanations of ``--explanation_method``: for le_label / le_siglip explain_neurons.py's
    ``<result_dir>/le_<mode>_<target>_<layer>.csv`` if it is there, else the release's published
    ``<RELEASE_DIRS[method]>/<target>_<layer>.csv``; one line naming both when neither is."""
    if method not in EXPLANATION_METHODS:
        raise UserError(f"--explanation_method must be one of {', '.join(EXPLANATION_METHODS)}, got {method!r}")
    tried = [explanation_file(result_dir, method[3:], model, layer)] if method.startswith("le_") else []
    tried.append(Path(RELEASE_DIRS[method]) / f"{model}_{layer}.csv")
    for path in tried:
        if path.is_file():
            return path
    where = " nor ".join(map(str, tried)) + (" exists" if len(tried) > 1 else " does not exist")
    run = "run explain_neurons.py, " if method.startswith("le_") else ""
    raise UserError(f"no {method} explanations of {model} {layer}: {where} ({run}put the release's results/ "
                    f"folder here, or pass --explanation_path)")


def write_back(path: Path, column: str, values: dict[int, float]) -> None:
    """Add (or replace) ``column`` of an explanation file with a value per unit, as the original's
    simulation scripts do (NaN for units not simulated); written atomically."""
    frame = artifacts.read_csv(path, (EXPLANATION_LEAD[1],), "explanation file")
    frame[column] = frame[EXPLANATION_LEAD[1]].map(lambda u: values.get(int(u), float("nan")))
    artifacts.write_csv(path, frame)


def explanation_files(paths: Sequence[str | Path], names: Sequence[str] | None = None) -> dict[str, Path]:
    """Each explanation file by its method's name: ``names``, or by default the files' folder names."""
    names = list(names) if names else [Path(f).parent.name for f in paths]
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise UserError(f"--names needs {len(paths)} distinct names, got {names}")
    return dict(zip(names, (Path(f) for f in paths)))


@dataclass
class Simulation:
    folder: Path
    correlations: pd.DataFrame       # correlations.csv: per method and unit
    summary: pd.DataFrame            # summary.csv: per method


def simulate_correlation(session: Session, data: NeuronDataConfig, files: dict[str, Path],
                         out: str | Path | None = None, write: bool = True) -> Simulation:
    """Test-split correlation between each unit's activation and its simulation from each method's
    explanation file (``files``: method name -> file), into ``out`` (default
    ``layout.simulation_dir``): ``correlations.csv``, ``summary.csv``, ``correlations.png``,
    ``manifest.json``; with ``write``, also into each explanation file's ``sim correlation``
    column, as the original does. The simulator is the concept matrix of ``data`` (in label mode,
    the images' labels: the label protocol, not the paper's SigLIP simulation)."""
    from ..viz.simulation import correlation_boxplot
    d = load_activations(session, data)
    sims = {n: simulation.read_explanations(f, {d.layer, d.path}, d.names, d.config) for n, f in files.items()}
    x_test, y_test = d.part("test")
    rows, summary, scores = [], [], {}
    simulator = SIMULATORS.get(d.config["mode"], d.config["mode"])
    for name, sim in sims.items():
        units, s = simulation.simulated(x_test, sim)
        corr = [le.pearson(s[:, j], y_test[:, u]) for j, u in enumerate(units)]
        scores[name] = dict(zip(units, corr))
        rows += [dict(zip(CORRELATION_COLUMNS, (name, d.layer, u, c))) for u, c in zip(units, corr)]
        c = pd.Series(corr, dtype=float)
        summary.append(dict(zip(SIMULATION_SUMMARY_COLUMNS, (name, sim.method, len(units) + len(sim.missing),
                                                             len(units), c.mean(), c.median(), c.sem(),
                                                             simulator))))
    folder = Path(out or layout.simulation_dir(session.spec.name, data.layer, data.concepts.mode))
    inputs = {n: str(Path(f).resolve()) for n, f in files.items()}
    manifest = artifacts.make_manifest("simulate_correlation", {**d.config, "explanations": inputs},
                                       {"device": str(session.device)}, inputs)
    frame, table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS), pd.DataFrame(summary)

    def finish() -> None:                  # under torchrun rank 0 writes
        artifacts.open_derived(folder, manifest)
        artifacts.write_csv(folder / "correlations.csv", frame)
        artifacts.write_csv(folder / "summary.csv", table)
        correlation_boxplot(frame, folder / "correlations.png", f"{session.spec.name} {data.layer}: test correlation")
        artifacts.write_json(folder / artifacts.MANIFEST, {**manifest, "complete": True})
        if write:
            for name, values in scores.items():
                write_back(Path(files[name]), SIM_CORRELATION, values)
    distributed.decide(finish)
    return Simulation(folder, frame, table)


ABLATION_MODES = ("optim", "norm", "pooled")


@dataclass
class Ablation:
    folder: Path
    method: str                      # "linear explanation" or "description"
    per_unit: pd.DataFrame           # ablation.csv
    result: AblationResult           # ablation.json


def simulate_ablation(session: Session, data: NeuronDataConfig, explanations: str | Path, unit_chunk: int = 8,
                      out: str | Path | None = None, mode: str = "optim", temperature: float = 1.1,
                      write: bool = True) -> Ablation:
    """Ablation score of an explanation file (see ``neurons.simulation``) on the test split, into
    ``out`` (default ``layout.simulation_dir(..., ablation=True)``): ``ablation.csv``,
    ``ablation.json``, ``manifest.json``; ``unit_chunk`` units are ablated per forward pass.

    ``mode``: the original's ``optim`` (the simulated level ``c s + d`` with ``c, d`` fitted by Adam
    to minimise Σ|ΔCE| on the validation split) or ``norm`` (the z-scored simulation scaled by the
    validation std and correlation, plus the validation mean), both against the validation mean and
    scored as the mean over units of ``1 - Σ|ΔCE_sim| / Σ|ΔCE_mean|`` (written back into the file's
    ``sim ablation(<mode>)`` column with ``write``); or our ``pooled`` (least-squares scaling on the
    validation split, the train mean, one ratio over all units). Logits are divided by
    ``temperature`` (the original's 1.1)."""
    if unit_chunk < 1:
        raise UserError("--unit_chunk must be at least 1")
    if mode not in ABLATION_MODES:
        raise UserError(f"--ablation_mode must be one of {', '.join(ABLATION_MODES)}, got {mode!r}")
    if not temperature > 0:
        raise UserError(f"--calibration_temp must be positive, got {temperature}")
    d = load_activations(session, data)
    sim = simulation.read_explanations(explanations, {d.layer, d.path}, d.names, d.config)
    all_units, s_all = simulation.simulated(d.concepts, sim)
    pos = {k: torch.from_numpy(v) for k, v in d.split.items()}
    real = d.acts[:, all_units]
    # Under torchrun each rank ablates every N-th chunk of units, over every test image; a chunk's
    # numbers do not depend on which rank computes it.
    rank = distributed.group(session.device)
    mine = [j for c in rank.shard(range(0, len(all_units), unit_chunk))
            for j in range(c, min(c + unit_chunk, len(all_units)))]
    units = [all_units[j] for j in mine]
    loader = {k: session.loader(indices=d.images.indices[d.split[k]]) for k in ("val", "test")}
    if mode == "optim":
        x_val, y_val = (torch.cat(t) for t in zip(*((x, y) for x, y, _ in loader["val"])))
        c, dd = simulation.optim_levels(session.model, d.path, x_val.to(session.device), y_val.to(session.device),
                                        units, s_all[pos["val"]].T[mine], data.pool_mode, unit_chunk, temperature) \
            if units else (torch.zeros(0), torch.zeros(0))
        level_sim = (c[:, None] * s_all[pos["test"]].T[mine] + dd[:, None]).float()        # (U, N_test)
    elif mode == "norm":
        level_sim = simulation.norm_levels(s_all[pos["val"]], real[pos["val"]], s_all[pos["test"]]).T.float()[mine]
    else:
        a, b = simulation.fit_scale(s_all[pos["val"]], real[pos["val"]])
        level_sim = (a * s_all + b)[pos["test"]].T.float()[mine]
    baseline = real[pos["train" if mode == "pooled" else "val"]].mean(0)[mine]
    level_mean = baseline[:, None].expand_as(level_sim).float()

    mine_totals = {"simulated": torch.zeros(len(units), dtype=torch.float64),
                   "mean": torch.zeros(len(units), dtype=torch.float64)}
    start = 0
    for x, y, _ in loader["test"]:
        n = len(x)
        if units:
            levels = {"simulated": level_sim[:, start:start + n], "mean": level_mean[:, start:start + n]}
            deltas = simulation.ablation_deltas(session.model, d.path, x.to(session.device), y.to(session.device),
                                                units, levels, data.pool_mode, unit_chunk,
                                                1.0 if mode == "pooled" else temperature)
            for k in mine_totals:
                mine_totals[k] += deltas[k].sum(1)
        start += n
    parts = distributed.gather((mine, mine_totals))

    def finish() -> Ablation:              # rank 0 joins the units' totals and writes
        units = all_units
        totals = {k: torch.zeros(len(units), dtype=torch.float64) for k in mine_totals}
        for where, part in parts:
            for k in totals:
                totals[k][where] = part[k]
        per_score = 1 - totals["simulated"] / totals["mean"].clamp_min(1e-12)
        score = float(per_score.mean()) if mode != "pooled" else \
            1 - totals["simulated"].sum().item() / max(totals["mean"].sum().item(), 1e-12)
        sem = float(per_score.std(unbiased=False) / len(units) ** 0.5) if len(units) else float("nan")
        result = AblationResult(score, mode, sem, len(units), sim.missing, start, totals["simulated"].sum().item(),
                                totals["mean"].sum().item())
        layer_col, unit_col, simulated_col, mean_col, score_col = ABLATION_COLUMNS
        per_unit = pd.DataFrame({layer_col: d.layer, unit_col: units, simulated_col: totals["simulated"].numpy(),
                                 mean_col: totals["mean"].numpy(), score_col: per_score.numpy()})
        folder = Path(out or layout.simulation_dir(session.spec.name, data.layer, data.concepts.mode,
                                                   ablation=True))
        inputs = {"explanations": str(Path(explanations).resolve())}
        manifest = artifacts.make_manifest("simulate_ablation", {**d.config, **inputs, "ablation_mode": mode,
                                                                "calibration_temp": temperature},
                                           {"device": str(session.device), "batch_size": session.runtime.batch_size},
                                           inputs)
        artifacts.open_derived(folder, manifest)
        artifacts.write_csv(folder / "ablation.csv", per_unit)
        artifacts.write_json(folder / "ablation.json", asdict(result))
        artifacts.write_json(folder / artifacts.MANIFEST, {**manifest, "complete": True})
        if write and mode in SIM_ABLATION:
            write_back(Path(explanations), SIM_ABLATION[mode], dict(zip(units, per_score.tolist())))
        return Ablation(folder, sim.method, per_unit, result)
    return distributed.decide(finish)
