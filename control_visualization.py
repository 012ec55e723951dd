"""Where a cluster's effect sits among random-neuron controls: a figure and empirical p-values.

Reads the filtered run of the cluster and its control repeats; writes control_comparison.json
(percentile and two-sided empirical p-value per method and measure) and control_distribution.png
into the control folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from disentangle import artifacts, cli, controls, pipeline, plots


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--block", default="block_1", help="named block")
    p.add_argument("--k", type=int, default=3, help="number of clusters of the clustering")
    p.add_argument("--cluster_idx", type=int, default=0, help="the cluster")
    p.add_argument("--mode", default="detach", help="detach or zero")
    p.add_argument("--filtered_dir", default=None, help="default: outputs/filtered_<block>_cluster_<c>_k<k>[_zero]")
    p.add_argument("--control_dir", default=None, help="default: outputs/control/<block>_cluster_<c>_k<k>[_zero]")
    args = p.parse_args(argv)
    filtered = Path(args.filtered_dir or pipeline.filtered_dir(args.block, args.cluster_idx, args.k, args.mode))
    control = Path(args.control_dir or pipeline.control_dir(args.block, args.cluster_idx, args.k, args.mode))
    fm = pipeline.finished(filtered, "filtered run")
    repeats = controls.repeat_dirs(control)
    if not repeats:
        raise cli.UserError(f"no finished control repeats in {control}; run control_experiment.py first")
    for r in repeats:
        pipeline.same_model(fm, artifacts.read_manifest(r), str(filtered), str(r))
    effect = controls.mean_deltas(filtered)
    random = {key: np.array([controls.mean_deltas(r)[key] for r in repeats]) for key in effect}
    comparison = {f"{m}_{k}": {"cluster_delta": effect[(m, k)], **controls.position(random[(m, k)], effect[(m, k)]),
                               "random_deltas": random[(m, k)].tolist()} for (m, k) in effect}
    title = f"{args.block}, cluster {args.cluster_idx} of k={args.k} ({args.mode}) vs {len(repeats)} random sets"
    artifacts.write_json(control / "control_comparison.json", {"title": title, **comparison})
    plots.control_distribution(random, effect, comparison, control / "control_distribution.png", title)
    for key, c in comparison.items():
        print(f"{key:24s} cluster {c['cluster_delta']:+.4f}  random {c['random_mean']:+.4f} ± {c['random_std']:.4f}"
              f"  percentile {c['percentile']:5.1f}  p = {c['p_value']:.3f}")
    print(f"artifacts in {control}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
