"""Feature visualizations: for every unit of a block, the image that maximises its activation.

Activation maximisation with a decorrelated Fourier image parameterisation and transformation
robustness (jitter, scale, rotation), all units of a block optimised together in batches on the
device; seeded and reproducible (see disentangle/neurons/featureviz.py and docs/atlas.md).

Writes outputs/features/<model>_<block>/: features.npz (units, images, activations), one
unit_<u>_feature.png per unit, features_grid.png and manifest.json. A rerun resumes.
"""
from __future__ import annotations

from pathlib import Path

from disentangle import cli
from disentangle.core import distributed
from disentangle.core.models import get_spec, load_model
from disentangle.io import layout
from disentangle.neurons.featureviz import COLOURS, VizConfig
from disentangle.pipeline.features import choose_colour, run_features


def unit_list(text: str) -> list[int]:
    """``0,3,7`` or ``0-15`` (inclusive) or a mix."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError:
            raise cli.UserError(f"--units takes unit numbers and ranges like 0,3,8-15, got {text!r}") from None
    return out


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    g = p.add_argument_group("model and units")
    cli.add(g, "model", default="tiny_densenet", help="registered model (see docs/models.md)")
    cli.add(g, "weights", default=None, help="weights file; default: the model's own source; 'random' for untrained")
    cli.add(g, "blocks", type=cli.names, default=["block_4"], help="comma-separated named blocks or module paths")
    cli.add(g, "units", type=unit_list, default=None, help="units to visualize, e.g. 0,3,8-15 (default: all)")
    o = p.add_argument_group("optimisation")
    cli.add(o, "steps", type=cli.positive, default=256, help="Adam steps")
    cli.add(o, "lr", type=cli.finite, default=0.05, help="Adam learning rate on the spectrum")
    cli.add(o, "decay", type=cli.finite, default=1.0, help="spectrum scale 1/f^decay")
    cli.add(o, "no_transforms", action="store_true", help="optimise without transformation robustness")
    cli.add(o, "size", type=cli.positive, default=None, help="image side in pixels (default: the model's input)")
    cli.add(o, "colour", choices=COLOURS, default="auto",
            help="colour decorrelation: data (the covariance of --data's pixels), imagenet (ImageNet's, as "
                 "Lucid), none; auto: data for models of the concept world, imagenet otherwise")
    cli.add(o, "data", default=None, help="--colour data: the images (default: the model's own data)")
    cli.add(o, "data_root", default=None, help="ImageNet validation folder for --data imagenet")
    cli.add(p, "seed", type=int, default=0, help="seed of every unit's start and transformations")
    cli.runtime_args(p, batch=32)
    cli.output_args(p, None, "folder of the blocks' folders <model>_<block> (default: outputs/features)")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = VizConfig(args.steps, args.lr, args.decay, not args.no_transforms, args.batch_size, args.size)
    basis, colour_name = choose_colour(args.colour, get_spec(args.model), args.data, args.data_root)
    runtime = cli.runtime(args)
    device = distributed.device_for_rank(runtime.torch_device())
    loaded = load_model(args.model, args.weights, device)
    for block in args.blocks:
        out = Path(args.output_dir) / f"{args.model}_{block}" if args.output_dir else \
            layout.features_dir(args.model, block)
        result = run_features(loaded, block, args.units, cfg, basis, colour_name, device, out, args.seed,
                              args.overwrite)
        if result.skipped:
            print(f"{out} is already complete for these settings")
        else:
            rate = len(result.units) / result.seconds if result.seconds else float("nan")
            print(f"{block}: {len(result.units)} units in {result.seconds:.1f} s ({rate:.2f} units/s, {cfg.steps} "
                  f"steps, {device}); mean activation on its own image {result.activations.mean():.3f}")
        cli.artifacts_in(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
