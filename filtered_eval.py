"""Attributions and metrics with one neuron cluster's gradient path blocked, on the baseline's images.

Reads the clusters from --stats_dir and the baseline from --baseline_dir; explains the baseline's
target class of every image with the cluster's channels blocked (--mode detach: values pass forward
unchanged, gradients stop; --mode zero: the channels are ablated), and writes per-image metrics with
their deltas against the baseline to --output_dir (default outputs/filtered_<block>_cluster_<c>_k<k>).
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io import layout, readers
from disentangle.pipeline import experiment


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add(p, "cluster_idx", type=int, default=0, help="cluster to block")
    cli.add(p, "stats_dir", default=str(layout.stats_dir("block_1", 3)), help="output of neuron_stats.py")
    cli.blocked_args(p)
    cli.output_args(p, None, "default: outputs/filtered_<block>_cluster_<c>_k<k>[_zero]")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = cli.blocked_settings(args)
    clusters = readers.load_clusters(args.stats_dir)
    cell = experiment.filtered_cell(clusters, args.cluster_idx, args.output_dir, args.mode)
    ctx = experiment.open_context(args.baseline_dir, settings.runtime, clusters, args.images, args.metric, args.mode)
    results = experiment.run_cells(ctx, clusters.block, [cell], len(clusters.labels), args.mode, settings)
    if cell.out in results:
        print(experiment.format_deltas(results[cell.out], f"{clusters.block} cluster {args.cluster_idx}/{clusters.k} "
                                                          f"({len(cell.channels)} neurons, {args.mode})"))
    else:
        print(f"{cell.out} is already complete for these settings; nothing to do")
    return cli.artifacts_in(cell.out)


if __name__ == "__main__":
    raise SystemExit(main())
