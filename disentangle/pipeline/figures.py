"""The attribution-figure stage: images' IG and Saliency maps with and without a cluster's
gradient path, one figure per image and optionally a contact sheet of them."""
from __future__ import annotations

from pathlib import Path

from ..attribution.evaluation import EvalConfig
from ..core.runtime import Runtime
from ..core.seeding import set_seeds
from ..data.images import even_subset
from ..io.readers import Clusters
from .session import setup_like


def attribution_figures(clusters: Clusters, cluster: int, cfg: EvalConfig, runtime: Runtime, out: str | Path,
                        indices: list[int] | None = None, n_images: int | None = None, seed: int = 0) -> list[Path]:
    """Figures of the data-set images ``indices``, or of ``n_images`` spread evenly over the classes
    with a contact sheet of them too, on the clusters' model and data. Returns the paths written."""
    from ..viz import figures
    clusters.channels(cluster)   # checks the cluster exists
    session = setup_like(clusters.manifest, runtime, images=1)
    set_seeds(seed)
    grid = indices is None
    if grid:
        indices = even_subset(session.images.source.targets, n_images).tolist()
    return figures.render(session, clusters, cluster, indices, cfg, out, runtime.images_per_batch(), grid=grid)
