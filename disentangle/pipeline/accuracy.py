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
from ..data.images import folder_images
from .session import Session, setup_like


def loader_accuracy(model: torch.nn.Module, loader, device: torch.device,
                    variants: dict[str, Sequence[Hook]], batches: int | None = None) -> tuple[dict, int]:
    """Top-1/top-5 hit rates of the model under each variant's forward hooks (``[]`` for the model
    unchanged) over the first ``batches`` batches ``(x, labels, ...)`` of ``loader`` (None: all);
    returns ``({name: {"top1", "top5"}}, images counted)``."""
    counts = {name: torch.zeros(2, dtype=torch.long) for name in variants}
    n = 0
    with torch.no_grad():
        for b, (x, y, *_) in enumerate(tqdm(loader, desc="accuracy", unit="batch",
                                            total=None if batches is None else min(batches, len(loader)))):
            if batches is not None and b >= batches:
                break
            x, y = x.to(device), y.to(device)
            for name, fwd in variants.items():
                with hooks(model, fwd):
                    logits = model(x)
                counts[name] += torch.stack([(logits.argmax(1) == y).sum(), topk_correct(logits, y, 5).sum()]).cpu()
            n += len(y)
    return {name: {"top1": int(c[0]) / n if n else 0.0, "top5": int(c[1]) / n if n else 0.0}
            for name, c in counts.items()}, n


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
        # Under torchrun each rank counts every N-th batch; the counts add up exactly.
        rank = distributed.group(session.device)
        whole = folder_images(source)
        batches = rank.shard(range(whole.n_batches(batch_size)))
        rates, n = loader_accuracy(session.model, whole.loader(session.transform(), batch_size, session.workers,
                                                               session.device, batches), session.device,
                                   {"model": []})
        hits = torch.tensor([round(rates["model"]["top1"] * n), round(rates["model"]["top5"] * n), n])
        top1, top5, total = distributed.sum_counts(hits).tolist()
        r = {"top1": np.array(top1 / total), "top5": np.array(top5 / total), "n_images": np.array(total)}
        if rank.main:
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
    whole = folder_images(source).loader(session.transform(), size, session.workers, session.device)
    available = len(whole)
    if batches > available:
        print(f"note: --batches {batches} asked for, the data set has {available} batches of {size} images; "
              f"using all of them")
    result, n = loader_accuracy(model, whole, session.device, variants, batches)
    artifacts.hold(out, folder=False)
    manifest = artifacts.make_manifest("accuracy", {**clusters.manifest["config"], "images": n, "cluster": cluster,
                                                    "batches": batches},
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
    return result
