"""What linear explanations and their simulation share: one layer's summary activations and the
concept probabilities of the same images, with a seeded train/val/test split.

Concept probabilities ``P(concept | image)``, ``(N, M)``:

- ``label`` mode on the concept world: the image's shape, colour and background texture (11
  concept labels) and its class (12, named like ``red circle``), each 0 or 1;
  on an image folder: its class, plus superclasses from ``superclasses`` (a JSON file
  ``{"superclass": ["class folder", ...]}``), 0 or 1.
- ``siglip`` mode (the original's): ``sigmoid(a (cos + b))`` of each image-concept cosine
  similarity, with the calibration ``(a, b)`` of the model (``SIGMOID``: the explainer
  ViT-L-16-SigLIP-384 60, -0.09; the simulator ViT-SO400M-14-SigLIP-384 58, -0.13), from an
  open_clip model with local weights.
- ``clip`` mode (ours): CLIP's zero-shot probabilities over the concept set (softmax of its scaled
  image-text cosine similarities).

Activations and concept matrices are cached in ``activation_dir`` under a key of everything that
affects them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
import torch

from ..core.clip import DEFAULT_MODEL, DEFAULT_WEIGHTS, Clip, load_clip, read_concepts
from ..core.errors import UserError
from ..core.layers import resolve_layer
from ..data.concepts import CATEGORIES, CLASSES, ConceptWorld, concept_names
from ..data.images import Images, Source
from ..dissection.netdissect import POOLS, summaries
from ..io import cache, layout
from .linear import split_indices

if TYPE_CHECKING:
    from ..pipeline.session import Session

MODES = ("label", "siglip", "clip")
# The original's calibration of each image-text model: P = sigmoid(a (cos + b)), and its weights.
SIGMOID = {"ViT-SO400M-14-SigLIP-384": (58.0, -0.13), "ViT-L-16-SigLIP-384": (60.0, -0.09),
           "ViT-L-14-336": (58.0, -0.25)}
CHECKPOINTS = {"ViT-SO400M-14-SigLIP-384": "webli", "ViT-L-16-SigLIP-384": "webli", "ViT-L-16-SigLIP-256": "webli",
               "ViT-B-16-SigLIP-384": "webli", "ViT-g-14": "laion2b_s34b_b88k", "ViT-L-14-336": "openai",
               "ViT-B-16": "openai"}
EXPLAINER, SIMULATOR = "ViT-L-16-SigLIP-384", "ViT-SO400M-14-SigLIP-384"   # the original's --clip_name defaults
# Where the original keeps its concept files (data/concept_sets of its repository); placed here too,
# they are its data sets' defaults (original_concept_files).
CONCEPT_SETS = Path("data/concept_sets")
POOL_MODES = (*POOLS, "first")     # Linear-Explanations' --pool_mode: first is a token layer's class token
SPLIT = "70/10/20"          # train/val/test fractions of split_indices, recorded in the manifests


@dataclass(frozen=True)
class ConceptConfig:
    """Where the concept probabilities come from: ``mode`` label or clip (see module doc);
    ``superclasses`` (label mode on an image folder), ``concept_set`` (clip mode: a file of one
    concept per line; default the concept world's concepts and classes), ``clip_model`` and
    ``clip_weights`` (clip mode, see ``core.clip``)."""
    mode: str = "label"
    superclasses: str | None = None
    concept_set: str | None = None
    clip_model: str = DEFAULT_MODEL
    clip_weights: str = DEFAULT_WEIGHTS
    sigmoid: tuple[float, float] | None = None     # siglip mode: (a, b); None: SIGMOID[clip_model]
    concepts: tuple[str, ...] | None = None         # the concepts themselves, instead of a concept_set file

    def __post_init__(self):
        if self.mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "siglip" and self.calibration() is None:
            raise UserError(f"--mode siglip has no calibration for {self.clip_model}: pass --sigmoid_a and "
                            f"--sigmoid_b (the original's: {', '.join(f'{m} {a:g}, {b:g}' for m, (a, b) in SIGMOID.items())})")

    def calibration(self) -> tuple[float, float] | None:
        return self.sigmoid or SIGMOID.get(self.clip_model)


@dataclass(frozen=True)
class NeuronDataConfig:
    """The layer (a block name or module path), how a unit's map is summarised per image
    (``pool_mode``: spatial mean or max), the concepts, and the cache folder (None: no cache)."""
    layer: str = "block_4"
    pool_mode: str = "avg"
    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    activation_dir: str | None = str(layout.activations_dir())
    split_dir: str | None = None     # the original's train_ids.pt, val_ids.pt, test_ids.pt; None: seeded 70/10/20

    def __post_init__(self):
        if self.pool_mode not in POOL_MODES:
            raise UserError(f"--pool_mode must be one of {', '.join(POOL_MODES)}, got {self.pool_mode!r}")


@dataclass
class NeuronData:
    """One layer's summary activations and the concept probabilities of the same ``N`` images."""
    images: Images                 # the session's N images, in order
    layer: str                     # as given (block name or path)
    path: str                      # module path
    acts: torch.Tensor             # (N, U) summary activations, float64
    concepts: torch.Tensor         # (N, M) concept probabilities, float64
    names: list[str]               # (M,) concept names
    split: dict[str, np.ndarray]   # positions 0..N-1 of each split
    config: dict                   # what identifies these data in a manifest

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(concepts (n, M), acts (n, U))`` of one split."""
        idx = torch.from_numpy(self.split[name])
        return self.concepts[idx], self.acts[idx]

    def split_images(self, name: str) -> Images:
        """The images of one split, in order."""
        return Images(self.images.source, self.images.indices[self.split[name]])


def class_names(source: Source) -> list[str]:
    """The classes as concept names: the concept world's as ``red circle``, a folder's as they are."""
    if isinstance(source, ConceptWorld):
        return [" ".join(c.split("_")[1:]) for c in CLASSES]
    return list(source.classes)


def label_concepts(images: Images, superclasses: str | None, class_file: str | None = None
                   ) -> tuple[np.ndarray, list[str]]:
    """``(N, M)`` 0/1 concept labels of the images and their names (see module doc).

    On an image folder the classes are named by ``class_file`` (one name per line in class order,
    as the original's ``<dataset>_labels_clean.txt``) or by their folders; ``superclasses`` (JSON
    ``{"superclass": [class, ...]}``, each class a folder name or a class index, as the original's
    ``<dataset>_superclass_to_ids.json``; ``_`` in a superclass name reads as a space) adds one
    concept per superclass."""
    source = images.source
    classes = class_names(source)
    onehot = np.eye(len(classes))[images.labels]
    if isinstance(source, ConceptWorld):
        if superclasses or class_file:
            raise UserError("--superclasses and a label-mode --concept_set are for image folders; the concept world "
                            "has its own concept labels")
        seg = source.segmentation(images.indices)                              # (N, 3, H, W)
        cols = [(seg[:, c] == k + 1).any(axis=(1, 2))
                for c, names in enumerate(CATEGORIES.values()) for k in range(len(names))]
        return np.concatenate([np.stack(cols, 1).astype(float), onehot], 1), \
            [n for _, n in concept_names()] + classes
    folders = classes
    if class_file:
        named = [w.strip() for w in Path(class_file).read_text().splitlines() if w.strip()] \
            if Path(class_file).is_file() else None
        if named is None:
            raise UserError(f"class names file {class_file} not found")
        if len(named) != len(classes):
            raise UserError(f"{class_file} names {len(named)} classes, the data has {len(classes)}")
        classes = named
    if not superclasses:
        return onehot, classes
    p = Path(superclasses)
    try:
        groups = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read --superclasses {p}: {e}") from None
    cols, names = [], []
    for sup, members in groups.items():
        index = [m if isinstance(m, int) and 0 <= m < len(folders) else folders.index(m) if m in folders else None
                 for m in members]
        unknown = [m for m, i in zip(members, index) if i is None]
        if unknown:
            raise UserError(f"--superclasses {p}: {sup!r} lists unknown classes {unknown[:3]}")
        cols.append(onehot[:, index].max(1))
        names.append(sup.replace("_", " "))
    return np.concatenate([onehot, np.stack(cols, 1)], 1), classes + names


def original_concept_files(data: str, mode: str, folder: str | Path = CONCEPT_SETS) -> dict[str, str]:
    """The original's default concept files for its data sets (``imagenet_val``, ``places365_val``,
    ``cifar100_val``, or ``imagenet`` / ``places365``) that are present in ``folder``: in label mode
    the class names ``<dataset>_labels_clean.txt`` (``concept_set``) and, for ImageNet and CIFAR-100,
    the superclasses ``<dataset>_superclass_to_ids.json`` (``superclasses``); in siglip and clip mode
    the concept list ``combined_concepts_<dataset>.txt`` (``concept_set``)."""
    if data not in ("imagenet", "imagenet_val", "places365", "places365_val", "cifar100_val"):
        return {}
    name, folder = data.split("_")[0], Path(folder)
    files = {"concept_set": folder / f"{name}_labels_clean.txt"} if mode == "label" else \
        {"concept_set": folder / f"combined_concepts_{name}.txt"}
    if mode == "label" and name in ("imagenet", "cifar100"):
        files["superclasses"] = folder / f"{name}_superclass_to_ids.json"
    return {k: str(v) for k, v in files.items() if v.is_file()}


def default_concept_set(source: Source) -> list[str]:
    if not isinstance(source, ConceptWorld):
        raise UserError("--mode siglip or clip needs --concept_set FILE (one concept per line) for this data set; "
                        "the original's, data/concept_sets/combined_concepts_<imagenet|places365|cifar100>.txt, "
                        "are read from there for its data sets")
    return [n for _, n in concept_names()] + class_names(source)


def load_activations(session: Session, cfg: NeuronDataConfig) -> NeuronData:
    """Check every input, then compute (or read from the cache) the activations of ``cfg.layer``
    and the concepts of the session's images, split by the session's seed."""
    images = session.images
    if cfg.split_dir is not None:
        split, split_record = read_split(cfg.split_dir, images.indices), f"files {_split_key(cfg.split_dir)}"
    else:
        try:
            split = split_indices(len(images), session.seed)
        except ValueError as e:
            raise UserError(f"--images {len(images)}: {e}") from None
        split_record = SPLIT
    concepts = cfg.concepts
    if concepts.mode != "label":
        concept_list = list(concepts.concepts) if concepts.concepts else read_concepts(concepts.concept_set) \
            if concepts.concept_set else default_concept_set(images.source)
        clip = load_clip(concepts.clip_model, concepts.clip_weights, session.device)
    path = resolve_layer(session.spec, cfg.layer, session.model)
    w = session.loaded.weights
    model_key = {"model": session.spec.name, "weights_sha256": w["sha256"], "weights_source": w["source"]}
    images_key = {"data": images.describe(),
                  "indices_sha256": hashlib.sha256(images.indices.tobytes()).hexdigest()[:16]}
    act_key = {**model_key, **images_key, "layer": path, "pool": cfg.pool_mode, "tokens": cfg.pool_mode}
    # Token layers are pooled as the original's --pool_mode says (mean, max or class token); under
    # torchrun each rank computes its batches (Session.per_image).
    acts = cache.cached(cfg.activation_dir, "le_acts", act_key, lambda: {"acts": session.per_image(
        lambda loader: summaries(session.model, [path], loader, session.device, cfg.pool_mode,
                                 cfg.pool_mode)[path])})["acts"]
    if concepts.mode == "label":
        concept_key = {**images_key, "mode": "label", "superclasses": _file_key(concepts.superclasses),
                       "class_names": _file_key(concepts.concept_set)}

        def compute() -> dict[str, np.ndarray]:
            m, n = label_concepts(images, concepts.superclasses, concepts.concept_set)
            return {"p": m, "names": np.array(n)}
        arrays = cache.cached(cfg.activation_dir, "le_concepts", concept_key, compute)
        probs, names = arrays["p"], [str(n) for n in arrays["names"]]
        concept_cfg = {"mode": "label", "superclasses": concepts.superclasses, "class_names": concepts.concept_set}
    else:
        calibration = concepts.calibration() if concepts.mode == "siglip" else None
        concept_key = {**images_key, "mode": concepts.mode, "clip": clip.info, "sigmoid": calibration,
                       "concepts_sha256": hashlib.sha256("\n".join(concept_list).encode()).hexdigest()}
        probs = cache.cached(cfg.activation_dir, "le_concepts", concept_key, lambda: {"p": session.per_image(
            lambda loader: clip_probabilities(clip, loader, concept_list, calibration),
            transform=clip.preprocess)})["p"]
        names = concept_list
        concept_cfg = {"mode": concepts.mode, "clip": clip.info, "concepts": concept_list,
                       **({"sigmoid": list(calibration)} if calibration else {})}
    config = {**session.config(), "layer": path, "pool_mode": cfg.pool_mode, "split": split_record, **concept_cfg}
    return NeuronData(images, cfg.layer, path, torch.from_numpy(np.asarray(acts, dtype=np.float64)),
                      torch.from_numpy(np.asarray(probs, dtype=np.float64)), names, split, config)


SPLIT_FILES = ("train_ids.pt", "val_ids.pt", "test_ids.pt")


def read_split(folder: str | Path, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The original's split files of ``folder`` (``train_ids.pt``, ``val_ids.pt``, ``test_ids.pt``:
    1-D tensors of data-set indices, as its ``data/data_splits/<dataset>/``) as positions into the
    chosen images ``indices``; one line if a file is missing or unreadable, the splits overlap, or
    an id is not among the chosen images (the files index the whole data set: choose all of it)."""
    folder = Path(folder)
    where = {int(i): k for k, i in enumerate(indices)}
    out, seen = {}, set()
    for name, file in zip(("train", "val", "test"), SPLIT_FILES):
        path = folder / file
        if not path.is_file():
            raise UserError(f"split file {path} not found (the original's data/data_splits/<dataset>/ holds "
                            f"{', '.join(SPLIT_FILES)})")
        try:
            ids = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises several types for unreadable files
            raise UserError(f"cannot read split file {path} ({str(e).splitlines()[0]})") from None
        ids = [int(i) for i in torch.as_tensor(ids).reshape(-1)]
        missing = [i for i in ids if i not in where]
        if missing:
            raise UserError(f"{path} names image {missing[0]}, which is not among the {len(indices)} images chosen; "
                            f"the split files index the whole data set: choose all of it with --images")
        if seen & set(ids):
            raise UserError(f"{path} repeats images of another split (e.g. {sorted(seen & set(ids))[0]})")
        seen |= set(ids)
        out[name] = np.sort(np.array([where[i] for i in ids], dtype=np.int64))
    return out


def _split_key(folder: str | Path) -> str:
    return hashlib.sha256(b"".join((Path(folder) / f).read_bytes() for f in SPLIT_FILES)).hexdigest()[:16]


def _file_key(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else str(p)


def siglip_probabilities(cos: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """The original's SigLIP concept probabilities: ``sigmoid(a (cos + b))`` of cosine similarities."""
    return torch.sigmoid(a * (cos + b))


@torch.no_grad()
def clip_probabilities(clip: Clip, loader: Iterable, concepts: list[str],
                       calibration: tuple[float, float] | None = None) -> np.ndarray:
    """``(N, M)`` concept probabilities of batches ``(x (B, 3, S, S) in CLIP's preprocessing, labels,
    indices)``: with ``calibration (a, b)`` the siglip mode's ``siglip_probabilities`` of the
    image-concept cosine similarities, else CLIP's zero-shot softmax over concepts of the scaled
    similarities (clip mode)."""
    from tqdm import tqdm
    text = clip.encode_texts(concepts)
    scale = clip.model.logit_scale.exp().float() if hasattr(clip.model, "logit_scale") else torch.tensor(100.0)
    out = []
    for x, _, _ in tqdm(loader, desc="concept probabilities", unit="batch"):
        cos = clip.encode_images(x) @ text.T
        out.append(siglip_probabilities(cos, *calibration) if calibration else torch.softmax(scale * cos, dim=1))
    return torch.cat(out).cpu().numpy()
