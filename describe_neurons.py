"""CLIP-Dissect as its describe_neurons.py runs it: every unit of some layers described by the concept
whose CLIP image-text similarities best match its activations over a probe set.

  python describe_neurons.py [--clip_model ViT-B/16] [--target_model resnet50] \
      [--target_layers conv1,layer1,layer2,layer3,layer4] [--d_probe broden] [--concept_set data/20k.txt]

Writes <result_dir>/<target_model>_<yy_mm_dd_HH_MM>/descriptions.csv (layer, unit, description,
similarity, then category) and args.txt (the flags, as JSON), as the original does, plus summary.json,
units_per_concept.png, category_shares.png, strips_<layer>.png and manifest.json. Activations and
CLIP embeddings are cached in --activation_dir. Weights, probe data and CLIP models are never
downloaded: a missing one stops the run with one line naming what to provide.
"""
from __future__ import annotations

import datetime
from pathlib import Path

from disentangle import cli
from disentangle.core.clip import DEFAULT_WEIGHTS, OPENAI_NAMES
from disentangle.core.models import MODELS
from disentangle.data.images import BRODEN_ROOT, PROBES, probe_images
from disentangle.dissection import clip_dissect, netdissect
from disentangle.io.schema import SUMMARY_LAYERS
from disentangle.pipeline.dissect import DissectConfig, run_dissection
from disentangle.pipeline.session import setup

CONCEPT_SET = "data/20k.txt"


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("CLIP-Dissect (the original's flags)")
    cli.add(g, "clip_model", default="ViT-B/16",
            help=f"CLIP model: the original's names ({', '.join(OPENAI_NAMES)}), any open_clip name, or "
                 f"local-dir:FOLDER")
    cli.add(g, "model", default="resnet50", help=f"model to dissect: {', '.join(MODELS)}")
    cli.add(g, "blocks", type=cli.names, default=("conv1", "layer1", "layer2", "layer3", "layer4"),
            help="comma-separated layers: module paths of the model (conv1, layer4, fc, features[43]) "
                 "or its block names; 2-D layers (fc) are described as they are, token layers by their first token")
    cli.add(g, "data", default="broden",
            help=f"probe images: {', '.join(PROBES)}, or a folder (see data/README.md for where each goes)")
    cli.add(g, "concept_set", default=None,
            help=f"concepts, one per line (default {CONCEPT_SET}, CLIP-Dissect's, which you provide; with --d_probe "
                 f"concepts: the concept world's names)")
    cli.add(g, "activation_dir", default="saved_activations",
            help="cache of activations and CLIP embeddings; 'none' to disable")
    cli.add(g, "output_dir", default="results", help="results go to <this>/<target_model>_<timestamp>/")
    cli.add(g, "pool_mode", choices=netdissect.POOLS, default="avg",
            help="summary of a unit's activation map per image (conv layers)")
    cli.add(g, "similarity_fn", choices=clip_dissect.METHODS, default="soft_wpmi", help="similarity function")
    o = p.add_argument_group("ours")
    cli.add(o, "clip_weights", default=DEFAULT_WEIGHTS,
            help="pretrained tag already in the local cache, a checkpoint file, or 'random' (testing only)")
    cli.add(o, "weights", default=None, help="the target model's weights file (default: its own source)")
    cli.add(o, "images", type=cli.positive, default=None, help="number of probe images (default: all; concepts 1200)")
    cli.add(o, "broden_root", default=BRODEN_ROOT, help="Broden folder for --d_probe broden / imagenet_broden")
    cli.add(o, "seed", type=int, default=0, help="seed (the concept world's rendering)")
    cli.runtime_args(p, batch=200, workers=4)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    concept_set = args.concept_set or (None if args.data == "concepts" else CONCEPT_SET)
    if concept_set is not None and not Path(concept_set).is_file():
        raise cli.UserError(f"concept set {concept_set} not found: provide it (CLIP-Dissect's data/20k.txt, one "
                            f"concept per line) or pass --concept_set FILE")
    cfg = DissectConfig(method="clip", concept_set=concept_set, similarity=args.similarity_fn, pool=args.pool_mode,
                        clip_model=args.clip_model, clip_weights=args.clip_weights)
    images = probe_images(args.data, args.images, args.seed, args.broden_root)
    session = setup(args.model, args.weights, images=images, runtime=cli.runtime(args), seed=args.seed)
    out = Path(args.output_dir) / f"{args.model}_{datetime.datetime.now().strftime('%y_%m_%d_%H_%M')}"
    cache = None if args.activation_dir == "none" else args.activation_dir
    outcome = run_dissection(session, args.blocks, cfg, out, cache,
                             flags={**vars(args), "concept_set": concept_set, "blocks": list(args.blocks)})
    for layer, s in outcome.result[SUMMARY_LAYERS].items():
        print(f"{layer:>10}: {s['units']} units, {s['unique_concepts']} unique concepts")
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
