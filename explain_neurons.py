"""Linear explanations of a layer's neurons: activation ≈ Σ w_k · P(concept_k | image) + b.

Writes to --result_dir: explanations.csv (layer, unit, val correlation, weight1, concept1, ...,
bias; up to --max_length concepts per neuron, in the order the greedy search added them) and
manifest.json. See disentangle/linear_explanations.py for the method.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from disentangle.io import artifacts
from disentangle import cli
from disentangle.neurons import linear as le, activations as neuron_data
from disentangle.core.errors import UserError
from disentangle.core.seeding import set_seeds


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    neuron_data.add_args(p)
    f = p.add_argument_group("fit")
    f.add_argument("--start_neuron", type=int, default=0, help="first neuron to explain")
    f.add_argument("--end_neuron", type=int, default=None, help="one past the last neuron (default: all)")
    f.add_argument("--max_length", type=cli.positive, default=10, help="most concepts in one explanation")
    f.add_argument("--tolerance", type=float, default=0.02,
                   help="a concept is added only if it raises validation correlation by at least this much")
    f.add_argument("--candidates", type=cli.positive, default=20,
                   help="concepts per neuron kept from the elastic-net path for the greedy search")
    f.add_argument("--alpha", type=float, default=0.99, help="elastic-net mixing: 1 is the lasso, 0 ridge")
    p.add_argument("--result_dir", default=None,
                   help="default: outputs/linear_explanations/<model>_<layer>_<mode>")
    p.add_argument("--overwrite", action="store_true", help="replace a folder holding a run with other settings")
    return p


def explanation_rows(layer: str, units: range, explanations: list[le.Explanation], names: list[str],
                     max_length: int) -> pd.DataFrame:
    rows = []
    for u, e in zip(units, explanations):
        row = {"layer": layer, "unit": u, "val correlation": e.val_corr}
        for i in range(max_length):
            row[f"weight{i + 1}"] = e.weights[i] if i < len(e.concepts) else np.nan
            row[f"concept{i + 1}"] = names[e.concepts[i]] if i < len(e.concepts) else ""
        row["bias"] = e.bias
        rows.append(row)
    return pd.DataFrame(rows)


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.max_length < 1 or args.candidates < 1:
        raise UserError("--max_length and --candidates must be at least 1")
    if not 0 < args.alpha <= 1:
        raise UserError(f"--alpha must be in (0, 1], got {args.alpha}")
    set_seeds(args.seed)

    def check_units(n_units: int) -> None:
        end = n_units if args.end_neuron is None else args.end_neuron
        if not 0 <= args.start_neuron < end <= n_units:
            raise UserError(f"neuron range [{args.start_neuron}, {end}) is not within the layer's {n_units} neurons")

    d = neuron_data.load(args, check_units)
    units = range(args.start_neuron, d.acts.shape[1] if args.end_neuron is None else args.end_neuron)
    config = {**d.config, "units": [units.start, units.stop], "max_length": args.max_length,
              "tolerance": args.tolerance, "candidates": args.candidates, "alpha": args.alpha}
    out = Path(args.result_dir or f"outputs/linear_explanations/{d.loaded.spec.name}_{args.target_layer}_{args.mode}")
    manifest = artifacts.make_manifest("explain_neurons", config, {"device": str(d.device),
                                                                   "batch_size": args.batch_size})
    if artifacts.open_output(out, manifest, args.overwrite) == "complete":
        print(f"{out} already holds these explanations; nothing to do")
        return 0

    x_train, y_train = d.part("train")
    x_val, y_val = d.part("val")
    sel = list(units)
    dev = d.device
    entry = le.elastic_net_path(x_train.to(dev), y_train[:, sel].to(dev), alpha=args.alpha)
    explanations = le.greedy_explanations(x_train.to(dev), y_train[:, sel].to(dev), x_val.to(dev),
                                          y_val[:, sel].to(dev), le.candidates(entry, args.candidates),
                                          args.max_length, args.tolerance)
    frame = explanation_rows(args.target_layer, units, explanations, d.names, args.max_length)
    artifacts.write_csv(out / "explanations.csv", frame)
    artifacts.write_json(out / artifacts.MANIFEST, {**manifest, "complete": True})

    corr = frame["val correlation"]
    lengths = frame.filter(like="concept").ne("").sum(axis=1)
    print(f"{len(frame)} neurons of {args.target_layer}: validation correlation mean {corr.mean():.3f}, "
          f"median {corr.median():.3f}; {lengths.mean():.1f} concepts per explanation")
    for _, row in frame.sort_values("val correlation", ascending=False).head(5).iterrows():
        terms = " + ".join(f"{row[f'weight{i}']:.2f}·{row[f'concept{i}']}" for i in range(1, args.max_length + 1)
                           if row[f"concept{i}"])
        print(f"  unit {row['unit']:>4}: r = {row['val correlation']:.3f}  {terms} {row['bias']:+.2f}")
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
