"""Figure of one image's attributions with and without a cluster's gradient path.

Rows IG and Saliency; columns: the input, the baseline map, the map with the cluster blocked (same
colour scale), their difference, and the input masked where the baseline map is highest (what
faithfulness measures). Titles carry the predicted class and its probability, and each map's
sparsity and faithfulness. Writes <output_dir>/attr_<block>_c<c>_k<k>_img<idx>_<metric>.png.
"""
from __future__ import annotations

import argparse

from disentangle import cli
from disentangle.pipeline import experiment, readers as pipeline
from disentangle.viz import figures
from disentangle.attribution.metrics import METRICS
from disentangle.core.seeding import set_seeds


def parser(description: str = __doc__, one_image: bool = True) -> cli.Parser:
    """The flags; ``one_image=False`` leaves out ``--img_idx`` (run_images_attribution.py)."""
    p = cli.Parser(description=description.split("\n")[0])
    if one_image:
        p.add_argument("--img_idx", type=int, default=1500, help="image index in the data set")
    p.add_argument("--cluster_idx", type=int, default=0, help="cluster whose gradient path is blocked")
    p.add_argument("--block", default="block_1", help="named block the clusters belong to")
    p.add_argument("--k", type=int, default=3, help="number of clusters")
    p.add_argument("--stats_dir", default=None,
                   help="neuron_stats.py output; default: outputs/neuron_stats/<block>_k<k>")
    p.add_argument("--drop_fraction", type=float, default=0.1, help="faithfulness: share of pixels or patches masked")
    p.add_argument("--metric", default="patch", help=" or ".join(METRICS))
    p.add_argument("--mask-value", type=cli.finite, default=0.0, help="value of masked inputs (normalised space)")
    p.add_argument("--ig-steps", type=cli.positive, default=50, help="Integrated Gradients steps")
    p.add_argument("--ig-batch", type=cli.positive, default=256, help="rows (image x step) per IG forward/backward")
    p.add_argument("--output_dir", default="outputs/visualizations", help="where the figures go")
    cli.add_runtime_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed for every random number generator")
    return p


def prepare(args: argparse.Namespace) -> tuple[cli.Setup, pipeline.Clusters, figures.FigureConfig]:
    """Check the flags, load the clusters, rebuild their model and data."""
    cfg = figures.FigureConfig(args.cluster_idx, args.metric, args.drop_fraction, args.mask_value,
                               args.ig_steps, args.ig_batch)
    clusters = pipeline.load_clusters(args.stats_dir or pipeline.stats_dir(args.block, args.k))
    if (clusters.block, clusters.k) != (args.block, args.k):
        raise cli.UserError(f"{clusters.folder} holds {clusters.block} with k={clusters.k}; pass "
                            f"--block {clusters.block} --k {clusters.k}")
    clusters.channels(cfg.cluster)   # checks the cluster exists
    run = experiment.setup_like(clusters.manifest, argparse.Namespace(device=args.device, workers=args.workers,
                                                                      images=1))
    set_seeds(args.seed)
    return run, clusters, cfg


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run, clusters, cfg = prepare(args)
    for path in figures.render(run, clusters, [args.img_idx], cfg, args.output_dir, args.batch_size):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
