"""Score an explanation by ablation: replace a neuron's activation level by the one simulated from
its explanation and compare the change in the model's loss with mean ablation.

score = 1 - Σ|ΔCE(simulated)| / Σ|ΔCE(mean ablation)| over the explained neurons and the test
images (see disentangle/simulation.py). Writes to --result_dir: ablation.csv (per unit: Σ|ΔCE|
simulated and mean-ablated, and the unit's own score), ablation.json (the overall score) and
manifest.json.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from disentangle.io import artifacts
from disentangle import cli
from disentangle.neurons import activations as neuron_data, simulation
from disentangle.data.images import make_loader
from disentangle.core.errors import UserError
from disentangle.core.seeding import set_seeds


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("explanations", help="explanations.csv (explain_neurons.py) or descriptions.csv (dissect_neurons.py)")
    neuron_data.add_args(p)
    p.add_argument("--unit_chunk", type=cli.positive, default=8, help="neurons ablated in one forward pass (memory)")
    p.add_argument("--result_dir", default=None, help="default: outputs/simulation/<model>_<layer>_<mode>_ablation")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.unit_chunk < 1:
        raise UserError("--unit_chunk must be at least 1")
    set_seeds(args.seed)
    d = neuron_data.load(args)
    sim = simulation.read_explanations(args.explanations, {d.layer, d.path}, d.names, d.config)
    units, s_all = simulation.simulated(d.concepts, sim)
    pos = {k: torch.from_numpy(v) for k, v in d.split.items()}
    real = d.acts[:, units]
    a, b = simulation.fit_scale(s_all[pos["val"]], real[pos["val"]])
    level_sim = (a * s_all + b)[pos["test"]].T.float()                        # (U, N_test)
    level_mean = real[pos["train"]].mean(0)[:, None].expand_as(level_sim).float()

    totals = {"simulated": torch.zeros(len(units), dtype=torch.float64),
              "mean": torch.zeros(len(units), dtype=torch.float64)}
    test_idx = d.indices[d.split["test"]]
    start = 0
    workers = 0 if d.config["data"]["name"] == "concepts" else args.workers
    for x, y, _ in make_loader(d.dataset, test_idx, args.batch_size, workers, d.device):
        n = len(x)
        levels = {"simulated": level_sim[:, start:start + n], "mean": level_mean[:, start:start + n]}
        deltas = simulation.ablation_deltas(d.loaded.model, d.path, x.to(d.device), y.to(d.device), units,
                                            levels, args.pool_mode, args.unit_chunk)
        for k in totals:
            totals[k] += deltas[k].sum(1)
        start += n
    score = 1 - totals["simulated"].sum().item() / max(totals["mean"].sum().item(), 1e-12)
    per_unit = pd.DataFrame({"layer": d.layer, "unit": units, "sum_abs_dce_simulated": totals["simulated"].numpy(),
                             "sum_abs_dce_mean": totals["mean"].numpy()})
    per_unit["score"] = 1 - per_unit["sum_abs_dce_simulated"] / per_unit["sum_abs_dce_mean"].clip(lower=1e-12)
    out = Path(args.result_dir or f"outputs/simulation/{d.loaded.spec.name}_{args.target_layer}_{args.mode}_ablation")
    inputs = {"explanations": str(Path(args.explanations).resolve())}
    manifest = artifacts.make_manifest("simulate_ablation", {**d.config, **inputs},
                                       {"device": str(d.device), "batch_size": args.batch_size}, inputs)
    artifacts.open_derived(out, manifest)
    artifacts.write_csv(out / "ablation.csv", per_unit)
    result = {"score": score, "units": len(units), "not_simulated": sim.missing, "test_images": len(test_idx),
              "sum_abs_dce_simulated": totals["simulated"].sum().item(), "sum_abs_dce_mean": totals["mean"].sum().item()}
    artifacts.write_json(out / "ablation.json", result)
    artifacts.write_json(out / artifacts.MANIFEST, {**manifest, "complete": True})
    print(f"{sim.method} of {len(units)} neurons of {args.target_layer}: ablation score {score:.3f} "
          f"(Σ|ΔCE| simulated {result['sum_abs_dce_simulated']:.2f} vs mean ablation {result['sum_abs_dce_mean']:.2f}, "
          f"{len(test_idx)} test images)")
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
