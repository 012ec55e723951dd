"""The per-class stage: every class's images with the baseline and with a cluster blocked, one row
per class, sharded by class under ``torchrun``; and the merge of several class ranges."""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..attribution.evaluation import EvalConfig
from ..core import distributed
from ..core.errors import UserError
from ..core.hooks import MODES, channel_mask
from ..core.layers import resolve_layer
from ..core.runtime import AutoBatch, Runtime
from ..io import artifacts
from ..io.readers import Clusters
from ..io.schema import class_columns
from ..neurons import classes
from .session import setup_like

RANGE_KEYS = ("class_start", "class_end")


def run_class_analysis(clusters: Clusters, cluster: int, class_start: int, class_end: int | None,
                       images_per_class: int, mode: str, cfg: EvalConfig, runtime: Runtime, out: str | Path | None,
                       overwrite: bool = False, default_out=None, log=print, image_order: str = "first"
                       ) -> tuple[Path, pd.DataFrame | None]:
    """One row per class of ``class_start..class_end`` (default: to the last class) and method, of
    its first ``images_per_class`` images (``image_order`` ``spread``: spread over the class), into the CSV
    ``out`` (default: ``default_out(start, end)``), its manifest beside it. Under ``torchrun`` each
    rank takes every N-th class and rank 0 writes; finished classes are kept in ``<out>.parts/``,
    so an interrupted run resumes. Returns the CSV and its table (None on ranks other than 0 or when
    the CSV was already complete)."""
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if images_per_class < 1:
        raise UserError(f"--images_per_class must be at least 1, got {images_per_class}")
    channels = clusters.channels(cluster)
    with distributed.process_group(runtime.torch_device()) as (rank, world, device):
        session = setup_like(clusters.manifest, replace(runtime, device=str(device), workers=0), images=1)
        targets, names = np.asarray(session.images.source.targets), list(session.images.source.classes)
        end = len(names) if class_end is None else class_end
        if not 0 <= class_start < end <= len(names):
            raise UserError(f"classes {class_start}..{end} are out of range: the data has {len(names)} "
                            f"classes (0..{len(names) - 1})")
        largest = int(np.bincount(targets, minlength=len(names))[class_start:end].max())
        if images_per_class > largest:
            raise UserError(f"--images_per_class {images_per_class} is more than any class in "
                            f"{class_start}..{end - 1} holds (at most {largest}); a class with fewer "
                            f"images uses all of them (its n_images column says how many)")
        if image_order not in ("first", "spread"):
            raise UserError(f"unknown image order {image_order!r}; choose first or spread")
        out = Path(out or default_out(class_start, end))
        if out.suffix != ".csv":
            raise UserError(f"--output {out} must be a .csv file (its manifest goes beside it)")
        config = {**{k: clusters.manifest["config"][k] for k in ("model", "weights_sha256", "data", "block", "k")},
                  "cluster": cluster, "channels": channels.tolist(), "mode": mode,
                  "images_per_class": images_per_class, "image_order": image_order, "class_start": class_start,
                  "class_end": end,
                  **cfg.recorded()}
        manifest = artifacts.make_manifest("class_analysis", config,
                                           {"device": str(device), "world_size": world,
                                            "batch_size": runtime.batch_size, "channels_last": runtime.channels_last},
                                           {"neuron_stats": str(clusters.folder)})
        if rank == 0:
            artifacts.hold(out, folder=False)
        old = artifacts.read_manifest(out) if artifacts.manifest_path(out).exists() else None
        if old is not None:
            if old.get("stage") != "class_analysis":
                raise UserError(f"{artifacts.manifest_path(out)} is not the manifest of a class_analysis run; "
                                f"choose another --output")
            problem = artifacts.config_mismatch(old["config"], config)
            if problem is None:
                if rank == 0:
                    log(f"{out} is already complete for these settings; nothing to do")
                return out, None
            if not overwrite:
                raise UserError(f"{out} was made with other settings ({problem}); pass --overwrite")
        parts = out.with_suffix(".parts")
        if rank == 0 and artifacts.open_output(parts, manifest, overwrite, progress="class_*.json") == "fresh":
            artifacts.write_json(parts / artifacts.MANIFEST, manifest)
        distributed.barrier()

        block = resolve_layer(session.spec, clusters.block)
        mask = channel_mask(channels, len(clusters.labels))
        mine = list(range(class_start, end))[rank::world]
        auto = AutoBatch(runtime.batch_size, device)   # 'auto': a class that runs out of memory is redone in halves
        start, n_images = time.time(), 0
        for c in tqdm(mine, desc=f"classes (rank {rank}/{world})", unit="class", disable=None):
            if classes.done(parts, c):
                continue
            idx = classes.class_images(targets, c, images_per_class, image_order)
            rows = auto(lambda size: classes.analyse_class(session, idx, cfg, block, mask, mode, size,
                                                           auto.scaled(runtime.ig_batch)))
            classes.write_part(parts, c, [{"class_id": c, "class_name": names[c], **r} for r in rows])
            n_images += len(idx)
        seconds = time.time() - start
        distributed.barrier()
        if rank != 0:
            return out, None
        frame = classes.gather(parts, list(range(class_start, end)))
        artifacts.manifest_path(out).unlink(missing_ok=True)     # never a new CSV beside an old manifest
        artifacts.write_csv(out, frame)
        manifest.update(complete=True, seconds=round(seconds, 1))
        artifacts.write_manifest(out, manifest)
        shutil.rmtree(parts)
        n_classes = frame["class_id"].nunique()
        log(f"{n_classes} classes, {int(frame.drop_duplicates('class_id')['n_images'].sum())} images x "
            f"(baseline + filtered); "
            f"rank 0 did {n_images} images in {seconds:.0f} s -> {out}")
        return out, frame


def read_part(f: Path) -> tuple[dict, pd.DataFrame]:
    """A finished class_analysis CSV and its manifest, checked against each other."""
    manifest = artifacts.read_manifest(f) if f.is_file() else None
    if manifest is None:
        raise UserError(f"{f} or its manifest {artifacts.manifest_path(f).name} is missing "
                        f"(class_analysis.py writes both)")
    if manifest.get("stage") != "class_analysis" or not manifest.get("complete"):
        raise UserError(f"{artifacts.manifest_path(f)} is not the manifest of a finished class_analysis run")
    c = manifest["config"]
    frame = artifacts.read_csv(f, class_columns(), "per-class table")
    rows, span = frame["class_id"].drop_duplicates().tolist(), range(c["class_start"], c["class_end"])
    # A merged file with gaps (--allow_gaps) records how many classes it holds.
    ok = rows == list(span) if c.get("classes", len(span)) == len(span) else \
        len(rows) == c["classes"] and rows == sorted(set(rows)) and set(rows) <= set(span)
    if not ok:
        raise UserError(f"{f} holds the classes {_span(rows)}, but its manifest says "
                        f"{c['class_start']}..{c['class_end'] - 1}: the CSV was changed or is another run's")
    return manifest, frame


def _span(values: list) -> str:
    return f"{values[0]}..{values[-1]} ({len(values)} rows)" if values else "none"


def merge_class_tables(inputs: list[str | Path], out: str | Path, allow_gaps: bool = False) -> pd.DataFrame:
    """The per-class CSVs of several class ranges merged into ``out`` (its manifest beside it),
    refusing overlaps, gaps (unless ``allow_gaps``) and inputs made with other settings."""
    out, inputs = Path(out), [Path(f) for f in inputs]
    if out.suffix != ".csv":
        raise UserError(f"--output {out} must be a .csv file (its manifest goes beside it)")
    used = {q.resolve() for f in inputs for q in (f, artifacts.manifest_path(f))}
    if out.resolve() in used or artifacts.manifest_path(out).resolve() in used:
        raise UserError(f"--output {out} or its manifest would overwrite an input; choose another file")
    runs = sorted(((f, *read_part(f)) for f in inputs), key=lambda r: r[1]["config"]["class_start"])
    first = runs[0]

    def settings(m: dict) -> dict:
        return {k: v for k, v in m["config"].items() if k not in (*RANGE_KEYS, "classes")}

    for f, manifest, _ in runs[1:]:
        problem = artifacts.config_mismatch(settings(first[1]), settings(manifest))
        if problem:
            raise UserError(f"{f} was made with other settings than {first[0]} ({problem})")
    for (fa, ma, _), (fb, mb, _) in zip(runs, runs[1:]):
        end, start = ma["config"]["class_end"], mb["config"]["class_start"]
        if start < end:
            raise UserError(f"{fa} (classes to {end}) and {fb} (from {start}) overlap")
        if start > end and not allow_gaps:
            raise UserError(f"classes {end}..{start} are in no input (between {fa} and {fb}); "
                            f"pass --allow_gaps to accept")
    frame = pd.concat([r[2] for r in runs], ignore_index=True)
    artifacts.hold(out, folder=False)
    merged = artifacts.make_manifest("class_analysis", {**first[1]["config"],
                                                         "class_start": runs[0][1]["config"]["class_start"],
                                                         "class_end": runs[-1][1]["config"]["class_end"],
                                                         "classes": frame["class_id"].nunique()},
                                     {}, {"merged": {str(f): artifacts.sha256_file(f) for f, _, _ in runs}},
                                     complete=True)
    artifacts.manifest_path(out).unlink(missing_ok=True)   # never a new CSV beside an old manifest
    artifacts.write_csv(out, frame)
    artifacts.write_manifest(out, merged)
    return frame
