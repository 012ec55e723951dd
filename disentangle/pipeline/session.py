"""The one set-up path of every stage: seeds, runtime, model and images, all checked before any work.

``setup`` loads a registered model with its weights on the device, and the stage's images: ``N``
images of ``data`` spread evenly over its classes, the photos of ``"samples"`` or a folder, or
an ``Images`` the caller chose (a dissection probe set). ``setup_like`` rebuilds the model and
data an earlier stage recorded in its manifest, refusing weights that changed since.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..core import distributed
from ..core.errors import UserError
from ..core.models import LoadedModel, get_spec, load_model
from ..core.runtime import Runtime, keep_freed_memory, strict_fp32
from ..core.seeding import set_seeds
from ..data.images import Images, dataset_images, photo_images


@dataclass
class Session:
    """A stage's model, device, images and runtime."""
    loaded: LoadedModel
    images: Images
    device: torch.device
    runtime: Runtime
    n_outputs: int
    seed: int = 0
    order: str | None = None     # how --images N were chosen (data.images.ORDERS)

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @property
    def spec(self):
        return self.loaded.spec

    @property
    def workers(self) -> int:
        return 0 if self.images.source.in_process else self.runtime.workers

    def transform(self):
        """The model's preprocessing of these images: PIL -> normalised ``(3, S, S)``."""
        return self.spec.transform(square=self.images.source.square)

    def loader(self, batch_size: int | None = None, transform=None, indices=None,
               batches: list[int] | None = None) -> DataLoader:
        """Batches ``(x (B, 3, S, S), labels (B,), indices (B,))`` of the images in order (or of the
        source's ``indices``), through the model's preprocessing (or ``transform``), ``batch_size``
        (default: the runtime's) at a time; ``batches``: only these batch numbers (a rank's shard)."""
        size = self.runtime.images_per_batch(self.device) if batch_size is None else batch_size
        images = self.images if indices is None else Images(self.images.source, np.asarray(indices))
        return images.loader(transform or self.transform(), size, self.workers, self.device, batches)

    def per_image(self, compute: Callable[[DataLoader], np.ndarray], batch_size: int | None = None,
                  transform=None) -> np.ndarray:
        """``compute(loader)`` (one row per image of the loader, in order) of every image, on every
        rank: under torchrun each rank computes its batches (every N-th) and the rows are
        exchanged and joined in image order."""
        size = self.runtime.images_per_batch(self.device) if batch_size is None else batch_size
        rank = distributed.group(self.device)
        batches = self.shard(size)
        mine = compute(self.loader(size, transform, batches=batches)) if batches or rank.world == 1 else None
        return distributed.join_rows(rank, len(self.images), size, mine)

    def shard(self, batch_size: int) -> list[int]:
        """This rank's batch numbers (every N-th) of the images in batches of ``batch_size``; all of
        them in one process."""
        return distributed.group(self.device).shard(range(self.images.n_batches(batch_size)))

    def example(self) -> torch.Tensor:
        """The first image as the model's input ``(1, 3, S, S)`` on the device."""
        return self.transform()(self.images.source.image(int(self.images.indices[0])))[None].to(self.device)

    def class_names(self) -> list[str]:
        """A short name per model output: ImageNet's (from timm) for 1000 outputs, else the data's
        classes where they match the outputs, else the index."""
        if self.n_outputs == 1000:
            from timm.data import ImageNetInfo
            info = ImageNetInfo()
            return [info.index_to_description(i).split(",")[0] for i in range(1000)]
        classes = list(self.images.source.classes)
        if len(classes) == self.n_outputs:
            return classes
        return [str(i) for i in range(self.n_outputs)]

    def config(self) -> dict:
        """The model and data part of a manifest's config."""
        w = self.loaded.weights
        return {"model": self.spec.name, "weights_source": w["source"], "weights_sha256": w["sha256"],
                "data": self.images.describe(), "images": len(self.images), "seed": self.seed,
                **({"image_order": self.order} if self.order else {})}

    def runtime_record(self, **extra) -> dict:
        """The runtime part of a manifest (what changes speed, never results beyond rounding)."""
        r = self.runtime
        return {"device": str(self.device), "batch_size": r.batch_size, "ig_batch": r.ig_batch, "workers": self.workers,
                "channels_last": r.channels_last, "plain": r.plain, **extra}


def setup(model: str = "tiny_densenet", weights: str | None = None, data: str | None = None,
          images: int | str | Images = 100, data_root: str | None = None, runtime: Runtime = Runtime(),
          seed: int = 0, order: str = "spread") -> Session:
    """Seed, then check every input (model, data, images) before any work or writing starts.

    ``data``: ``concepts``, ``imagenet`` or an ImageFolder path (default: the model's own, the concept
    world for tiny_densenet); ``images``: a number of images of ``data`` (chosen by ``order``, one of
    ``data.images.ORDERS``), ``"samples"`` or a folder of photos (then ``data`` must be None), or
    chosen ``Images``; ``weights``: a file, ``"random"``,
    or None for the model's own source.
    """
    set_seeds(seed)
    if not runtime.plain:
        keep_freed_memory()
    device = distributed.device_for_rank(runtime.torch_device())
    strict_fp32()
    spec = get_spec(model)
    if isinstance(images, Images):
        chosen = images
    elif isinstance(images, str):
        if data is not None:
            raise UserError(f"--data applies to --images N; --images {images} brings its own photos")
        chosen = photo_images(images)
    else:
        chosen = dataset_images(data or spec.default_data, images, data_root, order)
    loaded = load_model(model, weights, device)
    if runtime.channels_last:
        loaded.model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        n_out = int(loaded.model(torch.zeros(1, 3, spec.input_size, spec.input_size, device=device)).shape[1])
    n_classes = len(chosen.source.classes)
    if isinstance(images, int) and n_classes > n_out:
        raise UserError(f"the data has {n_classes} classes but {model} has {n_out} outputs; "
                        f"its labels cannot be the model's classes")
    return Session(loaded, chosen, device, runtime, n_out, seed, order if isinstance(images, int) else None)


def setup_like(manifest: dict, runtime: Runtime, images: int | None = None) -> Session:
    """The model and data an earlier stage recorded in ``manifest``, with ``images`` images (default:
    as many as it had). Refuses to go on if the weights file changed since."""
    c = manifest["config"]
    data = c["data"]
    weights = "random" if c["weights_source"] == "random init" else manifest.get("weights_path")
    session = setup(c["model"], weights, "concepts" if data["name"] == "concepts" else data["root"],
                    c["images"] if images is None else images, runtime=runtime, seed=c.get("seed", 0),
                    order=c.get("image_order", "spread"))
    if session.loaded.weights["sha256"] != c["weights_sha256"]:
        raise UserError(f"the weights of {c['model']} changed since {manifest['stage']} ran; rerun that stage")
    return session
