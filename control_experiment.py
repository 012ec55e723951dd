"""Random-neuron control: block random sets of neurons and measure the same metrics and deltas.

Without --cluster_idx, the original's control: one set of --n_random neurons of --block drawn with
--seed (42) as the original draws it, every image explained for its predicted class, written to
outputs/control_random/<metric>_wise/ (metrics.json with the original's keys). With --cluster_idx,
controls for that cluster: --repeats sets as large as the cluster (or --n_random), each drawn with
its own seed (1000 * seed + repeat), in outputs/control/<block>_cluster_<c>_k<k>/repeat_<r>/;
control_visualization.py then places the cluster's effect among them.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.core.layers import layer_width, resolve_layer
from disentangle.pipeline import experiment


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.clustering_args(p)
    cli.add(p, "cluster_idx", type=int, default=None,
            help="the cluster this controls for; default: none, the original's control of --n_random neurons")
    cli.add(p, "n_random", type=cli.positive, default=None,
            help="neurons per random set; default: 214 (the original's) without --cluster_idx, else the "
                 "cluster's size")
    cli.add(p, "repeats", type=cli.positive, default=5, help="with --cluster_idx: random sets, each with its own seed")
    cli.add(p, "seed", type=int, default=None,
            help="random seed: default 42 (the original's) without --cluster_idx; with it 0, repeat r drawing "
                 "with seed 1000 * seed + r")
    cli.blocked_args(p, "control_experiment")
    cli.output_args(p, None, "default: outputs/control_random/<metric>_wise, or with --cluster_idx "
                             "outputs/control/<block>_cluster_<c>_k<k>[_zero]")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = cli.blocked_settings(args)
    if args.cluster_idx is None:
        ctx = experiment.open_context(args.baseline_dir, settings.runtime, None, args.images, args.metric, args.mode)
        block = args.block or "block_1"
        s = ctx.session
        n_channels = layer_width(s.model, resolve_layer(s.spec, block), s.example())
        seed = 42 if args.seed is None else args.seed
        cells = [experiment.original_control_cell(block, n_channels, args.n_random or 214, seed, ctx.cfg.metric,
                                                  args.output_dir)]
        experiment.run_cells(ctx, block, cells, n_channels, args.mode, settings)
        print(f"random set of {len(cells[0].channels)} of {n_channels} neurons of {block} (seed {seed}) in "
              f"{cells[0].out}/")
        return cli.artifacts_in(cells[0].out)
    clusters = cli.clusters(args)
    cells = experiment.control_cells(clusters, args.cluster_idx, args.n_random, args.repeats,
                                     0 if args.seed is None else args.seed, args.mode, args.output_dir)
    ctx = experiment.open_context(args.baseline_dir, settings.runtime, clusters, args.images, args.metric, args.mode)
    experiment.run_cells(ctx, clusters.block, cells, len(clusters.labels), args.mode, settings)
    print(f"{len(cells)} random sets of {len(cells[0].channels)} neurons in {cells[0].out.parent}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
