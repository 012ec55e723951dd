"""The block x k grid as library calls: baseline, neuron statistics and clusters, their
descriptions, every cluster blocked, random controls, the control comparisons and the summary
table (as the original's run_experiments.py, which leaves accuracy.py to a separate call; each
blocked run records its accuracy on the run's images).

Every stage skips work whose artifacts are complete for the same settings, so running the plan
again after an interruption resumes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..attribution.evaluation import EvalConfig
from ..core import distributed
from ..core.errors import UserError
from ..core.hooks import MODES
from ..core.models import get_spec
from ..core.runtime import Runtime
from ..io import artifacts, layout, readers
from . import experiment
from .baseline import run_baseline
from .clusters import describe_clusters, run_neuron_stats
from .session import setup
from .summary import compare_to_controls, write_grid_summary


@dataclass(frozen=True)
class GridConfig:
    """Everything the grid runs. ``blocks`` None: block_1..block_4 (all the model's blocks if it
    has no block_1); ``control_ks`` None: 3 when it is among ``ks``, else the smallest of them."""
    model: str = "tiny_densenet"
    weights: str | None = None
    data: str | None = None
    data_root: str | None = None
    images: int = 100
    image_order: str = "original"   # original: strided attribution images, the first stats images; or spread
    seed: int = 0
    blocks: tuple[str, ...] | None = None
    ks: tuple[int, ...] = (2, 3, 4, 5)
    modes: tuple[str, ...] = ("detach",)
    control_ks: tuple[int, ...] | None = None
    repeats: int = 5
    stats_images: int = 1000
    n_init: int = 10
    features: str = "original"
    kmeans: str = "original"
    eval: EvalConfig = field(default_factory=EvalConfig)
    outputs: Path = layout.OUTPUTS
    overwrite: bool = False
    runtime: Runtime = field(default_factory=Runtime)

    def __post_init__(self):
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise UserError(f"unknown mode {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
        if not self.ks or min(self.ks) < 2:
            raise UserError(f"--ks must list numbers of clusters of at least 2, got {','.join(map(str, self.ks))!r}")
        if any(k not in self.ks for k in self.controlled_ks):
            raise UserError(f"--control_ks {','.join(map(str, self.control_ks))} must be among "
                            f"--ks {','.join(map(str, self.ks))}")
        if self.repeats < 1:
            raise UserError(f"--repeats must be at least 1, got {self.repeats}")
        spec = get_spec(self.model)
        for b in self.blocks or ():
            if b not in spec.blocks:
                raise UserError(f"unknown block {b!r} for {spec.name}; choose from {', '.join(spec.blocks)}")

    @property
    def grid_blocks(self) -> list[str]:
        spec = get_spec(self.model)
        if self.blocks:
            return list(self.blocks)
        return [b for b in ("block_1", "block_2", "block_3", "block_4") if b in spec.blocks] or list(spec.blocks)

    @property
    def controlled_ks(self) -> tuple[int, ...]:
        if self.control_ks is not None:
            return self.control_ks
        return (3 if 3 in self.ks else min(self.ks),) if self.ks else ()


@dataclass(frozen=True)
class Step:
    kind: str               # baseline, stats, centroids, blocked:<mode>, controlviz, summary
    block: str | None = None
    k: int | None = None
    cluster: int | None = None

    def label(self) -> str:
        where = " ".join(f"{n}={v}" for n, v in (("block", self.block), ("k", self.k), ("cluster", self.cluster))
                         if v is not None)
        return f"{self.kind} {where}".strip()


def plan(cfg: GridConfig) -> list[Step]:
    steps = [Step("baseline")]
    for b in cfg.grid_blocks:
        steps += [Step("stats", b, k) for k in cfg.ks] + [Step("centroids", b, k) for k in cfg.ks]
        steps += [Step(f"blocked:{m}", b) for m in cfg.modes]
        steps += [Step("controlviz", b, k, c) for k in cfg.controlled_ks for c in range(k)]
    return steps + [Step("summary")]


def describe(steps: list[Step], cfg: GridConfig) -> str:
    blocks = cfg.grid_blocks
    clusters = sum(cfg.ks) * len(blocks)
    controls = sum(cfg.controlled_ks) * len(blocks) * cfg.repeats
    return (f"plan: {cfg.model} on {cfg.data or get_spec(cfg.model).default_data}, {cfg.images} images, "
            f"blocks {', '.join(blocks)} x k in {','.join(map(str, cfg.ks))}: {clusters} clusters x modes "
            f"{','.join(cfg.modes)}, {controls} random-control runs, {len(steps)} steps; finished steps are skipped")


def execute(steps: list[Step], cfg: GridConfig, log: Callable[[str], None] = print) -> Path:
    """Run the plan, one stage call per step; returns the summary table's path. The grid holds the
    lock of its outputs folder, so a second grid into it stops at once. Under torchrun the
    baseline, the neuron statistics, the blocked runs and the controls are sharded by batch over
    the ranks; the others, cheap next to them, run on rank 0 while the rest wait."""
    root = Path(cfg.outputs)
    distributed.group(cfg.runtime.torch_device())
    distributed.decide(lambda: artifacts.hold(root))
    per_batch = cfg.runtime.images_per_batch()
    fixed = replace(cfg.runtime, batch_size=per_batch)      # stages outside the engine take no 'auto'
    sessions: dict[tuple, object] = {}

    def session(images: int, runtime: Runtime, original: str):
        order = original if cfg.image_order == "original" else "spread"
        if (images, order) not in sessions:
            sessions[images, order] = setup(cfg.model, cfg.weights, cfg.data, images, cfg.data_root, runtime,
                                            cfg.seed, order)
        return sessions[images, order]

    summary = layout.grid_summary_file(root)

    def run(step: Step) -> str:
        b, k, c = step.block, step.k, step.cluster
        if step.kind == "baseline":
            return _skipped(run_baseline(session(cfg.images, cfg.runtime, "strided"), cfg.eval,
                                         layout.baseline_dir(root), cfg.overwrite).skipped)
        if step.kind == "stats":
            return _skipped(run_neuron_stats(session(cfg.stats_images, fixed, "first"), b, k, cfg.n_init,
                                             layout.stats_dir(b, k, root), cfg.overwrite, cfg.features,
                                             cfg.kmeans).skipped)
        if step.kind == "centroids":
            describe_clusters(readers.load_clusters(layout.stats_dir(b, k, root)), None, cfg.seed)
        elif step.kind.startswith("blocked:"):
            ran = _blocked(cfg, root, b, step.kind.split(":")[1])
            return f": {ran} runs" if ran else ": already complete"
        elif step.kind == "controlviz":
            compare_to_controls(layout.filtered_dir(b, c, k, "detach", root),
                                layout.control_dir(b, c, k, "detach", root))
        else:
            write_grid_summary(root)
        return ""

    for i, step in enumerate(steps, 1):
        sharded = step.kind in ("baseline", "stats") or step.kind.startswith("blocked:")
        # A step rank 0 runs alone: its error, if any, stops every rank at once.
        done = run(step) if sharded else distributed.decide(lambda: run(step))
        log(f"[{i}/{len(steps)}] {step.label()}{done}")
    return summary


def _skipped(skipped: bool) -> str:
    return ": already complete" if skipped else ""


def _blocked(cfg: GridConfig, root: Path, block: str, mode: str) -> int:
    """Every cluster of ``block`` (all k) and the controls of the controlled ks, in ``mode``;
    returns how many runs were computed."""
    settings = experiment.Settings(cfg.runtime, overwrite=cfg.overwrite)
    clusterings = {k: readers.load_clusters(layout.stats_dir(block, k, root)) for k in cfg.ks}
    ctx = experiment.open_context(layout.baseline_dir(root), cfg.runtime, clusterings[cfg.ks[0]], mode=mode)
    controlled = cfg.controlled_ks if mode == "detach" else ()
    cells = []
    for k, cl in clusterings.items():
        readers.same_model(ctx.baseline.manifest, cl.manifest, "the baseline", str(cl.folder))
        cells += [experiment.filtered_cell(cl, c, mode=mode, root=root) for c in range(k)]
        if k in controlled:
            for c in range(k):
                cells += experiment.control_cells(cl, c, None, cfg.repeats, cfg.seed, mode, root=root)
    return len(experiment.run_cells(ctx, block, cells, len(clusterings[cfg.ks[0]].labels), mode, settings))
