"""One blocked-gradient run (a filtered cluster or a random control) on exactly the baseline's images.

The run inherits everything that makes it comparable from the baseline's manifest (model, weights,
data, images, methods, metric, IG steps, targets) and refuses to start if any of it differs.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..io import artifacts
from ..core import runtime
from .. import cli
from ..attribution import evaluation
from . import readers as pipeline
from ..core.errors import UserError
from ..core.hooks import MODES, block_hook, channel_mask
from ..core.models import resolve_block


def add_filtered_args(p: argparse.ArgumentParser) -> None:
    """Flags of stages that rerun the baseline's evaluation with neurons blocked."""
    p.add_argument("--images", type=cli.positive, default=None,
                   help="number of images; must equal the baseline's (the default), since deltas are per image")
    p.add_argument("--metric", default=None, help="pixel or patch; must equal the baseline's (the default)")
    cli.add_runtime_args(p, engine=True)
    p.add_argument("--ig-batch", type=cli.positive, default=256, help="rows (image x step) per IG forward/backward")
    p.add_argument("--save-attributions", action="store_true",
                   help="also write the blocked attribution maps (large: images x 3 x H x W per method)")
    p.add_argument("--overwrite", action="store_true", help="replace a folder holding a run with other settings")


def setup_like(manifest: dict, args: argparse.Namespace) -> cli.Setup:
    """Model and data of an earlier stage (from its manifest), with ``args.images`` images.
    Refuses to go on if the weights file changed since."""
    c = manifest["config"]
    data = c["data"]
    ns = argparse.Namespace(
        model=c["model"], seed=c.get("seed", 0), device=args.device, workers=args.workers, images=args.images,
        weights="random" if c["weights_source"] == "random init" else manifest.get("weights_path"),
        data="concepts" if data["name"] == "concepts" else data["root"], data_root=None,
        channels_last=getattr(args, "channels_last", False))   # only stages that run the engine have the flag
    run = cli.setup(ns)
    if run.loaded.weights["sha256"] != c["weights_sha256"]:
        raise UserError(f"the weights of {c['model']} changed since {manifest['stage']} ran; rerun that stage")
    return run


def baseline_setup(baseline: pipeline.Baseline, args: argparse.Namespace) -> tuple[cli.Setup, evaluation.EvalConfig]:
    """Rebuild the baseline's model, data and images; check that nothing drifted since."""
    b = baseline.manifest["config"]
    if args.images not in (None, b["images"]):
        raise UserError(f"the baseline in {baseline.folder} has {b['images']} images; blocked runs use exactly "
                        f"those (leave out --images or rerun the baseline with --images {args.images})")
    if args.metric not in (None, b["metric"]):
        raise UserError(f"the baseline in {baseline.folder} used --metric {b['metric']}; rerun it with "
                        f"--metric {args.metric} into another folder and pass --baseline_dir")
    if args.mode not in MODES:
        raise UserError(f"unknown mode {args.mode!r}; choose from {', '.join(MODES)}")
    run = setup_like(baseline.manifest, argparse.Namespace(device=args.device, workers=args.workers,
                                                           images=b["images"],
                                                           channels_last=getattr(args, "channels_last", False)))
    if run.indices.tolist() != baseline.per_image["index"].tolist():
        raise UserError(f"the images of the baseline in {baseline.folder} cannot be reproduced (data changed?)")
    return run, evaluation.EvalConfig.from_recorded(b)


@dataclass
class Context:
    """The baseline a blocked run compares with, and the model and images it was made on."""
    baseline: pipeline.Baseline
    run: cli.Setup
    cfg: evaluation.EvalConfig


def open_context(args: argparse.Namespace, clusters: pipeline.Clusters | None = None) -> Context:
    baseline = pipeline.load_baseline(args.baseline_dir)
    if clusters is not None:
        pipeline.same_model(baseline.manifest, clusters.manifest, f"the baseline ({baseline.folder})",
                            f"the neuron statistics ({clusters.folder})")
    run, cfg = baseline_setup(baseline, args)
    return Context(baseline, run, cfg)


@dataclass
class Cell:
    """One blocked run: a folder, the blocked channels of a block, and what they stand for."""
    out: Path
    block: str
    channels: np.ndarray
    stage: str                  # filtered_eval or control_experiment
    extra: dict                 # cluster, k, repeat, ... (part of the config)
    sources: dict               # input artifacts for the manifest
    manifest: dict = field(default_factory=dict)


def open_cell(ctx: Context, cell: Cell, mode: str, runtime: dict, overwrite: bool) -> bool:
    """Write the cell's manifest (unless resuming); False when the cell is already complete."""
    cell.manifest = artifacts.make_manifest(
        cell.stage, {**ctx.baseline.manifest["config"], "block": cell.block, "mode": mode,
                     "channels": [int(c) for c in cell.channels], **cell.extra,
                     "baseline_sha256": ctx.baseline.sha256},
        runtime, inputs={"baseline": str(ctx.baseline.folder), **cell.sources},
        hook={"block": resolve_block(ctx.run.loaded.spec, cell.block), "mode": mode, "n_blocked": len(cell.channels)})
    state = artifacts.open_output(cell.out, cell.manifest, overwrite)
    if state == "fresh":
        artifacts.write_json(cell.out / artifacts.MANIFEST, cell.manifest)
    return state != "complete"


def close_cell(ctx: Context, cell: Cell, seconds: float) -> dict:
    result = evaluation.finalize(cell.out, ctx.cfg, ctx.baseline.per_image)
    cell.manifest.update(complete=True, seconds=round(seconds, 1))
    artifacts.write_json(cell.out / artifacts.MANIFEST, cell.manifest)
    return result


def _runtime(ctx: Context, args: argparse.Namespace, engine: str) -> dict:
    return {"device": str(ctx.run.device), "batch_size": args.batch_size, "ig_batch": args.ig_batch,
            "channels_last": ctx.run.channels_last, "engine": engine}


def run_hooked(ctx: Context, cell: Cell, n_channels: int, mode: str, args: argparse.Namespace) -> dict | None:
    """The reference path: captum IG and Saliency with a forward hook blocking the cell's channels.
    Returns ``finalize``'s result, or None when the cell was already complete."""
    if not open_cell(ctx, cell, mode, _runtime(ctx, args, "hook"), args.overwrite):
        print(f"{cell.out} is already complete for these settings; nothing to do")
        return None
    start = time.time()
    path = resolve_block(ctx.run.loaded.spec, cell.block)
    auto = runtime.AutoBatch(args.batch_size, ctx.run.device)
    evaluation.run(ctx.run.loaded.model, ctx.run.loader(auto.start), ctx.cfg, cell.out, ctx.run.device,
                   args.ig_batch, desc=f"{cell.stage} {cell.out.name}",
                   fwd_hooks=[(path, block_hook(channel_mask(cell.channels, n_channels), mode))],
                   targets=ctx.baseline.targets, save_attributions=args.save_attributions, auto=auto)
    return close_cell(ctx, cell, time.time() - start)


def run_shared(ctx: Context, block: str, cells: list[Cell], n_channels: int, args: argparse.Namespace) -> None:
    """Every unfinished detach cell of one block in one shared pass over the baseline's images."""
    todo = [c for c in cells if open_cell(ctx, c, "detach", _runtime(ctx, args, "shared-pass"), args.overwrite)]
    if not todo:
        return
    start = time.time()
    path = resolve_block(ctx.run.loaded.spec, block)
    auto = runtime.AutoBatch(args.batch_size, ctx.run.device)
    evaluation.run_shared(ctx.run.loaded.model, ctx.run.loader(auto.start), ctx.cfg, path,
                          [(c.out, channel_mask(c.channels, n_channels)) for c in todo], ctx.run.device,
                          ctx.baseline.targets, args.ig_batch, desc=f"{block}: {len(todo)} masks, one pass",
                          save_attributions=args.save_attributions, auto=auto,
                          stem=ctx.run.loaded.spec.stem)
    for c in todo:
        close_cell(ctx, c, (time.time() - start) / len(todo))


def print_deltas(result: dict, title: str) -> None:
    acc, met = result["accuracy"], result["metrics"]
    print(f"{title}: top-1 {acc['top1']:.1%} (baseline {acc['top1_baseline']:.1%})")
    for m in met["settings"]["methods"]:
        s, f = met[m]["sparsity_delta"], met[m]["faithfulness_delta"]
        print(f"  {m:9s} Δsparsity {s['mean']:+.4f} ± {s['std']:.4f}   Δfaithfulness {f['mean']:+.4f} ± {f['std']:.4f}")


def random_channels(n_channels: int, n: int, seed: int) -> np.ndarray:
    """``n`` distinct channels drawn with their own seed (sorted)."""
    if not 1 <= n <= n_channels:
        raise UserError(f"--n_random must be between 1 and {n_channels} (the block's neurons), got {n}")
    gen = torch.Generator().manual_seed(seed)
    return np.sort(torch.randperm(n_channels, generator=gen)[:n].numpy())


def control_cells(clusters: pipeline.Clusters, cluster: int, n_random: int | None, repeats: int, seed: int,
                  mode: str, folder: str | Path | None = None) -> list[Cell]:
    """Random-set cells controlling for ``cluster`` (default size: the cluster's)."""
    size = len(clusters.channels(cluster)) if n_random is None else n_random
    root = Path(folder) if folder else pipeline.control_dir(clusters.block, cluster, clusters.k, mode)
    return [Cell(root / f"repeat_{r:02d}", clusters.block,
                 random_channels(len(clusters.labels), size, 1000 * seed + r), "control_experiment",
                 {"control_for": {"k": clusters.k, "cluster": cluster}, "repeat": r, "control_seed": 1000 * seed + r},
                 {"neuron_stats": str(clusters.folder)}) for r in range(repeats)]


def run_cells(ctx: Context, block: str, cells: list[Cell], n_channels: int, mode: str,
              args: argparse.Namespace) -> None:
    """Detach cells share one pass; ablation (zero) cells change the forward pass, so each runs hooked."""
    if mode == "detach":
        run_shared(ctx, block, cells, n_channels, args)
    else:
        for c in cells:
            run_hooked(ctx, c, n_channels, mode, args)
