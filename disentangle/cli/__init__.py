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

from ..io import artifacts
from ..data import images as data_mod
from ..core.errors import UserError
from ..core.models import MODELS, LoadedModel, load_model
from ..core.runtime import AUTO_START, keep_freed_memory, resolve_device, strict_fp32
from ..core.seeding import set_seeds


class Parser(argparse.ArgumentParser):
    """argparse with defaults shown in ``--help`` and errors on one line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def entrypoint(main: Callable[..., int | None]) -> Callable[..., int]:
    """Turn ``UserError`` into one line on stderr and exit status 2, an interruption (Ctrl-C) into
    one line and status 130; the run's output locks are released either way."""
    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        global _depth
        try:
            _depth += 1
            with artifacts.run_scope():
                return main(argv) or 0
        except UserError as e:
            # A DataLoader worker re-raises with the worker's traceback in the message: keep its last line.
            message = str(e).strip().splitlines()[-1].removeprefix(f"{UserError.__module__}.UserError: ")
            print(f"error: {message}", file=sys.stderr)
            return 2
        except SystemExit as e:          # argparse's one-line errors and --help, for in-process callers
            return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
        except KeyboardInterrupt:
            if _depth > 1:             # a stage run by another (the grid): the outermost reports it
                raise
            print("interrupted; finished work is kept: rerun the same command to resume", file=sys.stderr)
            return 130
        finally:
            _depth -= 1
    return wrapped


_depth = 0   # entry points running, nested when one script's main calls another's


def add_model_data_args(p: argparse.ArgumentParser, images: int = 200, engine: bool = False) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="tiny_densenet", help=f"registered model: {', '.join(MODELS)}")
    g.add_argument("--weights", default=None,
                   help="weights file; default: the model's own source (torch hub cache, a package, or for "
                        "tiny_densenet the weights shipped with the code); 'random' for untrained weights")
    g.add_argument("--data", default=None,
                   help="'concepts' (built-in concept world), 'imagenet' (class folders under --data-root) or "
                        "any ImageFolder path; default: concepts for tiny_densenet, imagenet otherwise")
    g.add_argument("--data-root", default=None, help=f"ImageNet validation folder (default {data_mod.IMAGENET_ROOT})")
    g.add_argument("--images", type=positive, default=images,
                   help="number of images, chosen deterministically and spread evenly over classes")
    add_runtime_args(p, engine)
    p.add_argument("--seed", type=int, default=0, help="seed for every random number generator")


def add_runtime_args(p: argparse.ArgumentParser, engine: bool = False) -> None:
    """Flags that change how fast a stage runs, never its results (beyond float rounding).

    ``engine``: the stage runs the attribution engine, which also takes ``--batch-size auto``
    (``AutoBatch``) and ``--channels-last``.
    """
    r = p.add_argument_group("runtime")
    if engine:
        r.add_argument("--batch-size", type=batch_size, default=32,
                       help=f"images per batch, or 'auto': start at {AUTO_START['cuda']} images on CUDA "
                            f"({AUTO_START['cpu']} on the CPU) and, on out-of-memory, compute each batch in halves "
                            f"(and IG in half as many rows) and retry, as often as needed")
    else:
        r.add_argument("--batch-size", type=positive, default=32, help="images per batch")
    r.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1' ...")
    r.add_argument("--workers", type=count, default=min(4, os.cpu_count() or 1),
                   help="data-loading processes for image folders (the concept world renders in-process)")
    if engine:
        r.add_argument("--channels-last", action="store_true",
                       help="keep the model's weights and activations in channels-last (NHWC) memory format: faster "
                            "convolutions on CPUs and tensor cores; results agree with the default to float rounding")


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    return 0 if text.strip() == "0" else positive(text)


def finite(text: str) -> float:
    """An argparse type: a finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def batch_size(text: str) -> int | str:
    """``--batch-size`` value: a positive integer or ``auto``."""
    if text == "auto":
        return text
    try:
        return positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number of images (at least 1) or 'auto', got {text!r}") from None


@dataclass
class Setup:
    loaded: LoadedModel
    dataset: Dataset
    indices: np.ndarray
    device: torch.device
    workers: int
    channels_last: bool = False

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
    keep_freed_memory()
    device = resolve_device(args.device)
    strict_fp32()
    spec = MODELS.get(args.model)
    if spec is None:
        raise UserError(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}")
    if args.workers < 0:
        raise UserError(f"--workers must be 0 or more, got {args.workers}")
    dataset = data_mod.build_dataset(args.data or spec.default_data, spec, args.data_root)
    indices = data_mod.even_subset(data_mod.targets_of(dataset), args.images)
    data_mod.check_images(dataset, indices)
    loaded = load_model(args.model, args.weights, device)
    channels_last = getattr(args, "channels_last", False)   # only stages that run the engine have the flag
    if channels_last:
        loaded.model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        n_out = loaded.model(torch.zeros(1, 3, spec.input_size, spec.input_size, device=device)).shape[1]
    n_classes = len(dataset.classes)
    if n_classes > n_out:
        raise UserError(f"the data has {n_classes} classes but {args.model} has {n_out} outputs; "
                        f"its labels cannot be the model's classes")
    workers = 0 if (args.data or spec.default_data) == "concepts" else args.workers
    return Setup(loaded, dataset, indices, device, workers, channels_last)
