"""LIME for images (``lime.lime_image.LimeImageExplainer``), with the model called in large batches on the device.

Per image, LIME splits the ``(S, S, 3)`` picture the model sees into superpixels (SLIC, or
quickshift, through LIME's own ``SegmentationAlgorithm`` wrapper), draws ``num_samples`` random
on/off patterns over them (pattern 0: all on), replaces the "off" superpixels by ``hide_color``
(default: each superpixel's mean colour), asks the model for the class probabilities of every
perturbed picture, and fits a weighted ridge regression of each explained class's probability
on the patterns (kernel width 0.25 on the cosine distance to the all-on pattern, LIME's defaults).
A superpixel's weight is its coefficient.

Two departures from calling ``LimeImageExplainer`` as is, neither of which changes its result:

- ``BatchedLimeImageExplainer.data_labels`` builds the perturbed pictures on the device in one
  indexing step per batch (``where(keep[:, segments], image, fudged)``) instead of LIME's Python loop
  over samples and superpixels, with the same random patterns from the same ``random_state``; the
  model sees pixels and is normalised inside the classifier function (``images.normalise``).
- SLIC is asked to number superpixels from 0 (``start_label=0``). LIME assumes labels
  ``0..F-1``; scikit-image's SLIC starts at 1 by default, and LIME would then never hide the last
  superpixel and carry a feature (0) that covers no pixel.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from lime import lime_image
from lime.wrappers.scikit_image import SegmentationAlgorithm
from torch import nn
from tqdm import tqdm

from ..core.errors import UserError
from ..core.models import ModelSpec
from ..data.images import normalise

SEGMENTATIONS = ("slic", "quickshift")
KERNEL_WIDTH = 0.25        # LimeImageExplainer's default


@dataclass(frozen=True)
class LimeConfig:
    """Every setting of a LIME run (all of it goes into parameters.json and the manifest)."""
    segmentation: str = "slic"
    n_segments: int = 50           # slic: about this many superpixels
    compactness: float = 10.0      # slic: higher = squarer superpixels
    sigma: float = 1.0             # slic: Gaussian smoothing before segmenting
    kernel_size: float = 4.0       # quickshift (LIME's defaults)
    max_dist: float = 200.0
    ratio: float = 0.2
    hide_color: int | None = 0     # pixel value of hidden superpixels; None: each superpixel's mean colour
    num_features: int = 5          # superpixels in the mask: the top positive ones
    num_samples: int = 1000        # perturbed pictures per image
    top_labels: int = 5            # classes explained when target is None (top-1 first)
    target: int | str | None = None  # class to explain: an index, "label" (each image's true class) or
                                     # None (each image's top-1 prediction)
    seed: int = 0                  # LIME's random_state, per image; quickshift's rng

    def __post_init__(self):
        if self.segmentation not in SEGMENTATIONS:
            raise UserError(f"unknown segmentation {self.segmentation!r}; choose from {', '.join(SEGMENTATIONS)}")
        for name in ("n_segments", "num_features", "num_samples", "top_labels"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("compactness", "kernel_size", "max_dist", "ratio"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.sigma < 0:
            raise UserError(f"--sigma must be 0 or more, got {self.sigma}")
        if self.hide_color is not None and not 0 <= self.hide_color <= 255:
            raise UserError(f"--hide_color must be 'mean' or a pixel value 0..255, got {self.hide_color}")

    def segmenter(self) -> SegmentationAlgorithm:
        """LIME's wrapper around scikit-image's segmentation, with these settings."""
        return SegmentationAlgorithm(self.segmentation, **self.segmentation_params())

    def segmentation_params(self) -> dict:
        if self.segmentation == "slic":
            return {"n_segments": self.n_segments, "compactness": self.compactness, "sigma": self.sigma,
                    "start_label": 0}
        return {"kernel_size": self.kernel_size, "max_dist": self.max_dist, "ratio": self.ratio, "rng": self.seed}

    def parameters(self) -> dict:
        """Everything LIME was run with, for parameters.json."""
        return {**asdict(self), "hide_color": "mean" if self.hide_color is None else self.hide_color,
                "segmentation_params": self.segmentation_params(), "kernel_width": KERNEL_WIDTH,
                "kernel": "sqrt(exp(-d^2 / kernel_width^2))", "distance_metric": "cosine",
                "feature_selection": "auto (highest_weights: every superpixel)",
                "model_regressor": "Ridge(alpha=1)", "explained_value": "softmax probability",
                "lime_version": metadata.version("lime")}


class Classifier:
    """LIME's ``classifier_fn``: pictures ``(n, S, S, 3)`` uint8 (numpy or a tensor on any device)
    -> softmax probabilities ``(n, K)`` as numpy, the model run ``batch_size`` pictures at a time."""

    def __init__(self, model: nn.Module, spec: ModelSpec, device: torch.device, batch_size: int):
        if batch_size < 1:
            raise UserError(f"--batch_size must be at least 1, got {batch_size}")
        self.model, self.spec, self.device, self.batch_size = model, spec, device, batch_size

    @torch.no_grad()
    def __call__(self, pictures) -> np.ndarray:
        pictures = torch.as_tensor(pictures, device=self.device)
        probs = [self.model(normalise(chunk, self.spec)).float().softmax(1) for chunk in pictures.split(self.batch_size)]
        return torch.cat(probs).cpu().numpy()


class BatchedLimeImageExplainer(lime_image.LimeImageExplainer):
    """``LimeImageExplainer`` whose neighbourhood is built on the device, ``batch_size`` pictures at once."""

    def __init__(self, device: torch.device, **kwargs):
        super().__init__(**kwargs)
        self.device = device

    def data_labels(self, image: np.ndarray, fudged_image: np.ndarray, segments: np.ndarray, classifier_fn,
                    num_samples: int, batch_size: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The same ``(data (num_samples, F), labels (num_samples, K))`` as LIME's own, in batches."""
        n_features = np.unique(segments).shape[0]
        if segments.min() != 0 or segments.max() != n_features - 1:
            raise ValueError(f"LIME needs superpixels numbered 0..{n_features - 1}, got {segments.min()}..{segments.max()}")
        data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
        data[0, :] = 1
        seg = torch.from_numpy(segments).to(self.device).long()                     # (S, S)
        img, fudged = (torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in (image, fudged_image))
        keep = torch.from_numpy(data).to(self.device).bool()                         # (num_samples, F)
        labels = [classifier_fn(torch.where(rows[:, seg][..., None], img, fudged))   # (n, S, S, 3) -> (n, K)
                  for rows in keep.split(batch_size)]
        return data, np.concatenate(labels)


@dataclass
class LimeResult:
    """Every image's explanation, on the CPU. ``K`` = top_labels, or 1 for a fixed target."""
    labels: np.ndarray           # (N, K) classes explained, the target first
    heatmaps: np.ndarray         # (N, K, S, S) float32: each pixel's superpixel weight for each class
    masks: np.ndarray            # (N, S, S) uint8: 1 on the num_features top positive superpixels of the target
    segments: np.ndarray         # (N, S, S) int32 superpixel of each pixel
    probability: np.ndarray      # (N,) softmax probability of the target
    top1: np.ndarray             # (N,) predicted class
    intercept: np.ndarray        # (N,) ridge intercept for the target
    score: np.ndarray            # (N,) R^2 of the ridge fit (weighted) for the target
    local_pred: np.ndarray       # (N,) the fit's prediction for the whole image
    seconds: float               # all images
    times: np.ndarray            # (N,) seconds per image


def join(parts: list[LimeResult]) -> LimeResult:
    """Consecutive batches' results as one; ``labels`` and ``heatmaps`` padded to the largest K
    (class -1, weight 0), as ``explain_images`` pads them."""
    k = max(p.labels.shape[1] for p in parts)

    def pad(a: np.ndarray, value) -> np.ndarray:
        return np.pad(a, [(0, 0), (0, k - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=value)
    fields = ("masks", "segments", "probability", "top1", "intercept", "score", "local_pred", "times")
    joined = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}
    return LimeResult(np.concatenate([pad(p.labels, -1) for p in parts]),
                      np.concatenate([pad(p.heatmaps, 0) for p in parts]),
                      seconds=sum(p.seconds for p in parts), **joined)


def explain_image(pixels: np.ndarray, classifier: Classifier, cfg: LimeConfig) -> dict:
    """LIME on one ``(S, S, 3)`` uint8 picture; a fresh explainer seeded with ``cfg.seed``.
    ``cfg.target``: a class index or None (the ``top_labels`` top classes)."""
    explainer = BatchedLimeImageExplainer(classifier.device, kernel_width=KERNEL_WIDTH, random_state=cfg.seed)
    fixed = cfg.target is not None
    exp = explainer.explain_instance(
        pixels, classifier, labels=(cfg.target,) if fixed else (), hide_color=cfg.hide_color,
        top_labels=None if fixed else cfg.top_labels, num_samples=cfg.num_samples,
        batch_size=classifier.batch_size, segmentation_fn=cfg.segmenter(), random_seed=cfg.seed)
    labels = [cfg.target] if fixed else [int(c) for c in exp.top_labels]
    n_features = int(exp.segments.max()) + 1
    heat = np.zeros((len(labels), n_features), dtype=np.float32)
    for k, c in enumerate(labels):
        for f, w in exp.local_exp[c]:
            heat[k, f] = w
    _, mask = exp.get_image_and_mask(labels[0], positive_only=True, num_features=cfg.num_features, hide_rest=False)
    # LIME keeps score and local_pred of the class fitted last: the top-1 (fitted in ascending order) or the target.
    return {"labels": np.array(labels), "heatmaps": heat[:, exp.segments], "masks": mask.astype(np.uint8),
            "segments": exp.segments.astype(np.int32), "intercept": float(exp.intercept[labels[0]]),
            "score": float(exp.score), "local_pred": float(np.ravel(exp.local_pred)[0])}


# The LIME settings a --params_file may set per image (the run's own: target, seed, stay).
PER_IMAGE = ("segmentation", "n_segments", "compactness", "sigma", "kernel_size", "max_dist", "ratio", "hide_color",
             "num_features", "num_samples", "top_labels")


def per_image_configs(cfg: LimeConfig, ids: Sequence[str], params: Mapping[str, Mapping]) -> list[LimeConfig]:
    """``cfg`` for every image, overridden by ``params`` (image id or file name -> settings of
    ``PER_IMAGE``; ``hide_color`` may be ``"mean"``); one line for an unknown image or setting."""
    by_id = {str(i): k for k, i in enumerate(ids)}
    out = [cfg] * len(ids)
    for key, settings in params.items():
        k = by_id.get(str(key), by_id.get(Path(str(key)).stem))
        if k is None:
            raise UserError(f"--params_file names image {key!r}, which is not among the run's images "
                            f"({', '.join(list(by_id)[:5])}{' ...' if len(by_id) > 5 else ''})")
        if not isinstance(settings, Mapping):
            raise UserError(f"--params_file: the settings of image {key!r} must be a JSON object, got {settings!r}")
        unknown = [name for name in settings if name not in PER_IMAGE]
        if unknown:
            raise UserError(f"--params_file: {unknown[0]!r} (image {key!r}) is not a LIME setting; "
                            f"choose from {', '.join(PER_IMAGE)}")
        values = {name: None if name == "hide_color" and v == "mean" else v for name, v in settings.items()}
        try:
            out[k] = replace(cfg, **values)
        except TypeError as e:
            raise UserError(f"--params_file: a setting of image {key!r} has the wrong type ({e})") from None
    return out


def explain_images(model: nn.Module, spec: ModelSpec, pixels: np.ndarray, cfg: LimeConfig, batch_size: int,
                   device: torch.device, labels: np.ndarray | None = None,
                   configs: Sequence[LimeConfig] | None = None) -> LimeResult:
    """LIME on every picture of ``pixels (N, S, S, 3)`` uint8, the model called ``batch_size``
    pictures at a time; ``labels (N,)``, the true classes, are explained when ``cfg.target`` is
    ``"label"``; ``configs`` (one per picture, ``per_image_configs``) replaces ``cfg`` per picture.
    With per-picture ``top_labels``, ``labels`` and ``heatmaps`` are padded to the largest K
    (class -1, weight 0)."""
    if cfg.target == "label" and labels is None:
        raise ValueError("target 'label' needs the images' labels")
    classifier = Classifier(model, spec, device, batch_size)
    probs = classifier(pixels)                                                       # (N, K) unperturbed
    configs = list(configs) if configs is not None else [cfg] * len(pixels)
    if cfg.target == "label":
        configs = [replace(c, target=int(y)) for c, y in zip(configs, labels)]
    progress = tqdm(zip(pixels, configs), total=len(pixels), desc=f"LIME ({cfg.num_samples} samples)", unit="image")
    per_image, times = [], []
    for p, c in progress:
        start = time.perf_counter()
        per_image.append(explain_image(p, classifier, c))
        times.append(time.perf_counter() - start)
    k = max(len(r["labels"]) for r in per_image)
    for r in per_image:
        pad = k - len(r["labels"])
        r["labels"] = np.concatenate([r["labels"], np.full(pad, -1)])
        r["heatmaps"] = np.concatenate([r["heatmaps"], np.zeros((pad, *r["heatmaps"].shape[1:]), np.float32)])
    out = {key: np.stack([r[key] for r in per_image]) for key in per_image[0]}
    target = out["labels"][:, 0]
    return LimeResult(out["labels"], out["heatmaps"], out["masks"], out["segments"],
                      probs[np.arange(len(target)), target], probs.argmax(1), out["intercept"], out["score"],
                      out["local_pred"], float(sum(times)), np.array(times))
