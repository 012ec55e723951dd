"""LIME explanations (superpixels, lime.lime_image) for each image, the model run in large batches on the device.

Writes to --output_dir (default outputs/lime/): heatmaps.npz (ids, targets, lime: each pixel's
superpixel weight for the explained class), lime.npz (labels, label_heatmaps, masks, segments),
images.npz, parameters.json (every LIME setting), predictions.csv (with the fit's intercept, R^2 and
local prediction), overlays/lime/<id>.png (the mask of the top positive superpixels), grading.json
(avg_iou of the masks with reference masks and avg_time per image, then per image, as seed 003
graded LIME; where there are references) and manifest.json. --params_file sets LIME's parameters
per image. A finished folder is not redone.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from disentangle import cli
from disentangle.explanations.lime import SEGMENTATIONS, LimeConfig
from disentangle.io import layout
from disentangle.pipeline.explanations import class_to_explain, run_lime
from disentangle.pipeline.session import setup

DEFAULTS = LimeConfig()


def hide_color_arg(value: str) -> int | None:
    """``--hide_color``: ``mean`` (None) or a pixel value."""
    if value == "mean":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'mean' or a pixel value 0..255, got {value!r}") from None


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0],
                   epilog="--batch_size is the number of perturbed pictures per forward pass.")
    cli.model_args(p, images=12, photos=True)
    cli.runtime_args(p)
    s = p.add_argument_group("superpixels")
    cli.add(s, "segmentation", default=DEFAULTS.segmentation, choices=SEGMENTATIONS,
            help="scikit-image algorithm, through LIME's SegmentationAlgorithm")
    cli.add(s, "n_segments", type=cli.positive, default=DEFAULTS.n_segments, help="slic: about this many superpixels")
    cli.add(s, "compactness", type=float, default=DEFAULTS.compactness,
            help="slic: balance of colour and space; higher = squarer superpixels")
    cli.add(s, "sigma", type=float, default=DEFAULTS.sigma, help="slic: Gaussian smoothing before segmenting")
    cli.add(s, "kernel_size", type=float, default=DEFAULTS.kernel_size, help="quickshift: smoothing kernel width")
    cli.add(s, "max_dist", type=float, default=DEFAULTS.max_dist, help="quickshift: cut-off for merging")
    cli.add(s, "ratio", type=float, default=DEFAULTS.ratio, help="quickshift: balance of colour and space")
    e = p.add_argument_group("LIME")
    cli.add(e, "hide_color", type=hide_color_arg, default=DEFAULTS.hide_color,
            help="how a hidden superpixel is filled: 'mean' (its own mean colour, LIME's library default, which "
                 "leaves a flat-coloured superpixel unchanged) or a pixel value 0..255 for every channel")
    cli.add(e, "num_features", type=cli.positive, default=DEFAULTS.num_features,
            help="superpixels in the mask: the top positive ones for the explained class")
    cli.add(e, "num_samples", type=cli.positive, default=DEFAULTS.num_samples, help="perturbed pictures per image")
    cli.add(e, "top_labels", type=cli.positive, default=DEFAULTS.top_labels,
            help="with --target pred: explain this many top classes (the mask is the top-1's)")
    cli.add(e, "params_file", default=None,
            help="JSON file: image id or file name -> LIME settings for that image (num_samples, num_features, "
                 "hide_color, top_labels, n_segments, compactness, sigma, segmentation, kernel_size, max_dist, ratio), "
                 "overriding the flags per image, as seed 003 tuned LIME per image")
    cli.add(e, "reference_masks", default=None,
            help="folder of reference masks <id>.png (non-zero = object) that grading.json scores LIME's masks "
                 "against (default: the concept world's object masks; none for other images)")
    cli.add(e, "target", type=cli.target, default="pred",
            help="class to explain: 'pred' (each image's prediction; also 'top1'), 'label' (its true class) or a "
                 "class index")
    cli.output_args(p, str(layout.lime_dir()))
    return p


def read_params(path: str | None) -> dict:
    """The per-image settings of --params_file (JSON only: a pickle could run code)."""
    if path is None:
        return {}
    try:
        params = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise cli.UserError(f"--params_file {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise cli.UserError(f"--params_file {path} is not JSON ({str(e).splitlines()[0]}); "
                            f"give image -> settings as a JSON object (never a pickle)") from None
    if not isinstance(params, dict):
        raise cli.UserError(f"--params_file {path} must hold a JSON object of image -> settings")
    return params


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = LimeConfig(args.segmentation, args.n_segments, args.compactness, args.sigma, args.kernel_size,
                     args.max_dist, args.ratio, args.hide_color, args.num_features, args.num_samples,
                     args.top_labels, class_to_explain(args.target), args.seed)
    session = setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args), args.seed)
    outcome = run_lime(session, cfg, args.output_dir, args.overwrite, read_params(args.params_file),
                       args.reference_masks)
    if outcome.skipped:
        print(f"{outcome.folder} is already complete for these settings; nothing to do")
        return 0
    print(f"LIME on {session.spec.name}, {len(session.images)} images, {cfg.num_samples} samples each:")
    for row in outcome.predictions.itertuples():
        print(f"  {row.id:>12s}  explains {row.target_name} (p = {row.probability:.2f}): "
              f"{row.superpixels} superpixels, fit R^2 {row.score:.2f}")
    print(f"seconds per image: {outcome.seconds_per_image['lime']:.2f}")
    graded = Path(outcome.folder) / "grading.json"
    if graded.is_file():
        g = json.loads(graded.read_text())
        print(f"grading: avg_iou {g['avg_iou']}, avg_time {g['avg_time']:.2f} s")
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
