"""The baseline stage: attributions of every image with nothing blocked, and their metrics."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import time

from ..attribution import evaluation
from ..attribution.evaluation import EvalConfig
from ..core import distributed
from ..core.hooks import channel_mask
from ..core.layers import layer_width
from ..core.runtime import AutoBatch
from ..io import artifacts
from .accuracy import data_set_accuracy
from .session import Session


@dataclass
class Outcome:
    """What a stage did: ``skipped`` when its folder was already complete for these settings
    (nothing was computed; ``result`` is read back from it)."""
    folder: Path
    skipped: bool
    result: dict


def cut_block(session: Session) -> str:
    """Where the baseline's shared pass cuts the graph: the model's last named block (with nothing
    blocked the cut changes nothing but float rounding)."""
    return list(session.spec.blocks.values())[-1]


def run_baseline(session: Session, cfg: EvalConfig, out: str | Path, overwrite: bool = False,
                 attribution_format: str | None = "npy") -> Outcome:
    """Attributions, sparsity, faithfulness and accuracy of ``session``'s images into ``out``
    (``accuracy.json``, ``metrics.json``, ``per_image.csv``, ``attributions/`` in
    ``attribution_format`` or none, ``manifest.json``); an interrupted run resumes, a finished one
    is not redone. Under the original protocol, ``accuracy.json``'s ``top1`` and ``top5`` are over
    the whole data set, as the original's (those of the attributed images follow under ``images``)."""
    out = Path(out)
    block = cut_block(session)
    manifest = artifacts.make_manifest(
        "baseline_eval", {**session.config(), **cfg.recorded()},
        session.runtime_record(engine={"cut": block}, attribution_format=attribution_format),
        weights_path=session.loaded.weights["path"])
    rank = distributed.group(session.device)
    state = distributed.decide(lambda: artifacts.open_output(out, manifest, overwrite))
    if state == "complete":
        return Outcome(out, True, evaluation.read_result(out))
    if state == "fresh" and rank.main:
        artifacts.write_json(out / artifacts.MANIFEST, manifest)
    distributed.barrier()
    start = time.time()
    auto = AutoBatch(session.runtime.batch_size, session.device)
    whole = data_set_accuracy(session, auto.start) if cfg.protocol == "original" else None
    open_mask = channel_mask([], layer_width(session.model, block, session.example()))
    # Under torchrun each rank takes every N-th batch; the parts are named by batch, so the
    # results are those of one process.
    batches = session.shard(auto.start)
    evaluation.run(session.model, session.loader(auto.start, batches=batches), cfg, block, [(out, open_mask)],
                   session.device, ig_internal_batch=session.runtime.ig_batch, desc=f"baseline {session.spec.name}",
                   attribution_format=attribution_format, auto=auto, stem=session.spec.stem,
                   plain=session.runtime.plain, batches=batches)
    distributed.barrier()
    result = None
    if rank.main:
        result = evaluation.finalize(out, cfg, whole=whole)
        manifest.update(complete=True, seconds=round(time.time() - start, 1), world_size=rank.world)
        artifacts.write_json(out / artifacts.MANIFEST, manifest)
    return Outcome(out, False, distributed.broadcast(result))
