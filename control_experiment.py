"""Random-neuron control: block random sets of neurons, as many as in a cluster, and measure the same deltas.

Each repeat draws its own channels (seed + repeat) and writes a filtered-style folder
outputs/control/<block>_cluster_<c>_k<k>/repeat_<r>/; control_visualization.py then places the
cluster's effect in the distribution of these random effects.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.pipeline import experiment


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.clustering_args(p)
    cli.add(p, "cluster_idx", type=int, default=0, help="the cluster this controls for")
    cli.add(p, "n_random", type=cli.positive, default=None, help="neurons per random set; default: the cluster's size")
    cli.add(p, "repeats", type=cli.positive, default=5, help="random sets, each with its own seed")
    cli.add(p, "seed", type=int, default=0, help="repeat r draws its channels with seed 1000 * seed + r")
    cli.blocked_args(p)
    cli.output_args(p, None, "default: outputs/control/<block>_cluster_<c>_k<k>[_zero]")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = cli.blocked_settings(args)
    clusters = cli.clusters(args)
    cells = experiment.control_cells(clusters, args.cluster_idx, args.n_random, args.repeats, args.seed,
                                     args.mode, args.output_dir)
    ctx = experiment.open_context(args.baseline_dir, settings.runtime, clusters, args.images, args.metric, args.mode)
    experiment.run_cells(ctx, clusters.block, cells, len(clusters.labels), args.mode, settings)
    print(f"{len(cells)} random sets of {len(cells[0].channels)} neurons in {cells[0].out.parent}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
