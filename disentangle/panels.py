"""What the attribution figures show: baseline and filtered maps of a batch, their metrics, and the
masked input used for faithfulness, computed in one shared pass per method."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .attribution import METHODS, masked_attributions
from .metrics import faithfulness, masked_input, sparsity


def attribution_panels(model: nn.Module, x: torch.Tensor, target: torch.Tensor, block: str, blocked: torch.Tensor,
                       metric: str, drop_fraction: float, mask_value: float, ig_steps: int,
                       ig_batch: int | None) -> dict[str, dict[str, np.ndarray]]:
    """Per method: ``baseline``/``filtered`` maps Σ_c|a_c| ``(B, H, W)``, ``difference`` (filtered −
    baseline), ``masked`` (the input with the baseline map's top ``drop_fraction`` masked,
    ``(B, C, H, W)``), and per-image ``sparsity_*``/``faithfulness_*`` ``(B,)``."""
    keep = torch.stack([torch.ones_like(blocked, dtype=torch.float32), (~blocked).float()]).to(x.device)
    with torch.no_grad():
        p_clean = model(x).softmax(1).gather(1, target[:, None]).squeeze(1)
    out = {}
    for m in METHODS:
        attr, _ = masked_attributions(model, x, target, m, block, keep, ig_steps, ig_batch)   # (2, B, C, H, W)
        base, filt = attr[0].abs().sum(1), attr[1].abs().sum(1)
        entry = {"baseline": base, "filtered": filt, "difference": filt - base,
                 "masked": masked_input(x, attr[0], metric, drop_fraction, mask_value)}
        for name, a in (("baseline", attr[0]), ("filtered", attr[1])):
            entry[f"sparsity_{name}"] = sparsity(a, metric)
            entry[f"faithfulness_{name}"] = faithfulness(model, x, a, target, metric, drop_fraction, mask_value, p_clean)
        out[m] = {k: v.detach().cpu().numpy() for k, v in entry.items()}
    return out


def to_image(x: np.ndarray, mean, std) -> np.ndarray:
    """Normalised ``(3, H, W)`` -> displayable ``(H, W, 3)`` in [0, 1]."""
    return np.clip(x * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None], 0, 1).transpose(1, 2, 0)
