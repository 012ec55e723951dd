"""What explain_neurons.py and the two simulate_*.py scripts share: one layer's summary activations
and the concept probabilities of the same images, with a seeded train/val/test split.

Concept probabilities ``P(concept | image)``, ``(N, M)``:

- ``label`` mode on the concept world: the image's shape, colour and background texture (11
  concept labels) and its class (12, named like ``red circle``), each 0 or 1;
  on an image folder: its class, plus superclasses from ``--superclasses`` (a JSON object
  ``{"superclass": ["class folder", ...]}``), 0 or 1.
- ``clip`` mode: CLIP's zero-shot probabilities over the concept set (softmax of its scaled
  image-text cosine similarities), from an open_clip model with local weights.

Activations and concept matrices are cached in ``--activation_dir`` under a key of everything that
affects them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import cache
from ..core import runtime
from .. import cli
from ..data import images as data_mod
from ..dissection import netdissect as dissection
from ..core.clip import DEFAULT_MODEL, DEFAULT_WEIGHTS, load_clip, read_concepts
from ..data.concepts import CATEGORIES, CLASSES, ConceptWorld, concept_names
from ..core.errors import UserError
from ..core.layers import layer_width
from .linear import split_indices
from ..core.layers import resolve_layer as resolve_block
from ..core.models import MODELS, LoadedModel, load_model

MODES = ("label", "clip")


def add_args(p: argparse.ArgumentParser, images: int = 1200) -> None:
    g = p.add_argument_group("model, layer and data")
    g.add_argument("--target_name", default="tiny_densenet", help=f"registered model: {', '.join(MODELS)}")
    g.add_argument("--weights", default=None, help="weights file, or 'random'; default: the model's own source")
    g.add_argument("--target_layer", default="block_4", help="block name (block_4, layer4 ...) or module path")
    g.add_argument("--dataset_name", default="concepts",
                   help="'concepts' (concept world), 'imagenet_val' (class folders under --data-root), or an "
                        "image folder with one subfolder per class")
    g.add_argument("--data-root", default=None, help=f"ImageNet validation folder (default {data_mod.IMAGENET_ROOT})")
    g.add_argument("--images", type=cli.positive, default=images, help="images, spread evenly over classes, then split "
                   "60/20/20 into train/val/test by --seed")
    g.add_argument("--pool_mode", choices=dissection.POOLS, default="avg",
                   help="a neuron's activation per image: spatial mean or max of its map")
    c = p.add_argument_group("concepts")
    c.add_argument("--mode", choices=MODES, default="label",
                   help="label: concept probabilities from labels; clip: from an open_clip model")
    c.add_argument("--superclasses", default=None,
                   help="label mode on an image folder: JSON {superclass: [class folder, ...]} added as concepts")
    c.add_argument("--concept_set", default=None,
                   help="clip mode: concept list, one per line (default: the concept world's concepts and classes)")
    c.add_argument("--clip_model", default=DEFAULT_MODEL, help="clip mode: open_clip model name or local-dir:FOLDER")
    c.add_argument("--clip_weights", default=DEFAULT_WEIGHTS,
                   help="clip mode: pretrained tag in the local cache, a checkpoint file, or 'random' (testing only)")
    r = p.add_argument_group("runtime")
    r.add_argument("--batch_size", "--batch-size", type=cli.positive, default=64, help="images per batch")
    r.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1' ...")
    r.add_argument("--workers", type=cli.count, default=4, help="image-loading processes for folders")
    r.add_argument("--activation_dir", default="outputs/activations",
                   help="cache of activations and concept matrices; 'none' to disable")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split")


@dataclass
class NeuronData:
    loaded: LoadedModel
    layer: str                 # as given (block name or path)
    path: str                  # module path
    dataset: Dataset
    indices: np.ndarray        # dataset indices of the N images
    labels: np.ndarray         # (N,) class labels
    acts: torch.Tensor         # (N, U) summary activations, float64
    concepts: torch.Tensor     # (N, M) concept probabilities, float64
    names: list[str]           # (M,) concept names
    split: dict[str, np.ndarray]   # positions 0..N-1 of each split
    device: torch.device
    config: dict               # what identifies these data in a manifest

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(concepts (n, M), acts (n, U))`` of one split."""
        idx = torch.from_numpy(self.split[name])
        return self.concepts[idx], self.acts[idx]


def _class_names(dataset: Dataset) -> list[str]:
    if isinstance(dataset, ConceptWorld):
        return [" ".join(c.split("_")[1:]) for c in CLASSES]
    return list(dataset.classes)


def label_concepts(dataset: Dataset, indices: np.ndarray, superclasses: str | None) -> tuple[np.ndarray, list[str]]:
    """``(N, M)`` 0/1 concept labels and their names (see module doc)."""
    targets = data_mod.targets_of(dataset)[indices]
    classes = _class_names(dataset)
    onehot = np.eye(len(classes))[targets]
    if isinstance(dataset, ConceptWorld):
        if superclasses:
            raise UserError("--superclasses is for image folders; the concept world has its own concept labels")
        seg = dataset.segmentation(indices)                                    # (N, 3, H, W)
        cols = [(seg[:, c] == k + 1).any(axis=(1, 2))
                for c, names in enumerate(CATEGORIES.values()) for k in range(len(names))]
        return np.concatenate([np.stack(cols, 1).astype(float), onehot], 1), \
            [n for _, n in concept_names()] + classes
    if not superclasses:
        return onehot, classes
    p = Path(superclasses)
    try:
        groups = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read --superclasses {p}: {e}") from None
    cols, names = [], []
    for sup, members in groups.items():
        unknown = [m for m in members if m not in classes]
        if unknown:
            raise UserError(f"--superclasses {p}: {sup!r} lists unknown classes {unknown[:3]}")
        cols.append(onehot[:, [classes.index(m) for m in members]].max(1))
        names.append(sup)
    return np.concatenate([onehot, np.stack(cols, 1)], 1), classes + names


def default_concept_set(dataset: Dataset) -> list[str]:
    if not isinstance(dataset, ConceptWorld):
        raise UserError("--mode clip needs --concept_set FILE (one concept per line) for this data set")
    return [n for _, n in concept_names()] + _class_names(dataset)


def load(args: argparse.Namespace, check_units: Callable[[int], None] | None = None) -> NeuronData:
    """Check every input, then compute (or read from the cache) activations and concepts.

    ``check_units(n)`` is called with the layer's number of neurons before any work starts."""
    device = runtime.resolve_device(args.device)
    activation_dir = None if args.activation_dir == "none" else args.activation_dir
    spec = MODELS.get(args.target_name)
    if spec is None:
        raise UserError(f"unknown model {args.target_name!r}; choose from {', '.join(MODELS)}")
    data = "imagenet" if args.dataset_name == "imagenet_val" else args.dataset_name
    dataset = data_mod.build_dataset(data, spec, args.data_root)
    indices = data_mod.even_subset(data_mod.targets_of(dataset), args.images)
    data_mod.check_images(dataset, indices)
    try:
        split = split_indices(len(indices), args.seed)
    except ValueError as e:
        raise UserError(f"--images {args.images}: {e}") from None
    concept_list = None
    if args.mode == "clip":
        concept_list = read_concepts(args.concept_set) if args.concept_set else default_concept_set(dataset)
        clip = load_clip(args.clip_model, args.clip_weights, device)
    loaded = load_model(args.target_name, args.weights, device)
    path = resolve_block(spec, args.target_layer) if args.target_layer in spec.blocks else args.target_layer
    try:
        loaded.model.get_submodule(path)
    except AttributeError:
        raise UserError(f"unknown layer {args.target_layer!r} for {spec.name}; use a block "
                        f"({', '.join(spec.blocks)}) or a module path") from None
    if check_units is not None:
        check_units(layer_width(loaded.model, path, dataset[int(indices[0])][0][None].to(device)))
    workers = 0 if data == "concepts" else args.workers
    described = data_mod.describe(dataset)
    model_key = {"model": spec.name, "weights_sha256": loaded.weights["sha256"],
                 "weights_source": loaded.weights["source"]}
    images_key = {"data": described, "indices_sha256": hashlib.sha256(indices.tobytes()).hexdigest()[:16]}

    act_key = {**model_key, **images_key, "layer": path, "pool": args.pool_mode}
    acts = cache.cached(activation_dir, "le_acts", act_key, lambda: {"acts": dissection.summaries(
        loaded.model, [path], data_mod.make_loader(dataset, indices, args.batch_size, workers, device),
        device, args.pool_mode)[path]})["acts"]

    if args.mode == "label":
        concept_key = {**images_key, "mode": "label", "superclasses": _file_key(args.superclasses)}

        def compute() -> dict[str, np.ndarray]:
            m, n = label_concepts(dataset, indices, args.superclasses)
            return {"p": m, "names": np.array(n)}
        arrays = cache.cached(activation_dir, "le_concepts", concept_key, compute)
        probs, names = arrays["p"], [str(n) for n in arrays["names"]]
        concept_cfg = {"mode": "label", "superclasses": args.superclasses}
    else:
        clip_dataset = data_mod.build_dataset(data, spec, args.data_root, transform=clip.preprocess)
        concept_key = {**images_key, "mode": "clip", "clip": clip.info,
                       "concepts_sha256": hashlib.sha256("\n".join(concept_list).encode()).hexdigest()}
        probs = cache.cached(activation_dir, "le_concepts", concept_key, lambda: {"p": clip_probabilities(
            clip, data_mod.make_loader(clip_dataset, indices, args.batch_size, workers, device), concept_list)})["p"]
        names = concept_list
        concept_cfg = {"mode": "clip", "clip": clip.info, "concepts": concept_list}
    config = {**model_key, "layer": path, "data": described, "images": len(indices), "pool_mode": args.pool_mode,
              "seed": args.seed, **concept_cfg}
    return NeuronData(loaded, args.target_layer, path, dataset, indices, data_mod.targets_of(dataset)[indices],
                      torch.from_numpy(np.asarray(acts, dtype=np.float64)),
                      torch.from_numpy(np.asarray(probs, dtype=np.float64)), names, split, device, config)


def _file_key(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else str(p)


@torch.no_grad()
def clip_probabilities(clip, loader, concepts: list[str]) -> np.ndarray:
    """``(N, M)`` CLIP's zero-shot probabilities: softmax over concepts of scaled cosine similarities."""
    from tqdm import tqdm
    text = clip.encode_texts(concepts)
    scale = clip.model.logit_scale.exp().float() if hasattr(clip.model, "logit_scale") else torch.tensor(100.0)
    out = [torch.softmax(scale * clip.encode_images(x) @ text.T, dim=1)
           for x, _, _ in tqdm(loader, desc="CLIP concept probabilities", unit="batch")]
    return torch.cat(out).cpu().numpy()
