"""Images: the one container of every stage's images, a source and the chosen items of it.

A **source** is a ``torch.utils.data.Dataset`` of ``(PIL image, label)`` items (label -1 where
unknown) that says what identifies it in a manifest (``describe``) and, where it has them, the
true object masks and the pixel-level concept labels that dissection needs:

- ``ConceptWorld`` (``data.concepts``): the built-in concept world, with objects and pixel labels;
- ``ClassFolder``: an ImageFolder tree, one subfolder per class (``--data imagenet`` or a path);
- ``Photos``: a list of photo files (``--images samples``: the photos shipped with scikit-image and
  scikit-learn; ``--images FOLDER``: every file of a folder);
- ``FileProbe``: every image file under a folder, recursively (``--d_probe imagenet_val`` or a
  folder): images only;
- ``Broden`` (``data.broden``): the Broden probe set, with pixel labels.

``Images(source, indices)`` serves the chosen items in order: as batches through any transform
(the model's preprocessing, CLIP's, or several at once), as the ``(S, S, 3)`` uint8 pictures the
model sees before normalisation, with their labels, object masks and pixel labels. The three ways
stages choose items are ``dataset_images`` (N images of a data set, as the original chose them or
spread evenly over the classes),
``photo_images`` and ``probe_images``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder

from ..core.errors import UserError
from ..core.models import ModelSpec

PLACES365_ROOT = "data/places365_val"   # class folders of the Places365 validation images
IMAGENET_ROOT = "data/ILSVRC2012_img_val"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
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


def _verify(path: str | Path) -> None:
    """Fail before any work starts if ``path`` is not a readable image (a cheap check: no decoding)."""
    try:
        with Image.open(path) as im:
            im.verify()
    except Image.DecompressionBombError as e:
        raise UserError(_too_large(path, e)) from None
    except UNREADABLE as e:
        raise UserError(f"cannot read image {path}: {e}") from None


@dataclass
class Labels:
    """A batch of pixel-label planes: ``planes (B, P, H, W)`` int64 global concept ids (0 =
    unlabelled), ``plane_category (P,)`` the category of each plane."""
    planes: torch.Tensor
    plane_category: torch.Tensor


class Source(Dataset):
    """Items ``(PIL image, label)``. Subclasses set ``name``, ``classes`` and ``targets``."""

    name: str = "images"
    classes: list[str] = []
    targets: np.ndarray                       # (len,) label of each item, -1 where unknown
    square = False                            # resize the whole picture, not the short side + crop
    in_process = False                        # rendered in the main process (no loader workers)
    concepts: list[tuple[str, str]] = []      # (category, name) of pixel-label ids 1..L
    categories: list[str] = []
    pixel_labels = False

    def image(self, index: int) -> Image.Image:
        raise NotImplementedError

    def __getitem__(self, index: int):
        return self.image(index), int(self.targets[index])

    def describe(self) -> dict:
        raise NotImplementedError

    def verify(self, indices: np.ndarray) -> None:
        """Fail before any work starts if a chosen item cannot be read."""

    def objects(self, indices: np.ndarray) -> np.ndarray | None:
        """``(N, H, W)`` bool true object masks of the items, where the source knows them."""
        return None

    def labels(self, indices: np.ndarray) -> Labels:
        raise UserError(f"probe set {self.name!r} has no pixel labels; use --method clip, or "
                        f"--data concepts or broden for mask-IoU dissection")

    def label_category(self) -> torch.Tensor:
        """``(L + 1,)`` category index of each concept id (-1 for id 0 and uncategorised ids)."""
        return torch.tensor([-1] + [self.categories.index(c) if c in self.categories else -1
                                    for c, _ in self.concepts])


class ClassFolder(Source):
    """An ImageFolder tree: ``root/<class>/<image>``, classes in sorted order."""

    def __init__(self, root: str | Path):
        root = Path(root)
        try:
            self.folder = ImageFolder(str(root), loader=read_rgb)
        except (FileNotFoundError, RuntimeError) as e:
            raise UserError(f"{root} is not an image folder with one subfolder per class: {e}") from None
        self.name, self.root = "imagefolder", root
        self.classes = list(self.folder.classes)
        self.targets = np.asarray(self.folder.targets)

    def __len__(self) -> int:
        return len(self.folder)

    def image(self, index: int) -> Image.Image:
        return read_rgb(self.folder.samples[index][0])

    def path(self, index: int) -> str:
        return self.folder.samples[index][0]

    def verify(self, indices: np.ndarray) -> None:
        for i in indices:
            _verify(self.path(int(i)))

    def describe(self) -> dict:
        return {"name": "imagefolder", "root": str(self.root.resolve()), "n": len(self), "classes": len(self.classes)}


class Photos(Source):
    """Photo files, labels unknown; ``ids`` are their file stems (or sample names)."""

    def __init__(self, files: Sequence[Path], ids: Sequence[str], root: str):
        seen: dict[str, Path] = {}
        for i, f in zip(ids, files):
            if i in seen:
                raise UserError(f"two photos named {i}: {seen[i].name} and {f.name}; rename one")
            seen[i] = f
        self.name, self.files, self.ids, self.root = "photos", list(files), list(ids), root
        self.targets = np.full(len(self.files), -1)

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> Image.Image:
        return read_rgb(self.files[index])

    def verify(self, indices: np.ndarray) -> None:
        for i in indices:
            self.image(int(i))

    def describe(self) -> dict:
        return {"name": "photos", "root": self.root,
                "files": {i: _sha256(f) for i, f in zip(self.ids, self.files)}}


class FileProbe(Source):
    """Every image file under a folder (or several, in turn), recursively and sorted: images only
    (no labels)."""

    def __init__(self, root: str | Path | Sequence[str | Path], name: str, n: int | None = None):
        roots = [Path(r) for r in ([root] if isinstance(root, (str, Path)) else root)]
        self.root, self.name, self.roots = roots[0], name, roots
        self.files = []
        for r in roots:
            if not r.is_dir():
                hint = " (see data/README.md)" if name != "folder" else ""
                raise UserError(f"probe folder {r} not found{hint}")
            files = sorted(p for p in r.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise UserError(f"no image files under {r}")
            self.files += files
        if n is not None:
            # Spread over the sorted list so class folders are all represented.
            self.files = [self.files[i] for i in np.linspace(0, len(self.files), min(n, len(self.files)),
                                                             endpoint=False).astype(int)]
        self.targets = np.full(len(self.files), -1)

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> Image.Image:
        return read_rgb(self.files[index])

    def describe(self) -> dict:
        listing = "\n".join(str(p.relative_to(next(r for r in self.roots if p.is_relative_to(r))))
                            for p in self.files)
        return {"name": self.name, "root": ";".join(str(r.resolve()) for r in self.roots), "n": len(self),
                "files_sha256": hashlib.sha256(listing.encode()).hexdigest()[:16]}


def _sha256(path: Path) -> str:
    from ..io.artifacts import sha256_file
    return sha256_file(path)


class _Items(Dataset):
    """``(*[t(image) for t in transforms], label, index)`` of the chosen items."""

    def __init__(self, source: Source, indices: np.ndarray, transforms: Sequence[Callable]):
        self.source, self.indices, self.transforms = source, [int(i) for i in indices], list(transforms)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.source[self.indices[i]]
        return (*[t(image) for t in self.transforms], label, self.indices[i])


@dataclass
class Images:
    """The chosen items of a source, in order: ``indices (N,)`` into the source."""
    source: Source
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def ids(self) -> list[str]:
        """A name per image: the photo's file stem, else its index in the source."""
        if isinstance(self.source, Photos):
            return [self.source.ids[int(i)] for i in self.indices]
        return [str(int(i)) for i in self.indices]

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` true class of each image, -1 where unknown."""
        return np.asarray(self.source.targets)[self.indices]

    def describe(self) -> dict:
        """What identifies the source in a manifest (the chosen items are recorded by the stage)."""
        return self.source.describe()

    def loader(self, transform: Callable | Sequence[Callable], batch_size: int, workers: int = 0,
               device: torch.device | None = None, batches: Sequence[int] | None = None) -> DataLoader:
        """Batches in index order: ``(x (B, 3, S, S), labels (B,), indices (B,))`` for one transform,
        ``(x_1, ..., x_T, labels, indices)`` for a sequence of them. ``batches``: only these batch
        numbers of the full sequence (a rank's shard), in the order given."""
        if batch_size < 1:
            raise UserError(f"--batch_size must be at least 1, got {batch_size}")
        transforms = list(transform) if isinstance(transform, (list, tuple)) else [transform]
        items = _Items(self.source, self.indices, transforms)
        common = dict(num_workers=0 if self.source.in_process else workers,
                      pin_memory=device is not None and device.type == "cuda", persistent_workers=False)
        if batches is None:
            return DataLoader(items, batch_size=batch_size, shuffle=False, **common)
        n = len(self.indices)
        chosen = [list(range(b * batch_size, min((b + 1) * batch_size, n))) for b in batches]
        return DataLoader(items, batch_sampler=chosen, **common)

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.indices) // batch_size)

    def pixels(self, spec: ModelSpec) -> np.ndarray:
        """``(N, S, S, 3)`` uint8: each picture through the model's preprocessing up to, not
        including, ``ToTensor`` and ``Normalize``."""
        to_pixels = pixel_transform(spec, self.source.square)
        return np.stack([to_pixels(self.source[int(i)][0]) for i in self.indices])

    def objects(self, size: int) -> np.ndarray | None:
        """``(N, size, size)`` bool true object masks (nearest-neighbour resized), where known."""
        masks = self.source.objects(self.indices)
        if masks is None:
            return None
        return np.stack([np.asarray(Image.fromarray(m).resize((size, size), Image.Resampling.NEAREST))
                         for m in masks])


def pixel_transform(spec: ModelSpec, square: bool = False):
    """``spec.transform`` without its ``ToTensor`` and ``Normalize``: PIL -> ``(S, S, 3)`` uint8."""
    from torchvision import transforms as T
    steps = spec.transform(square).transforms
    assert isinstance(steps[-2], T.ToTensor) and isinstance(steps[-1], T.Normalize), steps
    return T.Compose([*steps[:-2], np.array])


def normalise(pixels: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """``(B, S, S, 3)`` uint8 pictures (any device) -> the model's input ``(B, 3, S, S)`` float32,
    with the float operations of ``ToTensor`` and ``Normalize`` (bit-identical to them)."""
    x = pixels.permute(0, 3, 1, 2).float().div(255)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)
    return x.sub(mean).div(std)


# --- How stages choose their images -------------------------------------------------------------
def dataset_source(data: str, data_root: str | None = None) -> Source:
    """The source behind ``--data``: ``concepts`` (the concept world's validation split),
    ``imagenet`` (class folders under ``data_root``, default ``data/ILSVRC2012_img_val``) or any
    ImageFolder path."""
    if data == "concepts":
        from .concepts import ConceptWorld
        return ConceptWorld("val")
    if data in ("cifar100_val", "cifar100_train"):
        return Cifar100(data == "cifar100_train")
    known = {"imagenet": IMAGENET_ROOT, "imagenet_val": IMAGENET_ROOT, "places365": PLACES365_ROOT,
             "places365_val": PLACES365_ROOT}
    root = Path(data_root or known[data]) if data in known else Path(data)
    if not root.is_dir():
        hint = f" (see data/README.md for where to put {data.split('_')[0]})" if data in known else ""
        raise UserError(f"data folder {root} not found{hint}")
    return ClassFolder(root)


def even_subset(targets: Sequence[int], n: int) -> np.ndarray:
    """``n`` image indices spread evenly over classes and, within a class, over its images.

    Deterministic (no seed): every class gets ``n // C`` images (one more for ``n % C`` classes
    spread over the class list); classes with too few images give their share to the others.
    Returns sorted indices.
    """
    targets = np.asarray(targets)
    _check_count(targets, n)
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


def folder_order(targets: Sequence[int]) -> np.ndarray:
    """The source's indices as an ImageFolder lists them: by class, then by index (a class-folder
    tree is already in this order; the concept world interleaves its classes)."""
    return np.argsort(np.asarray(targets), kind="stable")


def _check_count(targets: Sequence[int], n: int) -> None:
    if n < 1:
        raise UserError(f"--images must be at least 1, got {n}")
    if n > len(targets):
        raise UserError(f"asked for {n} images but the data set has {len(targets)}")


def strided_subset(targets: Sequence[int], n: int) -> np.ndarray:
    """The original's choice of ``n`` images: positions ``i * (len // n)`` of the folder order."""
    _check_count(targets, n)
    return folder_order(targets)[np.arange(n) * max(1, len(targets) // n)]


def first_subset(targets: Sequence[int], n: int) -> np.ndarray:
    """The first ``n`` images of the folder order (the original's neuron statistics)."""
    _check_count(targets, n)
    return folder_order(targets)[:n]


def folder_images(source: Source) -> Images:
    """Every image of ``source``, in ImageFolder order (the original's loader over a whole folder)."""
    return Images(source, folder_order(source.targets))


ORDERS = {"strided": strided_subset, "first": first_subset, "spread": even_subset}
"""How a stage chooses ``--images N`` of a data set: the original's strided or first images of the
folder order, or this project's spread over classes (``--image_order spread``)."""


def dataset_images(data: str, n: int, data_root: str | None = None, order: str = "spread") -> Images:
    """``n`` images of ``--data`` chosen by ``order`` (``ORDERS``), every file checked readable."""
    if order not in ORDERS:
        raise UserError(f"unknown image order {order!r}; choose from {', '.join(ORDERS)}")
    source = dataset_source(data, data_root)
    images = Images(source, ORDERS[order](source.targets, n))
    source.verify(images.indices)
    return images


SAMPLES = {"astronaut": ("skimage", "astronaut.png"), "cat": ("skimage", "chelsea.png"),
           "coffee": ("skimage", "coffee.png"), "rocket": ("skimage", "rocket.jpg"),
           "china": ("sklearn", "china.jpg"), "flower": ("sklearn", "flower.jpg")}
"""``--images samples``: name -> (package, file in its data folder); scikit-image's cat() is chelsea.png."""


def photo_images(where: str) -> Images:
    """``--images samples`` (``SAMPLES``) or every file of a folder (hidden files aside), each one
    read once here so that a damaged file fails before any work."""
    if where == "samples":
        import skimage.data
        import sklearn.datasets
        roots = {"skimage": Path(skimage.data.__file__).parent,
                 "sklearn": Path(sklearn.datasets.__file__).parent / "images"}
        source = Photos([roots[pkg] / name for pkg, name in SAMPLES.values()], list(SAMPLES), "samples")
    else:
        folder = Path(where)
        if not folder.is_dir():
            raise UserError(f"--images {where}: not a number, 'samples', or a folder")
        files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise UserError(f"--images {where}: the folder holds no files")
        source = Photos(files, [f.stem for f in files], str(folder.resolve()))
    images = Images(source, np.arange(len(source)))
    source.verify(images.indices)
    return images


BRODEN_ROOT = "data/broden1_224"


class Cifar100(Source):
    """CIFAR-100 from torchvision's files in ``~/.cache`` (where CLIP-Dissect keeps them), never
    downloaded."""

    def __init__(self, train: bool, n: int | None = None):
        from torchvision.datasets import CIFAR100
        self.name, self.root = "cifar100_train" if train else "cifar100_val", Path("~/.cache").expanduser()
        try:
            self.data = CIFAR100(str(self.root), train=train, download=False)
        except RuntimeError:
            raise UserError(f"CIFAR-100 is not in {self.root}/cifar-100-python (torchvision's format); "
                            f"put it there (see data/README.md)") from None
        self.classes = list(self.data.classes)
        keep = np.arange(len(self.data)) if n is None else np.linspace(0, len(self.data), min(n, len(self.data)),
                                                                       endpoint=False).astype(int)
        self.keep, self.targets = keep, np.asarray(self.data.targets)[keep]

    def __len__(self) -> int:
        return len(self.keep)

    def image(self, index: int) -> Image.Image:
        return self.data[int(self.keep[index])][0]

    def describe(self) -> dict:
        return {"name": self.name, "root": str(self.root), "n": len(self)}


PROBES = ("broden", "imagenet_val", "imagenet_broden", "places365_val", "cifar100_val", "cifar100_train",
          "concepts")


def probe_images(d_probe: str, n: int | None, seed: int = 0, broden_root: str | None = None) -> Images:
    """The probe set behind ``--d_probe`` (``PROBES``, or a folder): ``concepts`` (``n`` images of
    the concept world rendered with ``seed``, default 1200), ``broden``, ``imagenet_val``,
    ``places365_val``, ``imagenet_broden`` (ImageNet's then Broden's images), ``cifar100_val`` /
    ``_train``, or a folder (one holding Broden's ``index.csv`` is read as Broden); ``n`` (default:
    all) of them."""
    if n is not None and n < 1:
        raise UserError(f"--images must be at least 1, got {n}")
    if d_probe == "concepts":
        from .concepts import ConceptWorld
        source: Source = ConceptWorld("val", n or 1200, seed)
    elif d_probe == "broden" or (Path(d_probe) / "index.csv").is_file():
        from .broden import Broden
        source = Broden(broden_root or BRODEN_ROOT if d_probe == "broden" else d_probe, n)
    elif d_probe in ("imagenet_val", "places365_val"):
        source = FileProbe(IMAGENET_ROOT if d_probe == "imagenet_val" else PLACES365_ROOT, d_probe, n)
    elif d_probe == "imagenet_broden":
        source = FileProbe([IMAGENET_ROOT, Path(broden_root or BRODEN_ROOT) / "images"], d_probe, n)
    elif d_probe in ("cifar100_val", "cifar100_train"):
        source = Cifar100(d_probe == "cifar100_train", n)
    else:
        source = FileProbe(d_probe, "folder", n)
    return Images(source, np.arange(len(source)))


def imagenet_dataloader(root: str | Path = "data/ILSVRC2012_img_val", batch_size: int = 32, workers: int = 4,
                        shuffle: bool = False, n_samples: int | None = None) -> DataLoader:
    """The seed's loader: ``(x (B, 3, 224, 224), labels (B,))`` of an ImageFolder in its order,
    through ImageNet preprocessing (resize 256, centre crop 224, normalise); ``n_samples`` images
    drawn without replacement by ``default_rng(0)`` when fewer than the folder holds."""
    from ..core.models import get_spec
    folder = ClassFolder(root).folder
    folder.transform = get_spec("densenet121").transform()
    data: Dataset = folder
    if n_samples is not None and n_samples < len(folder):
        data = torch.utils.data.Subset(folder, np.random.default_rng(0).choice(len(folder), n_samples, replace=False)
                                       .tolist())
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      pin_memory=torch.cuda.is_available())
