"""Top-1/top-5 accuracy with a cluster's neurons blocked (detach) and ablated (zero), beside the baseline.

Writes outputs/accuracy/acc_<block>_c<cluster>_k<k>.json (and its manifest beside it) with the
original's keys (block, cluster, top1_baseline, top5_baseline, top1_filtered, top5_filtered) and
more. The original's filtered model is detach: its forward pass is unchanged, so its accuracy
equals the baseline's by construction (a check); zero ablates.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io import layout
from disentangle.pipeline.accuracy import blocked_accuracy


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.clustering_args(p)
    cli.add(p, "cluster_idx", type=int, default=0, help="cluster to block")
    cli.add(p, "batches", type=cli.positive, default=1000,
            help="loader batches of the data set in ImageFolder order (all of them when it has fewer), as the "
                 "original (1000 batches of 50: the 50,000 ImageNet validation images)")
    cli.runtime_args(p, batch=50)
    cli.add(p, "output", default=None, help="default: outputs/accuracy/acc_<block>_c<cluster>_k<k>.json")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    clusters = cli.clusters(args)
    out = args.output or layout.accuracy_file(clusters.block, args.cluster_idx, clusters.k)
    result = blocked_accuracy(clusters, args.cluster_idx, args.batches, cli.runtime(args), out)
    for name, r in result.items():
        print(f"{'filtered' if name == 'detach' else name:9s} top-1 {r['top1']:.2%}  top-5 {r['top5']:.2%}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
