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

import math

from disentangle import cli
from disentangle.io.schema import AXES, RANK
from disentangle.neurons.scores import ScoreConfig
from disentangle.pipeline.scores import ExtractConfig, extract_trials_file, score_file
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("paths", nargs="+", help="data.csv neuron_map.json results.csv (score) or data.csv (--extract)")
    s = p.add_argument_group("scoring")
    cli.add(s, "clean_level", type=float, default=5, help="the level of unperturbed trials")
    cli.add(s, "threshold_percentile", type=float, default=0.95,
            help="quantile of a neuron's activations above which a trial counts as strongly activating (H)")
    cli.add(s, "recognizable_levels", default="3 4 5",
            help="space-separated levels at which images stay recognisable (R uses those besides the clean one)")
    cli.add(s, "min_p_value", type=float, default=0.05,
            help="selectivity counts only when its t-test p is at most this")
    cli.add(s, "human_score_col", default="soft_correct", help="column of human recognition scores in [0, 1] (H)")
    cli.add(s, "axis_weights", default="0.3 0.3 0.2 0.2",
            help="weights of S C R H, renormalised over the axes available")
    cli.add(s, "quiet", action="store_true", help="print nothing but errors")
    e = p.add_argument_group("extraction (--extract)")
    cli.add(e, "extract", action="store_true", help="build data.csv from a model instead of scoring")
    cli.add(e, "block", default="block_4", help="named block whose channels are the neurons")
    cli.add(e, "neurons", default=None, help="comma-separated channel indices (default: every channel)")
    cli.add(e, "levels", type=cli.positive, default=5, help="perturbation levels; the highest is clean")
    cli.add(e, "model", default="tiny_densenet", help="registered model")
    cli.add(e, "model_weights", default=None, help="the model's weights file (its --weights elsewhere)")
    cli.add(e, "data", default=None, help="'concepts', 'imagenet' or an ImageFolder path (default: the model's)")
    cli.add(e, "data_root", default=None, help="ImageNet validation folder")
    cli.add(e, "images", type=cli.positive, default=120, help="images, evenly spread over classes")
    cli.add(e, "seed", type=int, default=0, help="seed of the perturbation noise")
    cli.runtime_args(p)
    return p


def numbers(text: str, flag: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.replace(",", " ").split())
    except ValueError:
        values = (float("nan"),)
    if not all(math.isfinite(v) for v in values):
        raise cli.UserError(f"{flag} takes space-separated finite numbers, got {text!r}")
    return values


def channel_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(",", " ").split())
    except ValueError:
        raise cli.UserError(f"--neurons takes comma-separated channel indices, e.g. 3,17, got {text!r}") from None


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.extract:
        if len(args.paths) != 1:
            raise cli.UserError("--extract takes one path: the data.csv to write")
        cfg = ExtractConfig(args.block, None if args.neurons is None else channel_list(args.neurons), args.levels)
        session = setup(args.model, args.model_weights, args.data, args.images, args.data_root, cli.runtime(args),
                        args.seed)
        trials = extract_trials_file(session, cfg, args.paths[0])
        if not args.quiet:
            print(f"{len(trials.table)} trials ({trials.images} images x {cfg.levels} levels, clean = {cfg.levels}), "
                  f"{len(trials.neurons)} neurons of {cfg.block} -> {trials.path}")
        return 0
    if len(args.paths) != 3:
        raise cli.UserError("scoring takes three paths: data.csv neuron_map.json results.csv")
    cfg = ScoreConfig(clean_level=args.clean_level, threshold_percentile=args.threshold_percentile,
                      recognizable_levels=numbers(args.recognizable_levels, "--recognizable_levels"),
                      min_p_value=args.min_p_value, human_score_col=args.human_score_col,
                      weights=numbers(args.axis_weights, "--axis_weights"))
    result = score_file(*args.paths, cfg)
    if not args.quiet:
        cols = [RANK, "neuron", "concept", *AXES, "score", "weights_used"]
        print(result[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"-> {args.paths[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
