"""The Grad-CAM family, batched on the device: Grad-CAM, Grad-CAM++, Score-CAM, Ablation-CAM, Eigen-CAM.

Each method reads the activations ``A (B, C, h, w)`` of one layer, exactly as the layer produced them,
and makes one map per image, ``cam (B, h, w)``; ``finish`` then does what pytorch-grad-cam does:
ReLU, min-max normalisation per image, bilinear upsampling to the input size (half-pixel centres,
as ``cv2.resize``), min-max again. Maps lie in [0, 1]. ``S`` is the target class's logit.

- **Gradient family**, one forward and one backward pass that stops at the layer:
  ``gradcam``: ``cam = Σ_c w_c A_c`` with ``w_c = mean_ij ∂S/∂A_cij``;
  ``gradcampp``: ``w_c = Σ_ij relu(g_cij) α_cij``, ``α = g² / (2g² + Σ_ij A_c · g³ + 1e-6)`` where
  ``g ≠ 0``, else 0 (eq. 19 of Chattopadhyay et al., as pytorch-grad-cam computes it).
- **Perturbation family**, masked forward passes in chunks of ``batch_size`` rows:
  ``scorecam``: one input per (image, channel): the input times the channel's map, upsampled
  (bilinear, corners aligned, as pytorch-grad-cam) and min-max scaled to [0, 1]; ``w`` = softmax over
  channels of ``S`` of those inputs. Chunks run across images.
  ``ablationcam``: ``w_c = (S - S_c) / S`` where ``S_c`` is the score with channel ``c`` ablated:
  set to 0 when the image's activations have minimum 0 (a post-ReLU layer), else to that minimum
  - 1e7, so that a following ReLU zeroes it (pytorch-grad-cam's rule). The layers below run once
  per chunk, on one image; the layer's output is replaced by the chunk's ablated copies. So the rest
  of the model must read nothing but the layer's output from below it (true of the registered CAM
  layers); a layer inside a dense block is refused with an error.
- **Eigen-CAM**: the centred activations ``(hw, C)`` projected on their first right singular
  vector. The sign of a singular vector is arbitrary: it is chosen so that the value of largest
  magnitude is positive (pytorch-grad-cam's ``get_2d_projection_with_sign_correction``; its
  ``EigenCAM`` leaves the sign to LAPACK).

Every forward hook goes through ``tap``, a context manager that removes it on exit and on error.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..core.errors import UserError
from ..core.hooks import Recording, capture
from ..core.models import ModelSpec
from ..data.images import normalise

METHODS = ("gradcam", "gradcampp", "scorecam", "ablationcam", "eigencam")
GRADIENT_METHODS = ("gradcam", "gradcampp")


@dataclass(frozen=True)
class CamConfig:
    """What a CAM run computes (all of it goes into the manifest)."""
    methods: tuple[str, ...]
    layer: str
    target: int | str | None   # class to explain: an index, "label" (each image's true class) or None
                               # (each image's top-1 prediction)

    def __post_init__(self):
        check_methods(self.methods)


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """``methods`` as a tuple, or a one-line error for an unknown, repeated or missing method."""
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"unknown method {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise UserError(f"--methods lists a method twice: {','.join(methods)}")
    return tuple(methods)


def probe(model: nn.Module, spec: ModelSpec, pixels: np.ndarray, cfg: CamConfig, device: torch.device) -> None:
    """Fail at once, on the first of ``pixels (N, S, S, 3)`` uint8, where ``cfg.layer`` cannot serve
    ``cfg.methods``: it must give a feature map (``cfg.layer`` a module path: ``core.layers.resolve_layer``
    checks it exists), and for ablationcam it must cut the network."""
    x = normalise(torch.from_numpy(pixels[:1]).to(device), spec)              # (1, 3, S, S)
    p = layer_pass(model, cfg.layer, x, None, gradients=False)
    if "ablationcam" in cfg.methods:
        with torch.no_grad():
            _ablated_logits(model, cfg.layer, x, p.activations[0], torch.arange(2, device=device))


@contextmanager
def tap(model: nn.Module, layer: str, replace: Callable[[torch.Tensor], torch.Tensor] | None = None
        ) -> Iterator[Recording]:
    """Inside the block, a forward pass records ``layer``'s output ``(B, C, h, w)`` in
    ``rec.leaves[layer]`` as a leaf tensor (requiring grad when grad mode is on), so a backward
    pass from the logits stops at the layer. The model goes on with a copy, so in-place operations
    after the layer (DenseNet's ``F.relu(inplace=True)`` on ``norm5``) leave the recorded values as
    the layer made them; or with ``replace(activations)`` when given."""

    def go_on(path: str, leaf) -> torch.Tensor:
        if not isinstance(leaf, torch.Tensor) or leaf.dim() != 4:
            shape = tuple(leaf.shape) if isinstance(leaf, torch.Tensor) else type(leaf).__name__
            raise UserError(f"layer {layer!r} gives {shape}; a CAM needs a (B, C, H, W) feature map")
        return leaf.clone() if replace is None else replace(leaf)

    with capture(model, [layer], cut=True, replace=go_on) as rec:
        yield rec


@dataclass
class LayerPass:
    """One forward pass (and, for the gradient family, one backward pass) of a batch."""
    activations: torch.Tensor         # (B, C, h, w)
    gradients: torch.Tensor | None    # (B, C, h, w) ∂S/∂A, or None
    logits: torch.Tensor              # (B, K)
    target: torch.Tensor              # (B,) class explained
    score: torch.Tensor               # (B,) its logit S


def layer_pass(model: nn.Module, layer: str, x: torch.Tensor, target: int | torch.Tensor | None,
               gradients: bool) -> LayerPass:
    """Activations of ``layer`` for ``x (B, 3, H, W)``, the logits, and ``∂S/∂A`` if ``gradients``.
    ``target``: one class for every image, a ``(B,)`` tensor of classes, or None (the top-1)."""
    with tap(model, layer) as rec, torch.set_grad_enabled(gradients):
        logits = model(x)                                                     # (B, K)
        if target is None:
            t = logits.argmax(1)
        elif isinstance(target, torch.Tensor):
            t = target.to(x.device)
        else:
            t = torch.full((len(x),), target, device=x.device)
        score = logits.gather(1, t[:, None]).squeeze(1)                       # (B,)
    acts = rec.leaves[layer]
    grads = torch.autograd.grad(score.sum(), acts)[0] if gradients else None
    return LayerPass(acts.detach(), grads, logits.detach(), t, score.detach())


# --- channel weights, one function per method family ------------------------------------------------


def gradient_weights(p: LayerPass, method: str) -> torch.Tensor:
    """``(B, C)`` Grad-CAM or Grad-CAM++ weights from the gradients of ``p``."""
    g, a = p.gradients, p.activations
    if method == "gradcam":
        return g.mean((2, 3))
    g2 = g * g
    alpha = g2 / (2 * g2 + a.sum((2, 3), keepdim=True) * g2 * g + 1e-6)      # (B, C, h, w)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    return (g.clamp(min=0) * alpha).sum((2, 3))


def perturbation_weights(model: nn.Module, layer: str, x: torch.Tensor, p: LayerPass, method: str,
                         batch_size: int) -> torch.Tensor:
    """``(B, C)`` Score-CAM or Ablation-CAM weights: ``B x C`` masked forward passes, ``batch_size`` at a time."""
    if method == "scorecam":
        return _score_cam_scores(model, x, p, batch_size).softmax(1)
    ablated = _ablation_scores(model, layer, x, p, batch_size)                # (B, C)
    return (p.score[:, None] - ablated) / p.score[:, None]


def _score_cam_scores(model: nn.Module, x: torch.Tensor, p: LayerPass, batch_size: int) -> torch.Tensor:
    """``(B, C)`` target logits of the inputs masked by each channel's normalised map."""
    b_, c_ = p.activations.shape[:2]
    scores = torch.empty(b_ * c_, device=x.device)
    with torch.no_grad():
        for start in tqdm(range(0, b_ * c_, batch_size), desc="scorecam masked inputs", unit="batch", leave=False):
            rows = torch.arange(start, min(start + batch_size, b_ * c_), device=x.device)
            img, ch = rows // c_, rows % c_                                   # (n,) image and channel of each row
            maps = F.interpolate(p.activations[img, ch][:, None], size=x.shape[-2:], mode="bilinear",
                                 align_corners=True)                          # (n, 1, H, W)
            lo, hi = maps.amin((2, 3), keepdim=True), maps.amax((2, 3), keepdim=True)
            logits = model(x[img] * ((maps - lo) / (hi - lo + 1e-8)))         # (n, K)
            scores[rows] = logits.gather(1, p.target[img][:, None]).squeeze(1)
    return scores.view(b_, c_)


def _ablation_scores(model: nn.Module, layer: str, x: torch.Tensor, p: LayerPass, batch_size: int) -> torch.Tensor:
    """``(B, C)`` target logits with one channel of the layer ablated per row."""
    b_, c_ = p.activations.shape[:2]
    scores = torch.empty(b_, c_, device=x.device)
    with torch.no_grad(), tqdm(total=b_ * c_, desc="ablationcam channels", unit="channel", leave=False) as bar:
        for b in range(b_):
            for start in range(0, c_, batch_size):
                ch = torch.arange(start, min(start + batch_size, c_), device=x.device)
                scores[b, ch] = _ablated_logits(model, layer, x[b:b + 1], p.activations[b], ch)[:, p.target[b]]
                bar.update(len(ch))
    return scores


def _ablated_logits(model: nn.Module, layer: str, x: torch.Tensor, a: torch.Tensor, ch: torch.Tensor) -> torch.Tensor:
    """Logits ``(n, K)`` of one image ``x (1, 3, H, W)`` with channel ``ch[i]`` of its activations
    ``a (C, h, w)`` ablated in row ``i``. The layers below run once; the layer's output is replaced."""
    low = a.min()
    value = torch.where(low == 0, torch.zeros_like(low), low - 1e7)

    def ablate(output: torch.Tensor) -> torch.Tensor:
        out = a.expand(len(ch), -1, -1, -1).clone()                           # (n, C, h, w)
        out[torch.arange(len(ch), device=a.device), ch] = value
        return out

    try:
        with tap(model, layer, replace=ablate):
            logits = model(x)                                                 # (n, K)
    except RuntimeError as e:
        raise UserError(f"ablationcam: the model reads more than {layer!r}'s output after it "
                        f"({str(e).splitlines()[0]}); choose a layer that cuts the network, "
                        f"such as the model's CAM layer") from None
    if logits.shape[0] != len(ch):
        raise UserError(f"ablationcam: the model's output does not follow {layer!r} row by row; "
                        f"choose a layer that cuts the network, such as the model's CAM layer")
    return logits


def eigen_maps(activations: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, h, w)``: projection on the first principal component, largest magnitude positive."""
    b_, _, h, w = activations.shape
    flat = activations.flatten(2).transpose(1, 2)                             # (B, hw, C)
    flat = flat - flat.mean(1, keepdim=True)
    v = torch.linalg.svd(flat, full_matrices=False).Vh[:, 0]                  # (B, C)
    proj = (flat @ v[:, :, None]).squeeze(2)                                  # (B, hw)
    flip = proj.amin(1).abs() > proj.amax(1).abs()
    return torch.where(flip[:, None], -proj, proj).view(b_, h, w)


def _minmax(m: torch.Tensor) -> torch.Tensor:
    """Per map of ``(B, H, W)``: ``(m - min) / (1e-7 + max(m - min))``, as pytorch-grad-cam."""
    m = m - m.amin((1, 2), keepdim=True)
    return m / (1e-7 + m.amax((1, 2), keepdim=True))


def finish(cam: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, h, w)`` -> ``(B, H, W)`` in [0, 1]: ReLU, min-max, bilinear upsampling, min-max."""
    up = F.interpolate(_minmax(cam.clamp(min=0))[:, None], size=tuple(size), mode="bilinear", align_corners=False)
    return _minmax(up[:, 0])


def explain(model: nn.Module, layer: str, x: torch.Tensor, methods: Sequence[str],
            target: int | torch.Tensor | None, batch_size: int, done: Callable[[str, float], None] | None = None
            ) -> tuple[dict[str, torch.Tensor], LayerPass]:
    """Maps ``(B, H, W)`` of ``x (B, 3, H, W)`` for each method, all from one shared layer pass, for
    ``target`` (see ``layer_pass``).
    ``done(method, seconds)`` is called as each method finishes (its seconds include the shared pass)."""
    start = _clock(x.device)
    p = layer_pass(model, layer, x, target, gradients=any(m in GRADIENT_METHODS for m in methods))
    shared = _clock(x.device) - start
    maps = {}
    for m in methods:
        start = _clock(x.device)
        if m == "eigencam":
            cam = eigen_maps(p.activations)
        else:
            w = (gradient_weights(p, m) if m in GRADIENT_METHODS
                 else perturbation_weights(model, layer, x, p, m, batch_size))   # (B, C)
            cam = (w[:, :, None, None] * p.activations).sum(1)
        maps[m] = finish(cam, x.shape[-2:])
        if done is not None:
            done(m, shared + _clock(x.device) - start)
    return maps, p


def _clock(device: torch.device) -> float:
    """Seconds, after the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@dataclass
class CamResult:
    """Every image's maps and prediction, on the CPU."""
    maps: dict[str, np.ndarray]   # method -> (N, S, S) float32 in [0, 1]
    target: np.ndarray            # (N,) class explained
    probability: np.ndarray       # (N,) its softmax probability
    top1: np.ndarray              # (N,) predicted class
    seconds: dict[str, float]     # method -> seconds over all images


def join(parts: list[CamResult]) -> CamResult:
    """Consecutive batches' results as one (seconds added)."""
    return CamResult({m: np.concatenate([p.maps[m] for p in parts]) for m in parts[0].maps},
                     np.concatenate([p.target for p in parts]), np.concatenate([p.probability for p in parts]),
                     np.concatenate([p.top1 for p in parts]),
                     {m: sum(p.seconds[m] for p in parts) for m in parts[0].seconds})


def explain_images(model: nn.Module, spec: ModelSpec, pixels: np.ndarray, cfg: CamConfig, batch_size: int,
                   device: torch.device, labels: np.ndarray | None = None) -> CamResult:
    """Maps of every picture of ``pixels (N, S, S, 3)`` uint8, ``batch_size`` images per layer pass
    and masked inputs per forward pass; ``labels (N,)``, the true classes, are explained when
    ``cfg.target`` is ``"label"``. (``probe`` first to fail before any work on a layer that cannot serve.)"""
    if batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {batch_size}")
    if cfg.target == "label" and labels is None:
        raise ValueError("target 'label' needs the images' labels")
    maps: dict[str, list[np.ndarray]] = {m: [] for m in cfg.methods}
    target, probability, top1 = [], [], []
    seconds = dict.fromkeys(cfg.methods, 0.0)
    n = len(pixels)
    with tqdm(total=n * len(cfg.methods), desc=f"CAMs at {cfg.layer}", unit="map") as bar:
        for start in range(0, n, batch_size):
            x = normalise(torch.from_numpy(pixels[start:start + batch_size]).to(device), spec)
            classes = (torch.as_tensor(labels[start:start + batch_size], dtype=torch.long) if cfg.target == "label"
                       else cfg.target)

            def done(method: str, s: float, rows: int = len(x)) -> None:
                seconds[method] += s
                bar.update(rows)

            batch, p = explain(model, cfg.layer, x, cfg.methods, classes, batch_size, done)
            for m, v in batch.items():
                maps[m].append(v.cpu().numpy())
            probs = p.logits.float().softmax(1)
            target.append(p.target.cpu().numpy())
            probability.append(probs.gather(1, p.target[:, None]).squeeze(1).cpu().numpy())
            top1.append(probs.argmax(1).cpu().numpy())
    return CamResult({m: np.concatenate(v) for m, v in maps.items()}, np.concatenate(target),
                     np.concatenate(probability), np.concatenate(top1), seconds)
