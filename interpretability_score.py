"""Score how interpretable each neuron is for the concept it is said to detect (InterpScore).

  python interpretability_score.py data.csv neuron_map.json results.csv [flags]
  python interpretability_score.py --extract data.csv [--model tiny_densenet --block block_4 ...]

Scoring reads the seed's trials (data.csv: trial_category, ground_truth, level, activation_<neuron>,
a human score column; see docs/interpretability_score.md) and a neuron map ({"89": "Trump"}), and
writes results.csv (Neuron,Concept,S,C,R,H,InterpScore,Notes, then ours), ranked by InterpScore,
with one figure per neuron and a summary figure. C needs images: delta0_/delta2_ columns (--extract
writes them) or --images_dir with the model. --extract builds data.csv from a model at the seed's
levels (1-3 noisy, 5 clean).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from disentangle import cli
from disentangle.io.schema import RESULT_COLUMNS
from disentangle.neurons.scores import CAUSALITY_MODES, MISSING_AXES, ScoreConfig
from disentangle.neurons.trials import LEVELS
from disentangle.pipeline.scores import (ExtractConfig, extract_trials_file, image_intervention, score_figures,
                                         score_file)
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("paths", nargs="+", help="data.csv neuron_map.json results.csv (score) or data.csv (--extract)")
    s = p.add_argument_group("scoring")
    cli.add(s, "clean_level", type=cli.finite, default=5, help="the level of the clean trials (S, R, H, C)")
    cli.add(s, "threshold_percentile", type=cli.finite, default=0.95,
            help="H: quantile of the clean non-concept activations above which a concept trial counts as "
                 "strongly activating")
    cli.add(s, "recognizable_levels", nargs="+", default=[], metavar="LEVEL",
            help="R: levels whose concept trials count as recognised by humans without a human score of 1 "
                 "(default none: the original's rule, only recognised trials; the seed's README names 3 4 5, "
                 "which its code never reads); quoted or not: 3 4 5 or \"3 4 5\"")
    cli.add(s, "min_p_value", type=cli.finite, default=0.05,
            help="the 'significant' column: one-sided Welch t-test of clean concept > other activations, "
                 "p at most this (S itself does not depend on it, as in the original)")
    cli.add(s, "human_score_col", default="soft_correct",
            help="column of human recognition scores, 1/0 or True/False (H, and R's recognised trials)")
    cli.add(s, "axis_weights", nargs="+", default=["0.3", "0.3", "0.2", "0.2"], metavar="W",
            help="weights of S C R H, normalised to sum 1 (the original's code always uses 0.25 each: "
                 "give 0.25 0.25 0.25 0.25 for its InterpScore); quoted or not")
    cli.add(s, "causality", choices=CAUSALITY_MODES, default="embedding",
            help="C: 'embedding', the original's change of the image embedding (delta0_/delta2_ columns or "
                 "--images_dir), or 'probability', our change of the true class's probability "
                 "(ablate_/amplify_ columns)")
    cli.add(s, "causality_images", type=cli.count, default=1,
            help="clean concept images C averages over, drawn with --seed as the original (0: all)")
    cli.add(s, "missing_axes", choices=MISSING_AXES, default="zero",
            help="an axis not available (C without images, H without human scores): 'zero' counts it as 0 in "
                 "InterpScore as the original does, 'skip' renormalises the weights over the others")
    cli.add(s, "images_dir", default=None,
            help="C from image files: the folder of the images data.csv names (image_basename or "
                 "image_filename), run through --model/--model_weights with the neuron as a channel of --block")
    cli.add(s, "figures_dir", default=None, help="where the figures go (default: <results>_figures next to results.csv)")
    cli.add(s, "no_figures", action="store_true", help="write results.csv only")
    cli.add(s, "quiet", action="store_true", help="print nothing but warnings and errors")
    e = p.add_argument_group("model (--extract, --images_dir)")
    cli.add(e, "extract", action="store_true", help="build data.csv from a model instead of scoring")
    cli.add(e, "block", default="block_4", help="named block or module path whose channels are the neurons")
    cli.add(e, "neurons", default=None, help="--extract: comma-separated channel indices (default: every channel)")
    cli.add(e, "levels", nargs="+", default=[str(v) for v in LEVELS], metavar="LEVEL",
            help="--extract: levels to write, the seed's scheme (1-3 noise, level 1 the strongest; 4 each neuron's "
                 "DeepDream images from a gradient, grey and Perlin noise, in <data>_deepdream/; 5 clean)")
    cli.add(e, "model", default="tiny_densenet", help="registered model")
    cli.add(e, "model_weights", default=None, help="the model's weights file (its --weights elsewhere)")
    cli.add(e, "data", default=None, help="--extract: 'concepts', 'imagenet' or an ImageFolder path "
                                          "(default: the model's)")
    cli.add(e, "data_root", default=None, help="ImageNet validation folder")
    cli.add(e, "images", type=cli.positive, default=120, help="--extract: images, evenly spread over classes")
    cli.add(e, "seed", type=int, default=0, help="seed of the perturbation noise and of C's draw of images")
    cli.runtime_args(p)
    return p


def numbers(values: list[str], flag: str) -> tuple[float, ...]:
    """``3 4 5`` or ``"3 4 5"`` (or commas) -> the numbers."""
    text = " ".join(values).replace(",", " ")
    try:
        out = tuple(float(t) for t in text.split())
    except ValueError:
        out = (math.nan,)
    if not all(math.isfinite(v) for v in out):
        raise cli.UserError(f"{flag} takes space-separated finite numbers, got {text!r}")
    return out


def channel_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(",", " ").split())
    except ValueError:
        raise cli.UserError(f"--neurons takes comma-separated channel indices, e.g. 3,17, got {text!r}") from None


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    runtime = cli.runtime(args)
    if args.extract:
        if len(args.paths) != 1:
            raise cli.UserError("--extract takes one path: the data.csv to write")
        levels = numbers(args.levels, "--levels")
        if any(v != int(v) for v in levels):
            raise cli.UserError(f"--levels takes whole levels (1 to 5), got {' '.join(args.levels)}")
        cfg = ExtractConfig(args.block, None if args.neurons is None else channel_list(args.neurons),
                            tuple(int(v) for v in levels))
        session = setup(args.model, args.model_weights, args.data, args.images, args.data_root, runtime, args.seed)
        trials = extract_trials_file(session, cfg, args.paths[0])
        if not args.quiet:
            print(f"{len(trials.table)} trials ({trials.images} images x levels {' '.join(map(str, cfg.levels))}), "
                  f"{len(trials.neurons)} neurons of {cfg.block} -> {trials.path}")
        return 0
    if len(args.paths) != 3:
        raise cli.UserError("scoring takes three paths: data.csv neuron_map.json results.csv")
    weights = numbers(args.axis_weights, "--weights")
    if len(weights) != 4:
        raise cli.UserError(f"--weights takes four numbers (S C R H), got {len(weights)}")
    cfg = ScoreConfig(clean_level=args.clean_level, threshold_percentile=args.threshold_percentile,
                      recognizable_levels=numbers(args.recognizable_levels, "--recognizable_levels"),
                      min_p_value=args.min_p_value, human_score_col=args.human_score_col, weights=weights,
                      causality=args.causality, causality_images=args.causality_images,
                      missing_axes=args.missing_axes, seed=args.seed)
    intervene = None
    if args.images_dir is not None:
        from disentangle.core.models import load_model
        device = runtime.torch_device()
        intervene = image_intervention(load_model(args.model, args.model_weights, device), args.block,
                                       args.images_dir, device)
    result, trials = score_file(*args.paths, cfg, intervene)
    for neuron, why in result.skipped.items():
        print(f"warning: neuron {neuron} skipped: {why}", file=sys.stderr)
    if not args.no_figures:
        out = Path(args.paths[2])
        score_figures(trials, result, cfg, args.figures_dir or out.with_name(f"{out.stem}_figures"))
    if not args.quiet:
        table = result.table[list(RESULT_COLUMNS[:-1])]
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"-> {args.paths[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
