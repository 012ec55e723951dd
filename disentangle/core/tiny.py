"""The embedded model: ``tiny_densenet`` weights shipped with the code, and the recipe that made them.

Loading never trains. The weights file ``weights/tiny_densenet.pt`` is checked against the SHA-256
below on every load, so every machine runs the same model; a file that does not match is an error.
Training is an explicit command (``train_tiny.py --output FILE``) that reproduces the recipe into a
new file: the result depends on the CPU's float order and the thread count (other kernels, other
models), which is why the shipped file, not a retrained one, is the default.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data import concepts
from ..io.artifacts import sha256_file, versions, write_json
from .errors import UserError
from .seeding import set_seeds

RECIPE = {"recipe_version": 1, "data_seed": 0, "train_images": 8000, "val_images": 1200, "epochs": 3,
          "batch_size": 64, "lr": 4e-3, "weight_decay": 1e-4, "seed": 0, "hflip": True}
SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "tiny_densenet.pt"
SHIPPED_SHA256 = "83d513aa80eff372c25ac85ab6872ef46c8cc7bd3f7f1d441016ca6ae73f4b96"


def shipped_weights() -> Path:
    """The shipped weights file, after checking its SHA-256."""
    path = SHIPPED
    restore = (f"restore it (git checkout -- {path.name}, or reinstall) or pass --weights FILE "
               f"(train_tiny.py --output FILE trains one)")
    if not path.is_file():
        raise UserError(f"the shipped tiny_densenet weights {path} are missing; {restore}")
    digest = sha256_file(path)
    if digest != SHIPPED_SHA256:
        raise UserError(f"the shipped tiny_densenet weights {path} have SHA-256 {digest[:12]}..., not "
                        f"{SHIPPED_SHA256[:12]}...: the file was changed; {restore}")
    return path


def _render(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of a split as uint8 ``(n, 3, 56, 56)`` and their labels ``(n,)``."""
    samples = [concepts.render(RECIPE["data_seed"], split, i) for i in range(n)]
    x = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor([s.label for s in samples])


def train(path: Path) -> dict:
    """Train on the ``train`` split, measure top-1 on held-out ``val`` images, write the weights to
    ``path`` and a manifest beside it (``.json``); returns the manifest."""
    from .models import MODELS, build_tiny_densenet  # models names this module's weights
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
    bar = tqdm(total=r["epochs"] * steps_per_epoch, desc="training tiny_densenet", unit="step")
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
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    manifest = {"model": "tiny_densenet", "file": path.name, "sha256": sha256_file(path), "recipe": r,
                "heldout_top1": accuracy, "heldout": f"concept world split 'val', images 0..{r['val_images'] - 1}",
                "train_seconds": round(elapsed, 1), "threads": torch.get_num_threads(),
                "machine": platform.machine(), "processor": _processor(), "versions": versions()}
    write_json(path.with_suffix(".json"), manifest)
    return manifest


def _processor() -> str:
    """The CPU's model name (Linux), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
