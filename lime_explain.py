"""LIME explanations (superpixels, lime.lime_image) for each image, the model run in large batches on the device.

Writes to --output_dir (default outputs/lime/): heatmaps.npz (ids, targets, lime: each pixel's
superpixel weight for the explained class), lime.npz (labels, label_heatmaps, masks, segments),
images.npz, parameters.json (every LIME setting), predictions.csv (with the fit's intercept, R^2 and
local prediction), overlays/lime/<id>.png (the mask of the top positive superpixels) and manifest.json.
A finished folder is not redone.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from disentangle.io import artifacts
from disentangle import cli
from disentangle.data import photos
from disentangle.explanations.lime import SEGMENTATIONS, LimeConfig, explain_images, mask_overlay_png

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
    p = photos.parser(__doc__.split("\n")[0], images=12)
    p.epilog = "--batch_size is the number of perturbed pictures per forward pass."
    s = p.add_argument_group("superpixels")
    s.add_argument("--segmentation", default=DEFAULTS.segmentation, choices=SEGMENTATIONS,
                   help="scikit-image algorithm, through LIME's SegmentationAlgorithm")
    s.add_argument("--n_segments", type=cli.positive, default=DEFAULTS.n_segments, help="slic: about this many superpixels")
    s.add_argument("--compactness", type=float, default=DEFAULTS.compactness,
                   help="slic: balance of colour and space; higher = squarer superpixels")
    s.add_argument("--sigma", type=float, default=DEFAULTS.sigma, help="slic: Gaussian smoothing before segmenting")
    s.add_argument("--kernel_size", type=float, default=DEFAULTS.kernel_size, help="quickshift: smoothing kernel width")
    s.add_argument("--max_dist", type=float, default=DEFAULTS.max_dist, help="quickshift: cut-off for merging")
    s.add_argument("--ratio", type=float, default=DEFAULTS.ratio, help="quickshift: balance of colour and space")
    e = p.add_argument_group("LIME")
    e.add_argument("--hide_color", type=hide_color_arg, default=DEFAULTS.hide_color,
                   help="how a hidden superpixel is filled: 'mean' (its own mean colour, LIME's library default, which "
                        "leaves a flat-coloured superpixel unchanged) or a pixel value 0..255 for every channel")
    e.add_argument("--num_features", type=cli.positive, default=DEFAULTS.num_features,
                   help="superpixels in the mask: the top positive ones for the explained class")
    e.add_argument("--num_samples", type=cli.positive, default=DEFAULTS.num_samples, help="perturbed pictures per image")
    e.add_argument("--top_labels", type=cli.positive, default=DEFAULTS.top_labels,
                   help="with --target top1: explain this many top classes (the mask is the top-1's)")
    e.add_argument("--target", default="top1", help="class to explain: 'top1' (each image's prediction) or a class index")
    o = p.add_argument_group("output")
    o.add_argument("--output_dir", "--output-dir", default="outputs/lime", help="artifact folder")
    o.add_argument("--overwrite", action="store_true", help="replace a folder holding a run with other settings")
    return p


def config(args: argparse.Namespace, target: int | None) -> LimeConfig:
    return LimeConfig(args.segmentation, args.n_segments, args.compactness, args.sigma, args.kernel_size,
                      args.max_dist, args.ratio, args.hide_color, args.num_features, args.num_samples,
                      args.top_labels, target, args.seed)


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config(args, None)                               # check the LIME flags before loading anything
    prep = photos.prepare(args)
    cfg = config(args, photos.resolve_target(args.target, prep.n_outputs))
    if cfg.top_labels > prep.n_outputs:
        raise cli.UserError(f"--top_labels {cfg.top_labels} is more than the model's {prep.n_outputs} classes")
    out = Path(args.output_dir)
    manifest = artifacts.make_manifest(
        "lime_explain", {**prep.config(), "seed": args.seed, "methods": ["lime"], **cfg.parameters()},
        {"device": str(prep.device), "batch_size": args.batch_size}, weights_path=prep.loaded.weights["path"])
    if artifacts.open_output(out, manifest, args.overwrite) == "complete":
        print(f"{out} is already complete for these settings; nothing to do")
        return 0
    images = prep.images
    result = explain_images(prep.loaded.model, prep.loaded.spec, images, cfg, args.batch_size, prep.device)
    target = result.labels[:, 0]
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    images.save(out / "images.npz")
    artifacts.write_npz(out / "heatmaps.npz", ids=images.ids, targets=target, lime=result.heatmaps[:, 0])
    artifacts.write_npz(out / "lime.npz", labels=result.labels, label_heatmaps=result.heatmaps, masks=result.masks,
                        segments=result.segments)
    artifacts.write_json(out / "parameters.json", cfg.parameters())
    table = prep.predictions(target, result.probability, result.top1).assign(
        superpixels=result.segments.reshape(len(target), -1).max(1) + 1,
        mask_share=result.masks.reshape(len(target), -1).mean(1),
        intercept=result.intercept, score=result.score, local_pred=result.local_pred)
    artifacts.write_csv(out / "predictions.csv", table)
    for i, pixels, mask in zip(images.ids, images.pixels, result.masks):
        artifacts.write_bytes(out / "overlays" / "lime" / f"{i}.png", mask_overlay_png(pixels, mask))
    n = len(images.ids)
    manifest.update(complete=True, seconds_per_image={"lime": round(result.seconds / n, 4)})
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    print(f"LIME on {prep.loaded.spec.name}, {n} images, {cfg.num_samples} samples each:")
    for row in table.itertuples():
        print(f"  {row.id:>12s}  explains {row.target_name} (p = {row.probability:.2f}): "
              f"{row.superpixels} superpixels, fit R^2 {row.score:.2f}")
    print(f"seconds per image: {result.seconds / n:.2f}")
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
