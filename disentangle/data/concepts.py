"""The concept world: procedural images whose every pixel carries ground-truth concept labels.

Each image shows one object (a shape in a colour) on a textured, muted background. The class is
the object's (colour, shape) pair, so a classifier must detect both. Like the Broden data set used
by network dissection, every pixel is labelled in three categories:

- ``shape``   (object pixels): circle, square, triangle, cross
- ``colour``  (object pixels): red, green, blue
- ``texture`` (background pixels): stripes, checker, dots, noise

Image ``i`` of a split is rendered from ``numpy.random.default_rng([seed, split, i])`` alone, so any
subset can be rendered in any order and the same seed always gives the same bytes.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..core.errors import UserError
from .images import Labels, Source

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {"red": (215, 35, 35), "green": (35, 175, 55), "blue": (40, 75, 225)}
TEXTURES = ("stripes", "checker", "dots", "noise")
CATEGORIES: dict[str, tuple[str, ...]] = {"shape": SHAPES, "colour": tuple(COLOURS), "texture": TEXTURES}
# Numeric prefixes keep ImageFolder's alphabetical class order equal to the label order.
CLASSES = tuple(f"{i:02d}_{c}_{s}" for i, (s, c) in enumerate((s, c) for s in SHAPES for c in COLOURS))
SPLITS = {"train": 1, "val": 2}
DEFAULT_SIZE = 56
DEFAULT_LENGTH = {"train": 12_000, "val": 12_000}


def concept_names() -> list[tuple[str, str]]:
    """Every concept as ``(category, name)``, in the order used by label maps (category-major)."""
    return [(cat, name) for cat, names in CATEGORIES.items() for name in names]


@dataclass(frozen=True)
class Sample:
    image: np.ndarray   # (H, W, 3) uint8
    label: int
    seg: np.ndarray     # (3, H, W) int8: per category (shape, colour, texture), 0 = none, k+1 = k-th name


def class_parts(label: int) -> tuple[str, str]:
    """``(colour, shape)`` of a class index."""
    _, colour, shape = CLASSES[label].split("_")
    return colour, shape


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of ``shape`` with size ``r`` in rotated object coordinates ``(u, v)``."""
    if shape == "circle":
        return u * u + v * v <= r * r
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * r
    if shape == "triangle":
        # Equilateral triangle with circumradius 1.2 r: three half-planes at distance 0.6 r.
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
        return np.all([u * np.cos(a) + v * np.sin(a) <= 0.6 * r for a in angles], axis=0)
    if shape == "cross":
        w = r / 3
        return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))
    raise ValueError(f"unknown shape {shape!r}")


def _texture(kind: str, x: np.ndarray, y: np.ndarray, period: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean two-tone pattern of the background."""
    if kind == "stripes":
        a = rng.choice([0.0, 0.25, 0.5, 0.75]) * np.pi
        return np.floor((x * np.cos(a) + y * np.sin(a)) / (period / 2)) % 2 == 0
    if kind == "checker":
        return (np.floor(x / period) + np.floor(y / period)) % 2 == 0
    if kind == "dots":
        dx = (x % period) - period / 2
        dy = (y % period) - period / 2
        return dx * dx + dy * dy <= (period / 3.2) ** 2
    if kind == "noise":
        return rng.random(x.shape) < 0.5
    raise ValueError(f"unknown texture {kind!r}")


def render(seed: int, split: str, index: int, size: int = DEFAULT_SIZE) -> Sample:
    """Render image ``index`` of ``split``. Its class is ``index % len(CLASSES)``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(SPLITS)}")
    rng = np.random.default_rng([seed, SPLITS[split], index])
    label = index % len(CLASSES)
    colour, shape = class_parts(label)
    scale = size / DEFAULT_SIZE
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5

    texture = TEXTURES[rng.integers(len(TEXTURES))]
    grey = rng.uniform(70, 170)
    tone_a = grey + rng.uniform(-18, 18, 3)
    tone_b = tone_a + rng.choice([-1, 1]) * rng.uniform(28, 50)
    pattern = _texture(texture, x, y, rng.uniform(4, 9) * scale, rng)
    image = np.where(pattern[..., None], tone_a, tone_b)

    r = rng.uniform(0.2, 0.32) * size
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    theta = rng.uniform(0, 2 * np.pi)
    u = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    v = -(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)
    obj = _shape_mask(shape, u, v, r)
    image[obj] = np.asarray(COLOURS[colour], dtype=np.float64) + rng.uniform(-25, 25, 3)

    image = image + rng.normal(0, 6, image.shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    seg = np.zeros((3, size, size), dtype=np.int8)
    seg[0][obj] = SHAPES.index(shape) + 1
    seg[1][obj] = list(COLOURS).index(colour) + 1
    seg[2][~obj] = TEXTURES.index(texture) + 1
    return Sample(image=image, label=label, seg=seg)


class ConceptWorld(Source):
    """A split of the concept world, rendered on the fly: an image source with true object masks
    and pixel labels (``data.images``).

    ``__getitem__`` returns ``(PIL image, label)``, or ``(transform(PIL image), label)`` with a
    ``transform``. ``targets`` is known without rendering (class = index mod classes). Pixel labels
    are planes of global concept ids: per category, id ``k + 1`` is its ``k``-th name, offset by the
    sizes of the categories before it.
    """

    name = "concepts"
    classes = list(CLASSES)
    square = True              # generated pictures stay whole: resized, never cropped
    in_process = True
    pixel_labels = True
    concepts = concept_names()
    categories = list(CATEGORIES)

    def __init__(self, split: str = "val", n: int | None = None, seed: int = 0, size: int = DEFAULT_SIZE,
                 transform: Callable | None = None):
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; choose from {sorted(SPLITS)}")
        if size % 14 or size < 28:
            raise UserError(f"concept-world size must be a multiple of 14 (patch grid), at least 28, got {size}")
        self.split, self.seed, self.size, self.transform = split, seed, size, transform
        self.n = DEFAULT_LENGTH[split] if n is None else n
        self.targets = np.arange(self.n) % len(CLASSES)

    def __len__(self) -> int:
        return self.n

    def sample(self, index: int) -> Sample:
        if not 0 <= index < self.n:
            raise IndexError(f"image index {index} out of range for {self.n} concept-world images")
        return render(self.seed, self.split, index, self.size)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.sample(index).image)

    def __getitem__(self, index: int):
        s = self.sample(index)
        image = Image.fromarray(s.image)
        return (self.transform(image) if self.transform else image), s.label

    def segmentation(self, indices) -> np.ndarray:
        """Per-pixel concept labels of several images: ``(N, 3, H, W)`` int8 (see ``Sample.seg``)."""
        return np.stack([self.sample(int(i)).seg for i in indices])

    def objects(self, indices) -> np.ndarray:
        """``(N, H, W)`` bool: the object's pixels."""
        return self.segmentation(indices)[:, 0] > 0

    def labels(self, indices) -> Labels:
        seg = torch.from_numpy(self.segmentation(indices)).long()              # (B, 3, H, W)
        sizes = [len(v) for v in CATEGORIES.values()]
        offset = torch.tensor(np.cumsum([0] + sizes[:-1]), dtype=torch.long)
        planes = torch.where(seg > 0, seg + offset[None, :, None, None], 0)
        return Labels(planes, torch.arange(len(self.categories)))

    def describe(self) -> dict:
        return {"name": "concepts", "split": self.split, "n": self.n, "seed": self.seed, "size": self.size}


def export_imagefolder(root: str | os.PathLike, split: str = "val", n: int = 1200, seed: int = 0,
                       size: int = DEFAULT_SIZE) -> Path:
    """Write ``n`` images as ``root/<class>/<split>_<index>.png`` plus ``root/segmentation.npz``.

    PNG is lossless, so the tree loads back to exactly the tensors served on the fly.
    """
    root = Path(root)
    world = ConceptWorld(split, n, seed, size)
    segs, names = [], []
    for i in range(n):
        s = world.sample(i)
        folder = root / CLASSES[s.label]
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{split}_{i:06d}.png"
        Image.fromarray(s.image).save(folder / name)
        segs.append(s.seg)
        names.append(f"{CLASSES[s.label]}/{name}")
    np.savez_compressed(root / "segmentation.npz", seg=np.stack(segs), files=np.array(names))
    (root / "concepts.json").write_text(json.dumps(
        {"categories": CATEGORIES, "classes": CLASSES, **world.describe()}, indent=2))
    return root
