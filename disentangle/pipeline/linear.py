"""The linear-explanation stages: explanations of a layer's neurons (explain_neurons.py) and their
scores by simulation, as test-split correlation (simulate_correlation.py) and by ablation
(simulate_ablation.py). See ``neurons.linear`` and ``neurons.simulation`` for the methods."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..core.errors import UserError
from ..core.layers import layer_width, resolve_layer
from ..io import artifacts, layout
from ..io.schema import (ABLATION_COLUMNS, BIAS, CORRELATION_COLUMNS, EXPLANATION_LEAD, SIMULATION_SUMMARY_COLUMNS,
                         AblationResult, concept_column, weight_column)
from ..neurons import linear as le, simulation
from ..neurons.activations import NeuronData, NeuronDataConfig, load_activations
from .session import Session


@dataclass(frozen=True)
class FitConfig:
    """Which neurons to explain (``start_neuron`` to one before ``end_neuron``, None: the last) and
    the fit's settings (see ``neurons.linear``)."""
    start_neuron: int = 0
    end_neuron: int | None = None
    max_length: int = 10             # most concepts in one explanation
    tolerance: float = 0.02          # least gain in validation correlation that adds a concept
    candidates: int = 20             # concepts per neuron kept from the elastic-net path
    alpha: float = 0.99              # elastic-net mixing: 1 the lasso, 0 ridge

    def __post_init__(self):
        if self.max_length < 1 or self.candidates < 1:
            raise UserError("--max_length and --candidates must be at least 1")
        if not 0 < self.alpha <= 1:
            raise UserError(f"--alpha must be in (0, 1], got {self.alpha}")

    def units(self, n_units: int) -> range:
        """The neurons to explain of a layer of ``n_units``, checked to lie within it."""
        end = n_units if self.end_neuron is None else self.end_neuron
        if not 0 <= self.start_neuron < end <= n_units:
            raise UserError(f"neuron range [{self.start_neuron}, {end}) is not within the layer's {n_units} neurons")
        return range(self.start_neuron, end)


@dataclass
class Explanations:
    """What explain() did: ``skipped`` when ``folder`` already held these explanations (read back)."""
    folder: Path
    skipped: bool
    table: pd.DataFrame              # explanations.csv: one row per neuron


def explanation_table(layer: str, units: range, explanations: list[le.Explanation], names: list[str],
                      max_length: int) -> pd.DataFrame:
    """explanations.csv: per neuron, its validation correlation, up to ``max_length`` (weight,
    concept) pairs in the order the search added them (NaN and empty past its length), its bias."""
    rows = []
    for u, e in zip(units, explanations):
        row = dict(zip(EXPLANATION_LEAD, (layer, u, e.val_corr)))
        for i in range(max_length):
            row[weight_column(i + 1)] = e.weights[i] if i < len(e.concepts) else np.nan
            row[concept_column(i + 1)] = names[e.concepts[i]] if i < len(e.concepts) else ""
        row[BIAS] = e.bias
        rows.append(row)
    return pd.DataFrame(rows)


def fit_explanations(data: NeuronData, units: range, fit: FitConfig, device: torch.device) -> list[le.Explanation]:
    """Explanations of ``units`` fitted on the train split and searched on the validation split."""
    x_train, y_train = (t.to(device) for t in data.part("train"))
    x_val, y_val = (t.to(device) for t in data.part("val"))
    sel = list(units)
    entry = le.elastic_net_path(x_train, y_train[:, sel], alpha=fit.alpha)
    return le.greedy_explanations(x_train, y_train[:, sel], x_val, y_val[:, sel], le.candidates(entry, fit.candidates),
                                  fit.max_length, fit.tolerance)


def explain(session: Session, data: NeuronDataConfig, fit: FitConfig, out: str | Path | None = None,
            overwrite: bool = False) -> Explanations:
    """Linear explanations of the neurons of ``data.layer`` into ``out`` (default
    ``layout.explanations_dir``): ``explanations.csv`` and ``manifest.json``. A folder already
    holding these explanations is left as it is."""
    units = fit.units(layer_width(session.model, resolve_layer(session.spec, data.layer, session.model),
                                  session.example()))
    d = load_activations(session, data)
    config = {**d.config, "units": [units.start, units.stop], "max_length": fit.max_length,
              "tolerance": fit.tolerance, "candidates": fit.candidates, "alpha": fit.alpha}
    out = Path(out or layout.explanations_dir(session.spec.name, data.layer, data.concepts.mode))
    manifest = artifacts.make_manifest("explain_neurons", config, {"device": str(session.device),
                                                                   "batch_size": session.runtime.batch_size})
    if artifacts.open_output(out, manifest, overwrite) == "complete":
        return Explanations(out, True, artifacts.read_csv(out / "explanations.csv", EXPLANATION_LEAD, "explanations"))
    table = explanation_table(data.layer, units, fit_explanations(d, units, fit, session.device), d.names,
                              fit.max_length)
    artifacts.write_csv(out / "explanations.csv", table)
    artifacts.write_json(out / artifacts.MANIFEST, {**manifest, "complete": True})
    return Explanations(out, False, table)


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
                         out: str | Path | None = None) -> Simulation:
    """Test-split correlation between each unit's activation and its simulation from each method's
    explanation file (``files``: method name -> file), into ``out`` (default
    ``layout.simulation_dir``): ``correlations.csv``, ``summary.csv``, ``correlations.png``,
    ``manifest.json``."""
    from ..viz.simulation import correlation_boxplot
    d = load_activations(session, data)
    sims = {n: simulation.read_explanations(f, {d.layer, d.path}, d.names, d.config) for n, f in files.items()}
    x_test, y_test = d.part("test")
    rows, summary = [], []
    for name, sim in sims.items():
        units, s = simulation.simulated(x_test, sim)
        corr = [le.pearson(s[:, j], y_test[:, u]) for j, u in enumerate(units)]
        rows += [dict(zip(CORRELATION_COLUMNS, (name, d.layer, u, c))) for u, c in zip(units, corr)]
        c = pd.Series(corr, dtype=float)
        summary.append(dict(zip(SIMULATION_SUMMARY_COLUMNS, (name, sim.method, len(units) + len(sim.missing),
                                                             len(units), c.mean(), c.median()))))
    out = Path(out or layout.simulation_dir(session.spec.name, data.layer, data.concepts.mode))
    inputs = {n: str(Path(f).resolve()) for n, f in files.items()}
    manifest = artifacts.make_manifest("simulate_correlation", {**d.config, "explanations": inputs},
                                       {"device": str(session.device)}, inputs)
    artifacts.open_derived(out, manifest)
    frame, table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS), pd.DataFrame(summary)
    artifacts.write_csv(out / "correlations.csv", frame)
    artifacts.write_csv(out / "summary.csv", table)
    correlation_boxplot(frame, out / "correlations.png", f"{session.spec.name} {data.layer}: test correlation")
    artifacts.write_json(out / artifacts.MANIFEST, {**manifest, "complete": True})
    return Simulation(out, frame, table)


@dataclass
class Ablation:
    folder: Path
    method: str                      # "linear explanation" or "description"
    per_unit: pd.DataFrame           # ablation.csv
    result: AblationResult           # ablation.json


def simulate_ablation(session: Session, data: NeuronDataConfig, explanations: str | Path, unit_chunk: int = 8,
                      out: str | Path | None = None) -> Ablation:
    """Ablation score of an explanation file (see ``neurons.simulation``) on the test split, into
    ``out`` (default ``layout.simulation_dir(..., ablation=True)``): ``ablation.csv``,
    ``ablation.json``, ``manifest.json``. ``unit_chunk`` units are ablated per forward pass."""
    if unit_chunk < 1:
        raise UserError("--unit_chunk must be at least 1")
    d = load_activations(session, data)
    sim = simulation.read_explanations(explanations, {d.layer, d.path}, d.names, d.config)
    units, s_all = simulation.simulated(d.concepts, sim)
    pos = {k: torch.from_numpy(v) for k, v in d.split.items()}
    real = d.acts[:, units]
    a, b = simulation.fit_scale(s_all[pos["val"]], real[pos["val"]])
    level_sim = (a * s_all + b)[pos["test"]].T.float()                        # (U, N_test)
    level_mean = real[pos["train"]].mean(0)[:, None].expand_as(level_sim).float()

    totals = {"simulated": torch.zeros(len(units), dtype=torch.float64),
              "mean": torch.zeros(len(units), dtype=torch.float64)}
    test_idx = d.images.indices[d.split["test"]]
    start = 0
    for x, y, _ in session.loader(indices=test_idx):
        n = len(x)
        levels = {"simulated": level_sim[:, start:start + n], "mean": level_mean[:, start:start + n]}
        deltas = simulation.ablation_deltas(session.model, d.path, x.to(session.device), y.to(session.device),
                                            units, levels, data.pool_mode, unit_chunk)
        for k in totals:
            totals[k] += deltas[k].sum(1)
        start += n
    result = AblationResult(1 - totals["simulated"].sum().item() / max(totals["mean"].sum().item(), 1e-12),
                            len(units), sim.missing, len(test_idx), totals["simulated"].sum().item(),
                            totals["mean"].sum().item())
    layer_col, unit_col, simulated_col, mean_col, score_col = ABLATION_COLUMNS
    per_unit = pd.DataFrame({layer_col: d.layer, unit_col: units, simulated_col: totals["simulated"].numpy(),
                             mean_col: totals["mean"].numpy()})
    per_unit[score_col] = 1 - per_unit[simulated_col] / per_unit[mean_col].clip(lower=1e-12)
    out = Path(out or layout.simulation_dir(session.spec.name, data.layer, data.concepts.mode, ablation=True))
    inputs = {"explanations": str(Path(explanations).resolve())}
    manifest = artifacts.make_manifest("simulate_ablation", {**d.config, **inputs},
                                       {"device": str(session.device), "batch_size": session.runtime.batch_size},
                                       inputs)
    artifacts.open_derived(out, manifest)
    artifacts.write_csv(out / "ablation.csv", per_unit)
    artifacts.write_json(out / "ablation.json", asdict(result))
    artifacts.write_json(out / artifacts.MANIFEST, {**manifest, "complete": True})
    return Ablation(out, sim.method, per_unit, result)
