"""k-means clusters of neurons in the space of their standardised activation statistics."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score

from ..core.errors import UserError


def standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """z-score each column of ``x (N, S)``; a constant column becomes 0 (scale 1). -> ``(z, mean, scale)``."""
    mean = x.mean(0)
    scale = x.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    return (x - mean) / scale, mean, scale


KMEANS = ("original", "stable")
ORIGINAL_STATE = 42     # the original's KMeans(k, random_state=42), one k-means++ start (n_init='auto')


def kmeans(z: np.ndarray, k: int, seed: int, n_init: int = 10, variant: str = "stable"
           ) -> dict[str, np.ndarray | float]:
    """Cluster the rows of ``z (N, S)``.

    ``original``: the seed's ``KMeans(k, random_state=42)`` (scikit-learn's default ``n_init``,
    one start for k-means++), its cluster numbers as they come. ``stable``: ``n_init`` starts from
    ``seed``, the best inertia wins, and clusters are numbered by size, largest first (ties: by
    lowest member index), so the numbering does not depend on k-means' internal order.

    Returns ``labels (N,)``, ``centroids (k, S)``, ``inertia`` and ``silhouette``.
    """
    n = len(z)
    if not 2 <= k <= n - 1:
        raise UserError(f"k={k} is out of range for a block with {n} neurons (need 2 <= k <= {n - 1})")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            km = (KMeans(n_clusters=k, random_state=ORIGINAL_STATE) if variant == "original" else
                  KMeans(n_clusters=k, n_init=n_init, random_state=seed)).fit(z)
        except ConvergenceWarning:
            raise UserError(f"the {n} neurons have fewer than k={k} distinct statistic vectors; choose a smaller k") from None
    sizes = np.bincount(km.labels_, minlength=k)
    if variant == "original":
        return {"labels": km.labels_.astype(np.int64), "centroids": km.cluster_centers_, "inertia": float(km.inertia_),
                "silhouette": float(silhouette_score(z, km.labels_)), "sizes": sizes}
    first = np.array([np.flatnonzero(km.labels_ == c)[0] for c in range(k)])
    order = np.lexsort((first, -sizes))                       # new cluster i = old cluster order[i]
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    labels = relabel[km.labels_]
    return {"labels": labels, "centroids": km.cluster_centers_[order], "inertia": float(km.inertia_),
            "silhouette": float(silhouette_score(z, labels)), "sizes": sizes[order]}
