"""Score an explanation by ablation: replace a neuron's activation level by the one simulated from
its explanation and compare the change in the model's loss with mean ablation.

score = 1 - Σ|ΔCE(simulated)| / Σ|ΔCE(mean ablation)| over the explained neurons and the test
images (see disentangle/neurons/simulation.py). Writes to --output_dir: ablation.csv (per unit:
Σ|ΔCE| simulated and mean-ablated, and the unit's own score), ablation.json (the overall score)
and manifest.json. The file is positional, or as the original --explanation_path / --explanation_method.
This is this project's ablation score (least-squares scaling on the validation split, train-split
mean, pooled ratio), not the paper's optim/norm modes.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.neurons.simulation import concepts_of
from disentangle.pipeline.linear import simulate_ablation
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    cli.explanation_args(p, several=False)
    cli.neuron_data_args(p)
    cli.add(p, "unit_chunk", type=cli.positive, default=8, help="neurons ablated in one forward pass (memory)")
    cli.output_args(p, None, "default: outputs/simulation/<model>_<layer>_<mode>_ablation", overwrite=False)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    (path,), _ = cli.explanation_paths(args)
    concepts = None if args.mode == "label" or args.concept_set else concepts_of(path)
    data = cli.neuron_data(args, "simulator", concepts)
    session = setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args), args.seed)
    outcome = simulate_ablation(session, data, path, args.unit_chunk, args.output_dir)
    r = outcome.result
    print(f"{outcome.method} of {r.units} neurons of {args.block}: ablation score {r.score:.3f} "
          f"(Σ|ΔCE| simulated {r.sum_abs_dce_simulated:.2f} vs mean ablation {r.sum_abs_dce_mean:.2f}, "
          f"{r.test_images} test images)")
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
