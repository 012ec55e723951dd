"""Data sources, deterministic evenly spread image subsets, and the batched loader.

``--data concepts`` is the built-in concept world (validation split); ``--data imagenet`` reads the
ImageNet validation set sorted into class folders under ``--data-root`` (default
``data/ILSVRC2012_img_val``, see data/README.md); any other value is taken as an ImageFolder path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder

from .concepts import ConceptWorld
from ..core.errors import UserError
from ..core.models import ModelSpec

IMAGENET_ROOT = "data/ILSVRC2012_img_val"


# What PIL raises for a file that is not a readable image (a truncated or damaged one among them).
UNREADABLE = (OSError, UnidentifiedImageError, SyntaxError, ValueError)


def read_rgb(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Image.DecompressionBombError as e:
        raise UserError(_too_large(path, e)) from None
    except UNREADABLE as e:
        raise UserError(f"cannot read image {path}: {e}; replace or remove it (finished batches are kept; "
                        f"a removed file changes the data: rerun with --overwrite)") from None


def _too_large(path: str | Path, e: Exception) -> str:
    return (f"image {path} is too large for PIL's decompression-bomb guard ({e}); shrink it, or remove it "
            f"from the folder")


def build_dataset(data: str, spec: ModelSpec, data_root: str | None = None,
                  transform: Callable | None = None) -> Dataset:
    """The dataset behind ``--data``, returning ``(normalised (3, S, S) tensor, label)`` items, or
    ``(transform(PIL image), label)`` with another ``transform`` (CLIP's preprocessing)."""
    if data == "concepts":
        return ConceptWorld("val", transform=transform or spec.transform(square=True))
    root = Path(data_root or IMAGENET_ROOT) if data == "imagenet" else Path(data)
    if not root.is_dir():
        hint = " (see data/README.md for where to put ImageNet)" if data == "imagenet" else ""
        raise UserError(f"data folder {root} not found{hint}")
    try:
        return ImageFolder(str(root), transform=transform or spec.transform(), loader=read_rgb)
    except (FileNotFoundError, RuntimeError) as e:
        raise UserError(f"{root} is not an image folder with one subfolder per class: {e}") from None


def describe(dataset: Dataset) -> dict:
    """What identifies the data in a manifest."""
    if isinstance(dataset, ConceptWorld):
        return dataset.describe()
    return {"name": "imagefolder", "root": str(Path(dataset.root).resolve()), "n": len(dataset),
            "classes": len(dataset.classes)}


def targets_of(dataset: Dataset) -> np.ndarray:
    return np.asarray(dataset.targets)


def even_subset(targets: Sequence[int], n: int) -> np.ndarray:
    """``n`` image indices spread evenly over classes and, within a class, over its images.

    Deterministic (no seed): every class gets ``n // C`` images (one more for ``n % C`` classes
    spread over the class list); classes with too few images give their share to the others.
    Returns sorted indices.
    """
    targets = np.asarray(targets)
    if n < 1:
        raise UserError(f"--images must be at least 1, got {n}")
    if n > len(targets):
        raise UserError(f"asked for {n} images but the data set has {len(targets)}")
    classes, counts = np.unique(targets, return_counts=True)
    quota = np.zeros(len(classes), dtype=int)
    remaining = n
    while remaining:
        open_ = np.flatnonzero(quota < counts)
        share = remaining // len(open_)
        if share:
            add = np.minimum(share, counts[open_] - quota[open_])
        else:  # fewer images left than open classes: one each, spread over the class list
            pick = open_[np.linspace(0, len(open_), remaining, endpoint=False).astype(int)]
            add, open_ = np.ones(len(pick), dtype=int), pick
        quota[open_] += add
        remaining -= int(add.sum())
    chosen = []
    for c, q in zip(classes, quota):
        members = np.flatnonzero(targets == c)
        chosen.append(members[np.linspace(0, len(members), q, endpoint=False).astype(int)])
    return np.sort(np.concatenate(chosen))


def check_images(dataset: Dataset, indices: np.ndarray) -> None:
    """Fail before any work starts if a chosen file is not a readable image."""
    if not isinstance(dataset, ImageFolder):
        return
    for i in indices:
        path = dataset.samples[int(i)][0]
        try:
            with Image.open(path) as im:
                im.verify()
        except Image.DecompressionBombError as e:
            raise UserError(_too_large(path, e)) from None
        except UNREADABLE as e:
            raise UserError(f"cannot read image {path}: {e}") from None


class IndexedSubset(Dataset):
    """Items ``(x, label, dataset index)`` of the chosen indices."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x, y = self.dataset[self.indices[i]]
        return x, y, self.indices[i]


def make_loader(dataset: Dataset, indices: Sequence[int], batch_size: int, workers: int = 0,
                device: torch.device | None = None) -> DataLoader:
    """Batches ``(x (B, 3, S, S), labels (B,), indices (B,))`` in index order."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    return DataLoader(IndexedSubset(dataset, indices), batch_size=batch_size, shuffle=False,
                      num_workers=workers, pin_memory=device is not None and device.type == "cuda",
                      persistent_workers=False)
