"""The names the pipeline's scripts import, as in the original layout.

Implemented once, in the ``disentangle`` package; this module only re-exports them.
"""
from disentangle.data.images import build_dataset, even_subset, make_loader as get_data_loader
from disentangle.attribution.metrics import (faithfulness as compute_faithfulness, importance, masked_input, sparsity as compute_sparsity, top_mask)
from disentangle.core.seeding import set_seeds

__all__ = ["set_seeds", "build_dataset", "even_subset", "get_data_loader", "compute_sparsity",
           "compute_faithfulness", "importance", "masked_input", "top_mask"]
