"""Random-neuron control: block random sets of neurons, as many as in a cluster, and measure the same deltas.

Each repeat draws its own channels (seed + repeat) and writes a filtered-style folder
outputs/control/<block>_cluster_<c>_k<k>/repeat_<r>/; control_visualization.py then places the
cluster's effect in the distribution of these random effects.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.pipeline import experiment, readers as pipeline
from disentangle.core.hooks import MODES


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--block", default="block_1", help="named block")
    p.add_argument("--k", type=int, default=3, help="clustering whose cluster is controlled for")
    p.add_argument("--cluster_idx", type=int, default=0, help="the cluster this controls for")
    p.add_argument("--stats_dir", default=None, help="default: outputs/neuron_stats/<block>_k<k>")
    p.add_argument("--n_random", type=cli.positive, default=None, help="neurons per random set; default: the cluster's size")
    p.add_argument("--repeats", type=cli.positive, default=5, help="random sets, each with its own seed")
    p.add_argument("--seed", type=int, default=0, help="repeat r draws its channels with seed 1000 * seed + r")
    p.add_argument("--mode", default="detach", help=f"{' or '.join(MODES)}")
    p.add_argument("--baseline_dir", default="outputs/baseline", help="output of baseline_eval.py")
    experiment.add_filtered_args(p)
    p.add_argument("--output_dir", default=None, help="default: outputs/control/<block>_cluster_<c>_k<k>[_zero]")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.repeats < 1:
        raise cli.UserError(f"--repeats must be at least 1, got {args.repeats}")
    clusters = pipeline.load_clusters(args.stats_dir or pipeline.stats_dir(args.block, args.k))
    cells = experiment.control_cells(clusters, args.cluster_idx, args.n_random, args.repeats, args.seed,
                                     args.mode, args.output_dir)
    ctx = experiment.open_context(args, clusters)
    experiment.run_cells(ctx, clusters.block, cells, len(clusters.labels), args.mode, args)
    print(f"{len(cells)} random sets of {len(cells[0].channels)} neurons in {cells[0].out.parent}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
