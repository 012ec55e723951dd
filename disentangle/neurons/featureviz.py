"""Feature visualization: for each unit, an image that maximises its activation.

Activation maximisation in the set-up of Olah et al. (2017, "Feature Visualization", Lucid) that
seed 002's Microscope shows:

- **Decorrelated Fourier parameterisation.** Each image is a spectrum ``(3, H, W//2+1)`` (complex),
  scaled by ``1 / max(f, 1/max(H, W)) ** decay`` so that every frequency learns at a rate that
  matches natural images' ``1/f`` spectrum, brought to pixels by an orthonormal inverse FFT
  (divided by 4, as Lucid does, so that a fresh image is near grey), its three channels mixed by
  the square root of the data's colour covariance (``colour_basis``), and squashed into ``[0, 1]``
  by a sigmoid.
- **Transformation robustness.** Each step sees the image padded (``12 s`` pixels of grey), then
  warped by one random affine map: jitter up to ``12 s`` pixels, scale in ``1 ± 0.1``, rotation
  within ±10° (``s = side / 224``: Lucid's pixel amounts at 224 pixels, in proportion at others),
  then resized to the model's input.
- **All units of a layer at once.** A batch holds one image per unit; the objective is the sum over
  the batch of each image's own unit (the spatial mean of its channel, the token mean of a
  ``(B, T, U)`` layer, a 2-D layer's unit as it is), and the forward pass stops at the layer.

Each unit's start and its transformations come from its own generator seeded by ``(seed, unit)``,
so a unit's image does not depend on which units share its batch.

``dream`` is the DeepDream variant used for InterpScore's level 4 (the seed's ``deepdream`` images):
gradient ascent in pixel space from a given start image (``gradient``, ``gray``, ``perlin``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..core.errors import UserError
from ..core.hooks import forward_to
from ..core.seeding import generator

# The square root of ImageNet's RGB covariance (rows R, G, B; columns its principal components),
# as Lucid estimated it; scaled below so that its largest column has norm 1.
IMAGENET_COLOUR = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
COLOURS = ("auto", "imagenet", "data", "none")
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))      # Lucid's random_scale choices
INITS = ("gradient", "gray", "perlin")                   # the seed's level-4 start images
START_STD = 0.25           # of a fresh image before the sigmoid: pixels about 0.5 +- 0.06


@dataclass(frozen=True)
class VizConfig:
    steps: int = 256              # Adam steps per batch of units
    lr: float = 0.05
    decay: float = 1.0            # spectrum scale 1 / f ** decay
    transforms: bool = True       # transformation robustness (module doc)
    batch_size: int = 32          # units optimised together
    size: int | None = None       # image side; None: the model's input size

    def __post_init__(self):
        if self.steps < 1 or self.lr <= 0 or self.batch_size < 1:
            raise UserError("feature visualization needs steps >= 1, lr > 0 and batch size >= 1")

    def recorded(self) -> dict:
        return asdict(self)


def colour_basis(pixels: torch.Tensor | None) -> torch.Tensor:
    """``(3, 3)`` the square root of the colour covariance of ``pixels (N, 3)`` in ``[0, 1]``
    (columns: principal directions scaled by their standard deviations), divided by its largest
    column norm; ``None``: ImageNet's (``IMAGENET_COLOUR``)."""
    if pixels is None:
        m = torch.tensor(IMAGENET_COLOUR, dtype=torch.float64)
    else:
        values, vectors = torch.linalg.eigh(torch.cov(pixels.double().T))
        m = vectors * values.clamp_min(0).sqrt()
    return (m / m.norm(dim=0).max()).float()


def spectrum_scale(h: int, w: int, decay: float) -> torch.Tensor:
    """``(h, w//2+1)`` the learning-rate equaliser of each frequency (module doc)."""
    f = (torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.rfftfreq(w)[None] ** 2).sqrt()
    return 1.0 / f.clamp_min(1.0 / max(h, w)) ** decay


class FourierImages(nn.Module):
    """``n`` images of side ``size`` parameterised as decorrelated spectra; ``forward() -> (n, 3,
    size, size)`` in ``[0, 1]``. ``start (n, 3, h, w//2+1, 2)``: the initial spectra."""

    def __init__(self, start: torch.Tensor, colour: torch.Tensor, decay: float = 1.0):
        super().__init__()
        self.size = start.shape[2]
        self.spectrum = nn.Parameter(start.clone())
        self.register_buffer("scale", spectrum_scale(self.size, self.size, decay).to(start.device))
        self.register_buffer("colour", colour.to(start.device))

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        img = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4
        return torch.sigmoid(torch.einsum("nchw,dc->ndhw", img, self.colour))


def random_spectra(units: Sequence[int], size: int, seed: int, decay: float = 1.0) -> torch.Tensor:
    """``(U, 3, size, size//2+1, 2)`` each unit's start from its own generator (module doc): normal
    spectra scaled so that the image before the sigmoid has standard deviation ``START_STD`` at any
    size (Lucid's fixed 0.01 gives 224-pixel images that spread; at 56 pixels nearly flat grey, where
    many units of a ReLU network have no gradient)."""
    spectra = torch.stack([torch.randn(3, size, size // 2 + 1, 2, generator=generator(seed, u, 0))
                           for u in units])
    spread = (torch.fft.irfft2(torch.view_as_complex(spectra) * spectrum_scale(size, size, decay), s=(size, size),
                               norm="ortho") / 4).flatten(1).std(1)
    return spectra * (START_STD / spread).view(-1, 1, 1, 1, 1)


def transform_parameters(units: Sequence[int], steps: int, seed: int) -> torch.Tensor:
    """``(steps, U, 4)`` per step and unit: shift x, shift y in ``[-1, 1]``, scale, angle (radians)."""
    out = []
    for u in units:
        g = generator(seed, u, 1)
        shift = torch.rand(steps, 2, generator=g) * 2 - 1
        scale = torch.tensor(SCALES)[torch.randint(len(SCALES), (steps,), generator=g)]
        angle = torch.randint(-10, 11, (steps,), generator=g).float() * math.pi / 180
        out.append(torch.cat([shift, scale[:, None], angle[:, None]], 1))
    return torch.stack(out, 1)


def robust_view(x: torch.Tensor, params: torch.Tensor, out_size: int) -> torch.Tensor:
    """``x (B, 3, S, S)`` padded, warped by ``params (B, 4)`` (``transform_parameters``) and resized
    to ``out_size`` (module doc)."""
    s = x.shape[-1] / 224
    pad = max(1, round(12 * s))
    x = F.pad(x, [pad] * 4, value=0.5)
    side = x.shape[-1]
    shift = params[:, :2] * max(1.0, 12 * s) * 2 / side            # pixels -> normalised coordinates
    cos, sin = params[:, 3].cos() / params[:, 2], params[:, 3].sin() / params[:, 2]
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=False)


def unit_objective(output: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """``(B,)`` image ``b``'s activation of its own unit ``units[b]`` (module doc)."""
    b = torch.arange(len(units), device=output.device)
    if output.dim() == 4:
        return output[b, units].mean((1, 2))
    if output.dim() == 3:
        return output[b, :, units].mean(1)
    return output.reshape(len(output), -1)[b, units]


class Normalise(nn.Module):
    """``[0, 1]`` pixels -> the model's normalised input."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def visualize(model: nn.Module, path: str, units: Sequence[int], normalise: Normalise, input_size: int,
              cfg: VizConfig, colour: torch.Tensor, device: torch.device, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Feature visualizations of ``units`` of the layer at ``path``: ``(U, S, S, 3)`` uint8 images
    and ``(U,)`` each unit's activation on its own image (untransformed, at the model's input)."""
    size = cfg.size or input_size
    normalise = normalise.to(device)
    images, acts = [], []
    for start in tqdm(range(0, len(units), cfg.batch_size), desc="feature visualization", unit="batch"):
        chunk = list(units[start:start + cfg.batch_size])
        index = torch.tensor(chunk, device=device)
        param = FourierImages(random_spectra(chunk, size, seed, cfg.decay).to(device), colour, cfg.decay)
        moves = transform_parameters(chunk, cfg.steps, seed).to(device)
        opt = torch.optim.Adam(param.parameters(), lr=cfg.lr)
        for step in range(cfg.steps):
            x = param()
            x = robust_view(x, moves[step], input_size) if cfg.transforms else _resize(x, input_size)
            loss = -unit_objective(forward_to(model, path, normalise(x)), index).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            x = param()
            acts.append(unit_objective(forward_to(model, path, normalise(_resize(x, input_size))), index).cpu())
            images.append((x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu())
    return torch.cat(images).numpy(), torch.cat(acts).double().numpy()


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


# --- DeepDream from a start image (InterpScore's level 4) ----------------------------------------
def start_image(kind: str, size: int, seed: int = 0) -> torch.Tensor:
    """``(3, size, size)`` in ``[0, 1]``: ``gradient`` (a diagonal ramp from blue to orange),
    ``gray`` (0.5 with a faint seeded noise of std 0.02: on a flat image many units of a ReLU
    network have no gradient) or ``perlin`` (grey-level Perlin noise of 4 x 4 cells, seeded)."""
    t = torch.linspace(0, 1, size)
    if kind == "gradient":
        ramp = (t[:, None] + t[None]) / 2
        low, high = torch.tensor([0.2, 0.3, 0.8]), torch.tensor([0.9, 0.6, 0.2])
        return low[:, None, None] + (high - low)[:, None, None] * ramp
    if kind == "gray":
        g = torch.Generator().manual_seed(seed)
        return (0.5 + 0.02 * torch.randn(3, size, size, generator=g)).clamp(0, 1)
    if kind == "perlin":
        return perlin(size, 4, seed).expand(3, size, size).clone()
    raise UserError(f"unknown start image {kind!r}; choose from {', '.join(INITS)}")


def perlin(size: int, cells: int, seed: int) -> torch.Tensor:
    """``(1, size, size)`` gradient (Perlin) noise in ``[0, 1]``: random unit gradients on a
    ``(cells + 1)²`` lattice, blended with the fade curve ``6t⁵ − 15t⁴ + 10t³``."""
    g = torch.Generator().manual_seed(seed)
    angles = torch.rand(cells + 1, cells + 1, generator=g) * 2 * math.pi
    grads = torch.stack([angles.cos(), angles.sin()], -1)
    pos = torch.linspace(0, cells, size + 1)[:-1] + cells / size / 2
    y, x = torch.meshgrid(pos, pos, indexing="ij")
    i, j = y.floor().long().clamp(max=cells - 1), x.floor().long().clamp(max=cells - 1)
    fy, fx = y - i, x - j

    def corner(di: int, dj: int) -> torch.Tensor:
        gv = grads[i + di, j + dj]
        return gv[..., 0] * (fy - di) + gv[..., 1] * (fx - dj)

    def fade(t: torch.Tensor) -> torch.Tensor:
        return t * t * t * (t * (t * 6 - 15) + 10)

    u, v = fade(fy), fade(fx)
    top = corner(0, 0) + v * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + v * (corner(1, 1) - corner(1, 0))
    n = top + u * (bottom - top)
    return ((n - n.min()) / (n.max() - n.min()).clamp_min(1e-12))[None]


def dream(model: nn.Module, path: str, units: Sequence[int], start: torch.Tensor, normalise: Normalise,
          device: torch.device, steps: int = 64, step_size: float = 0.02, seed: int = 0) -> np.ndarray:
    """DeepDream of each of ``units`` from the same ``start (3, S, S)`` image in ``[0, 1]``: ``steps``
    of gradient ascent on the unit's activation, each of step ``step_size`` along the gradient
    divided by its mean magnitude, under a random jitter of up to ``S / 28`` pixels (rolled), the
    pixels kept in ``[0, 1]``. Returns ``(U, S, S, 3)`` uint8."""
    normalise = normalise.to(device)
    index = torch.tensor(list(units), device=device)
    x = start.to(device)[None].repeat(len(units), 1, 1, 1).contiguous()
    g = torch.Generator().manual_seed(seed)
    jitter = max(1, start.shape[-1] // 28)
    shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=g).tolist()
    for dy, dx in shifts:
        x.requires_grad_(True)
        rolled = torch.roll(x, (dy, dx), (2, 3))
        objective = unit_objective(forward_to(model, path, normalise(rolled)), index).sum()
        (grad,) = torch.autograd.grad(objective, x)
        with torch.no_grad():
            scale = grad.abs().mean((1, 2, 3), keepdim=True).clamp_min(1e-12)
            x = (x + step_size * grad / scale).clamp(0, 1)
    return (x.detach() * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
