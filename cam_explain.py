"""Grad-CAM, Grad-CAM++, Score-CAM, Ablation-CAM and Eigen-CAM heatmaps for each image and method.

Writes to --output_dir (default outputs/cams/): heatmaps.npz (ids, targets and one (N, S, S) map
in [0, 1] per method), images.npz (the pictures the model saw; object masks on the concept world),
predictions.csv, overlays/<method>/<id>.png, masks/<method>/<id>.png (each map as an 8-bit greyscale
image, as seed 003 exported its masks) and manifest.json. A finished folder is not redone.
--batch_size is both the images per layer pass and the masked inputs per forward pass of scorecam
and ablationcam (which make one per image and channel).
"""
from __future__ import annotations

from disentangle import cli
from disentangle.core.models import get_spec
from disentangle.explanations.cams import METHODS, CamConfig
from disentangle.io import layout
from disentangle.pipeline.explanations import class_to_explain, run_cams
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0],
                   epilog="--batch_size is both the images per layer pass and the masked inputs per forward pass "
                          "of scorecam and ablationcam, which make one per image and channel of the layer.")
    cli.model_args(p, images=12, photos=True)
    cli.runtime_args(p)
    c = p.add_argument_group("CAMs")
    cli.add(c, "methods", type=cli.names, default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    cli.add(c, "block", default=None,
            help="submodule path of the layer whose activations are weighted; default: the model's registered "
                 "CAM layer (features.norm5 for the DenseNets, layer4 for the ResNets, bn2 for efficientnet_lite0)")
    cli.add(c, "target", type=cli.target, default="pred",
            help="class to explain: 'pred' (each image's prediction; also 'top1'), 'label' (its true class) or a "
                 "class index")
    cli.output_args(p, str(layout.cams_dir()))
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = CamConfig(args.methods, args.block or get_spec(args.model).cam_layer, class_to_explain(args.target))
    session = setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args), args.seed)
    outcome = run_cams(session, cfg, args.output_dir, args.overwrite)
    if outcome.skipped:
        print(f"{outcome.folder} is already complete for these settings; nothing to do")
        return 0
    print(f"{session.spec.name} at {cfg.layer}, {len(session.images)} images:")
    for row in outcome.predictions.itertuples():
        print(f"  {row.id:>12s}  explains {row.target_name} (p = {row.probability:.2f})")
    print("seconds per image: " + ", ".join(f"{m} {s:.3f}" for m, s in outcome.seconds_per_image.items()))
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
