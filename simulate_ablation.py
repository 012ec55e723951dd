"""Score an explanation by ablation: replace a neuron's activation level by the one simulated from
its explanation and compare the change in the model's loss with mean ablation.

score = 1 - Σ|ΔCE(simulated)| / Σ|ΔCE(mean ablation)| over the explained neurons and the test
images (see disentangle/neurons/simulation.py). Writes to --output_dir: ablation.csv (per unit:
Σ|ΔCE| simulated and mean-ablated, and the unit's own score), ablation.json (the overall score)
and manifest.json, and the per-unit scores back into the file's 'sim ablation(optim)' or 'sim
ablation(norm)' column, as the original does. The file is positional, or as the original
--explanation_path / --explanation_method. --mode optim (default) and norm are the original's
modes; pooled is ours. --simulator picks the concept probabilities (label: the label protocol).
"""
from __future__ import annotations

from disentangle import cli
from disentangle.neurons.simulation import concepts_of
from disentangle.pipeline.linear import ABLATION_MODES, simulate_ablation
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    cli.explanation_args(p, several=False)
    cli.neuron_data_args(p, concept_flag="simulator")
    cli.add(p, "mode", choices=ABLATION_MODES, default="optim",
            help="optim: the simulated level c s + d with c, d fitted by Adam on the validation split; norm: the "
                 "z-scored simulation times the validation std and correlation, plus its mean (both the original's, "
                 "against the validation mean, scored per neuron and averaged); pooled: ours (least-squares scaling, "
                 "train mean, one ratio)")
    cli.add(p, "calibration_temp", type=cli.finite, default=1.1,
            help="optim / norm: logits are divided by this before the cross-entropy (the original's)")
    cli.add(p, "unit_chunk", type=cli.positive, default=8, help="neurons ablated in one forward pass (memory)")
    cli.output_args(p, None, "default: outputs/simulation/<model>_<layer>_<mode>_ablation", overwrite=False)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    (path,), _ = cli.explanation_paths(args)
    concepts = None if cli.concept_mode(args) == "label" or args.concept_set else concepts_of(path)
    data = cli.neuron_data(args, "simulator", concepts)
    session = setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args), args.seed)
    outcome = simulate_ablation(session, data, path, args.unit_chunk, args.output_dir, args.mode, args.calibration_temp)
    r = outcome.result
    print(f"{outcome.method} of {r.units} neurons of {args.block} ({path}): ablation score ({r.mode}) {r.score:.4f} "
          f"+- {r.sem:.4f} (Σ|ΔCE| simulated {r.sum_abs_dce_simulated:.2f} vs mean ablation "
          f"{r.sum_abs_dce_mean:.2f}, {r.test_images} test images), simulated with {cli.concept_mode(args)}")
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
