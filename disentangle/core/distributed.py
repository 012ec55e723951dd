"""torch.distributed for stages that shard their work by rank (launched with torchrun).

A single process is rank 0 of 1; under ``torchrun --nproc_per_node=N`` (one node) or ``torchrun
--nnodes=M --nproc_per_node=N --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT`` (several) each process
is one rank, on the gloo backend for the CPU and NCCL for CUDA (each rank on ``cuda:LOCAL_RANK``).
The group starts on first use (``group``) and ends when the process's stage ends (``shutdown``,
called by the CLI's entry point).

Every collective waits at most ``TIMEOUT`` seconds (``DISENTANGLE_DIST_TIMEOUT``, default 1800): a
rank that died or hangs makes the others fail with one line (``UserError``) instead of waiting for
ever; torchrun then stops the whole run. Ranks share the output folders (on several nodes, a shared
file system): each writes only its own parts, and rank 0 writes everything else.
"""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .errors import UserError

TIMEOUT = float(os.environ.get("DISENTANGLE_DIST_TIMEOUT", "1800"))


@dataclass(frozen=True)
class Rank:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence) -> list:
        """This rank's share of ``items``: every ``world``-th from position ``rank`` (an even spread
        of batches whose cost grows along the data set)."""
        return list(items)[self.rank::self.world]


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_initialized() -> bool:
    """Whether this process is one of several ranks (torchrun started the group)."""
    return dist.is_initialized()


def is_main() -> bool:
    """Whether this process is rank 0 (a single process is)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def device_for_rank(device: torch.device) -> torch.device:
    """Under torchrun a CUDA device is this rank's own GPU, ``cuda:LOCAL_RANK``."""
    if world_size() > 1 and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def group(device: torch.device) -> Rank:
    """This process's rank, starting the process group if torchrun launched several."""
    device = device_for_rank(device)
    if world_size() == 1:
        return Rank(0, 1, device)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=datetime.timedelta(seconds=TIMEOUT))
        except Exception as e:  # rendezvous failures come as several types
            raise UserError(f"cannot join the torchrun group ({str(e).splitlines()[0][:200]})") from None
    return Rank(dist.get_rank(), dist.get_world_size(), device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(device: torch.device) -> Iterator[tuple[int, int, torch.device]]:
    """``(rank, world_size, device)`` for this process; the group is torn down on exit."""
    r = group(device)
    try:
        yield r.rank, r.world, r.device
    finally:
        shutdown()


def _collective(what: str):
    """One line instead of a backend's traceback when a peer never comes."""
    @contextmanager
    def guard():
        try:
            yield
        except RuntimeError as e:
            raise UserError(f"rank {dist.get_rank()}: {what} failed after at most {TIMEOUT:.0f} s: another rank died "
                            f"or hangs ({str(e).splitlines()[0][:160]})") from None
    return guard()


def barrier() -> None:
    if dist.is_initialized():
        with _collective("waiting for the other ranks"):
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=TIMEOUT)) \
                if dist.get_backend() == "gloo" else dist.barrier()


def gather(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0, in rank order (None on the other ranks); ``[obj]`` alone."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    with _collective("gathering results"):
        dist.gather_object(obj, out, dst=0)
    return out


def everyone(obj: Any) -> list[Any]:
    """Every rank's ``obj`` on every rank, in rank order; ``[obj]`` alone."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    with _collective("exchanging results"):
        dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    with _collective("receiving rank 0's decision"):
        dist.broadcast_object_list(box, src=0)
    return box[0]


def over_batches(rank: Rank, n: int, batch_size: int, fn: Callable[[int, int], Any]) -> list[Any] | None:
    """``fn(start, stop)`` for this rank's batches of ``n`` items (every N-th batch of
    ``batch_size``); on rank 0 every batch's result in batch order, None on the others."""
    starts = list(range(0, n, batch_size))
    mine = {s: fn(s, min(s + batch_size, n)) for s in rank.shard(starts)}
    everyone = gather(mine)
    if everyone is None:
        return None
    merged = {k: v for part in everyone for k, v in part.items()}
    return [merged[s] for s in starts]


def join_rows(rank: Rank, n: int, batch_size: int, mine: np.ndarray | None) -> np.ndarray:
    """The rows of all ``n`` items, in order, on every rank, from each rank's ``mine``: the rows of
    its batches ``rank.shard(range(n_batches))`` of ``batch_size``, in that order (None for a rank
    without batches)."""
    if rank.world == 1:
        return mine
    starts = rank.shard(range(0, n, batch_size))
    parts = {}
    if mine is not None:
        cuts = np.cumsum([min(batch_size, n - s) for s in starts])[:-1]
        parts = dict(zip(starts, np.split(np.asarray(mine), cuts)))
    merged = {s: rows for every in everyone(parts) for s, rows in every.items()}
    return np.concatenate([merged[s] for s in sorted(merged)])


def decide(choose: Callable[[], Any]) -> Any:
    """``choose()`` run on rank 0 alone (it may take locks or write), its value, or its one-line
    error, on every rank: no rank waits for a decision that failed."""
    if not dist.is_initialized():
        return choose()
    outcome: tuple[str, Any] | None = None
    if dist.get_rank() == 0:
        try:
            outcome = ("value", choose())
        except UserError as e:
            outcome = ("error", str(e))
    kind, value = broadcast(outcome)
    if kind == "error":
        raise UserError(value)
    return value


def sum_counts(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over ranks of an integer tensor (exact)."""
    if not dist.is_initialized():
        return values
    t = values.clone().long()
    if dist.get_backend() == "nccl":
        t = t.cuda()
    with _collective("summing counts"):
        dist.all_reduce(t)
    return t.cpu()
