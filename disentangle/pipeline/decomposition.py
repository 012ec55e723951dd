"""The decomposition stage: one image's attribution split over a block's clusters (a figure and its
numbers), or the clusters' shares of the attribution mass over many images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..attribution.evaluation import EvalConfig, predictions
from ..core.errors import UserError
from ..core.layers import resolve_layer
from ..core.runtime import Runtime
from ..data.images import even_subset
from ..io import artifacts
from ..io.readers import Clusters
from ..neurons import decomposition
from .session import setup_like

METHODS = ("ig", "saliency")


def decompose(clusters: Clusters, method: str, runtime: Runtime, out: str | Path, img_idx: int = 1050,
              num_images: int = 1, ig_steps: int = 50) -> tuple[Path, dict]:
    """``num_images`` 1: image ``img_idx`` (its full map beside each cluster's and the remainder,
    figure and JSON); more: that many evenly spread images, their shares aggregated (JSON and a bar
    chart). Returns the JSON's path and content."""
    from ..viz import figures, plots
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose ig or saliency")
    if num_images < 1:
        raise UserError(f"--num_images must be at least 1, got {num_images}")
    session = setup_like(clusters.manifest, runtime, images=1)
    spec, model, source = session.spec, session.model, session.images.source
    if num_images == 1:
        if not 0 <= img_idx < len(source):
            raise UserError(f"--img_idx {img_idx} is out of range: the data has {len(source)} images")
        indices = np.array([img_idx])
    else:
        indices = even_subset(source.targets, num_images)
    block = resolve_layer(spec, clusters.block)
    labels = torch.as_tensor(clusters.labels)
    sizes = np.bincount(clusters.labels, minlength=clusters.k)
    out = Path(out)
    artifacts.hold(out)
    tag = f"{clusters.block}_k{clusters.k}_{method}"
    collected: dict[str, list[np.ndarray]] = {"cluster_percentages": [], "signed_share": [], "mass_share": [],
                                              "remainder": []}
    for x, y, idx in tqdm(session.loader(indices=indices), desc="decomposition", unit="batch"):
        x, y = x.to(session.device), y.to(session.device)
        target = predictions(model(x), y, EvalConfig())["target"]
        full, parts = decomposition.cluster_maps(model, x, target, block, labels, method, ig_steps,
                                                 runtime.ig_batch, spec.stem, runtime.plain)
        for key, v in decomposition.shares(full, parts).items():
            collected[key].append(v.cpu().numpy())
    stats = {k: np.concatenate(v, axis=-1) for k, v in collected.items()}     # (k, N) and (N,)
    if num_images == 1:
        i = int(indices[0])
        share = stats["cluster_percentages"][:, 0]
        plots.decomposition_figure(figures.denormalise(x[0].cpu().numpy(), spec.mean, spec.std),
                                   full[0].abs().sum(0).cpu().numpy(), parts[:, 0].abs().sum(1).cpu().numpy(),
                                   (full[0] - parts[:, 0].sum(0)).abs().sum(0).cpu().numpy(),
                                   share, sizes, out / f"decomposition_{tag}_img{i}.png",
                                   f"{method} of image {i} (class {source.classes[int(target[0])]}), "
                                   f"{clusters.block} split into k={clusters.k} clusters")
        result = {"image": i, "target": int(target[0]), "cluster_sizes": sizes.tolist(),
                  "cluster_percentages": share.tolist(), "signed_share": stats["signed_share"][:, 0].tolist(),
                  "mass_share": stats["mass_share"][:, 0].tolist(),
                  "remainder_relative": float(stats["remainder"][0])}
        path = out / f"decomposition_{tag}_img{i}.json"
    else:
        result = {"n_images": len(indices), "cluster_sizes": sizes.tolist(),
                  **{f"{k}_{s}": getattr(np, s)(stats[k], axis=1).tolist()
                     for k in ("cluster_percentages", "signed_share", "mass_share") for s in ("mean", "std")},
                  "remainder_relative_max": float(stats["remainder"].max())}
        plots.decomposition_bars(np.array(result["cluster_percentages_mean"]),
                                 np.array(result["cluster_percentages_std"]), sizes, out / f"aggregate_{tag}.png",
                                 f"{method}: each cluster's share per image, {clusters.block} ({len(indices)} images)")
        path = out / f"aggregate_stats_{tag}.json"
    content = {"block": clusters.block, "k": clusters.k, "method": method, "stats_dir": str(clusters.folder), **result}
    artifacts.write_json(path, content)
    return path, content
