"""The Broden probe set of network dissection, in its published layout.

``index.csv``, ``label.csv`` and ``images/``: segmentation PNGs encode a label as ``R + 256 * G``;
``scene`` and ``texture`` are image-level labels and count for every pixel of the image, as in
NetDissect. Labels are served as planes: ``(P, H, W)`` maps of global concept ids (0 = unlabelled),
one category per plane, so an image with several label maps in a category (parts, several scene
labels) is just several planes. Concept ``j`` (``j >= 1``) is ``concepts[j - 1]``.
"""
from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.errors import UserError
from .images import Labels, Source, read_rgb

BRODEN_PIXEL = ("color", "object", "part", "material")
BRODEN_IMAGE = ("scene", "texture")


def _primary_category(field: str) -> str:
    """``'object(123);part(4)'`` -> the category with the most images, here ``'object'``; ``''`` for
    none (Broden's row 0, ``-``)."""
    counts = [(int(n), c) for c, n in re.findall(r"([^;(]+)\((\d+)\)", field)]
    return max(counts)[1] if counts else ""


class Broden(Source):
    """The Broden probe set in its published layout, with pixel labels (see the module doc)."""

    name, pixel_labels, square = "broden", True, True

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
        self.targets = np.full(len(self.index), -1)

    def __len__(self) -> int:
        return len(self.index)

    def image(self, index: int) -> Image.Image:
        return read_rgb(self.root / "images" / self.index[index]["image"])

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
                    png = np.asarray(read_rgb(self.root / "images" / item), dtype=np.int64)
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
