"""Score explanations by simulation: Pearson correlation, on the test split, between each neuron's
real activation and the one simulated from its explanation alone.

Takes one or more explanation files: explain_neurons.py's explanations.csv and/or
dissect_neurons.py's descriptions.csv (one concept per neuron), so methods share one table.
Writes to --result_dir: correlations.csv (method, layer, unit, test correlation), summary.csv
(per method: neurons, neurons simulated, mean and median correlation), correlations.png and
manifest.json.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from disentangle.io import artifacts
from disentangle import cli
from disentangle.neurons import activations as neuron_data, simulation
from disentangle.core.errors import UserError
from disentangle.neurons.linear import pearson
from disentangle.viz.plots import save_png
from disentangle.core.seeding import set_seeds


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("explanations", nargs="+", help="explanations.csv and/or descriptions.csv files")
    p.add_argument("--names", default=None, help="comma-separated method names (default: folder names)")
    neuron_data.add_args(p)
    p.add_argument("--result_dir", default=None, help="default: outputs/simulation/<model>_<layer>_<mode>")
    return p


def method_names(args) -> list[str]:
    names = args.names.split(",") if args.names else [Path(f).parent.name for f in args.explanations]
    if len(names) != len(args.explanations) or len(set(names)) != len(names):
        raise UserError(f"--names needs {len(args.explanations)} distinct names, got {names}")
    return names


def boxplot(frame: pd.DataFrame, path: Path, title: str) -> None:
    methods = list(frame["method"].drop_duplicates())
    fig, ax = plt.subplots(figsize=(1.8 * len(methods) + 2, 3.2))
    ax.boxplot([frame[frame["method"] == m]["test correlation"] for m in methods], showmeans=True)
    ax.set_xticks(range(1, len(methods) + 1), methods, fontsize=8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("test correlation")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = method_names(args)
    set_seeds(args.seed)
    d = neuron_data.load(args)
    sims = {n: simulation.read_explanations(f, {d.layer, d.path}, d.names, d.config)
            for n, f in zip(names, args.explanations)}
    x_test, y_test = d.part("test")
    rows, summary = [], []
    for name, sim in sims.items():
        units, s = simulation.simulated(x_test, sim)
        corr = [pearson(s[:, j], y_test[:, u]) for j, u in enumerate(units)]
        rows += [{"method": name, "layer": d.layer, "unit": u, "test correlation": c} for u, c in zip(units, corr)]
        c = pd.Series(corr, dtype=float)
        summary.append({"method": name, "kind": sim.method, "neurons": len(units) + len(sim.missing),
                        "simulated": len(units), "mean correlation": c.mean(), "median correlation": c.median()})
    out = Path(args.result_dir or f"outputs/simulation/{d.loaded.spec.name}_{args.target_layer}_{args.mode}")
    inputs = {n: str(Path(f).resolve()) for n, f in zip(names, args.explanations)}
    manifest = artifacts.make_manifest("simulate_correlation", {**d.config, "explanations": inputs},
                                       {"device": str(d.device)}, inputs)
    artifacts.open_derived(out, manifest)
    frame, table = pd.DataFrame(rows), pd.DataFrame(summary)
    artifacts.write_csv(out / "correlations.csv", frame)
    artifacts.write_csv(out / "summary.csv", table)
    boxplot(frame, out / "correlations.png", f"{d.loaded.spec.name} {args.target_layer}: test correlation")
    artifacts.write_json(out / artifacts.MANIFEST, {**manifest, "complete": True})
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for s in summary:
        if s["simulated"] < s["neurons"]:
            print(f"note: {s['method']}: {s['neurons'] - s['simulated']} neurons have descriptions outside "
                  f"the concept set and are not simulated")
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
