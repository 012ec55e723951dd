"""How a stage runs, never what it computes: the device, data-loading processes, batch sizes, and the
engine's speed tricks (which ``plain`` turns off for debugging).

Nothing here changes results beyond float rounding.
"""
from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch

from .errors import UserError

# --batch_size auto: the first size tried per device type (a loader batch, and the artifacts' part size).
AUTO_START = {"cuda": 256, "cpu": 32}
T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    """``device``: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``; ``workers``: image-loading
    processes for image folders; ``batch_size``: images per batch or ``"auto"`` (attribution stages);
    ``ig_batch``: rows (image x step) per IG pass; ``channels_last``: NHWC weights and activations;
    ``plain``: the engine without its speed tricks (one pass per batch instead of one per CPU thread,
    no batch-norm folding, no stem run once per image, glibc's default malloc)."""
    device: str = "auto"
    workers: int = 4
    batch_size: int | str = 32
    ig_batch: int | None = 256
    channels_last: bool = False
    plain: bool = False

    def __post_init__(self):
        if self.workers < 0:
            raise UserError(f"--workers must be 0 or more, got {self.workers}")
        if self.batch_size != "auto" and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise UserError(f"--batch_size must be a number of images (at least 1) or 'auto', got {self.batch_size!r}")
        if self.ig_batch is not None and self.ig_batch < 1:
            raise UserError(f"--ig_batch must be at least 1, got {self.ig_batch}")

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def images_per_batch(self, device: torch.device | None = None) -> int:
        """``batch_size``, or for ``auto`` the size it starts at on the device."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        return AUTO_START["cuda" if (device or self.torch_device()).type == "cuda" else "cpu"]


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


def strict_fp32() -> None:
    """Keep CUDA in full fp32. Attributions are compared per image across runs and devices: with
    TF32 convolutions an H200 flipped a prediction and moved per-image metrics by up to 0.07 from
    the CPU's; without, they agree to 1e-6."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


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


def out_of_memory(e: BaseException) -> bool:
    """Whether an exception is an allocation failure (CUDA, or the CPU allocator's)."""
    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e)))


class AutoBatch:
    """Runs work in sub-batches of ``size`` images; with ``--batch_size auto`` it halves ``size`` on
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
