"""Top-1/top-5 accuracy with a cluster's neurons blocked (detach) and ablated (zero), beside the baseline."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..attribution.metrics import topk_correct
from ..core import distributed
from ..core.hooks import MODES, Hook, block_hook, channel_mask, hooks
from ..core.layers import resolve_layer
from ..core.runtime import Runtime
from ..io import artifacts, cache
from ..io.readers import Clusters
from ..data.images import Images, folder_images
from .session import Session, setup_like


def images_accuracy(model: torch.nn.Module, images: Images, transform, batch_size: int, workers: int,
                    device: torch.device, variants: dict[str, Sequence[Hook]], batches: int | None = None
                    ) -> tuple[dict, int]:
    """Top-1/top-5 hit rates of the model under each variant's forward hooks (``[]`` for the model
    unchanged) over the first ``batches`` loader batches of ``images`` (None: all); returns
    ``({name: {"top1", "top5"}}, images counted)``. Under torchrun each rank counts every N-th
    batch and the counts are summed (exact)."""
    rank = distributed.group(device)
    total = images.n_batches(batch_size)
    mine = rank.shard(range(total if batches is None else min(batches, total)))
    counts = torch.zeros(len(variants) + 1, 2, dtype=torch.long)          # the last row: images counted
    with torch.no_grad():
        for x, y, *_ in tqdm(images.loader(transform, batch_size, workers, device, mine), desc="accuracy",
                             unit="batch"):
            x, y = x.to(device), y.to(device)
            for v, fwd in enumerate(variants.values()):
                with hooks(model, fwd):
                    logits = model(x)
                counts[v] += torch.stack([(logits.argmax(1) == y).sum(), topk_correct(logits, y, 5).sum()]).cpu()
            counts[-1, 0] += len(y)
    counts = distributed.sum_counts(counts)
    n = int(counts[-1, 0])
    return {name: {"top1": int(c[0]) / n if n else 0.0, "top5": int(c[1]) / n if n else 0.0}
            for name, c in zip(variants, counts[:-1])}, n


def data_set_accuracy(session: Session, batch_size: int) -> dict:
    """The original baseline's accuracy: the model over every image of the session's data set, in
    ImageFolder order (``{"top1", "top5", "n_images"}``). A generated data set (the concept world,
    fixed by its description) keeps the result in the user cache (``io.cache.user_cache``), keyed on
    the weights and the data; files on disk are read every time."""
    source = session.images.source
    key = {"model": session.spec.name, "weights_sha256": session.loaded.weights["sha256"],
           "data": source.describe(), "square": source.square, "device": session.device.type}
    folder = cache.user_cache() if source.in_process else None
    r = cache.load(folder, "data_set_accuracy", key)
    if r is None:
        rates, n = images_accuracy(session.model, folder_images(source), session.transform(), batch_size,
                                   session.workers, session.device, {"model": []})
        r = {"top1": np.array(rates["model"]["top1"]), "top5": np.array(rates["model"]["top5"]),
             "n_images": np.array(n)}
        cache.store(folder, "data_set_accuracy", key, r)
    return {"top1": float(r["top1"]), "top5": float(r["top5"]), "n_images": int(r["n_images"])}


def blocked_accuracy(clusters: Clusters, cluster: int, batches: int, runtime: Runtime, out: str | Path) -> dict:
    """Accuracy of the model unchanged, with ``cluster`` detached (the same forward pass: the
    original's filtered model) and zeroed, over the first ``batches`` loader batches (all when fewer) of
    the clusters' data set in ImageFolder order, as the original's accuracy.py; written to ``out``
    (JSON with the original's keys first, its manifest beside it) and returned."""
    out = Path(out)
    channels = clusters.channels(cluster)
    session = setup_like(clusters.manifest, runtime, images=1)       # the model and the data set
    source = session.images.source
    model, path = session.model, resolve_layer(session.spec, clusters.block)
    mask = channel_mask(channels, len(clusters.labels))
    variants = {"baseline": [], **{mode: [(path, block_hook(mask, mode))] for mode in MODES}}
    size = runtime.images_per_batch()
    whole = folder_images(source)
    available = whole.n_batches(size)
    if batches > available:
        print(f"note: --batches {batches} asked for, the data set has {available} batches of {size} images; "
              f"using all of them")
    result, n = images_accuracy(model, whole, session.transform(), size, session.workers, session.device, variants,
                                batches)

    def write() -> None:                    # under torchrun rank 0 writes
        artifacts.hold(out, folder=False)
        manifest = artifacts.make_manifest("accuracy", {**clusters.manifest["config"], "images": n,
                                                        "cluster": cluster, "batches": batches},
                                           {"device": str(session.device), "batch_size": size},
                                           {"neuron_stats": str(clusters.folder)}, complete=True)
        artifacts.write_json(out, {
            "block": clusters.block, "layer": clusters.block, "cluster": cluster,
            "top1_baseline": result["baseline"]["top1"], "top5_baseline": result["baseline"]["top5"],
            "top1_filtered": result["detach"]["top1"], "top5_filtered": result["detach"]["top5"],
            "top1_zero": result["zero"]["top1"], "top5_zero": result["zero"]["top5"],
            "k": clusters.k, "n_blocked": len(channels), "n_neurons": len(clusters.labels), "n_images": n,
            "batches": min(available, batches), "batch_size": size})
        artifacts.write_manifest(out, manifest)
    distributed.decide(write)
    return result
