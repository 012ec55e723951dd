"""What every script shares: common flags, one-line errors, and the model + data set-up."""
from __future__ import annotations

import argparse
import functools
import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from . import data as data_mod
from .errors import UserError
from .models import MODELS, LoadedModel, load_model
from .seeding import set_seeds


class Parser(argparse.ArgumentParser):
    """argparse with defaults shown in ``--help`` and errors on one line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def entrypoint(main: Callable[..., int | None]) -> Callable[..., int]:
    """Turn ``UserError`` into one line on stderr and exit status 2."""
    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv) or 0
        except UserError as e:
            # A DataLoader worker re-raises with the worker's traceback in the message: keep its last line.
            message = str(e).strip().splitlines()[-1].removeprefix(f"{UserError.__module__}.UserError: ")
            print(f"error: {message}", file=sys.stderr)
            return 2
    return wrapped


def add_model_data_args(p: argparse.ArgumentParser, images: int = 200) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="tiny_densenet", help=f"registered model: {', '.join(MODELS)}")
    g.add_argument("--weights", default=None,
                   help="weights file; default: the model's own source (torch hub cache, a package, or for "
                        "tiny_densenet a cached model trained on first use); 'random' for untrained weights")
    g.add_argument("--data", default=None,
                   help="'concepts' (built-in concept world), 'imagenet' (class folders under --data-root) or "
                        "any ImageFolder path; default: concepts for tiny_densenet, imagenet otherwise")
    g.add_argument("--data-root", default=None, help=f"ImageNet validation folder (default {data_mod.IMAGENET_ROOT})")
    g.add_argument("--images", type=int, default=images,
                   help="number of images, chosen deterministically and spread evenly over classes")
    add_runtime_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed for every random number generator")


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """Flags that change how fast a stage runs, never its results."""
    r = p.add_argument_group("runtime")
    r.add_argument("--batch-size", type=int, default=32, help="images per batch")
    r.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1' ...")
    r.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="data-loading processes for image folders (the concept world renders in-process)")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but CUDA is not available here")
    return device


@dataclass
class Setup:
    loaded: LoadedModel
    dataset: Dataset
    indices: np.ndarray
    device: torch.device
    workers: int

    def loader(self, batch_size: int):
        return data_mod.make_loader(self.dataset, self.indices, batch_size, self.workers, self.device)

    def config(self) -> dict:
        """The model and data part of a manifest's config."""
        w = self.loaded.weights
        return {"model": self.loaded.spec.name, "weights_source": w["source"], "weights_sha256": w["sha256"],
                "data": data_mod.describe(self.dataset), "images": len(self.indices)}


def setup(args: argparse.Namespace) -> Setup:
    """Seed, then check every input (model, data, images) before any work or writing starts."""
    set_seeds(args.seed)
    device = resolve_device(args.device)
    # Attributions are compared per image across runs and devices: keep CUDA in full fp32. With
    # TF32 convolutions an H200 flipped a prediction and moved per-image metrics by up to 0.07 from
    # the CPU's; without, they agree to 1e-6.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    spec = MODELS.get(args.model)
    if spec is None:
        raise UserError(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}")
    if args.workers < 0:
        raise UserError(f"--workers must be 0 or more, got {args.workers}")
    dataset = data_mod.build_dataset(args.data or spec.default_data, spec, args.data_root)
    indices = data_mod.even_subset(data_mod.targets_of(dataset), args.images)
    data_mod.check_images(dataset, indices)
    loaded = load_model(args.model, args.weights, device)
    with torch.no_grad():
        n_out = loaded.model(torch.zeros(1, 3, spec.input_size, spec.input_size, device=device)).shape[1]
    n_classes = len(dataset.classes)
    if n_classes > n_out:
        raise UserError(f"the data has {n_classes} classes but {args.model} has {n_out} outputs; "
                        f"its labels cannot be the model's classes")
    workers = 0 if (args.data or spec.default_data) == "concepts" else args.workers
    return Setup(loaded, dataset, indices, device, workers)
