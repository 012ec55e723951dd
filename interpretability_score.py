"""Score how interpretable each neuron is for the concept it is said to detect.

  python interpretability_score.py data.csv neuron_map.json results.csv [flags]
  python interpretability_score.py --extract data.csv [--model tiny_densenet --block block_4 ...]

Scoring reads trials (data.csv: trial_category, ground_truth, level, activation_<neuron>, optional
ablate_<neuron>/amplify_<neuron> and a human score column) and a neuron map ({"89": "cat"}), and
writes one ranked row per neuron: selectivity S, causality C, robustness R, human alignment H
(each in [0, 1]; see README for the formulas), the weighted score, thresholds, p-values and notes.
--extract builds data.csv from a model on the concept world (or any data), with perturbation levels.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from disentangle.io import artifacts
from disentangle import cli
from disentangle.neurons import scores
from disentangle.core.layers import layer_width
from disentangle.core.layers import resolve_layer as resolve_block


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("paths", nargs="+", help="data.csv neuron_map.json results.csv (score) or data.csv (--extract)")
    s = p.add_argument_group("scoring")
    s.add_argument("--clean-level", type=float, default=5, help="the level of unperturbed trials")
    s.add_argument("--threshold-percentile", type=float, default=0.95,
                   help="quantile of a neuron's activations above which a trial counts as strongly activating (H)")
    s.add_argument("--recognizable-levels", default="3 4 5",
                   help="space-separated levels at which images stay recognisable (R uses those besides the clean one)")
    s.add_argument("--min-p-value", type=float, default=0.05, help="selectivity counts only when its t-test p is at most this")
    s.add_argument("--human-score-col", default="soft_correct", help="column of human recognition scores in [0, 1] (H)")
    s.add_argument("--weights", default="0.3 0.3 0.2 0.2", help="weights of S C R H, renormalised over the axes available")
    s.add_argument("--quiet", action="store_true", help="print nothing but errors")
    e = p.add_argument_group("extraction (--extract)")
    e.add_argument("--extract", action="store_true", help="build data.csv from a model instead of scoring")
    e.add_argument("--block", default="block_4", help="named block whose channels are the neurons")
    e.add_argument("--neurons", default=None, help="comma-separated channel indices (default: every channel)")
    e.add_argument("--levels", type=cli.positive, default=5, help="perturbation levels; the highest is clean")
    e.add_argument("--model", default="tiny_densenet", help="registered model")
    e.add_argument("--model-weights", default=None, help="the model's weights file (its --weights elsewhere)")
    e.add_argument("--data", default=None, help="'concepts', 'imagenet' or an ImageFolder path (default: the model's)")
    e.add_argument("--data-root", default=None, help="ImageNet validation folder")
    e.add_argument("--images", type=cli.positive, default=120, help="images, evenly spread over classes")
    e.add_argument("--seed", type=int, default=0, help="seed of the perturbation noise")
    cli.add_runtime_args(p)
    return p


def numbers(text: str, flag: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.replace(",", " ").split())
    except ValueError:
        values = (float("nan"),)
    if not all(math.isfinite(v) for v in values):
        raise cli.UserError(f"{flag} takes space-separated finite numbers, got {text!r}")
    return values


def channel_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise cli.UserError(f"--neurons takes comma-separated channel indices, e.g. 3,17, got {text!r}") from None


def extract(args: argparse.Namespace) -> int:
    if len(args.paths) != 1:
        raise cli.UserError("--extract takes one path: the data.csv to write")
    if args.levels < 2:
        raise cli.UserError(f"--levels must be at least 2, got {args.levels}")
    run = cli.setup(argparse.Namespace(**{**vars(args), "weights": args.model_weights}))
    path = resolve_block(run.loaded.spec, args.block)
    n_channels = layer_width(run.loaded.model, path, run.dataset[int(run.indices[0])][0][None].to(run.device))
    neurons = list(range(n_channels)) if args.neurons is None else channel_list(args.neurons)
    if any(not 0 <= n < n_channels for n in neurons):
        raise cli.UserError(f"--neurons must be channels 0..{n_channels - 1} of {args.block}")
    from disentangle.neurons.trials import extract_trials
    names = [c.split("_", 1)[1] if c[:2].isdigit() else c for c in run.dataset.classes]
    frame = extract_trials(run.loaded.model, run.loader(args.batch_size), path, names, neurons, args.levels,
                           run.device, args.seed)
    artifacts.write_csv(args.paths[0], frame)
    if not args.quiet:
        print(f"{len(frame)} trials ({len(run.indices)} images x {args.levels} levels, clean = {args.levels}), "
              f"{len(neurons)} neurons of {args.block} -> {args.paths[0]}")
    return 0


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.extract:
        return extract(args)
    if len(args.paths) != 3:
        raise cli.UserError("scoring takes three paths: data.csv neuron_map.json results.csv")
    cfg = scores.ScoreConfig(clean_level=args.clean_level, threshold_percentile=args.threshold_percentile,
                             recognizable_levels=numbers(args.recognizable_levels, "--recognizable-levels"),
                             min_p_value=args.min_p_value, human_score_col=args.human_score_col,
                             weights=numbers(args.weights, "--weights"))
    if Path(args.paths[2]).resolve() in {Path(p).resolve() for p in args.paths[:2]}:
        raise cli.UserError(f"the results path {args.paths[2]} is one of the inputs; choose another file")
    trials = scores.load_trials(args.paths[0], cfg.human_score_col)
    mapping = scores.load_neuron_map(args.paths[1], trials)
    result = scores.score_neurons(trials, mapping, cfg)
    artifacts.write_csv(args.paths[2], result)
    if not args.quiet:
        cols = ["rank", "neuron", "concept", *scores.AXES, "score", "weights_used"]
        print(result[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"-> {args.paths[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
