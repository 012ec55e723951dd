"""The images an explanation stage explains, in pixel space, with what is known about them.

``--images`` takes three kinds of value:

- ``N``: N images of ``--data`` (the concept world by default for tiny_densenet, ImageNet or any
  ImageFolder), chosen deterministically and spread evenly over the classes, as in every stage;
- ``samples``: the photos shipped with scikit-image and scikit-learn (``SAMPLES``);
- a folder: every file in it (hidden files aside) must be an image PIL can read.

Each image goes through the model's own preprocessing (``spec.transform``) up to, not including,
``ToTensor`` and ``Normalize``: what remains is the ``(S, S, 3)`` uint8 picture the model sees.
LIME perturbs that picture; ``normalise`` turns it into the model's input on the device with the
same float operations as ``ToTensor`` + ``Normalize`` (bit-identical). On the concept world the
true object mask of every image comes along, at the same ``S x S`` size.
"""
from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from PIL import Image, UnidentifiedImageError
from torchvision import transforms as T

from ..io import artifacts
from ..core import runtime
from .. import cli
from . import images as data_mod
from .concepts import ConceptWorld
from ..core.errors import UserError
from ..core.models import LoadedModel, ModelSpec, get_spec, load_model
from ..core.seeding import set_seeds

# name -> (package, file in the package's data folder); scikit-image's cat() is chelsea.png.
SAMPLES = {"astronaut": ("skimage", "astronaut.png"), "cat": ("skimage", "chelsea.png"),
           "coffee": ("skimage", "coffee.png"), "rocket": ("skimage", "rocket.jpg"),
           "china": ("sklearn", "china.jpg"), "flower": ("sklearn", "flower.jpg")}


@dataclass
class ImageSet:
    """``N`` images as the model sees them before normalisation."""
    ids: list[str]               # file stem (photos) or index in the data set
    pixels: np.ndarray           # (N, S, S, 3) uint8
    labels: np.ndarray           # (N,) true class, -1 where unknown (photos)
    objects: np.ndarray | None   # (N, S, S) bool true object mask (concept world), else None
    data: dict                   # what identifies the images in a manifest

    def save(self, path: str | Path) -> Path:
        """``images.npz``: ``ids``, ``pixels``, ``labels`` and, where known, ``objects``."""
        extra = {} if self.objects is None else {"objects": self.objects}
        return artifacts.write_npz(path, ids=np.array(self.ids), pixels=self.pixels, labels=self.labels, **extra)


def images_arg(value: str) -> int | str:
    """``--images``: a count when it is a number, else ``samples`` or a folder."""
    return int(value) if value.lstrip("-").isdigit() else value


def parser(description: str, images: int = 12) -> cli.Parser:
    """A stage's parser with the common model, data and runtime flags, ``--images`` taking
    a count, ``samples`` or a folder."""
    p = cli.Parser(description=description, conflict_handler="resolve")
    cli.add_model_data_args(p, images=images)
    p.add_argument_group("images").add_argument(
        "--images", type=images_arg, default=images,
        help="N: that many images of --data, spread evenly over its classes; 'samples': the photos shipped "
             f"with scikit-image and scikit-learn ({', '.join(SAMPLES)}); or a folder whose files are all "
             "images (write ./samples for a folder of that name)")
    return p


def normalise(pixels: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """``(B, S, S, 3)`` uint8 (any device) -> the model's input ``(B, 3, S, S)`` float32, with the
    operations of ``ToTensor`` and ``Normalize``."""
    x = pixels.permute(0, 3, 1, 2).float().div(255)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)
    return x.sub(mean).div(std)


def pixel_transform(spec: ModelSpec, square: bool = False) -> T.Compose:
    """``spec.transform`` without its ``ToTensor`` and ``Normalize``: PIL -> ``(S, S, 3)`` uint8."""
    steps = spec.transform(square).transforms
    assert isinstance(steps[-2], T.ToTensor) and isinstance(steps[-1], T.Normalize), steps
    return T.Compose([*steps[:-2], np.array])


def class_names(n_outputs: int, dataset_classes: list[str] | None = None) -> list[str]:
    """A short name per model output: ImageNet's (from timm) for 1000 outputs, else the data set's
    classes where they match the outputs, else the index."""
    if n_outputs == 1000:
        from timm.data import ImageNetInfo
        info = ImageNetInfo()
        return [info.index_to_description(i).split(",")[0] for i in range(1000)]
    if dataset_classes is not None and len(dataset_classes) == n_outputs:
        return list(dataset_classes)
    return [str(i) for i in range(n_outputs)]


def photo_files(source: str) -> tuple[list[Path], str]:
    """The files of ``--images samples`` or a folder, and the root recorded in the manifest."""
    if source == "samples":
        import skimage.data
        import sklearn.datasets
        roots = {"skimage": Path(skimage.data.__file__).parent,
                 "sklearn": Path(sklearn.datasets.__file__).parent / "images"}
        return [roots[pkg] / name for pkg, name in SAMPLES.values()], "samples"
    folder = Path(source)
    if not folder.is_dir():
        raise UserError(f"--images {source}: not a number, 'samples', or a folder")
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise UserError(f"--images {source}: the folder holds no files")
    return files, str(folder.resolve())


def read_photos(source: str, spec: ModelSpec) -> ImageSet:
    """The photos of ``--images samples`` or a folder, resized and centre-cropped like ImageNet."""
    files, root = photo_files(source)
    ids = list(SAMPLES) if source == "samples" else [f.stem for f in files]
    seen: dict[str, Path] = {}
    for i, f in zip(ids, files):
        if i in seen:
            raise UserError(f"two photos named {i}: {seen[i].name} and {f.name}; rename one")
        seen[i] = f
    to_pixels = pixel_transform(spec)
    pixels = []
    for f in files:
        try:
            with Image.open(f) as im:
                pixels.append(to_pixels(im.convert("RGB")))
        except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as e:
            raise UserError(f"cannot read image {f}: {e}") from None
    data = {"name": "photos", "root": root, "files": {i: artifacts.sha256_file(f) for i, f in zip(ids, files)}}
    return ImageSet(ids, np.stack(pixels), np.full(len(files), -1), None, data)


def _dataset_images(run: cli.Setup) -> ImageSet:
    """The chosen images of ``--data`` (``cli.setup``), with object masks on the concept world."""
    spec, dataset = run.loaded.spec, run.dataset
    concepts = isinstance(dataset, ConceptWorld)
    # Same data set, same files, same order; only the last two steps (ToTensor, Normalize) are left out.
    dataset.transform = pixel_transform(spec, square=concepts)
    pixels = np.stack([dataset[int(i)][0] for i in run.indices])
    objects = None
    if concepts:
        seg = dataset.segmentation(run.indices)[:, 0] > 0                      # (N, size, size)
        objects = np.stack([np.asarray(Image.fromarray(m).resize(pixels.shape[1:3], Image.Resampling.NEAREST))
                            for m in seg])
    labels = data_mod.targets_of(dataset)[run.indices]
    return ImageSet([str(int(i)) for i in run.indices], pixels, labels, objects, data_mod.describe(dataset))


@dataclass
class Prepared:
    """A stage's model, device and images, all checked."""
    loaded: LoadedModel
    device: torch.device
    images: ImageSet
    n_outputs: int
    class_names: list[str]       # one short name per model output

    def predictions(self, target: np.ndarray, probability: np.ndarray, top1: np.ndarray) -> pd.DataFrame:
        """One row per image: ``id``, ``label`` (-1: unknown), ``target`` (class explained), its name
        and softmax ``probability``, the ``top1`` prediction and its name."""
        names = np.array(self.class_names)
        return pd.DataFrame({"id": self.images.ids, "label": self.images.labels, "target": target,
                             "target_name": names[target], "probability": probability, "top1": top1,
                             "top1_name": names[top1]})

    def config(self) -> dict:
        """The model and data part of a manifest's config."""
        w = self.loaded.weights
        return {"model": self.loaded.spec.name, "weights_source": w["source"], "weights_sha256": w["sha256"],
                "data": self.images.data, "images": self.images.ids}


def _outputs(loaded: LoadedModel, device: torch.device) -> int:
    size = loaded.spec.input_size
    with torch.no_grad():
        return int(loaded.model(torch.zeros(1, 3, size, size, device=device)).shape[1])


def prepare(args: argparse.Namespace) -> Prepared:
    """Seed, load the model and read every image, before any work or writing starts."""
    if isinstance(args.images, int):
        run = cli.setup(args)
        n_outputs = _outputs(run.loaded, run.device)
        return Prepared(run.loaded, run.device, _dataset_images(run), n_outputs,
                        class_names(n_outputs, list(run.dataset.classes)))
    if args.data is not None:
        raise UserError(f"--data applies to --images N; --images {args.images} brings its own photos")
    set_seeds(args.seed)
    device = runtime.resolve_device(args.device)
    torch.backends.cudnn.allow_tf32 = False   # strict fp32 on CUDA, as in cli.setup
    torch.backends.cuda.matmul.allow_tf32 = False
    images = read_photos(args.images, get_spec(args.model))
    loaded = load_model(args.model, args.weights, device)
    n_outputs = _outputs(loaded, device)
    return Prepared(loaded, device, images, n_outputs, class_names(n_outputs))


def resolve_target(target: str, n_outputs: int) -> int | None:
    """``--target``: ``top1`` (None: each image's predicted class) or a class index."""
    if target == "top1":
        return None
    try:
        cls = int(target)
    except ValueError:
        raise UserError(f"--target must be 'top1' or a class index, got {target!r}") from None
    if not 0 <= cls < n_outputs:
        raise UserError(f"--target {cls} is out of range: the model has {n_outputs} classes (0..{n_outputs - 1})")
    return cls


def overlay_png(pixels: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> bytes:
    """PNG bytes of ``pixels (S, S, 3)`` uint8 blended with ``heat (S, S)`` in [0, 1] (jet)."""
    colour = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    blend = (1 - alpha) * pixels / 255 + alpha * colour
    buf = io.BytesIO()
    Image.fromarray(np.round(255 * blend).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
