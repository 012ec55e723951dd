"""Figure of one image's attributions with and without a cluster's gradient path.

Panels per method (IG, Saliency): the input, the baseline map, the map with the cluster blocked
(same colour scale), their difference, and the masked input that faithfulness measures, with each
map's sparsity and faithfulness in its title. Saved under outputs/visualizations/.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from disentangle import cli, experiment, panels, pipeline, plots
from disentangle.data import make_loader
from disentangle.hooks import channel_mask
from disentangle.metrics import METRICS
from disentangle.models import resolve_block


def parser(description: str = __doc__) -> cli.Parser:
    p = cli.Parser(description=description.split("\n")[0])
    p.add_argument("--img_idx", type=int, default=1500, help="image index in the data set")
    p.add_argument("--cluster_idx", type=int, default=0, help="cluster to block")
    p.add_argument("--block", default="block_1", help="named block")
    p.add_argument("--k", type=int, default=3, help="number of clusters")
    p.add_argument("--stats_dir", default=None, help="default: outputs/neuron_stats/<block>_k<k>")
    p.add_argument("--drop_fraction", type=float, default=0.1, help="faithfulness: share masked")
    p.add_argument("--metric", default="patch", help=f"{' or '.join(METRICS)}")
    p.add_argument("--mask-value", type=float, default=0.0, help="value of masked inputs (normalised space)")
    p.add_argument("--ig-steps", type=int, default=50, help="Integrated Gradients steps")
    p.add_argument("--ig-batch", type=int, default=256, help="rows (image x step) per IG forward/backward")
    cli.add_runtime_args(p)
    p.add_argument("--output_dir", default="outputs/visualizations", help="where the figures go")
    return p


def render(args: argparse.Namespace, indices: list[int]) -> list[Path]:
    """One figure per image index; returns their paths."""
    if args.metric not in METRICS:
        raise cli.UserError(f"unknown metric {args.metric!r}; choose from {', '.join(METRICS)}")
    clusters = pipeline.load_clusters(args.stats_dir or pipeline.stats_dir(args.block, args.k))
    channels = clusters.channels(args.cluster_idx)
    run = experiment.setup_like(clusters.manifest, argparse.Namespace(device=args.device, workers=args.workers, images=1))
    for i in indices:
        if not 0 <= i < len(run.dataset):
            raise cli.UserError(f"image index {i} is out of range: the data has {len(run.dataset)} images")
    spec, model = run.loaded.spec, run.loaded.model
    block = resolve_block(spec, clusters.block)
    mask = channel_mask(channels, len(clusters.labels))
    paths = []
    for x, _, idx in tqdm(make_loader(run.dataset, indices, args.batch_size, run.workers, run.device),
                          desc="figures", unit="batch"):
        x = x.to(run.device)
        with torch.no_grad():
            probs = model(x).softmax(1)
        target = probs.argmax(1)
        p = panels.attribution_panels(model, x, target, block, mask, args.metric, args.drop_fraction,
                                      args.mask_value, args.ig_steps, args.ig_batch)
        xs = x.cpu().numpy()
        for j, i in enumerate(idx.tolist()):
            masked = {m: panels.to_image(p[m]["masked"][j], spec.mean, spec.std) for m in p}
            name = run.dataset.classes[int(target[j])]
            path = Path(args.output_dir) / (f"attr_{clusters.block}_c{args.cluster_idx}_k{clusters.k}"
                                            f"_img{i}_{args.metric}.png")
            plots.attribution_figure(panels.to_image(xs[j], spec.mean, spec.std), p, j, masked, path,
                                     f"image {i}: predicted {name} (p = {float(probs[j, target[j]]):.2f}); "
                                     f"{clusters.block} cluster {args.cluster_idx} of k={clusters.k} "
                                     f"({len(channels)} neurons) blocked; {args.metric} metric, drop "
                                     f"{args.drop_fraction:g}")
            paths.append(path)
    return paths


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for path in render(args, [args.img_idx]):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
