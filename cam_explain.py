"""Grad-CAM, Grad-CAM++, Score-CAM, Ablation-CAM and Eigen-CAM heatmaps for each image and method.

Writes to --output_dir (default outputs/cams/): heatmaps.npz (ids, targets and one (N, S, S) map
in [0, 1] per method), images.npz (the pictures the model saw; object masks on the concept world),
predictions.csv, overlays/<method>/<id>.png and manifest.json. A finished folder is not redone.
--batch-size is both the images per layer pass and the masked inputs per forward pass of scorecam
and ablationcam (which make one per image and channel).
"""
from __future__ import annotations

from pathlib import Path

from disentangle.io import artifacts
from disentangle.explanations import cams
from disentangle import cli
from disentangle.data import photos


def parser() -> cli.Parser:
    p = photos.parser(__doc__.split("\n")[0], images=12)
    p.epilog = ("--batch-size is both the images per layer pass and the masked inputs per forward pass of "
                "scorecam and ablationcam, which make one per image and channel of the layer.")
    c = p.add_argument_group("CAMs")
    c.add_argument("--methods", default=",".join(cams.METHODS), help="comma-separated, from " + ", ".join(cams.METHODS))
    c.add_argument("--layer", default=None,
                   help="submodule path of the layer whose activations are weighted; default: the model's registered "
                        "CAM layer (features.norm5 for the DenseNets, layer4 for the ResNets, bn2 for efficientnet_lite0)")
    c.add_argument("--target", default="top1", help="class to explain: 'top1' (each image's prediction) or a class index")
    o = p.add_argument_group("output")
    o.add_argument("--output_dir", "--output-dir", default="outputs/cams", help="artifact folder")
    o.add_argument("--overwrite", action="store_true", help="replace a folder holding a run with other settings")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    methods = cams.check_methods([m.strip() for m in args.methods.split(",") if m.strip()])
    prep = photos.prepare(args)
    model, spec = prep.loaded.model, prep.loaded.spec
    cfg = cams.CamConfig(methods, args.layer or spec.cam_layer, photos.resolve_target(args.target, prep.n_outputs))
    cams.probe(model, spec, prep.images, cfg, prep.device)
    out = Path(args.output_dir)
    manifest = artifacts.make_manifest("cam_explain", {**prep.config(), "seed": args.seed, **vars(cfg)},
                                       {"device": str(prep.device), "batch_size": args.batch_size},
                                       weights_path=prep.loaded.weights["path"])
    if artifacts.open_output(out, manifest, args.overwrite) == "complete":
        print(f"{out} is already complete for these settings; nothing to do")
        return 0
    images = prep.images
    result = cams.explain_images(model, spec, images, cfg, args.batch_size, prep.device)
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    images.save(out / "images.npz")
    artifacts.write_npz(out / "heatmaps.npz", ids=images.ids, targets=result.target, **result.maps)
    table = prep.predictions(result.target, result.probability, result.top1)
    artifacts.write_csv(out / "predictions.csv", table)
    for m, maps in result.maps.items():
        for i, pixels, heat in zip(images.ids, images.pixels, maps):
            artifacts.write_bytes(out / "overlays" / m / f"{i}.png", photos.overlay_png(pixels, heat))
    n = len(images.ids)
    manifest.update(complete=True, seconds_per_image={m: round(s / n, 4) for m, s in result.seconds.items()})
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    print(f"{spec.name} at {cfg.layer}, {n} images:")
    for row in table.itertuples():
        print(f"  {row.id:>12s}  explains {row.target_name} (p = {row.probability:.2f})")
    print("seconds per image: " + ", ".join(f"{m} {s / n:.3f}" for m, s in result.seconds.items()))
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
