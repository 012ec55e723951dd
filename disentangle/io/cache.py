"""A cache of expensive arrays (activations, tallies, embeddings), keyed on everything that affects them.

The file name carries a hash of the key, and the key itself is stored inside the file and compared
on load, so a cache entry made with other weights, layers, data or settings is never reused.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from . import artifacts
from ..core import distributed
from ..core.errors import UserError

KEY = "__cache_key__"


def user_cache() -> Path | None:
    """The per-user cache of results that depend only on their key: ``$DISENTANGLE_CACHE``, else
    ``$XDG_CACHE_HOME/disentangle``, else ``~/.cache/disentangle``; None (nothing cached) where it
    cannot be created."""
    if os.environ.get("DISENTANGLE_CACHE"):
        folder = Path(os.environ["DISENTANGLE_CACHE"])
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "disentangle"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def _path(folder: str | os.PathLike, kind: str, key: dict) -> tuple[Path, str]:
    text = key_text({"kind": kind, **key})
    return Path(folder) / f"{kind}_{hashlib.sha256(text.encode()).hexdigest()[:20]}.npz", text


def load(folder: str | os.PathLike | None, kind: str, key: dict) -> dict[str, np.ndarray] | None:
    """The arrays cached under ``(kind, key)``, or None."""
    if folder is None:
        return None
    path, text = _path(folder, kind, key)
    if not path.exists():
        return None
    try:
        arrays = artifacts.read_npz(path, (KEY,), "cache")
    except UserError as e:
        raise UserError(f"{e}; delete it (it is recomputed)") from None
    if str(arrays.pop(KEY)) != text:
        raise UserError(f"cache file {path} was made for another key; delete it (it is recomputed)")
    return arrays


def store(folder: str | os.PathLike | None, kind: str, key: dict, arrays: dict[str, np.ndarray]) -> None:
    """Under torchrun rank 0 alone writes (every rank holds the same arrays)."""
    if folder is not None and distributed.is_main():
        path, text = _path(folder, kind, key)
        artifacts.write_npz(path, **arrays, **{KEY: np.array(text)})


def cached(folder: str | os.PathLike | None, kind: str, key: dict,
           compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute()`` once per distinct ``(kind, key)``; with ``folder`` None nothing is cached."""
    arrays = load(folder, kind, key)
    if arrays is None:
        arrays = compute()
        store(folder, kind, key, arrays)
    return arrays
