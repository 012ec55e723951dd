"""Blocked-gradient runs (filtered clusters and random controls) on exactly the baseline's images.

A run inherits everything that makes it comparable from the baseline's manifest (model, weights,
data, images, methods, metric, IG steps, targets) and refuses to start if any of it differs.
``detach`` runs of one block share one pass of the engine; a ``zero`` run changes the forward pass,
so each runs on its own, with its channels ablated by a forward hook.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..attribution import evaluation
from ..core import distributed
from ..core.errors import UserError
from ..core.hooks import MODES, block_hook, channel_mask
from ..core.layers import resolve_layer
from ..core.runtime import AutoBatch, Runtime
from ..io import artifacts, layout, readers
from .session import Session, setup_like


@dataclass(frozen=True)
class Settings:
    """How blocked runs run: the runtime, whether their attribution maps are kept, and whether a
    folder holding a run with other settings is replaced."""
    runtime: Runtime = Runtime()
    attribution_format: str | None = None   # keep the blocked maps: evaluation.ATTRIBUTION_FORMATS
    overwrite: bool = False


@dataclass
class Context:
    """The baseline a blocked run compares with, and the model and images it was made on."""
    baseline: readers.Baseline
    session: Session
    cfg: evaluation.EvalConfig


def open_context(baseline_dir: str | Path, runtime: Runtime, clusters: readers.Clusters | None = None,
                 images: int | None = None, metric: str | None = None, mode: str = "detach") -> Context:
    """Rebuild the baseline's model, data and images; check that nothing drifted since. ``images``
    and ``metric``, when given, must be the baseline's."""
    baseline = readers.load_baseline(baseline_dir)
    if clusters is not None:
        readers.same_model(baseline.manifest, clusters.manifest, f"the baseline ({baseline.folder})",
                           f"the neuron statistics ({clusters.folder})")
    b = baseline.manifest["config"]
    if images not in (None, b["images"]):
        raise UserError(f"the baseline in {baseline.folder} has {b['images']} images; blocked runs use exactly "
                        f"those (leave out --images or rerun the baseline with --images {images})")
    if metric not in (None, b["metric"]):
        raise UserError(f"the baseline in {baseline.folder} used --metric {b['metric']}; rerun it with "
                        f"--metric {metric} into another folder and pass --baseline_dir")
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    session = setup_like(baseline.manifest, runtime)
    if session.images.indices.tolist() != baseline.per_image["index"].tolist():
        raise UserError(f"the images of the baseline in {baseline.folder} cannot be reproduced (data changed?)")
    return Context(baseline, session, evaluation.EvalConfig.from_recorded(b))


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
    metrics_extra: dict = field(default_factory=dict)   # keys added to metrics.json
    target: str = "baseline"    # the class explained: the baseline's targets, or "pred" its predictions


def open_cell(ctx: Context, cell: Cell, mode: str, settings: Settings, engine: str) -> bool:
    """Write the cell's manifest (unless resuming); False when the cell is already complete."""
    s = ctx.session
    cell.manifest = artifacts.make_manifest(
        cell.stage, {**ctx.baseline.manifest["config"], "block": cell.block, "mode": mode,
                     "channels": [int(c) for c in cell.channels], **cell.extra,
                     "baseline_sha256": ctx.baseline.sha256},
        s.runtime_record(engine=engine), inputs={"baseline": str(ctx.baseline.folder), **cell.sources},
        hook={"block": resolve_layer(s.spec, cell.block), "mode": mode, "n_blocked": len(cell.channels)})
    def choose() -> str:
        state = artifacts.open_output(cell.out, cell.manifest, settings.overwrite)
        if state == "fresh":
            artifacts.write_json(cell.out / artifacts.MANIFEST, cell.manifest)
        return state
    return distributed.decide(choose) != "complete"       # under torchrun rank 0 opens the folder


def close_cell(ctx: Context, cell: Cell, seconds: float) -> dict:
    result = evaluation.finalize(cell.out, ctx.cfg, ctx.baseline.per_image, extra=cell.metrics_extra)
    cell.manifest.update(complete=True, seconds=round(seconds, 1))
    artifacts.write_json(cell.out / artifacts.MANIFEST, cell.manifest)
    return result


def run_cells(ctx: Context, block: str, cells: list[Cell], n_channels: int, mode: str,
              settings: Settings) -> dict[Path, dict]:
    """Every unfinished cell of one block, on the baseline's images and targets: ``detach`` cells in
    one shared pass, each ``zero`` cell in a pass of its own with its channels ablated. Returns each
    run cell's result (``finalize``'s), by folder; complete cells are left as they are. Under
    torchrun each rank takes every N-th batch of every pass and rank 0 gathers the cells."""
    s = ctx.session
    rank = distributed.group(s.device)
    path = resolve_layer(s.spec, block)
    engine = "shared-pass" if mode == "detach" else "zero-hook"
    todo = [c for c in cells if open_cell(ctx, c, mode, settings, engine)]
    if mode == "detach":                     # one pass per set of explained classes
        groups = [[c for c in todo if c.target == t] for t in dict.fromkeys(c.target for c in todo)]
    else:
        groups = [[c] for c in todo]
    predicted = dict(zip(ctx.baseline.per_image["index"].tolist(), ctx.baseline.per_image["pred"].tolist()))
    results = {}
    for group in groups:
        if not group:
            continue
        start = time.time()
        auto = AutoBatch(s.runtime.batch_size, s.device)
        masks = [channel_mask(c.channels, n_channels) for c in group]
        if mode == "detach":
            cells_masks, hooks = list(zip((c.out for c in group), masks)), []
        else:
            cells_masks = [(group[0].out, channel_mask([], n_channels))]
            hooks = [(path, block_hook(masks[0], "zero"))]
        label = (f"{block}: {len(group)} masks, one pass" if mode == "detach"
                 else f"{group[0].stage} {group[0].out.name}")
        targets = predicted if group[0].target == "pred" else ctx.baseline.targets
        batches = s.shard(auto.start)
        evaluation.run(s.model, s.loader(auto.start, batches=batches), ctx.cfg, path, cells_masks, s.device,
                       targets, s.runtime.ig_batch, desc=label, attribution_format=settings.attribution_format,
                       auto=auto, stem=s.spec.stem, plain=s.runtime.plain, fwd_hooks=hooks, batches=batches)
        distributed.barrier()
        done = {c.out: close_cell(ctx, c, (time.time() - start) / len(group)) for c in group} if rank.main else None
        results.update(distributed.broadcast(done))
    return results


def format_deltas(result: dict, title: str) -> str:
    """A blocked run's accuracy and mean changes of sparsity and faithfulness, for the terminal."""
    acc, met = result["accuracy"], result["metrics"]
    lines = [f"{title}: top-1 {acc['top1']:.1%} (baseline {acc['top1_baseline']:.1%})"]
    for m in met["settings"]["methods"]:
        e = met[m]
        lines.append(f"  {m:9s} Δsparsity {e['sparsity_delta_mean']:+.4f} ± {e['sparsity_delta_std']:.4f}   "
                     f"Δfaithfulness {e['faithfulness_delta_mean']:+.4f} ± {e['faithfulness_delta_std']:.4f}")
    return "\n".join(lines)


def random_channels(n_channels: int, n: int, seed: int) -> np.ndarray:
    """``n`` distinct channels drawn with their own seed (sorted)."""
    if not 1 <= n <= n_channels:
        raise UserError(f"--n_random must be between 1 and {n_channels} (the block's neurons), got {n}")
    gen = torch.Generator().manual_seed(seed)
    return np.sort(torch.randperm(n_channels, generator=gen)[:n].numpy())


def original_random_set(block: str, n_channels: int, n: int, seed: int = 42) -> np.ndarray:
    """The original control's neurons (sorted): ``np.random.seed(seed)``, then
    ``np.random.choice(n_channels, n, replace=False)``."""
    if not 1 <= n <= n_channels:
        raise UserError(f"--n_random must be between 1 and {n_channels} (the neurons of {block}), got {n}")
    return np.sort(np.random.RandomState(seed).choice(n_channels, n, replace=False))


def original_control_cell(block: str, n_channels: int, n_random: int, seed: int, metric: str,
                          folder: str | Path | None = None, root: Path = layout.OUTPUTS) -> Cell:
    """The original's random control: ``n_random`` of the block's ``n_channels`` neurons drawn as
    ``np.random.seed(seed); np.random.choice(n_channels, n_random, replace=False)``, each image
    explained for its predicted class (the original's control explains the filtered model's
    prediction, which detach leaves unchanged), its metrics.json with the original's metadata keys.
    Default folder: ``control_random/<metric>_wise``."""
    channels = original_random_set(block, n_channels, n_random, seed)
    return Cell(Path(folder) if folder else layout.control_random_dir(metric, root), block, channels,
                "control_experiment", {"control_for": None, "control_seed": seed, "explained": "pred"}, {},
                metrics_extra={"experiment_type": "control_random", "block_filtered": block,
                               "neurons_filtered": n_random, "neurons_total": n_channels, "random_seed": seed,
                               "metric_type": metric}, target="pred")


def filtered_cell(clusters: readers.Clusters, cluster: int, out: str | Path | None = None,
                  mode: str = "detach", root: Path = layout.OUTPUTS) -> Cell:
    """The cell blocking ``cluster`` of ``clusters`` (default folder: the layout's)."""
    folder = Path(out) if out else layout.filtered_dir(clusters.block, cluster, clusters.k, mode, root)
    return Cell(folder, clusters.block, clusters.channels(cluster), "filtered_eval",
                {"cluster": cluster, "k": clusters.k}, {"neuron_stats": str(clusters.folder)})


def control_cells(clusters: readers.Clusters, cluster: int, n_random: int | None, repeats: int, seed: int,
                  mode: str, folder: str | Path | None = None, root: Path = layout.OUTPUTS) -> list[Cell]:
    """Random-set cells controlling for ``cluster`` (default size: the cluster's)."""
    if repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {repeats}")
    size = len(clusters.channels(cluster)) if n_random is None else n_random
    control = Path(folder) if folder else layout.control_dir(clusters.block, cluster, clusters.k, mode, root)
    return [Cell(layout.repeat_dir(control, r), clusters.block,
                 random_channels(len(clusters.labels), size, 1000 * seed + r), "control_experiment",
                 {"control_for": {"k": clusters.k, "cluster": cluster}, "repeat": r, "control_seed": 1000 * seed + r},
                 {"neuron_stats": str(clusters.folder)}) for r in range(repeats)]
