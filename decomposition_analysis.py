"""Decompose attributions over a block's clusters: the map with only one cluster's path open.

With --num_images 1: for image --img_idx, the full map beside each cluster's map and the remainder
(full − Σ clusters, zero up to rounding: the clusters partition the block, a cut of the network),
with each cluster's share; figure and JSON in outputs/decomposition_analysis/. With --num_images N > 1:
the same over N evenly spread images, aggregated to aggregate_stats_<block>_k<k>_<method>.json and a bar chart.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from disentangle.io import artifacts
from disentangle import cli
from disentangle.neurons import decomposition
from disentangle.pipeline import experiment, readers as pipeline
from disentangle.viz import figures, plots
from disentangle.data.images import even_subset, make_loader
from disentangle.attribution.evaluation import EvalConfig, predictions
from disentangle.core.models import resolve_block


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--img_idx", type=int, default=1050, help="image index in the data set (--num_images 1)")
    p.add_argument("--num_images", type=cli.positive, default=1, help="1: one image; N > 1: N evenly spread images, aggregated")
    p.add_argument("--stats_dir", default="outputs/neuron_stats/block_1_k3", help="output of neuron_stats.py")
    p.add_argument("--method", default="ig", help="ig or saliency (signed gradient, so that the maps add up)")
    p.add_argument("--ig-steps", type=cli.positive, default=50, help="Integrated Gradients steps")
    p.add_argument("--ig-batch", type=cli.positive, default=256, help="rows (image x step) per IG forward/backward")
    cli.add_runtime_args(p)
    p.add_argument("--output_dir", default="outputs/decomposition_analysis", help="where figures and JSON go")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.method not in ("ig", "saliency"):
        raise cli.UserError(f"unknown method {args.method!r}; choose ig or saliency")
    if args.num_images < 1:
        raise cli.UserError(f"--num_images must be at least 1, got {args.num_images}")
    clusters = pipeline.load_clusters(args.stats_dir)
    run = experiment.setup_like(clusters.manifest, argparse.Namespace(device=args.device, workers=args.workers, images=1))
    spec, model = run.loaded.spec, run.loaded.model
    if args.num_images == 1:
        if not 0 <= args.img_idx < len(run.dataset):
            raise cli.UserError(f"--img_idx {args.img_idx} is out of range: the data has {len(run.dataset)} images")
        indices = np.array([args.img_idx])
    else:
        indices = even_subset(run.dataset.targets, args.num_images)
    block = resolve_block(spec, clusters.block)
    labels = torch.as_tensor(clusters.labels)
    sizes = np.bincount(clusters.labels, minlength=clusters.k)
    out = Path(args.output_dir)
    artifacts.hold(out)
    tag = f"{clusters.block}_k{clusters.k}_{args.method}"
    collected: dict[str, list[np.ndarray]] = {"signed_share": [], "mass_share": [], "remainder": []}
    for x, y, idx in tqdm(make_loader(run.dataset, indices, args.batch_size, run.workers, run.device),
                          desc="decomposition", unit="batch"):
        x, y = x.to(run.device), y.to(run.device)
        target = predictions(model(x), y, EvalConfig())["target"]
        full, parts = decomposition.cluster_maps(model, x, target, block, labels, args.method, args.ig_steps, args.ig_batch,
                                                   spec.stem)
        for key, v in decomposition.shares(full, parts).items():
            collected[key].append(v.cpu().numpy())
    stats = {k: np.concatenate(v, axis=-1) for k, v in collected.items()}     # (k, N) and (N,)
    if args.num_images == 1:
        i = int(indices[0])
        share = stats["mass_share"][:, 0]
        plots.decomposition_figure(figures.denormalise(x[0].cpu().numpy(), spec.mean, spec.std), full[0].abs().sum(0).cpu().numpy(),
                                   parts[:, 0].abs().sum(1).cpu().numpy(), (full[0] - parts[:, 0].sum(0)).abs().sum(0).cpu().numpy(),
                                   share, sizes, out / f"decomposition_{tag}_img{i}.png",
                                   f"{args.method} of image {i} (class {run.dataset.classes[int(target[0])]}), "
                                   f"{clusters.block} split into k={clusters.k} clusters")
        result = {"image": i, "target": int(target[0]), "cluster_sizes": sizes.tolist(),
                  "signed_share": stats["signed_share"][:, 0].tolist(), "mass_share": share.tolist(),
                  "remainder_relative": float(stats["remainder"][0])}
        path = out / f"decomposition_{tag}_img{i}.json"
    else:
        result = {"n_images": len(indices), "cluster_sizes": sizes.tolist(),
                  **{f"{k}_{s}": getattr(np, s)(stats[k], axis=1).tolist() for k in ("signed_share", "mass_share")
                     for s in ("mean", "std")},
                  "remainder_relative_max": float(stats["remainder"].max())}
        plots.decomposition_bars(np.array(result["mass_share_mean"]), np.array(result["mass_share_std"]), sizes,
                                 out / f"aggregate_{tag}.png",
                                 f"{args.method}: attribution mass per cluster of {clusters.block} ({len(indices)} images)")
        path = out / f"aggregate_stats_{tag}.json"
    artifacts.write_json(path, {"block": clusters.block, "k": clusters.k, "method": args.method,
                                "stats_dir": str(clusters.folder), **result})
    print(json.dumps(result, indent=1)[:800])
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
