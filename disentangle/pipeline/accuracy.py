"""Top-1/top-5 accuracy with a cluster's neurons blocked (detach) and ablated (zero), beside the baseline."""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from ..attribution.metrics import topk_correct
from ..core.hooks import MODES, block_hook, channel_mask, hooks
from ..core.layers import resolve_layer
from ..core.runtime import Runtime
from ..io import artifacts
from ..io.readers import Clusters
from .session import setup_like


def blocked_accuracy(clusters: Clusters, cluster: int, batches: int, runtime: Runtime, out: str | Path) -> dict:
    """Accuracy of the model unchanged, with ``cluster`` detached (the same forward pass, a check)
    and zeroed, over ``batches`` batches of evenly spread images of the clusters' data; written to
    ``out`` (JSON, its manifest beside it) and returned."""
    out = Path(out)
    channels = clusters.channels(cluster)
    session = setup_like(clusters.manifest, runtime, images=batches * runtime.images_per_batch())
    model, path = session.model, resolve_layer(session.spec, clusters.block)
    mask = channel_mask(channels, len(clusters.labels))
    counts = {name: torch.zeros(2, dtype=torch.long) for name in ("baseline", *MODES)}
    with torch.no_grad():
        for x, y, _ in tqdm(session.loader(), desc="accuracy", unit="batch"):
            x, y = x.to(session.device), y.to(session.device)
            for name in counts:
                fwd = [] if name == "baseline" else [(path, block_hook(mask, name))]
                with hooks(model, fwd):
                    logits = model(x)
                counts[name] += torch.stack([(logits.argmax(1) == y).sum(), topk_correct(logits, y, 5).sum()]).cpu()
    n = len(session.images)
    result = {name: {"top1": int(c[0]) / n, "top5": int(c[1]) / n} for name, c in counts.items()}
    artifacts.hold(out, folder=False)
    manifest = artifacts.make_manifest("accuracy", {**clusters.manifest["config"], "images": n, "cluster": cluster},
                                       {"device": str(session.device)}, {"neuron_stats": str(clusters.folder)},
                                       complete=True)
    artifacts.write_json(out, {"block": clusters.block, "k": clusters.k, "cluster": cluster,
                               "n_blocked": len(channels), "n_neurons": len(clusters.labels), "n_images": n, **result})
    artifacts.write_manifest(out, manifest)
    return result
