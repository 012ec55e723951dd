"""Label the units of a model's layers with concepts: mask-IoU network dissection or CLIP-Dissect.

Writes to --result_dir: descriptions.csv (layer, unit, description, similarity; for mask-IoU also
category, iou, detector, threshold and the next best concepts), summary.json (unique concepts,
units per concept and category shares, per layer and overall), units_per_concept.png,
category_shares.png, strips_<layer>.png (top-activating images of the best units) and manifest.json.
Activations, tallies and CLIP embeddings are cached in --activation_dir under a key of everything
that affects them, so a rerun with other thresholds or similarity functions is quick.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from disentangle.io import artifacts, cache
from disentangle.core import runtime
from disentangle import cli
from disentangle.dissection import clip_dissect, netdissect as dissection, report as dissection_report
from disentangle.data import probes
from disentangle.core.clip import DEFAULT_MODEL, DEFAULT_WEIGHTS, load_clip, read_concepts
from disentangle.core.errors import UserError
from disentangle.viz.figures import denormalise
from disentangle.core.layers import resolve_layer as resolve_block
from disentangle.core.models import MODELS, load_model
from disentangle.core.seeding import set_seeds


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    g = p.add_argument_group("model and probe data")
    g.add_argument("--target_model", default="tiny_densenet", help=f"registered model: {', '.join(MODELS)}")
    g.add_argument("--weights", default=None, help="weights file, or 'random'; default: the model's own source")
    g.add_argument("--target_layers", default=None,
                   help="comma-separated block names (block_1, layer4 ...) or module paths; default: every block")
    g.add_argument("--d_probe", default="concepts",
                   help="probe images: 'concepts' (concept world, pixel labels), 'broden' (see --broden_root), "
                        "'imagenet_val', or a folder (a folder holding Broden's index.csv is read as Broden); "
                        "only concepts and Broden carry the pixel labels mask-IoU dissection needs")
    g.add_argument("--probe_images", type=cli.positive, default=None,
                   help="number of probe images (default: 1200 for concepts, all of any other set)")
    g.add_argument("--broden_root", default=probes.BRODEN_ROOT, help="Broden folder for --d_probe broden")
    m = p.add_argument_group("method")
    m.add_argument("--method", choices=("netdissect", "clip"), default="netdissect",
                   help="netdissect: IoU of thresholded activation maps with pixel labels; "
                        "clip: CLIP-Dissect open-vocabulary labels from image-text similarity")
    m.add_argument("--quantile", type=float, default=0.005,
                   help="netdissect: a unit's mask is where it exceeds its top-quantile activation")
    m.add_argument("--iou_threshold", type=float, default=0.04, help="netdissect: a unit above this IoU is a detector")
    m.add_argument("--concept_set", default=None,
                   help="clip: concept list, one per line (default: the concept world's concept names, "
                        "with --d_probe concepts)")
    m.add_argument("--similarity", choices=clip_dissect.METHODS, default="soft_wpmi", help="clip: similarity function")
    m.add_argument("--pool", choices=dissection.POOLS, default="avg",
                   help="clip: summary of a unit's activation map per image")
    m.add_argument("--clip_model", default=DEFAULT_MODEL,
                   help="clip: open_clip model name, or local-dir:FOLDER (open_clip_config.json + checkpoint)")
    m.add_argument("--clip_weights", default=DEFAULT_WEIGHTS,
                   help="clip: pretrained tag already in the local cache, a checkpoint file, or 'random' "
                        "(an untrained CLIP, for testing the code path only)")
    o = p.add_argument_group("output")
    o.add_argument("--result_dir", default=None, help="default: outputs/dissect/<model>_<method>_<probe>")
    o.add_argument("--activation_dir", default="outputs/activations",
                   help="cache of activations, tallies and embeddings; 'none' to disable")
    o.add_argument("--min_units", type=int, default=4,
                   help="units_per_concept.png shows concepts with at least this many labelled units")
    o.add_argument("--top_units", type=int, default=8, help="units per layer drawn in the image strips")
    o.add_argument("--top_images", type=cli.positive, default=5, help="top-activating images per unit in the strips")
    o.add_argument("--overwrite", action="store_true", help="replace a folder holding a run with other settings")
    r = p.add_argument_group("runtime")
    r.add_argument("--batch_size", "--batch-size", type=cli.positive, default=64, help="images per batch")
    r.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1' ...")
    r.add_argument("--workers", type=cli.count, default=4, help="image-loading processes for folders")
    p.add_argument("--seed", type=int, default=0, help="seed (rank-reorder's random baselines)")
    return p


def check_args(args) -> None:
    if not 0 < args.quantile < 1:
        raise UserError(f"--quantile must be in (0, 1), got {args.quantile}")
    if not 0 <= args.iou_threshold <= 1:
        raise UserError(f"--iou_threshold must be in [0, 1], got {args.iou_threshold}")
    if args.top_units < 0 or args.top_images < 1:
        raise UserError("--top_units must be 0 or more and --top_images at least 1")


def layer_paths(model: torch.nn.Module, spec, layers: str | None) -> dict[str, str]:
    """Display name -> module path of every requested layer (checked to exist)."""
    names = [s.strip() for s in layers.split(",") if s.strip()] if layers else list(spec.blocks)
    out = {}
    for name in names:
        try:
            path = resolve_block(spec, name)
        except UserError:
            path = name
        try:
            model.get_submodule(path)
        except AttributeError:
            raise UserError(f"unknown layer {name!r} for {spec.name}; use a block ({', '.join(spec.blocks)}) "
                            f"or a module path") from None
        out[name] = path
    return out


def netdissect(args, loaded, paths, probe, model_key, make_loader, device) -> tuple[pd.DataFrame, dict]:
    """Mask-IoU rows per unit, and per layer ``(thresholds, top image indices)`` for the strips."""
    key = {**model_key, "probe": probe.describe(), "quantile": args.quantile, "top_images": args.top_images}
    keys = {name: {**key, "layer": path} for name, path in paths.items()}
    results = {name: cache.load(args.activation_dir, "tally", k) for name, k in keys.items()}
    missing = [name for name, res in results.items() if res is None]
    if missing:
        fresh = dissection.dissect_layers(loaded.model, [paths[n] for n in missing], probe, make_loader, device,
                                          args.quantile, args.top_images)
        for name in missing:
            results[name] = fresh[paths[name]]
            cache.store(args.activation_dir, "tally", keys[name], results[name])
    rows, extra = [], {}
    for name, res in results.items():
        tally = dissection.Tally(*(torch.from_numpy(res[k]) for k in ("intersection", "label_pixels", "unit_pixels")))
        iou = tally.iou(probe.label_category())
        layer_rows = dissection.label_units(iou, probe.concepts, args.iou_threshold)
        for row, thr, best in zip(layer_rows, res["thresholds"], dissection.top_concepts(iou.numpy(), probe.concepts)):
            row.update(layer=name, threshold=float(thr), top_concepts=best)
        rows += layer_rows
        extra[name] = (res["thresholds"], res["top_images"])
    cols = ["layer", "unit", "description", "similarity", "category", "iou", "detector", "threshold", "top_concepts"]
    return pd.DataFrame(rows)[cols], extra


def clip_labels(args, clip, loaded, paths, probe, model_key, concepts, categories, device) -> tuple[pd.DataFrame, dict]:
    clip_key = {**clip.info, "probe": probe.describe()}
    image_feats = cache.cached(args.activation_dir, "clip_images", clip_key, lambda: {"features": dissection.clip_image_features(
        clip, probes.probe_loader(probe, [clip.preprocess], args.batch_size, args.workers))})["features"]
    text_key = {**clip.info, "concepts_sha256": hashlib.sha256("\n".join(concepts).encode()).hexdigest()}
    text_feats = cache.cached(args.activation_dir, "clip_text", text_key,
                        lambda: {"features": clip.encode_texts(concepts).cpu().numpy()})["features"]
    sim = torch.from_numpy(image_feats) @ torch.from_numpy(text_feats).T                          # (N, M)
    transform = loaded.spec.transform(square=probe.pixel_labels)
    target = {}
    for name, path in paths.items():
        key = {**model_key, "probe": probe.describe(), "layer": path, "pool": args.pool}
        target[name] = cache.cached(args.activation_dir, "summary", key, lambda: {"activations": dissection.summaries(
            loaded.model, [path], probes.probe_loader(probe, [transform], args.batch_size, args.workers),
            device, args.pool)[path]})["activations"]
    rows, extra = [], {}
    for name, acts in target.items():
        layer_rows = clip_dissect.describe(sim.to(device), torch.from_numpy(acts).to(device), concepts,
                                           args.similarity, args.seed)
        for row in layer_rows:
            row.update(layer=name, category=categories.get(row["description"], ""))
        rows += layer_rows
        top = np.argsort(-acts, axis=0, kind="stable")[:args.top_images].T                        # (U, T)
        extra[name] = (None, top)
    return pd.DataFrame(rows)[["layer", "unit", "description", "similarity", "category"]], extra


def draw_strips(args, loaded, paths, probe, frame, extra, out: Path, device) -> None:
    """Per layer, the best units' top-activating images with their activation maps."""
    spec = loaded.spec
    transform = spec.transform(square=probe.pixel_labels)
    score = "iou" if args.method == "netdissect" else "similarity"
    for name, path in paths.items():
        layer = frame[frame["layer"] == name].sort_values(score, ascending=False, kind="stable")
        units = layer["unit"].to_numpy()[:args.top_units]
        if not len(units):
            continue
        thresholds, top = extra[name]
        idx = top[units]                                                                # (R, T)
        uniq = np.unique(idx)
        x = torch.stack([transform(probe.image(int(i))) for i in uniq]).to(device)
        acts = next(dissection.layer_batches(loaded.model, [path], [(x, torch.from_numpy(uniq))], device,
                                             f"strips {name}"))[0][path]
        maps = F.interpolate(acts.float(), size=x.shape[-2:], mode="bilinear", align_corners=False).cpu().numpy()
        pos = np.searchsorted(uniq, idx)
        images = denormalise(x.cpu().numpy(), spec.mean, spec.std)[pos]                 # (R, T, H, W, 3)
        unit_maps = maps[pos, units[:, None]]                                          # (R, T, H, W)
        rows = layer.set_index("unit").loc[units]
        titles = [f"unit {u}\n{d}\n{score} {s:.3f}" for u, d, s in zip(units, rows["description"], rows[score])]
        dissection_report.strips_figure(images, unit_maps, titles, out / f"strips_{name}.png",
                                        None if thresholds is None else thresholds[units])


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    set_seeds(args.seed)
    device = runtime.resolve_device(args.device)
    args.activation_dir = None if args.activation_dir == "none" else args.activation_dir
    probe = probes.build_probe(args.d_probe, args.probe_images, args.seed, args.broden_root)
    if args.method == "netdissect" and not probe.pixel_labels:
        probe.labels(np.zeros(0))   # raises the one-line error naming the fix
    if args.method == "clip":
        if args.concept_set is None and not isinstance(probe, probes.ConceptProbe):
            raise UserError("--method clip needs --concept_set FILE (one concept per line) for this probe set")
        concepts = read_concepts(args.concept_set) if args.concept_set else [n for _, n in probe.concepts]
        categories = {n: c for c, n in probe.concepts}
    loaded = load_model(args.target_model, args.weights, device)
    paths = layer_paths(loaded.model, loaded.spec, args.target_layers)
    model_key = {"model": args.target_model, "weights_sha256": loaded.weights["sha256"],
                 "weights_source": loaded.weights["source"]}
    config = {**model_key, "layers": paths, "method": args.method, "probe": probe.describe(), "seed": args.seed}
    if args.method == "netdissect":
        config.update(quantile=args.quantile, iou_threshold=args.iou_threshold)
    else:
        clip = load_clip(args.clip_model, args.clip_weights, device)
        config.update(similarity=args.similarity, pool=args.pool, clip=clip.info, concepts=concepts)
    config.update(top_units=args.top_units, top_images=args.top_images, min_units=args.min_units)
    out = Path(args.result_dir or f"outputs/dissect/{args.target_model}_{args.method}_{probe.name}")
    manifest = artifacts.make_manifest("dissect_neurons", config, {"device": str(device), "batch_size": args.batch_size})
    if artifacts.open_output(out, manifest, args.overwrite) == "complete":
        print(f"{out} already holds this dissection; nothing to do")
        return 0
    artifacts.write_json(out / artifacts.MANIFEST, manifest)

    if args.method == "netdissect":
        transform = loaded.spec.transform(square=True)
        def make_loader():
            return probes.probe_loader(probe, [transform], args.batch_size, args.workers)
        frame, extra = netdissect(args, loaded, paths, probe, model_key, make_loader, device)
    else:
        frame, extra = clip_labels(args, clip, loaded, paths, probe, model_key, concepts, categories, device)

    artifacts.write_csv(out / "descriptions.csv", frame)
    summary = dissection_report.summarize(frame)
    artifacts.write_json(out / "summary.json", summary)
    title = f"{args.target_model} · {args.method} · {probe.name}"
    dissection_report.units_per_concept_figure(frame, out / "units_per_concept.png", title, args.min_units)
    dissection_report.category_shares_figure({title: summary}, out / "category_shares.png")
    draw_strips(args, loaded, paths, probe, frame, extra, out, device)
    artifacts.write_json(out / artifacts.MANIFEST, {**manifest, "complete": True})

    for layer, s in summary["layers"].items():
        kind = "detectors" if args.method == "netdissect" else "units"
        top = ", ".join(f"{k} {v}" for k, v in list(s["units_per_concept"].items())[:4])
        print(f"{layer:>10}: {s['labelled_units']}/{s['units']} {kind}, {s['unique_concepts']} unique concepts"
              + (f" ({top})" if top else ""))
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
