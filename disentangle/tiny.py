"""Train ``tiny_densenet`` on the concept world on first use and cache it.

The cache file name holds a hash of the training recipe, so a changed recipe trains a new model
instead of silently reusing an old one. A JSON manifest beside the weights records the recipe,
the held-out accuracy and the training time. Location: ``$DISENTANGLE_CACHE`` or
``~/.cache/disentangle``.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import concepts
from .artifacts import versions, write_json
from .models import MODELS, build_tiny_densenet
from .seeding import set_seeds

RECIPE = {"recipe_version": 1, "data_seed": 0, "train_images": 8000, "val_images": 1200, "epochs": 3,
          "batch_size": 64, "lr": 4e-3, "weight_decay": 1e-4, "seed": 0, "hflip": True}


def cache_dir() -> Path:
    return Path(os.environ.get("DISENTANGLE_CACHE", Path.home() / ".cache" / "disentangle"))


def weights_path() -> Path:
    key = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / f"tiny_densenet-{key}.pt"


def cached_weights() -> Path:
    """Path of the trained weights, training them first if the cache has none."""
    path = weights_path()
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # A lock so that two processes starting together train once.
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            train(path)
    return path


def _render(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of a split as uint8 ``(n, 3, 56, 56)`` and their labels ``(n,)``."""
    samples = [concepts.render(RECIPE["data_seed"], split, i) for i in range(n)]
    x = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor([s.label for s in samples])


def train(path: Path) -> dict:
    """Train on the ``train`` split, measure top-1 on held-out ``val`` images, save weights + manifest."""
    r, spec = RECIPE, MODELS["tiny_densenet"]
    start = time.time()
    set_seeds(r["seed"])
    x_train, y_train = _render("train", r["train_images"])
    x_val, y_val = _render("val", r["val_images"])
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - mean) / std

    model = build_tiny_densenet(len(concepts.CLASSES))
    steps_per_epoch = r["train_images"] // r["batch_size"]
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, r["lr"], total_steps=r["epochs"] * steps_per_epoch,
                                                pct_start=0.2)
    gen = torch.Generator().manual_seed(r["seed"])
    bar = tqdm(total=r["epochs"] * steps_per_epoch, desc="training tiny_densenet (first use, cached after)",
               unit="step")
    model.train()
    for _ in range(r["epochs"]):
        order = torch.randperm(r["train_images"], generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * r["batch_size"]:(b + 1) * r["batch_size"]]
            x = normalise(x_train[idx])
            if r["hflip"]:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = nn.functional.cross_entropy(model(x), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(normalise(x_val)).argmax(1) == y_val).float().mean())
    elapsed = time.time() - start
    torch.save(model.state_dict(), path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    manifest = {"model": "tiny_densenet", "recipe": r, "heldout_top1": accuracy,
                "heldout": f"concept world split 'val', images 0..{r['val_images'] - 1}",
                "train_seconds": round(elapsed, 1), "threads": torch.get_num_threads(), "versions": versions()}
    write_json(path.with_suffix(".json"), manifest)
    print(f"tiny_densenet: held-out top-1 {accuracy:.1%} on {r['val_images']} concept-world images, "
          f"trained in {elapsed:.0f} s -> {path}")
    return manifest
