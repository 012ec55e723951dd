"""One seed for every random number generator the pipeline touches."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run can be repeated exactly."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator for one item of a run seeded ``seed`` (a unit, a batch, and a stream): the
    item draws the same numbers whichever rank or batch order computes it."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0]))
