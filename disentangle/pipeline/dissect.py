"""The dissection stages: every unit of some layers labelled with a concept (mask-IoU network
dissection or CLIP-Dissect), with counts and figures, and the side-by-side of finished runs.

Activations, IoU tallies and CLIP embeddings are cached in an activation folder under a key of
everything that affects them (model, weights, layer, probe set, quantile, CLIP model, concepts), so
a rerun with another IoU threshold or similarity function only redoes the cheap part.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..core import distributed
from ..core.clip import DEFAULT_MODEL, DEFAULT_WEIGHTS, Clip, load_clip, read_concepts
from ..core.errors import UserError
from ..core.layers import resolve_layer
from ..data.concepts import ConceptWorld
from ..dissection import clip_dissect, netdissect, report
from ..io import artifacts, cache, layout
from ..io.schema import MaskIoUDescription, UnitDescription, columns
from ..viz import dissection as figures
from ..viz.figures import denormalise
from .baseline import Outcome
from .session import Session

METHODS = ("netdissect", "clip")
QUANTILE, IOU_THRESHOLD = 0.005, 0.04       # mask-IoU dissection's (Bau et al.)
STAGE = "dissect_neurons"


@dataclass(frozen=True)
class DissectConfig:
    """How units are labelled and what the figures show.

    ``netdissect``: a unit's mask is where it exceeds its top-``quantile`` activation; it is a
    detector when its best IoU exceeds ``iou_threshold``. ``clip``: concepts from ``concept_set``
    (default: the concept world's names) scored by ``similarity`` on each unit's ``pool`` summary
    per image, with the open_clip ``clip_model`` and ``clip_weights``. The strips show the
    ``top_units`` best units of a layer with their ``top_images`` top-activating images;
    units_per_concept.png shows concepts with at least ``min_units`` labelled units.
    """
    method: str = "netdissect"
    quantile: float = QUANTILE
    iou_threshold: float = IOU_THRESHOLD
    concept_set: str | None = None
    similarity: str = "soft_wpmi"
    pool: str = "avg"
    clip_model: str = DEFAULT_MODEL
    clip_weights: str = DEFAULT_WEIGHTS
    top_units: int = 8
    top_images: int = 5
    min_units: int = 4

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"unknown --method {self.method!r}; choose from {', '.join(METHODS)}")
        if not 0 < self.quantile < 1:
            raise UserError(f"--quantile must be in (0, 1), got {self.quantile}")
        if not 0 <= self.iou_threshold <= 1:
            raise UserError(f"--iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if self.top_units < 0 or self.top_images < 1:
            raise UserError("--top_units must be 0 or more and --top_images at least 1")
        if self.similarity not in clip_dissect.METHODS:
            raise UserError(f"unknown --similarity_fn {self.similarity!r}; choose from "
                            f"{', '.join(clip_dissect.METHODS)}")
        if self.pool not in netdissect.POOLS:
            raise UserError(f"unknown --pool_mode {self.pool!r}; choose from {', '.join(netdissect.POOLS)}")

    @property
    def score(self) -> str:
        """The descriptions.csv column units are ranked by."""
        return "iou" if self.method == "netdissect" else "similarity"


def layer_paths(session: Session, layers: Sequence[str] | None = None) -> dict[str, str]:
    """Display name -> module path of every requested layer (a block name or a module path of the
    model, checked to exist); no ``layers``: every named block."""
    return {name: resolve_layer(session.spec, name, session.model) for name in (layers or session.spec.blocks)}


def concept_list(session: Session, cfg: DissectConfig) -> tuple[list[str], dict[str, str]]:
    """CLIP-Dissect's concepts (``concept_set``, or the concept world's names) and the category of
    each that the probe set names."""
    probe = session.images.source
    if cfg.concept_set is None and not isinstance(probe, ConceptWorld):
        raise UserError("--method clip needs --concept_set FILE (one concept per line) for this probe set")
    concepts = read_concepts(cfg.concept_set) if cfg.concept_set else [n for _, n in probe.concepts]
    return concepts, {n: c for c, n in probe.concepts}


def _model_key(session: Session) -> dict:
    w = session.loaded.weights
    return {"model": session.spec.name, "weights_sha256": w["sha256"], "weights_source": w["source"]}


def mask_iou_labels(session: Session, paths: dict[str, str], cfg: DissectConfig,
                    activation_dir: str | Path | None) -> tuple[pd.DataFrame, dict]:
    """Mask-IoU rows per unit (``MaskIoUDescription``), and per layer ``(thresholds (U,), top image
    indices (U, top_images))`` for the strips."""
    probe = session.images.source
    key = {**_model_key(session), "probe": probe.describe(), "quantile": cfg.quantile, "top_images": cfg.top_images}
    keys = {name: {**key, "layer": path} for name, path in paths.items()}
    results = {name: cache.load(activation_dir, "tally", k) for name, k in keys.items()}
    missing = [name for name, res in results.items() if res is None]
    if missing:
        # Under torchrun each rank passes over its batches; the quantiles and tallies are merged exactly.
        mine = session.shard(session.runtime.images_per_batch(session.device))
        fresh = netdissect.dissect_layers(session.model, [paths[n] for n in missing], session.images,
                                          lambda: session.loader(batches=mine), session.device, cfg.quantile,
                                          cfg.top_images)
        for name in missing:
            results[name] = fresh[paths[name]]
            cache.store(activation_dir, "tally", keys[name], results[name])
    rows, extra = [], {}
    for name, res in results.items():
        tally = netdissect.Tally(*(torch.from_numpy(res[k]) for k in ("intersection", "label_pixels", "unit_pixels")))
        iou = tally.iou(probe.label_category())
        layer_rows = netdissect.label_units(iou, probe.concepts, cfg.iou_threshold)
        for row, thr, best in zip(layer_rows, res["thresholds"], netdissect.top_concepts(iou.numpy(), probe.concepts)):
            row.update(layer=name, threshold=float(thr), top_concepts=best)
        rows += layer_rows
        extra[name] = (res["thresholds"], res["top_images"])
    return pd.DataFrame(rows)[columns(MaskIoUDescription)], extra


def clip_labels(session: Session, clip: Clip, paths: dict[str, str], cfg: DissectConfig, concepts: list[str],
                categories: dict[str, str], activation_dir: str | Path | None) -> tuple[pd.DataFrame, dict]:
    """CLIP-Dissect rows per unit (``UnitDescription``), and per layer ``(None, top image indices
    (U, top_images))`` for the strips."""
    probe = session.images.source
    clip_key = {**clip.info, "probe": probe.describe()}
    image_feats = cache.cached(activation_dir, "clip_images", clip_key, lambda: {"features": session.per_image(
        lambda loader: netdissect.clip_image_features(clip, loader), transform=[clip.preprocess])})["features"]
    text_key = {**clip.info, "concepts_sha256": hashlib.sha256("\n".join(concepts).encode()).hexdigest()}
    text_feats = cache.cached(activation_dir, "clip_text", text_key,
                              lambda: {"features": clip.encode_texts(concepts).cpu().numpy()})["features"]
    sim = torch.from_numpy(image_feats) @ torch.from_numpy(text_feats).T                          # (N, M)
    target = {}
    for name, path in paths.items():
        key = {**_model_key(session), "probe": probe.describe(), "layer": path, "pool": cfg.pool}
        target[name] = cache.cached(activation_dir, "summary", key, lambda: {"activations": session.per_image(
            lambda loader: netdissect.summaries(session.model, [path], loader, session.device, cfg.pool)[path])
        })["activations"]
    rows, extra = [], {}
    for name, acts in target.items():
        layer_rows = clip_dissect.describe(sim.to(session.device), torch.from_numpy(acts).to(session.device),
                                           concepts, cfg.similarity, session.seed)
        for row in layer_rows:
            row.update(layer=name, category=categories.get(row["description"], ""))
        rows += layer_rows
        top = np.argsort(-acts, axis=0, kind="stable")[:cfg.top_images].T                         # (U, T)
        extra[name] = (None, top)
    return pd.DataFrame(rows)[columns(UnitDescription)], extra


def draw_strips(session: Session, paths: dict[str, str], frame: pd.DataFrame, extra: dict, cfg: DissectConfig,
                out: Path) -> None:
    """Per layer, ``strips_<layer>.png``: the best units' top-activating images with their
    activation maps (mask-IoU: their masks)."""
    spec, probe, transform = session.spec, session.images.source, session.transform()
    for name, path in paths.items():
        layer = frame[frame["layer"] == name].sort_values(cfg.score, ascending=False, kind="stable")
        units = layer["unit"].to_numpy()[:cfg.top_units]
        if not len(units):
            continue
        thresholds, top = extra[name]
        idx = top[units]                                                                # (R, T)
        uniq = np.unique(idx)
        x = torch.stack([transform(probe.image(int(i))) for i in uniq]).to(session.device)
        acts = next(netdissect.layer_batches(session.model, [path], [(x, torch.from_numpy(uniq))], session.device,
                                             f"strips {name}", maps=False))[0][path]
        if acts.dim() != 4:     # a 2-D or token layer has no activation map to draw
            continue
        maps = F.interpolate(acts.float(), size=x.shape[-2:], mode="bilinear", align_corners=False).cpu().numpy()
        pos = np.searchsorted(uniq, idx)
        images = denormalise(x.cpu().numpy(), spec.mean, spec.std)[pos]                 # (R, T, H, W, 3)
        unit_maps = maps[pos, units[:, None]]                                          # (R, T, H, W)
        rows = layer.set_index("unit").loc[units]
        titles = [f"unit {u}\n{d}\n{cfg.score} {s:.3f}" for u, d, s in zip(units, rows["description"], rows[cfg.score])]
        figures.strips_figure(images, unit_maps, titles, out / f"strips_{name}.png",
                              None if thresholds is None else thresholds[units])


def run_dissection(session: Session, layers: Sequence[str] | None, cfg: DissectConfig, out: str | Path,
                   activation_dir: str | Path | None = None, overwrite: bool = False,
                   flags: dict | None = None) -> Outcome:
    """Label every unit of ``layers`` (block names or module paths; none: every block) on the
    session's probe images, into ``out``: descriptions.csv, summary.json, units_per_concept.png,
    category_shares.png, strips_<layer>.png and manifest.json. Every input is checked before
    anything is written; a folder already holding this dissection is left as it is. ``result``: the
    summary (``report.summarize``); ``activation_dir`` None caches nothing; ``flags`` are written as
    ``args.txt`` (JSON), as CLIP-Dissect records its command line."""
    out, probe = Path(out), session.images.source
    if cfg.method == "netdissect" and not probe.pixel_labels:
        probe.labels(np.zeros(0))   # raises the one-line error naming the fix
    if cfg.method == "clip":
        concepts, categories = concept_list(session, cfg)
    paths = layer_paths(session, layers)
    config = {**_model_key(session), "layers": paths, "method": cfg.method, "probe": probe.describe(),
              "seed": session.seed}
    if cfg.method == "netdissect":
        config.update(quantile=cfg.quantile, iou_threshold=cfg.iou_threshold)
    else:
        clip = load_clip(cfg.clip_model, cfg.clip_weights, session.device)
        config.update(similarity=cfg.similarity, pool=cfg.pool, clip=clip.info, concepts=concepts)
    config.update(top_units=cfg.top_units, top_images=cfg.top_images, min_units=cfg.min_units)
    manifest = artifacts.make_manifest(STAGE, config, {"device": str(session.device),
                                                       "batch_size": session.runtime.batch_size})

    def start() -> str:
        state = artifacts.open_output(out, manifest, overwrite)
        if state != "complete":
            artifacts.write_json(out / artifacts.MANIFEST, manifest)
        return state
    rank = distributed.group(session.device)
    if distributed.decide(start) == "complete":         # under torchrun rank 0 opens the folder
        return Outcome(out, True, artifacts.read_json(out / "summary.json", "dissection summary"))

    if cfg.method == "netdissect":
        frame, extra = mask_iou_labels(session, paths, cfg, activation_dir)
    else:
        frame, extra = clip_labels(session, clip, paths, cfg, concepts, categories, activation_dir)
    summary = report.summarize(frame)
    if not rank.main:                                   # every rank holds the labels; rank 0 writes
        return Outcome(out, False, summary)
    artifacts.write_csv(out / "descriptions.csv", frame)
    artifacts.write_json(out / "summary.json", summary)
    weights = session.loaded.weights
    trained = "random weights" if weights["source"] == "random init" else f"weights {weights['sha256'][:8]}"
    title = f"{out.name}: {session.spec.name} ({trained}) · {cfg.method} · {probe.name}"
    figures.units_per_concept_figure(frame, out / "units_per_concept.png", title, cfg.min_units)
    figures.category_shares_figure({title: summary}, out / "category_shares.png")
    draw_strips(session, paths, frame, extra, cfg, out)
    if flags is not None:
        artifacts.write_json(out / "args.txt", flags)
    artifacts.write_json(out / artifacts.MANIFEST, {**manifest, "complete": True})
    return Outcome(out, False, summary)


# --- compare_dissections.py -----------------------------------------------------------------------
@dataclass
class Run:
    """A finished dissection: its descriptions, summary and manifest (None for a bare
    descriptions.csv, such as the CLIP-Dissect release's)."""
    frame: pd.DataFrame
    summary: dict
    manifest: dict | None


def read_run(path: str | Path) -> Run:
    """A finished dissect_neurons.py / describe_neurons.py result folder, a folder holding a
    descriptions.csv (the original's result folders), or a descriptions CSV file itself
    (``layer,unit,description,similarity``); a one-line error otherwise."""
    path = Path(path)
    manifest = artifacts.read_manifest(path) if path.is_dir() else None
    if manifest is not None:
        if manifest.get("stage") != STAGE:
            raise UserError(f"{path} is not a dissection result folder (its manifest.json is of {manifest.get('stage')})")
        if not manifest.get("complete"):
            raise UserError(f"{path} holds an unfinished dissection; rerun it there first")
    csv = path / "descriptions.csv" if path.is_dir() else path
    if not csv.is_file():
        raise UserError(f"{path} is neither a dissection result folder nor a descriptions CSV file")
    frame = artifacts.read_csv(csv, ("layer", "unit", "description"), "descriptions")
    frame["description"] = frame["description"].fillna("").astype(str)
    frame["category"] = frame["category"].map(lambda v: v if isinstance(v, str) else "") if "category" in frame else ""
    return Run(frame, report.summarize(frame), manifest)


def run_name(path: str | Path) -> str:
    """A run's default name: its folder's (a CSV file: its stem, or its folder's for descriptions.csv)."""
    path = Path(path)
    return path.parent.name if path.name == "descriptions.csv" else path.stem if path.is_file() else path.name


@dataclass
class Comparison:
    """What compare_dissections wrote to ``folder``: ``unique``, unique_concepts.csv (per run and
    layer, and ``overall``); ``table``, comparison.csv (one row per run and layer); ``units``,
    units.csv (per unit, each run's label and whether they agree), None when the runs do not cover
    the same units."""
    folder: Path
    unique: pd.DataFrame
    table: pd.DataFrame
    units: pd.DataFrame | None


def compare_dissections(paths: Sequence[str | Path], names: Sequence[str] | None = None,
                        out: str | Path | None = None, layers: Sequence[str] | None = None,
                        min_units: int = 3) -> Comparison:
    """Finished runs (result folders or descriptions CSVs) side by side, shown as ``names`` (default:
    ``run_name``), over ``layers`` (default: every layer of the runs) into ``out`` (default
    ``layout.dissect_compare_dir(names)``): unique_concepts.csv, units_per_concept_<layer>.png (the
    runs side by side; concepts with more than ``min_units`` units), comparison.csv,
    unique_concepts.png, category_shares.png, units.csv (when the runs cover the same units) and
    manifest.json, recomputed on every call."""
    paths = [Path(f) for f in paths]
    if len(paths) < 2:
        raise UserError("give at least two result folders or descriptions files to compare")
    names = list(names) if names else [run_name(f) for f in paths]
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise UserError(f"--names needs {len(paths)} distinct names, got {names}")
    if min_units < 0:
        raise UserError(f"--min_units must be 0 or more, got {min_units}")
    runs = {n: read_run(f) for n, f in zip(names, paths)}
    if layers:
        for n, r in runs.items():
            missing = [layer for layer in layers if layer not in set(r.frame["layer"])]
            if missing:
                raise UserError(f"run {n} has no layer {missing[0]!r} (it has {', '.join(r.frame['layer'].unique())})")
        runs = {n: Run(r.frame[r.frame["layer"].isin(layers)], report.summarize(r.frame[r.frame["layer"].isin(layers)]),
                       r.manifest) for n, r in runs.items()}
    out = Path(out or layout.dissect_compare_dir(names))
    inputs = {n: str(f.resolve()) for n, f in zip(names, paths)}
    manifest = artifacts.make_manifest("compare_dissections", {"runs": inputs, "layers": list(layers or []),
                                                               "min_units": min_units}, {}, inputs)
    artifacts.open_derived(out, manifest)

    summaries = {n: r.summary for n, r in runs.items()}
    unique = report.unique_concepts_table(summaries)
    artifacts.write_csv(out / "unique_concepts.csv", unique)
    configs = {n: (r.manifest or {}).get("config", {}) for n, r in runs.items()}
    table = report.comparison_table(summaries, configs)
    artifacts.write_csv(out / "comparison.csv", table)
    shown = list(dict.fromkeys(layer for r in runs.values() for layer in r.frame["layer"]))
    for layer in shown:
        figures.units_per_concept_side_by_side({n: r.frame for n, r in runs.items()}, layer,
                                               out / f"units_per_concept_{layer}.png", min_units)
    figures.unique_concepts_figure(summaries, out / "unique_concepts.png")
    figures.category_shares_figure(summaries, out / "category_shares.png")
    units = report.unit_agreement({n: r.frame for n, r in runs.items()})
    if units is not None:
        artifacts.write_csv(out / "units.csv", units)
    artifacts.write_json(out / artifacts.MANIFEST, {**manifest, "complete": True})
    return Comparison(out, unique, table, units)
