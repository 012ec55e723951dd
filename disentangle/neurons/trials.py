"""Build the interpretability-score input (one row per image and perturbation level) from a model.

Each image is shown at ``levels`` levels; level ``levels`` is clean and lower levels add Gaussian
noise (std ``0.5 s`` in normalised units) and Gaussian blur (sigma ``0.1 + 2 s`` pixels) of strength
``s = (levels - level) / (levels - 1)``. Per trial it records every chosen neuron's activation
(spatial mean of its channel in the block) and the change of the true class's probability when the
neuron is zeroed (``ablate_<n>``) and doubled (``amplify_<n>``).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.functional as TF
from tqdm import tqdm

from ..core.hooks import capture, channel_mask, hooks, scale_hook
from ..io.schema import CATEGORY, GROUND_TRUTH, IMAGE_INDEX, LEVEL, trial_column

# The neuron's channel is multiplied by this in the trials' ablate_<n> and amplify_<n> columns.
FACTORS = {"ablate": 0.0, "amplify": 2.0}


def perturb(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """``x (B, C, H, W)`` with noise and blur of ``strength`` in [0, 1] (0 = unchanged)."""
    if strength <= 0:
        return x
    x = TF.gaussian_blur(x, kernel_size=7, sigma=0.1 + 2 * strength)
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    return x + 0.5 * strength * noise


@torch.no_grad()
def extract_trials(model: torch.nn.Module, loader: Iterable, block: str, class_names: list[str], neurons: list[int],
                   levels: int, device: torch.device, seed: int) -> pd.DataFrame:
    """One row per image of ``loader`` (batches ``(x (B, 3, S, S), labels (B,), indices (B,))``) and
    level ``1..levels`` (see module doc), sorted by image then level; ``seed`` seeds the noise."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for x, y, idx in tqdm(loader, desc="trials", unit="batch"):
        x, y = x.to(device), y.to(device)
        for level in range(1, levels + 1):
            xp = perturb(x, (levels - level) / max(levels - 1, 1), gen)
            with capture(model, [block]) as rec:
                p = model(xp).softmax(1).gather(1, y[:, None]).squeeze(1)
            acts = rec.outputs[block].float().mean((2, 3))                 # (B, C)
            frame = {CATEGORY: [class_names[int(c)] for c in y], GROUND_TRUTH: y.cpu().numpy(), LEVEL: level,
                     IMAGE_INDEX: idx.numpy()}
            n_channels = acts.shape[1]
            for n in neurons:
                frame[trial_column("activation", n)] = acts[:, n].cpu().numpy()
            for n in neurons:
                for name, factor in FACTORS.items():
                    with hooks(model, [(block, scale_hook(channel_mask([n], n_channels), factor))]):
                        q = model(xp).softmax(1).gather(1, y[:, None]).squeeze(1)
                    frame[trial_column(name, n)] = (q - p).cpu().numpy()
            rows.append(pd.DataFrame(frame))
    out = pd.concat(rows, ignore_index=True)
    return out.sort_values([IMAGE_INDEX, LEVEL], kind="stable").reset_index(drop=True).astype({GROUND_TRUTH: np.int64})
