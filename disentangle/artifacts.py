"""Atomic artifact writing and run manifests.

Every file is written to a temporary name in its folder and renamed into place, so a crash never
leaves a half-written artifact. NPZ files are written with a fixed zip timestamp so that the same
arrays always give the same bytes (determinism tests compare files byte for byte).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import UserError

MANIFEST = "manifest.json"


def _atomic(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n").encode())


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame as CSV (no index)."""
    return write_bytes(path, frame.to_csv(index=False).encode())


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Like ``np.savez`` but byte-reproducible: fixed member timestamps, sorted members."""
    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
                z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    return _atomic(path, write)


def _jsonable(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "captum", "numpy", "timm"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def make_manifest(stage: str, config: dict, runtime: dict, inputs: dict | None = None,
                  **extra: Any) -> dict:
    """The record written next to every artifact.

    ``config`` holds everything that affects the results (model, weights hash, data, images, seed,
    method settings) and is what later stages and reruns compare; ``runtime`` holds what does not
    (device, batch size, workers).
    """
    return {"stage": stage, "command": [os.path.basename(sys.argv[0])] + sys.argv[1:],
            "config": config, "runtime": runtime, "inputs": inputs or {}, "versions": versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "complete": False, **extra}


def read_manifest(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); delete the folder or pass --overwrite") from None


def config_mismatch(old: dict, new: dict) -> str | None:
    """First differing key between two configs, formatted for an error message, or None."""
    old, new = (json.loads(json.dumps(c, default=_jsonable)) for c in (old, new))
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}: {old.get(key)!r} there, {new.get(key)!r} now"
    return None


def open_output(folder: str | os.PathLike, manifest: dict, overwrite: bool = False) -> str:
    """Decide how a stage uses its output folder, before anything is written.

    Returns ``"fresh"`` (empty or absent folder), ``"resume"`` (an unfinished run with the same
    config and runtime batch size) or ``"complete"`` (a finished run with the same config).
    A folder from another config is an error unless ``overwrite``, which empties it.
    """
    folder = Path(folder)
    old = read_manifest(folder)
    if old is None:
        if folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise UserError(f"{folder} exists and holds no {MANIFEST}; choose another output folder "
                                f"or pass --overwrite")
            shutil.rmtree(folder)
        return "fresh"
    problem = config_mismatch(old.get("config", {}), manifest["config"])
    if problem is None and old.get("stage") != manifest["stage"]:
        problem = f"stage: {old.get('stage')!r} there, {manifest['stage']!r} now"
    if problem is None and not old.get("complete") and \
            old.get("runtime", {}).get("batch_size") != manifest["runtime"].get("batch_size"):
        problem = (f"an unfinished run with --batch-size {old['runtime'].get('batch_size')} "
                   f"(rerun with that batch size to resume)")
    if problem is None:
        return "complete" if old.get("complete") else "resume"
    if not overwrite:
        raise UserError(f"{folder} holds a run with other settings ({problem}); choose another output "
                        f"folder or pass --overwrite")
    shutil.rmtree(folder)
    return "fresh"
