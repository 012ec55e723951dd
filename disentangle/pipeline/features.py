"""The feature-visualization stage (visualize_features.py): each unit's activation-maximising image
(``neurons.featureviz``) for the units of a block, with a resumable output folder:
``features.npz`` (``units``, ``images (U, S, S, 3)`` uint8, ``activations``: each unit's activation
on its own image), one ``unit_<u>_feature.png`` per unit, ``features_grid.png`` and the manifest."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core import distributed
from ..core.errors import UserError
from ..core.layers import layer_width, resolve_layer
from ..core.models import LoadedModel, ModelSpec
from ..data.images import Images, dataset_images
from ..io import artifacts, layout
from ..neurons import featureviz as fv
from ..viz.features import feature_grid
from ..viz.plots import png_bytes

PARTS = "parts"


@dataclass
class Features:
    folder: Path
    units: np.ndarray
    images: np.ndarray            # (U, S, S, 3) uint8
    activations: np.ndarray       # (U,)
    seconds: float                # optimisation time of this run (0 when read back)
    skipped: bool


def colour_pixels(images: Images, n: int = 64) -> torch.Tensor:
    """``(P, 3)`` pixels in ``[0, 1]`` of the first ``n`` of ``images``, for ``fv.colour_basis``."""
    picked = [np.asarray(images.source.image(int(i)).convert("RGB"), dtype=np.float32).reshape(-1, 3) / 255
              for i in images.indices[:n]]
    return torch.from_numpy(np.concatenate(picked))


def choose_colour(colour: str, spec: ModelSpec, data: str | None = None, data_root: str | None = None
                  ) -> tuple[torch.Tensor, str]:
    """The colour basis of ``--colour`` and what it was: ``data`` (the covariance of 64 images of
    ``data``, default the model's own), ``imagenet`` (Lucid's ImageNet estimate), ``none``
    (identity); ``auto``: data for a model of the concept world or when ``data`` is given, else
    imagenet (which needs no images on disk)."""
    if colour not in fv.COLOURS:
        raise UserError(f"--colour must be one of {', '.join(fv.COLOURS)}, got {colour!r}")
    if colour == "auto":
        colour = "data" if data or spec.default_data == "concepts" else "imagenet"
    if colour == "data":
        images = dataset_images(data or spec.default_data, 64, data_root)
        return fv.colour_basis(colour_pixels(images)), f"data ({images.describe().get('name')})"
    return (fv.colour_basis(None), "imagenet") if colour == "imagenet" else (torch.eye(3), "none")


def run_features(loaded: LoadedModel, block: str, units: Sequence[int] | None, cfg: fv.VizConfig,
                 colour: torch.Tensor, colour_name: str, device: torch.device, out: str | Path, seed: int = 0,
                 overwrite: bool = False) -> Features:
    """Feature visualizations of ``units`` (None: all) of ``block`` into the folder ``out``; batches
    already written by an interrupted run with the same settings are kept. Under torchrun each rank
    takes every N-th batch of units (each unit's image is its own seed's, whichever rank makes it)
    and rank 0 writes the rest; ``seconds`` is the slowest rank's."""
    spec = loaded.spec
    path = resolve_layer(spec, block, loaded.model)
    example = torch.zeros(1, 3, spec.input_size, spec.input_size, device=device)
    n = layer_width(loaded.model, path, example)
    chosen = list(range(n)) if units is None else [int(u) for u in units]
    bad = [u for u in chosen if not 0 <= u < n]
    if bad:
        raise UserError(f"unit {bad[0]} is not a unit of {block} (0..{n - 1})")
    w = loaded.weights
    config = {"model": spec.name, "weights_source": w["source"], "weights_sha256": w["sha256"], "block": block,
              "layer": path, "units": chosen, "seed": seed, "colour": colour_name, **cfg.recorded()}
    manifest = artifacts.make_manifest("visualize_features", config, {"device": str(device),
                                                                      "batch_size": cfg.batch_size})
    out = Path(out)
    rank = distributed.group(device)

    def read_back(seconds: float, skipped: bool) -> Features:
        z = artifacts.read_npz(out / "features.npz", ("units", "images", "activations"), "feature visualizations")
        return Features(out, z["units"], z["images"], z["activations"], seconds, skipped)

    def choose() -> str:
        state = artifacts.open_output(out, manifest, overwrite, progress=f"{PARTS}/*.npz")
        if state != "complete":
            artifacts.write_manifest(out, manifest)
        return state
    if distributed.decide(choose) == "complete":
        return read_back(0.0, True)
    distributed.barrier()
    normalise = fv.Normalise(spec.mean, spec.std)
    seconds = 0.0
    for start in rank.shard(range(0, len(chosen), cfg.batch_size)):
        part = out / PARTS / f"{start:06d}.npz"
        if part.exists():
            continue
        batch = chosen[start:start + cfg.batch_size]
        t0 = time.perf_counter()
        images, acts = fv.visualize(loaded.model, path, batch, normalise, spec.input_size, cfg, colour, device, seed)
        seconds += time.perf_counter() - t0
        artifacts.write_npz(part, units=np.array(batch), images=images, activations=acts)
    times = distributed.gather(seconds)
    if not rank.main:
        distributed.barrier()                       # rank 0 writes the results
        return read_back(seconds, False)
    seconds = max(times)
    parts = [artifacts.read_npz(out / PARTS / f"{s:06d}.npz") for s in range(0, len(chosen), cfg.batch_size)]
    result = Features(out, np.concatenate([p["units"] for p in parts]), np.concatenate([p["images"] for p in parts]),
                      np.concatenate([p["activations"] for p in parts]), seconds, False)
    for u, img in zip(result.units, result.images):
        artifacts.write_bytes(out / layout.feature_image(int(u)), png_bytes(img))
    feature_grid(result.images, result.units, result.activations, f"{spec.name} {block}", out / "features_grid.png")
    artifacts.write_npz(out / "features.npz", units=result.units, images=result.images,
                        activations=result.activations)
    artifacts.write_manifest(out, {**manifest, "complete": True, "seconds": seconds, "world_size": rank.world})
    distributed.barrier()
    return result
