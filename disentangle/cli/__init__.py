"""What every script shares: common flags, one-line errors, and the model + data set-up."""
from __future__ import annotations

import argparse
import ctypes
import functools
import os
import sys
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import artifacts
from ..data import images as data_mod
from ..core.errors import UserError
from ..core.models import MODELS, LoadedModel, load_model
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


# --batch-size auto: the first size tried per device type (a loader batch, and the artifacts' part size).
AUTO_START = {"cuda": 256, "cpu": 32}
T = TypeVar("T")


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


def out_of_memory(e: BaseException) -> bool:
    """Whether an exception is an allocation failure (CUDA, or the CPU allocator's)."""
    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e)))


class AutoBatch:
    """Runs work in sub-batches of ``size`` images; with ``--batch-size auto`` it halves ``size`` on
    out-of-memory and runs the work again (and keeps the smaller size for the work that follows).

    ``start`` is the loader's batch size (the unit artifacts are written in); a fixed batch size
    never backs off. ``scaled(n)`` scales another size (IG rows per pass) by the same factor.
    """

    def __init__(self, value: int | str, device: torch.device):
        self.auto = value == "auto"
        self.start = self.size = AUTO_START["cuda" if device.type == "cuda" else "cpu"] if self.auto else int(value)

    def scaled(self, n: int | None) -> int | None:
        return None if n is None else max(1, n * self.size // self.start)

    def __call__(self, work: Callable[[int], T]) -> T:
        while True:
            try:
                return work(self.size)
            except RuntimeError as e:      # torch.cuda.OutOfMemoryError is a RuntimeError
                if not (self.auto and self.size > 1 and out_of_memory(e)):
                    raise
            # Outside the except block, so the failed attempt's tensors (held by the traceback) are freed.
            self.size //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            print(f"out of memory: retrying in batches of {self.size} images", file=sys.stderr)


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
    channels_last: bool = False

    def loader(self, batch_size: int):
        return data_mod.make_loader(self.dataset, self.indices, batch_size, self.workers, self.device)

    def config(self) -> dict:
        """The model and data part of a manifest's config."""
        w = self.loaded.weights
        return {"model": self.loaded.spec.name, "weights_source": w["source"], "weights_sha256": w["sha256"],
                "data": data_mod.describe(self.dataset), "images": len(self.indices)}


def keep_freed_memory() -> None:
    """Have glibc's malloc keep freed blocks of up to 32 MiB for reuse instead of unmapping them.

    PyTorch has no caching allocator on the CPU, and glibc maps each large block afresh, so every
    forward and backward pass page-faults its activations in again. Measured on 2 cores
    (tiny_densenet, 200 images, bench/throughput.py): the engine 8.4 -> 5.7 s, the reference
    29.1 -> 26.8 s. Freed memory stays with the process, so its resident size stays at its peak.
    Nothing to do where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 32 << 20)    # M_MMAP_THRESHOLD: map only blocks above 32 MiB
    libc.mallopt(-1, 1 << 30)     # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap


def setup(args: argparse.Namespace) -> Setup:
    """Seed, then check every input (model, data, images) before any work or writing starts."""
    set_seeds(args.seed)
    keep_freed_memory()
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
