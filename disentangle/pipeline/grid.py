"""Plan and run the block x k grid by calling each stage's ``main`` in-process.

Every stage skips work whose artifacts are complete for the same settings, so running the plan
again after an interruption resumes it.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .. import cli
from ..core import runtime
from . import experiment, readers as pipeline
from ..core.errors import UserError
from ..core.hooks import MODES
from ..core.models import get_spec


@dataclass(frozen=True)
class Step:
    kind: str               # baseline, stats, centroids, blocked, accuracy, controlviz, summary
    block: str | None = None
    k: int | None = None
    cluster: int | None = None

    def label(self) -> str:
        where = " ".join(f"{n}={v}" for n, v in (("block", self.block), ("k", self.k), ("cluster", self.cluster))
                         if v is not None)
        return f"{self.kind} {where}".strip()


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, got {text!r}") from None


def blocks_of(args: argparse.Namespace) -> list[str]:
    spec = get_spec(args.model)
    if args.blocks:
        blocks = [b.strip() for b in args.blocks.split(",") if b.strip()]
    else:
        blocks = [b for b in ("block_1", "block_2", "block_3", "block_4") if b in spec.blocks] or list(spec.blocks)
    for b in blocks:
        if b not in spec.blocks:
            raise UserError(f"unknown block {b!r} for {spec.name}; choose from {', '.join(spec.blocks)}")
    return blocks


def control_ks_of(args: argparse.Namespace) -> list[int]:
    """``--control_ks``, by default 3 when it is among ``--ks``, else the smallest of them."""
    if args.control_ks is not None:
        return _ints(args.control_ks, "--control_ks")
    ks = _ints(args.ks, "--ks")
    return [3 if 3 in ks else min(ks)] if ks else []


def plan(args: argparse.Namespace) -> list[Step]:
    ks, control_ks = _ints(args.ks, "--ks"), control_ks_of(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(f"unknown mode {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
    if not ks or min(ks) < 2:
        raise UserError(f"--ks must list numbers of clusters of at least 2, got {args.ks!r}")
    if any(k not in ks for k in control_ks):
        raise UserError(f"--control_ks {args.control_ks} must be among --ks {args.ks}")
    if args.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {args.repeats}")
    steps = [Step("baseline")]
    for b in blocks_of(args):
        steps += [Step("stats", b, k) for k in ks] + [Step("centroids", b, k) for k in ks]
        steps += [Step(f"blocked:{m}", b) for m in modes]
        steps += [Step("accuracy", b, k, c) for k in ks for c in range(k)]
        steps += [Step("controlviz", b, k, c) for k in control_ks for c in range(k)]
    return steps + [Step("summary")]


def describe(steps: list[Step], args: argparse.Namespace) -> str:
    ks, blocks = _ints(args.ks, "--ks"), blocks_of(args)
    clusters = sum(ks) * len(blocks)
    controls = sum(control_ks_of(args)) * len(blocks) * args.repeats
    return (f"plan: {args.model} on {args.data or get_spec(args.model).default_data}, {args.images} images, "
            f"blocks {', '.join(blocks)} x k in {args.ks}: {clusters} clusters x modes {args.modes}, "
            f"{controls} random-control runs, {len(steps)} steps; finished steps are skipped")


def _images_per_batch(args: argparse.Namespace) -> int:
    """``--batch-size``, or for 'auto' (which only the attribution stages take) the size it starts at."""
    if args.batch_size != "auto":
        return args.batch_size
    return runtime.AUTO_START["cuda" if runtime.resolve_device(args.device).type == "cuda" else "cpu"]


def _model_data(args: argparse.Namespace, engine: bool = False) -> list[str]:
    """Flags of the stages that choose model, data and runtime themselves (``engine``: an attribution stage)."""
    out = ["--model", args.model, "--seed", str(args.seed), "--workers", str(args.workers),
           "--device", args.device, "--batch-size", str(args.batch_size if engine else _images_per_batch(args))]
    for flag, value in (("--weights", args.weights), ("--data", args.data), ("--data-root", args.data_root)):
        if value is not None:
            out += [flag, value]
    return out


def _check(code: int, what: str) -> None:
    if code:
        raise UserError(f"the grid stopped at {what} (see the error above); fix it and rerun to resume")


def execute(steps: list[Step], args: argparse.Namespace) -> None:
    import accuracy
    import baseline_eval
    import centroid_analysis
    import collect_metrics
    import control_visualization
    import neuron_stats

    root = Path(args.outputs)
    base_dir = root / "baseline"
    control_ks = control_ks_of(args)
    overwrite = ["--overwrite"] if args.overwrite else []
    for i, step in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {step.label()}", flush=True)
        b, k, c = step.block, step.k, step.cluster
        if step.kind == "baseline":
            code = baseline_eval.main([*_model_data(args, engine=True), "--images", str(args.images),
                                       "--metric", args.metric, "--methods", args.methods,
                                       "--ig-steps", str(args.ig_steps), "--ig-batch", str(args.ig_batch),
                                       "--precision", args.precision, "--output_dir", str(base_dir), *overwrite]
                                      + (["--channels-last"] if args.channels_last else []))
        elif step.kind == "stats":
            code = neuron_stats.main([*_model_data(args), "--block", b, "--n_clusters", str(k),
                                      "--images", str(args.stats_images), "--n_init", str(args.n_init),
                                      "--output_dir", str(pipeline.stats_dir(b, k, root)), *overwrite])
        elif step.kind == "centroids":
            code = centroid_analysis.main(["--block", b, "--k", str(k), "--seed", str(args.seed),
                                           "--stats_dir", str(pipeline.stats_dir(b, k, root))])
        elif step.kind.startswith("blocked:"):
            code = 0
            _blocked(args, root, b, step.kind.split(":")[1], _ints(args.ks, "--ks"),
                     control_ks if step.kind == "blocked:detach" else [])
        elif step.kind == "accuracy":
            code = accuracy.main(["--block", b, "--k", str(k), "--cluster", str(c), "--device", args.device,
                                  "--batches", str(max(1, args.images // _images_per_batch(args))),
                                  "--batch-size", str(_images_per_batch(args)),
                                  "--stats_dir", str(pipeline.stats_dir(b, k, root)),
                                  "--output", str(root / "accuracy" / f"acc_{b}_c{c}_k{k}.json")])
        elif step.kind == "controlviz":
            code = control_visualization.main([
                "--block", b, "--k", str(k), "--cluster_idx", str(c),
                "--filtered_dir", str(pipeline.filtered_dir(b, c, k, "detach", root)),
                "--control_dir", str(pipeline.control_dir(b, c, k, "detach", root))])
        else:
            code = collect_metrics.main(["--outputs", str(root)])
        _check(code, step.label())


def _blocked(args: argparse.Namespace, root: Path, block: str, mode: str, ks: list[int], control_ks: list[int]) -> None:
    """Every filtered cluster of ``block`` (all k) and its controls, in ``mode``."""
    ns = argparse.Namespace(baseline_dir=str(root / "baseline"), images=None, metric=None, mode=mode,
                            device=args.device, workers=args.workers, batch_size=args.batch_size,
                            ig_batch=args.ig_batch, overwrite=args.overwrite, save_attributions=False,
                            channels_last=args.channels_last)
    clusterings = {k: pipeline.load_clusters(pipeline.stats_dir(block, k, root)) for k in ks}
    ctx = experiment.open_context(ns, clusterings[ks[0]])
    cells = []
    for k, cl in clusterings.items():
        pipeline.same_model(ctx.baseline.manifest, cl.manifest, "the baseline", str(cl.folder))
        cells += [experiment.Cell(pipeline.filtered_dir(block, c, k, mode, root), block, cl.channels(c),
                                  "filtered_eval", {"cluster": c, "k": k}, {"neuron_stats": str(cl.folder)})
                  for c in range(k)]
        if k in control_ks:
            for c in range(k):
                cells += experiment.control_cells(cl, c, None, args.repeats, args.seed, mode,
                                                  pipeline.control_dir(block, c, k, mode, root))
    experiment.run_cells(ctx, block, cells, len(clusterings[ks[0]].labels), mode, ns)
