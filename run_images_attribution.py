"""Attribution figures (as visualize_attribution.py) for images spread evenly over the classes.

Writes one figure per image under outputs/visualizations/.
"""
from __future__ import annotations

import argparse

import visualize_attribution
from disentangle import cli, experiment, pipeline
from disentangle.data import even_subset


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    p = visualize_attribution.parser(__doc__)
    p.add_argument("--num_images", type=int, default=20, help="images, spread evenly over the classes")
    args = p.parse_args(argv)
    clusters = pipeline.load_clusters(args.stats_dir or pipeline.stats_dir(args.block, args.k))
    targets = experiment.setup_like(clusters.manifest, argparse.Namespace(
        device="cpu", workers=0, images=1)).dataset.targets
    paths = visualize_attribution.render(args, even_subset(targets, args.num_images).tolist())
    print(f"{len(paths)} figures in {args.output_dir}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
