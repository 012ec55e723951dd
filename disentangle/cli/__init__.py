"""The command-line layer, the only part of the package that knows argparse: the parser and entry
point (one-line errors), one declaration per flag with the spellings used before as aliases, the
shared flag groups, and the library configs they build. Scripts parse, build a config, call the
library and print a summary.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.errors import UserError
from ..core.models import LoadedModel, MODELS, load_model
from ..core.runtime import keep_freed_memory, resolve_device, strict_fp32
from ..core.seeding import set_seeds
from ..data import images as data_mod
from .flags import SPELLINGS, add, spellings
from .groups import (attribution_args, blocked_args, blocked_settings, clustering_args, clusters, eval_config,
                     figure_args, model_args, output_args, runtime, runtime_args)
from .parser import Parser, batch_size, count, entrypoint, finite, images, names, positive, target

__all__ = ["UserError", "SPELLINGS", "add", "spellings", "attribution_args", "blocked_args", "blocked_settings",
           "clustering_args", "clusters", "eval_config", "figure_args", "model_args",
           "output_args", "runtime", "runtime_args", "Parser", "batch_size", "count", "entrypoint", "finite",
           "images", "names", "positive", "target"]


# --- Transitional: the set-up of the stages not yet on ``pipeline.session`` (explanations,
# interpretability extraction). Removed when the last of them is converted.
def add_model_data_args(p: argparse.ArgumentParser, images: int = 200, engine: bool = False) -> None:
    model_args(p, images)
    runtime_args(p, engine)


def add_runtime_args(p: argparse.ArgumentParser, engine: bool = False) -> None:
    runtime_args(p, engine)


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
