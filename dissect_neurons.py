"""Label the units of a model's layers with concepts: mask-IoU network dissection or CLIP-Dissect.

Writes to --output_dir: descriptions.csv (layer, unit, description, similarity; for mask-IoU also
category, iou, detector, threshold and the next best concepts), summary.json (unique concepts,
units per concept and category shares, per layer and overall), units_per_concept.png,
category_shares.png, strips_<layer>.png (top-activating images of the best units) and manifest.json.
Activations, tallies and CLIP embeddings are cached in --activation_dir under a key of everything
that affects them, so a rerun with other thresholds or similarity functions is quick.
"""
from __future__ import annotations

import argparse

from disentangle import cli
from disentangle.core.clip import DEFAULT_MODEL, DEFAULT_WEIGHTS
from disentangle.data.images import BRODEN_ROOT, probe_images
from disentangle.dissection import clip_dissect, netdissect
from disentangle.io import layout
from disentangle.io.schema import SUMMARY_LAYERS
from disentangle.pipeline.dissect import IOU_THRESHOLD, METHODS, QUANTILE, DissectConfig, run_dissection
from disentangle.pipeline.session import setup


OWN_FLAGS = {"netdissect": ("quantile", "iou_threshold"),
             "clip": ("concept_set", "similarity_fn", "pool_mode", "clip_model", "clip_weights")}
CONFIG_FIELDS = {"similarity_fn": "similarity", "pool_mode": "pool"}    # flag -> DissectConfig field


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
    # Each method's own flags: given to the other method they are an error, never ignored.
    none = argparse.SUPPRESS
    cli.add(m, "quantile", type=float, default=none,
            help=f"netdissect: a unit's mask is where it exceeds its top-quantile activation (default {QUANTILE})")
    cli.add(m, "iou_threshold", type=float, default=none,
            help=f"netdissect: a unit above this IoU is a detector (default {IOU_THRESHOLD})")
    cli.add(m, "concept_set", default=none,
            help="clip: concept list, one per line (default: the concept world's concept names, with --data concepts)")
    cli.add(m, "similarity_fn", choices=clip_dissect.METHODS, default=none,
            help="clip: similarity function (default soft_wpmi)")
    cli.add(m, "pool_mode", choices=netdissect.POOLS, default=none,
            help="clip: summary of a unit's activation map per image (default avg)")
    cli.add(m, "clip_model", default=none,
            help=f"clip: open_clip model name, CLIP-Dissect's (RN50, ViT-B/16, ...), or local-dir:FOLDER "
                 f"(open_clip_config.json + checkpoint) (default {DEFAULT_MODEL})")
    cli.add(m, "clip_weights", default=none,
            help=f"clip: pretrained tag already in the local cache, a checkpoint file, or 'random' "
                 f"(an untrained CLIP, for testing the code path only) (default {DEFAULT_WEIGHTS})")
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
    given = vars(args)
    other = [f for f in OWN_FLAGS[METHODS[1 - METHODS.index(args.method)]] if f in given]
    if other:
        raise cli.UserError(f"--{other[0]} applies to --method {'clip' if args.method == 'netdissect' else 'netdissect'}"
                            f", not to --method {args.method}" + (" (CLIP-Dissect's own script is describe_neurons.py)"
                                                                  if args.method == "netdissect" else ""))
    own = {flag: given[flag] for flag in OWN_FLAGS[args.method] if flag in given}
    cfg = DissectConfig(method=args.method, **{CONFIG_FIELDS.get(f, f): v for f, v in own.items()},
                        top_units=args.top_units, top_images=args.top_images, min_units=args.min_units)
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
