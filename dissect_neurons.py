"""Label the units of a model's layers with concepts: mask-IoU network dissection or CLIP-Dissect.

Writes to --output_dir: descriptions.csv (layer, unit, description, similarity; for mask-IoU also
category, iou, detector, threshold and the next best concepts), summary.json (unique concepts,
units per concept and category shares, per layer and overall), units_per_concept.png,
category_shares.png, strips_<layer>.png (top-activating images of the best units) and manifest.json.
Activations, tallies and CLIP embeddings are cached in --activation_dir under a key of everything
that affects them, so a rerun with other thresholds or similarity functions is quick.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.core.clip import DEFAULT_MODEL, DEFAULT_WEIGHTS
from disentangle.data.images import BRODEN_ROOT, probe_images
from disentangle.dissection import clip_dissect, netdissect
from disentangle.io import layout
from disentangle.io.schema import SUMMARY_LAYERS
from disentangle.pipeline.dissect import METHODS, DissectConfig, run_dissection
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.model_args(p, images=None)
    g = p.add_argument_group("layers and probe data")
    cli.add(g, "blocks", type=cli.names, default=None,
            help="comma-separated block names (block_1, layer4 ...) or module paths; default: every block")
    cli.add(g, "data", default="concepts",
            help="probe images: 'concepts' (concept world, pixel labels), 'broden' (see --broden_root), "
                 "'imagenet_val', or a folder (a folder holding Broden's index.csv is read as Broden); "
                 "only concepts and Broden carry the pixel labels mask-IoU dissection needs")
    cli.add(g, "images", type=cli.positive, default=None,
            help="number of probe images (default: 1200 for concepts, all of any other set)")
    cli.add(g, "broden_root", default=BRODEN_ROOT, help="Broden folder for --data broden")
    m = p.add_argument_group("method")
    cli.add(m, "method", choices=METHODS, default="netdissect",
            help="netdissect: IoU of thresholded activation maps with pixel labels; "
                 "clip: CLIP-Dissect open-vocabulary labels from image-text similarity")
    cli.add(m, "quantile", type=float, default=0.005,
            help="netdissect: a unit's mask is where it exceeds its top-quantile activation")
    cli.add(m, "iou_threshold", type=float, default=0.04, help="netdissect: a unit above this IoU is a detector")
    cli.add(m, "concept_set", default=None,
            help="clip: concept list, one per line (default: the concept world's concept names, with --data concepts)")
    cli.add(m, "similarity_fn", choices=clip_dissect.METHODS, default="soft_wpmi", help="clip: similarity function")
    cli.add(m, "pool_mode", choices=netdissect.POOLS, default="avg",
            help="clip: summary of a unit's activation map per image")
    cli.add(m, "clip_model", default=DEFAULT_MODEL,
            help="clip: open_clip model name, or local-dir:FOLDER (open_clip_config.json + checkpoint)")
    cli.add(m, "clip_weights", default=DEFAULT_WEIGHTS,
            help="clip: pretrained tag already in the local cache, a checkpoint file, or 'random' "
                 "(an untrained CLIP, for testing the code path only)")
    cli.output_args(p, None, "default: outputs/dissect/<model>_<method>_<probe>")
    f = p.add_argument_group("cache and figures")
    cli.add(f, "activation_dir", default=str(layout.activations_dir()),
            help="cache of activations, tallies and embeddings; 'none' to disable")
    cli.add(f, "min_units", type=int, default=4,
            help="units_per_concept.png shows concepts with at least this many labelled units")
    cli.add(f, "top_units", type=int, default=8, help="units per layer drawn in the image strips")
    cli.add(f, "top_images", type=cli.positive, default=5, help="top-activating images per unit in the strips")
    cli.runtime_args(p, batch=64, workers=4)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = DissectConfig(method=args.method, quantile=args.quantile, iou_threshold=args.iou_threshold,
                        concept_set=args.concept_set, similarity=args.similarity_fn, pool=args.pool_mode,
                        clip_model=args.clip_model, clip_weights=args.clip_weights, top_units=args.top_units,
                        top_images=args.top_images, min_units=args.min_units)
    images = probe_images(args.data, args.images, args.seed, args.broden_root)
    session = setup(args.model, args.weights, images=images, runtime=cli.runtime(args), seed=args.seed)
    out = args.output_dir or layout.dissect_dir(args.model, args.method, images.source.name)
    activations = None if args.activation_dir == "none" else args.activation_dir
    outcome = run_dissection(session, args.blocks, cfg, out, activations, args.overwrite)
    if outcome.skipped:
        print(f"{outcome.folder} already holds this dissection; nothing to do")
        return 0
    kind = "detectors" if args.method == "netdissect" else "units"
    for layer, s in outcome.result[SUMMARY_LAYERS].items():
        top = ", ".join(f"{k} {v}" for k, v in list(s["units_per_concept"].items())[:4])
        print(f"{layer:>10}: {s['labelled_units']}/{s['units']} {kind}, {s['unique_concepts']} unique concepts"
              + (f" ({top})" if top else ""))
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
