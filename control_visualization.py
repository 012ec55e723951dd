"""Where a cluster's effect sits among random-neuron controls: a figure and empirical p-values.

Reads the filtered run of the cluster and its control repeats; writes control_comparison.json
(percentile and two-sided empirical p-value per method and measure) and control_distribution.png
into the control folder. With --n_random, the original's summary of its random control instead:
which clusters of --block's k=3 clustering (or --stats_dir's) the --n_random neurons drawn with
--seed (42) fall in, as control_summary.json and control_scatter_3d.png in
outputs/control_random/ (--output_dir).
"""
from __future__ import annotations

from pathlib import Path

from disentangle import cli
from disentangle.io import layout
from disentangle.pipeline.summary import compare_to_controls, filtered_run, original_control_summary


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
    o = p.add_argument_group("the original's random control (control_experiment.py without --cluster_idx)")
    cli.add(o, "n_random", type=cli.positive, default=None,
            help="summarise the original's random set of this many neurons instead of comparing with controls")
    cli.add(o, "seed", type=int, default=42, help="seed the random set was drawn with")
    cli.add(o, "stats_dir", default=None,
            help="clusters to count the set in; default: outputs/neuron_stats/<block>_k<k>")
    cli.add(o, "output_dir", default=str(layout.OUTPUTS / "control_random"), help="where the summary goes")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.n_random is not None:
        clusters = cli.clusters(args)
        s = original_control_summary(clusters, args.n_random, args.seed, args.output_dir)
        counts = ", ".join(f"cluster {c}: {n}" for c, n in s["filtered_by_cluster"].items())
        print(f"{s['filtered_neurons']} of {s['total_neurons']} neurons of {s['block']} "
              f"({s['filtered_percentage']:.1f}%) drawn with seed {args.seed}; {counts}")
        return cli.artifacts_in(Path(args.output_dir))
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
