"""The names the pipeline's scripts import, as in the original layout.

Implemented once, in the ``disentangle`` package; this module only re-exports them.
"""
from disentangle.attribution.metrics import faithfulness as compute_faithfulness
from disentangle.attribution.metrics import importance, masked_input, top_mask
from disentangle.attribution.metrics import sparsity as compute_sparsity
from disentangle.core.seeding import set_seeds
from disentangle.data.images import dataset_images, even_subset

__all__ = ["set_seeds", "dataset_images", "even_subset", "compute_sparsity", "compute_faithfulness", "importance",
           "masked_input", "top_mask"]
