"""Atomic artifact writing, run manifests, and the locks that keep concurrent runs apart.

Every file is written to a temporary name in its folder and renamed into place, so a crash never
leaves a half-written artifact. NPZ files are written with a fixed zip timestamp so that the same
arrays always give the same bytes (determinism tests compare files byte for byte). JSON is always
valid JSON: NaN and infinities are written as null.

A run holds an advisory lock (``flock``) on its output folder, or beside an output file, for its
whole life; a second run into the same place stops at once. The kernel releases the lock when the
process dies, so a killed run still resumes.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import math
import os
import platform
import shutil
import sys
import time
import zipfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..core.errors import UserError

MANIFEST = "manifest.json"
LOCK = ".lock"
FILE_OUTPUTS = (".csv", ".json")       # the suffixes of stages that write one file, not a folder
# Every stage that writes a manifest: a folder holding one of these was written by this project.
STAGES = ("baseline_eval", "neuron_stats", "filtered_eval", "control_experiment", "class_analysis", "statistic",
          "accuracy", "dissect_neurons", "compare_dissections", "cam_explain", "lime_explain", "compare_explanations",
          "explain_neurons", "simulate_correlation", "simulate_ablation", "visualize_features", "neuron_atlas",
          "interpretability_score")


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
    """``obj`` as indented JSON; NaN and infinities become null (JSON has neither)."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=False, default=_jsonable, allow_nan=False)
    return write_bytes(path, (text + "\n").encode())


def _finite(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    return o


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame as CSV (no index)."""
    return write_bytes(path, frame.to_csv(index=False).encode())


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """One array as ``.npy`` (as ``np.save``), written atomically."""
    return _atomic(path, lambda f: np.lib.format.write_array(f, np.asarray(array), allow_pickle=False))


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Like ``np.savez`` but byte-reproducible: fixed member timestamps, sorted members."""
    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
                z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    return _atomic(path, write)


def read_npz(path: str | os.PathLike, keys: tuple[str, ...] = (), what: str = "artifact") -> dict[str, np.ndarray]:
    """Every array of an NPZ file (no pickles), checked to hold ``keys``; one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file {path} is missing")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{what} file {path} is {'empty' if path.stat().st_size == 0 else 'not an NPZ archive'}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - numpy and zipfile raise many types for damaged files
        raise UserError(f"{what} file {path} is unreadable ({first_line(e)})") from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise UserError(f"{what} file {path} lacks {', '.join(missing)}: not this project's {what}")
    return arrays


def read_csv(path: str | os.PathLike, columns: tuple[str, ...] = (), what: str = "table", **kwargs):
    """A CSV as a pandas DataFrame (``kwargs`` go to ``pandas.read_csv``), checked to hold ``columns``
    and a row; one-line errors naming the file."""
    import pandas as pd
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} is missing")
    try:
        frame = pd.read_csv(path, **kwargs)
    except Exception as e:  # noqa: BLE001 - parser, encoding and empty-file errors
        raise UserError(f"{what} {path} is not a readable CSV ({first_line(e)})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"{what} {path} lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)}")
    if frame.empty:
        raise UserError(f"{what} {path} has no rows")
    return frame


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """A JSON file's content; one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is not valid JSON ({first_line(e)})") from None


def first_line(e: BaseException) -> str:
    """An exception as one short line: its type, and its message's first line if it has one."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


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


def manifest_path(target: str | os.PathLike) -> Path:
    """Where the manifest of an output lives: ``manifest.json`` in an output folder, and beside an
    output file ``<name>.manifest.json`` (``x.csv`` -> ``x.manifest.json``): the one convention."""
    target = Path(target)
    if target.suffix.lower() in FILE_OUTPUTS and not target.is_dir():
        return target.with_name(f"{target.stem}.manifest.json")
    return target / MANIFEST


def write_manifest(target: str | os.PathLike, manifest: dict) -> Path:
    return write_json(manifest_path(target), manifest)


def read_manifest(target: str | os.PathLike) -> dict | None:
    """The manifest of an output folder or file (see ``manifest_path``), or None."""
    path = manifest_path(target)
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); it was not written by this project's stages: "
                        f"move it away or delete the folder by hand") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise UserError(f"{path} is not a manifest of this project's stages (no config); move it away")
    return manifest


def config_mismatch(old: dict, new: dict) -> str | None:
    """First differing key between two configs, formatted for an error message, or None."""
    old, new = (json.loads(json.dumps(_finite(c), default=_jsonable)) for c in (old, new))
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}: {old.get(key)!r} there, {new.get(key)!r} now"
    return None


# --- Locks --------------------------------------------------------------------------------------
_HELD: dict[Path, tuple[int, bool]] = {}   # lock file -> (descriptor, whether we made its folder)


def _lock_file(target: Path, folder: bool) -> Path:
    return target / LOCK if folder else target.parent / f".{target.name}.lock"


def hold(target: str | os.PathLike, folder: bool = True) -> None:
    """Lock an output folder (``folder``) or output file for this process until ``release``.

    Holding the same place again is a no-op. Another live process holding it is an error; so is a
    lock that cannot be taken (a read-only place). The lock file is removed when released.
    """
    target = Path(target).absolute()
    path = _lock_file(target, folder)
    if path in _HELD:
        return
    made = folder and not target.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise UserError(f"{target} is in use by another run (process {holder}); wait for it to finish "
                                f"or choose another output") from None
            # The holder before us may have removed the file between our open and our lock.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
    except OSError as e:
        raise UserError(f"cannot lock {target} for writing: {e.strerror or e}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[path] = (fd, made)


def release(paths: set[Path] | None = None) -> None:
    """Release this process's locks (``paths``: those lock files only). A folder that the lock
    created and that is still empty is removed, so a run stopped by an error leaves nothing."""
    for path in list(_HELD if paths is None else paths & _HELD.keys()):
        fd, made = _HELD.pop(path)
        path.unlink(missing_ok=True)
        os.close(fd)
        if made and path.name == LOCK:
            try:
                path.parent.rmdir()
            except OSError:
                pass


@contextmanager
def run_scope() -> Iterator[None]:
    """Locks taken inside the block are released when it ends, however it ends."""
    before = set(_HELD)
    try:
        yield
    finally:
        release(set(_HELD) - before)


# --- Output folders -----------------------------------------------------------------------------
def _contents(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name != LOCK] if folder.is_dir() else []


def _protected(folder: Path) -> str | None:
    """Why ``folder`` may never be emptied, or None."""
    resolved, cwd = folder.resolve(), Path.cwd().resolve()
    repo = Path(__file__).resolve().parents[2]
    if resolved == cwd or resolved in cwd.parents:
        return "it is the current directory or holds it"
    if resolved == repo or resolved in repo.parents or (resolved / ".git").exists():
        return "it is a repository or holds one"
    if resolved == Path.home().resolve() or resolved.parent == resolved:
        return "it is the home or root directory"
    if resolved == (cwd / "outputs").resolve() or any(folder.glob(f"*/{MANIFEST}")) or \
            any(folder.glob(f"*/*/{MANIFEST}")):
        return "it holds other runs"
    return None


def _clear(folder: Path) -> None:
    """Remove everything in ``folder`` but the lock (which another run may be waiting on)."""
    for p in _contents(folder):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def open_output(folder: str | os.PathLike, manifest: dict, overwrite: bool = False, progress: str = "parts/*") -> str:
    """Lock a stage's output folder and decide how the stage uses it, before anything is written.

    Returns ``"fresh"`` (empty or absent folder, or one replaced), ``"resume"`` (an unfinished run
    with the same config and runtime batch size) or ``"complete"`` (a finished run with the same
    config). ``progress`` is the glob of what an unfinished run keeps for resuming: an unfinished
    run without any (a run stopped by an error before its first result) is replaced silently. A
    folder holding another run is an error unless ``overwrite``; ``overwrite`` only ever empties a
    folder holding a manifest of this project's stages, never one with other files.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not an output folder")
    hold(folder)
    old = read_manifest(folder)
    if old is None:
        if _contents(folder):
            raise UserError(f"{folder} holds files that are not this project's artifacts (no {MANIFEST}); "
                            f"choose another output folder")
        return "fresh"
    if old.get("stage") not in STAGES:
        raise UserError(f"{folder}/{MANIFEST} is not a manifest of this project's stages; choose another "
                        f"output folder")
    problem = config_mismatch(old.get("config", {}), manifest["config"])
    if problem is None and old.get("stage") != manifest["stage"]:
        problem = f"stage: {old.get('stage')!r} there, {manifest['stage']!r} now"
    done = bool(old.get("complete"))
    started = not done and any(folder.glob(progress))
    old_batch = old.get("runtime", {}).get("batch_size")
    if problem is None and started and old_batch != manifest["runtime"].get("batch_size"):
        problem = f"an unfinished run with --batch_size {old_batch} (rerun with --batch_size {old_batch} to resume it)"
    if problem is None:
        return "complete" if done else "resume" if started else _replace(folder, stub=True)
    if not done and not started:
        return _replace(folder, stub=True)
    if not overwrite:
        what = "a finished run" if done else "an unfinished run"
        raise UserError(f"{folder} holds {what} with other settings ({problem}); choose another output folder "
                        f"or pass --overwrite to replace it")
    return _replace(folder)


def _replace(folder: Path, stub: bool = False) -> str:
    """Empty ``folder`` for a fresh run. A ``stub`` (an unfinished run that kept nothing to resume)
    in a protected folder is left for the new run to write over; anything else there is an error."""
    reason = _protected(folder)
    if reason and not stub:
        raise UserError(f"--overwrite will not empty {folder}: {reason}; choose another output folder")
    if not reason:
        _clear(folder)
    return "fresh"


def open_output_file(path: str | os.PathLike, manifest: dict, overwrite: bool = False) -> str:
    """Lock a stage's output file and decide, before anything is written: ``"complete"`` when it
    and its manifest (``manifest_path``) hold a finished run with the same config, else ``"fresh"``
    (its old manifest removed, so a new file never sits beside an old manifest). A file made with
    other settings is an error unless ``overwrite``; a file without this project's manifest is never
    replaced."""
    path = Path(path)
    hold(path, folder=False)
    old = read_manifest(path)
    if old is None:
        if path.exists():
            raise UserError(f"{path} exists and is not this project's output (no {manifest_path(path).name}); "
                            f"choose another output folder")
        return "fresh"
    if old.get("stage") != manifest["stage"]:
        raise UserError(f"{manifest_path(path)} is the manifest of {old.get('stage')!r}, not {manifest['stage']!r}; "
                        f"choose another output folder")
    problem = config_mismatch(old.get("config", {}), manifest["config"])
    if problem is None and old.get("complete") and path.exists():
        return "complete"
    if problem is not None and old.get("complete") and not overwrite:
        raise UserError(f"{path} holds a finished run with other settings ({problem}); choose another output "
                        f"folder or pass --overwrite to replace it")
    manifest_path(path).unlink(missing_ok=True)
    return "fresh"


def open_derived(folder: str | os.PathLike, manifest: dict) -> None:
    """Lock the output folder of a stage that recomputes its few files from other artifacts on every
    run (statistics, simulation scores, comparisons), and mark it unfinished until the stage writes
    ``manifest`` again with ``complete``. The folder must be empty or hold a run of the same stage."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not an output folder")
    hold(folder)
    old = read_manifest(folder)
    if old is None and _contents(folder):
        raise UserError(f"{folder} holds files that are not this project's artifacts (no {MANIFEST}); "
                        f"choose another output folder")
    if old is not None and old.get("stage") != manifest["stage"]:
        raise UserError(f"{folder} holds a {old.get('stage')} run, not a {manifest['stage']} one; choose another "
                        f"output folder")
    write_json(folder / MANIFEST, {**manifest, "complete": False})

