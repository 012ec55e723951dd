"""Attributions and metrics with one neuron cluster's gradient path blocked, on the baseline's images.

Reads the clusters from --stats_dir and the baseline from --baseline_dir; explains the baseline's
target class of every image with the cluster's channels blocked (--mode detach: values pass forward
unchanged, gradients stop; --mode zero: the channels are ablated), and writes per-image metrics with
their deltas against the baseline to --output_dir (default outputs/filtered_<block>_cluster_<c>_k<k>).
"""
from __future__ import annotations

from pathlib import Path

from disentangle import cli
from disentangle.pipeline import experiment, readers as pipeline
from disentangle.core.hooks import MODES


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--cluster_idx", type=int, default=0, help="cluster to block (0 = largest)")
    p.add_argument("--stats_dir", default="outputs/neuron_stats/block_1_k3", help="output of neuron_stats.py")
    p.add_argument("--baseline_dir", default="outputs/baseline", help="output of baseline_eval.py")
    p.add_argument("--mode", default="detach", help=f"{' or '.join(MODES)}: stop the gradient, or ablate")
    experiment.add_filtered_args(p)
    p.add_argument("--output_dir", default=None, help="default: outputs/filtered_<block>_cluster_<c>_k<k>[_zero]")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    clusters = pipeline.load_clusters(args.stats_dir)
    channels = clusters.channels(args.cluster_idx)
    out = Path(args.output_dir) if args.output_dir else pipeline.filtered_dir(
        clusters.block, args.cluster_idx, clusters.k, args.mode)
    ctx = experiment.open_context(args, clusters)
    cell = experiment.Cell(out, clusters.block, channels, "filtered_eval", {"cluster": args.cluster_idx, "k": clusters.k},
                           {"neuron_stats": str(clusters.folder)})
    result = experiment.run_hooked(ctx, cell, len(clusters.labels), args.mode, args)
    if result is not None:
        experiment.print_deltas(result, f"{clusters.block} cluster {args.cluster_idx}/{clusters.k} "
                                        f"({len(channels)} neurons, {args.mode})")
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
