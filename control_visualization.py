"""Where a cluster's effect sits among random-neuron controls: a figure and empirical p-values.

Reads the filtered run of the cluster and its control repeats; writes control_comparison.json
(percentile and two-sided empirical p-value per method and measure) and control_distribution.png
into the control folder.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io import layout
from disentangle.pipeline.summary import compare_to_controls, filtered_run


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add(p, "block", default=None, help="named block (default block_1, or the --filtered_dir's)")
    cli.add(p, "k", type=int, default=None, help="number of clusters of the clustering (default 3)")
    cli.add(p, "cluster_idx", type=int, default=None, help="the cluster (default 0)")
    cli.add(p, "mode", default=None, help="detach or zero (default detach)")
    cli.add(p, "filtered_dir", default=None, help="default: outputs/filtered_<block>_cluster_<c>_k<k>[_zero]")
    cli.add(p, "control_dir", default=None, help="default: outputs/control/<block>_cluster_<c>_k<k>[_zero]")
    cli.add(p, "baseline_dir", default=None,
            help="the baseline both were made against; default: the filtered run's own (from its manifest)")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    asked = {"block": args.block, "k": args.k, "cluster": args.cluster_idx, "mode": args.mode}
    defaults = {"block": "block_1", "k": 3, "cluster": 0, "mode": "detach"}
    where = {k: defaults[k] if v is None else v for k, v in asked.items()}
    filtered = args.filtered_dir or layout.filtered_dir(where["block"], where["cluster"], where["k"], where["mode"])
    filtered_run(filtered, **asked)
    control, _, comparison = compare_to_controls(filtered, args.control_dir, args.baseline_dir)
    for key, c in comparison.items():
        print(f"{key:24s} cluster {c['cluster_delta']:+.4f}  random {c['random_mean']:+.4f} ± {c['random_std']:.4f}"
              f"  percentile {c['percentile']:5.1f}  p = {c['p_value']:.3f}")
    return cli.artifacts_in(control)


if __name__ == "__main__":
    raise SystemExit(main())
