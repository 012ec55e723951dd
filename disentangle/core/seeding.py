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
