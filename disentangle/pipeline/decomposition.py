"""The decomposition stage: one image's attribution split over a block's clusters (a figure and its
numbers), or the clusters' shares of the attribution mass over many images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..attribution.evaluation import EvalConfig, predictions
from ..core import distributed
from ..core.errors import UserError
from ..core.layers import resolve_layer
from ..core.runtime import Runtime
from ..data.images import folder_order
from ..io import artifacts
from ..io.readers import Clusters
from ..neurons import decomposition
from .session import setup_like

METHODS = ("ig", "saliency")


ORIGINAL_PER_IMAGE = ("cluster_magnitudes", "cluster_percentages", "cluster_sparsity")


def _per_cluster(values: np.ndarray) -> dict[str, float]:
    return {str(c): float(v) for c, v in enumerate(values)}


def decompose(clusters: Clusters, method: str, runtime: Runtime, out: str | Path, img_idx: int = 1050,
              num_images: int = 1, ig_steps: int = 50) -> tuple[Path, dict]:
    """As the original: ``num_images`` 1, image ``img_idx``; more, that many images at
    ``linspace(0, len - 1, num_images)`` (positions in ImageFolder order, which name the files). Per
    image ``cluster_analysis_<method>_<idx>.json`` (the original's keys, then ours) and ``.png``
    (its full map beside each cluster's and the remainder); over all of them
    ``aggregate_stats_<method>.json`` (mean and std, ddof 0, of each) and, for several images, a
    bar chart. Each image is explained for its predicted class, as the original. Returns the
    aggregate's path and content."""
    from ..viz import figures, plots
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose ig or saliency")
    if num_images < 1:
        raise UserError(f"--num_images must be at least 1, got {num_images}")
    session = setup_like(clusters.manifest, runtime, images=1)
    spec, model, source = session.spec, session.model, session.images.source
    order = folder_order(source.targets)
    if num_images == 1:
        if not 0 <= img_idx < len(source):
            raise UserError(f"--img_idx {img_idx} is out of range: the data has {len(source)} images")
        positions = np.array([img_idx])
    else:
        positions = np.linspace(0, len(source) - 1, num_images, dtype=int)
    block = resolve_layer(spec, clusters.block)
    labels = torch.as_tensor(clusters.labels)
    sizes = np.bincount(clusters.labels, minlength=clusters.k)
    out = Path(out)
    rank = distributed.group(session.device)
    distributed.decide(lambda: artifacts.hold(out))
    # Under torchrun each rank explains every N-th batch and writes its images' files; rank 0 the aggregate.
    size = runtime.images_per_batch(session.device)
    mine = rank.shard(range(-(-len(positions) // size)))
    collected: dict[int, dict[str, np.ndarray]] = {}
    for b, (x, y, _) in zip(mine, tqdm(session.loader(size, indices=order[positions], batches=mine),
                                       desc="decomposition", unit="batch")):
        done = b * size
        x, y = x.to(session.device), y.to(session.device)
        target = predictions(model(x), y, EvalConfig(target="pred"))["target"]
        full, parts = decomposition.cluster_maps(model, x, target, block, labels, method, ig_steps,
                                                 runtime.ig_batch, spec.stem, runtime.plain)
        ours = {k: v.cpu().numpy() for k, v in decomposition.shares(full, parts).items()}
        orig = {k: v.cpu().numpy() for k, v in decomposition.original_stats(full, parts).items()}
        for j in range(len(x)):
            i = int(positions[done + j])
            result = {**{k: _per_cluster(orig[k][:, j]) for k in ORIGINAL_PER_IMAGE},
                      "reconstruction_error": float(orig["reconstruction_error"][j]),
                      "cluster_independence": float(orig["cluster_independence"][j]),
                      "image": i, "dataset_index": int(order[i]), "target": int(target[j]),
                      "cluster_sizes": sizes.tolist(), "signed_share": ours["signed_share"][:, j].tolist(),
                      "mass_share": ours["mass_share"][:, j].tolist(),
                      "remainder_relative": float(ours["remainder"][j])}
            artifacts.write_json(out / f"cluster_analysis_{method}_{i}.json", result)
            plots.decomposition_figure(figures.denormalise(x[j].cpu().numpy(), spec.mean, spec.std),
                                       full[j].abs().sum(0).cpu().numpy(), parts[:, j].abs().sum(1).cpu().numpy(),
                                       (full[j] - parts[:, j].sum(0)).abs().sum(0).cpu().numpy(),
                                       orig["cluster_percentages"][:, j], sizes,
                                       out / f"cluster_analysis_{method}_{i}.png",
                                       f"{method} of image {i} (class {source.classes[int(target[j])]}), "
                                       f"{clusters.block} split into k={clusters.k} clusters")
        collected[b] = orig
    parts = distributed.gather(collected)

    def finish() -> tuple[Path, dict]:     # rank 0 joins the images' numbers and writes the aggregate
        joined = {b: part for every in parts for b, part in every.items()}
        stats = {k: np.concatenate([joined[b][k] for b in sorted(joined)], axis=-1)
                 for k in joined[0]}                                                      # (k, N) and (N,)
        aggregate = {k: {str(c): {"mean": float(row.mean()), "std": float(row.std())}
                         for c, row in enumerate(stats[k])} for k in ORIGINAL_PER_IMAGE}
        for key, name in (("reconstruction_error", "reconstruction_errors"), ("cluster_independence",) * 2):
            aggregate[name] = {"mean": float(stats[key].mean()), "std": float(stats[key].std())}
        aggregate.update(images=positions.tolist(), block=clusters.block, k=clusters.k, method=method,
                         cluster_sizes=sizes.tolist(), stats_dir=str(clusters.folder))
        if num_images > 1:
            shares = stats["cluster_percentages"]
            plots.decomposition_bars(shares.mean(1), shares.std(1), sizes, out / f"aggregate_{method}.png",
                                     f"{method}: each cluster's share per image, {clusters.block} "
                                     f"({num_images} images)")
        path = out / f"aggregate_stats_{method}.json"
        artifacts.write_json(path, aggregate)
        return path, aggregate
    return distributed.decide(finish)
