"""Agreement between explanation methods (pairwise IoU of binarised heatmaps) and, on the concept world,
with the true object (IoU and pointing game).

Reads the folders of cam_explain.py and lime_explain.py (--inputs), which must explain the same images
with the same model and weights, for the same classes. Binarises every heatmap: --binarize top keeps
the --top share of pixels with the highest values (ties kept together, zeros never), --binarize otsu
the pixels above Otsu's threshold. Writes to --output_dir (default outputs/compare/):
pairwise_iou.csv, pairwise_iou_mean.csv, ground_truth.csv (concept world), summary.json, grid.png
and manifest.json.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.explanations.agreement import BINARIZE, BinarizeConfig
from disentangle.io import layout
from disentangle.pipeline.explanations import compare


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    cli.add(p, "inputs", nargs="+", default=[str(layout.cams_dir()), str(layout.lime_dir())],
            help="output folders of cam_explain.py and/or lime_explain.py")
    cli.add(p, "binarize", default="top", choices=BINARIZE,
            help="'top': the --top share of pixels with the highest values (above 0, ties together); "
                 "'otsu': pixels above Otsu's threshold of each map")
    cli.add(p, "top", type=float, default=0.2, help="share of pixels kept by --binarize top")
    cli.add(p, "figure_images", type=cli.count, default=8, help="rows (images) of the figure grid; 0: no figure")
    cli.output_args(p, str(layout.compare_dir()))
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = BinarizeConfig(args.binarize, args.top)
    outcome = compare(args.inputs, cfg, args.output_dir, args.overwrite, args.figure_images)
    if outcome.skipped:
        print(f"{outcome.folder} is already complete for these settings; nothing to do")
        return 0
    ag = outcome.agreement
    print(f"{ag.summary['n_images']} images, masks: {cfg.how}" + (f" {cfg.top:.0%}" if cfg.how == "top" else ""))
    print("mean IoU between methods:")
    print(ag.pairwise_mean.round(3).to_string(index=False))
    for m, g in ag.summary.get("ground_truth", {}).items():
        print(f"  {m:12s} object IoU {g['iou']:.3f} (chance {g['chance_iou']:.3f})   "
              f"pointing game {g['pointing_game']:.1%} (chance {g['pointing_chance']:.1%})")
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
