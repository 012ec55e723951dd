"""Probe sets for dissection: images, and for mask-IoU dissection their pixel-level concept labels.

- ``concepts``: the built-in concept world (validation split); every pixel is labelled with its
  shape, colour and texture (see ``concepts.py``).
- ``broden``: the Broden data set in its published layout (``index.csv``, ``label.csv``,
  ``images/``): segmentation PNGs encode a label as ``R + 256 * G``; ``scene`` and ``texture`` are
  image-level labels and count for every pixel of the image, as in NetDissect.
- ``imagenet_val`` or any folder of images (class subfolders or flat): images only, so only
  CLIP-Dissect can describe units from them.

Labels are served as *planes*: ``(P, H, W)`` int32 maps of global concept ids (0 = unlabelled),
with one category per plane, so an image with several label maps in a category (Broden's parts,
several scene labels) is just several planes. Concept ``j`` (``j >= 1``) is ``concepts[j - 1]``.
"""
from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from . import images as data_mod
from .concepts import CATEGORIES, ConceptWorld, concept_names
from ..core.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
BRODEN_ROOT = "data/broden1_224"
BRODEN_PIXEL = ("color", "object", "part", "material")
BRODEN_IMAGE = ("scene", "texture")


@dataclass
class Labels:
    """A batch of label planes: ``planes (B, P, H, W)`` int64 global ids, ``plane_category (P,)``."""
    planes: torch.Tensor
    plane_category: torch.Tensor


class ProbeSet(Dataset):
    """Items ``(PIL image, index)``; ``labels(indices)`` gives their planes when ``pixel_labels``."""

    name: str
    concepts: list[tuple[str, str]]      # (category, name) of concept ids 1..L
    categories: list[str]
    pixel_labels: bool

    def image(self, index: int) -> Image.Image:
        raise NotImplementedError

    def labels(self, indices: np.ndarray) -> Labels:
        raise UserError(f"probe set {self.name!r} has no pixel labels; use --method clip, or "
                        f"--d_probe concepts or broden for mask-IoU dissection")

    def describe(self) -> dict:
        raise NotImplementedError

    def label_category(self) -> torch.Tensor:
        """``(L + 1,)`` category index of each concept id (-1 for id 0 and uncategorised ids)."""
        return torch.tensor([-1] + [self.categories.index(c) if c in self.categories else -1
                                    for c, _ in self.concepts])

    def __getitem__(self, index: int):
        return self.image(index), index


class ConceptProbe(ProbeSet):
    name, pixel_labels = "concepts", True

    def __init__(self, n: int, seed: int = 0):
        self.world = ConceptWorld("val", n, seed)
        self.concepts = concept_names()
        self.categories = list(CATEGORIES)
        # Per-category ids are 1..n_c; the global id adds the sizes of the categories before it.
        sizes = [len(v) for v in CATEGORIES.values()]
        self.offset = torch.tensor(np.cumsum([0] + sizes[:-1]), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.world)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.world.sample(index).image)

    def labels(self, indices: np.ndarray) -> Labels:
        seg = torch.from_numpy(self.world.segmentation(indices)).long()          # (B, 3, H, W)
        planes = torch.where(seg > 0, seg + self.offset[None, :, None, None], 0)
        return Labels(planes, torch.arange(len(self.categories)))

    def describe(self) -> dict:
        return {"name": "concepts", **{k: v for k, v in self.world.describe().items() if k != "name"}}


def _primary_category(field: str) -> str:
    """``'object(123);part(4)'`` -> the category with the most images, here ``'object'``; ``''`` for
    none (Broden's row 0, ``-``)."""
    counts = [(int(n), c) for c, n in re.findall(r"([^;(]+)\((\d+)\)", field)]
    return max(counts)[1] if counts else ""


class BrodenProbe(ProbeSet):
    name, pixel_labels = "broden", True

    def __init__(self, root: str | Path, n: int | None = None):
        self.root = Path(root)
        for f in ("index.csv", "label.csv"):
            if not (self.root / f).is_file():
                raise UserError(f"{self.root} is not a Broden folder: {f} is missing "
                                f"(see data/README.md for the published layout)")
        with open(self.root / "label.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        try:
            numbers = [int(r["number"]) for r in rows]
            cats = [_primary_category(r["category"]) for r in rows]
        except (KeyError, ValueError) as e:
            raise UserError(f"{self.root / 'label.csv'}: cannot read number/category columns ({e})") from None
        self.categories = [c for c in BRODEN_PIXEL + BRODEN_IMAGE if c in set(cats)]
        # Broden's numbers are already global; number 0 is '-' (unlabelled).
        self.max_label = max(numbers)
        names = {n: (c, r["name"]) for n, c, r in zip(numbers, cats, rows)}
        self.concepts = [names.get(i, ("", f"#{i}")) for i in range(1, self.max_label + 1)]
        with open(self.root / "index.csv", newline="") as f:
            self.index = list(csv.DictReader(f))
        if not self.index:
            raise UserError(f"{self.root / 'index.csv'} lists no images")
        if n is not None:
            self.index = self.index[:n]

    def __len__(self) -> int:
        return len(self.index)

    def image(self, index: int) -> Image.Image:
        return data_mod.read_rgb(self.root / "images" / self.index[index]["image"])

    def _maps(self, row: dict) -> list[tuple[int, np.ndarray]]:
        """``(category index, (sh, sw) ids)`` for every label map or image-level label of a row."""
        sh, sw = int(row["sh"]), int(row["sw"])
        out = []
        for cat in self.categories:
            for item in (s for s in row.get(cat, "").split(";") if s):
                c = self.categories.index(cat)
                if cat in BRODEN_IMAGE:
                    out.append((c, np.full((sh, sw), int(item), dtype=np.int64)))
                else:
                    png = np.asarray(data_mod.read_rgb(self.root / "images" / item), dtype=np.int64)
                    out.append((c, png[..., 0] + 256 * png[..., 1]))
        return out

    def labels(self, indices: np.ndarray) -> Labels:
        """Planes of a batch: every image's maps, padded with empty planes to the batch's maximum.
        A plane slot holds maps of one category across the batch, so images are grouped per category."""
        per_image = [self._maps(self.index[int(i)]) for i in indices]
        sizes = {m.shape for maps in per_image for _, m in maps}
        if len(sizes) > 1:
            raise UserError(f"Broden label maps of different sizes in one batch: {sorted(sizes)}")
        h, w = sizes.pop() if sizes else (1, 1)
        slots: list[int] = []   # category of each plane slot
        for c in range(len(self.categories)):
            slots += [c] * max(sum(1 for cc, _ in maps if cc == c) for maps in per_image)
        planes = torch.zeros(len(indices), len(slots), h, w, dtype=torch.long)
        for b, maps in enumerate(per_image):
            used = [0] * len(self.categories)
            for c, m in maps:
                slot = slots.index(c) + used[c]
                used[c] += 1
                planes[b, slot] = torch.from_numpy(m)
        return Labels(planes.clamp_(0, self.max_label), torch.tensor(slots, dtype=torch.long))

    def describe(self) -> dict:
        digest = hashlib.sha256((self.root / "index.csv").read_bytes()).hexdigest()[:16]
        return {"name": "broden", "root": str(self.root.resolve()), "n": len(self), "index_sha256": digest}


class FolderProbe(ProbeSet):
    """Every image file under a folder (recursively, sorted): images only."""
    pixel_labels = False

    def __init__(self, root: str | Path, name: str, n: int | None = None):
        self.root, self.name = Path(root), name
        if not self.root.is_dir():
            hint = " (see data/README.md)" if name == "imagenet_val" else ""
            raise UserError(f"probe folder {self.root} not found{hint}")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise UserError(f"no image files under {self.root}")
        if n is not None:
            # Spread over the sorted list so class folders are all represented.
            self.files = [self.files[i] for i in np.linspace(0, len(self.files), min(n, len(self.files)),
                                                             endpoint=False).astype(int)]
        self.concepts, self.categories = [], []

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> Image.Image:
        return data_mod.read_rgb(self.files[index])

    def describe(self) -> dict:
        listing = "\n".join(str(p.relative_to(self.root)) for p in self.files)
        return {"name": self.name, "root": str(self.root.resolve()), "n": len(self),
                "files_sha256": hashlib.sha256(listing.encode()).hexdigest()[:16]}


def build_probe(d_probe: str, n: int | None, seed: int = 0, broden_root: str | None = None) -> ProbeSet:
    """The probe set behind ``--d_probe``: concepts, broden, imagenet_val, or a folder (a folder with
    Broden's ``index.csv`` is read as Broden)."""
    if n is not None and n < 1:
        raise UserError(f"--probe_images must be at least 1, got {n}")
    if d_probe == "concepts":
        return ConceptProbe(n or 1200, seed)
    if d_probe == "broden":
        return BrodenProbe(broden_root or BRODEN_ROOT, n)
    if d_probe == "imagenet_val":
        return FolderProbe(data_mod.IMAGENET_ROOT, "imagenet_val", n)
    if (Path(d_probe) / "index.csv").is_file():
        return BrodenProbe(d_probe, n)
    return FolderProbe(d_probe, "folder", n)


class _Transformed(Dataset):
    def __init__(self, probe: ProbeSet, transforms: list[Callable]):
        self.probe, self.transforms = probe, transforms

    def __len__(self) -> int:
        return len(self.probe)

    def __getitem__(self, i: int):
        image = self.probe.image(i)
        return (*[t(image) for t in self.transforms], i)


def probe_loader(probe: ProbeSet, transforms: list[Callable], batch_size: int, workers: int = 0) -> DataLoader:
    """Batches ``(x_1 (B, 3, S1, S1), ..., x_T, indices (B,))``: each image through each transform
    (the target model's and CLIP's), in index order."""
    if batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {batch_size}")
    return DataLoader(_Transformed(probe, transforms), batch_size=batch_size, shuffle=False,
                      num_workers=0 if isinstance(probe, ConceptProbe) else workers)
