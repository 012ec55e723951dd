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

from pathlib import Path

from disentangle.explanations import agreement
from disentangle.io import artifacts
from disentangle import cli


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--inputs", nargs="+", default=["outputs/cams", "outputs/lime"],
                   help="output folders of cam_explain.py and/or lime_explain.py")
    p.add_argument("--binarize", default="top", choices=agreement.BINARIZE,
                   help="'top': the --top share of pixels with the highest values (above 0, ties together); "
                        "'otsu': pixels above Otsu's threshold of each map")
    p.add_argument("--top", type=float, default=0.2, help="share of pixels kept by --binarize top")
    p.add_argument("--figure_images", type=cli.positive, default=8, help="rows (images) of the figure grid")
    p.add_argument("--output_dir", "--output-dir", default="outputs/compare", help="artifact folder")
    p.add_argument("--overwrite", action="store_true", help="replace a folder holding a run with other settings")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = agreement.BinarizeConfig(args.binarize, args.top)
    if args.figure_images < 0:
        raise cli.UserError(f"--figure_images must be 0 or more, got {args.figure_images}")
    ex = agreement.load_explanations(args.inputs)
    first = next(iter(ex.manifests.values()))["config"]
    out = Path(args.output_dir)
    manifest = artifacts.make_manifest(
        "compare_explanations",
        {key: first[key] for key in ("model", "weights_sha256", "data", "images")} |
        {"methods": list(ex.maps), "binarize": cfg.how, "top": cfg.top, "heatmaps_sha256": agreement.input_hashes(args.inputs)},
        {}, inputs={f: m["stage"] for f, m in ex.manifests.items()})
    if artifacts.open_output(out, manifest, args.overwrite) == "complete":
        print(f"{out} is already complete for these settings; nothing to do")
        return 0
    ag = agreement.compare(ex, cfg)
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    artifacts.write_csv(out / "pairwise_iou.csv", ag.pairwise)
    artifacts.write_csv(out / "pairwise_iou_mean.csv", ag.pairwise_mean)
    if ag.ground_truth is not None:
        artifacts.write_csv(out / "ground_truth.csv", ag.ground_truth)
    artifacts.write_json(out / "summary.json", ag.summary)
    if args.figure_images:
        how = f"top {cfg.top:.0%}" if cfg.how == "top" else "Otsu"
        agreement.grid_figure(ex, ag, args.figure_images, out / "grid.png",
                              f"{first['model']}: heatmaps, binarised masks ({how}) in white"
                              + (", true object in green" if ex.objects is not None else ""))
    manifest["complete"] = True
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    print(f"{len(ex.ids)} images, masks: {cfg.how}" + (f" {cfg.top:.0%}" if cfg.how == "top" else ""))
    print("mean IoU between methods:")
    print(ag.pairwise_mean.round(3).to_string(index=False))
    for m, g in ag.summary.get("ground_truth", {}).items():
        print(f"  {m:12s} object IoU {g['iou']:.3f} (chance {g['chance_iou']:.3f})   "
              f"pointing game {g['pointing_game']:.1%} (chance {g['pointing_chance']:.1%})")
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
