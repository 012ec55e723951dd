"""The attribution-figure stage: images' IG and Saliency maps with and without a cluster's
gradient path, one figure per image and optionally a contact sheet of them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..attribution.evaluation import EvalConfig
from ..core.runtime import Runtime
from ..core.seeding import set_seeds
from ..core.errors import UserError
from ..data.images import folder_order
from ..io.readers import Clusters
from .session import setup_like


def attribution_figures(clusters: Clusters, cluster: int, cfg: EvalConfig, runtime: Runtime, out: str | Path,
                        indices: list[int] | None = None, n_images: int | None = None, seed: int = 0) -> list[Path]:
    """Figures of the images at positions ``indices`` of the data set's ImageFolder order, or of
    ``n_images`` at ``linspace(0, len - 1, n_images)`` (the original's run_images_attribution.py)
    with a contact sheet of them too, on the clusters' model and data. Returns the paths written."""
    from ..viz import figures
    clusters.channels(cluster)   # checks the cluster exists
    session = setup_like(clusters.manifest, runtime, images=1)
    set_seeds(seed)
    grid = indices is None
    source = session.images.source
    if grid:
        indices = np.linspace(0, len(source) - 1, n_images, dtype=int).tolist()
    for i in indices:
        if not 0 <= i < len(source):
            raise UserError(f"image index {i} is out of range: the data has {len(source)} images "
                            f"(0..{len(source) - 1})")
    order = folder_order(source.targets)
    return figures.render(session, clusters, cluster, {int(order[i]): i for i in indices}, cfg, out,
                          runtime.images_per_batch(), grid=grid)
