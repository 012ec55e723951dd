"""Where a cluster's effect sits among random-neuron controls: a figure and empirical p-values.

Reads the filtered run of the cluster and its control repeats; writes control_comparison.json
(percentile and two-sided empirical p-value per method and measure) and control_distribution.png
into the control folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from disentangle.io import artifacts
from disentangle import cli
from disentangle.neurons import controls
from disentangle.pipeline import readers as pipeline
from disentangle.viz import plots


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--block", default=None, help="named block (default block_1, or the --filtered_dir's)")
    p.add_argument("--k", type=int, default=None, help="number of clusters of the clustering (default 3)")
    p.add_argument("--cluster_idx", type=int, default=None, help="the cluster (default 0)")
    p.add_argument("--mode", default=None, help="detach or zero (default detach)")
    p.add_argument("--filtered_dir", default=None, help="default: outputs/filtered_<block>_cluster_<c>_k<k>[_zero]")
    p.add_argument("--control_dir", default=None, help="default: outputs/control/<block>_cluster_<c>_k<k>[_zero]")
    p.add_argument("--baseline_dir", default=None,
                   help="the baseline both were made against; default: the filtered run's own (from its manifest)")
    args = p.parse_args(argv)
    asked = {"block": args.block, "k": args.k, "cluster": args.cluster_idx, "mode": args.mode}
    defaults = {"block": "block_1", "k": 3, "cluster": 0, "mode": "detach"}
    where = {k: defaults[k] if v is None else v for k, v in asked.items()}
    filtered = Path(args.filtered_dir or pipeline.filtered_dir(where["block"], where["cluster"], where["k"],
                                                               where["mode"]))
    fm = pipeline.finished(filtered, "filtered run")
    if fm.get("stage") != "filtered_eval":
        raise cli.UserError(f"{filtered} holds a {fm.get('stage')} run, not a filtered run")
    for key, value in asked.items():
        if value is not None and fm["config"].get(key) != value:
            raise cli.UserError(f"{filtered} is a run of {key} {fm['config'].get(key)!r}, not {value!r}")
    c = fm["config"]
    control = Path(args.control_dir or pipeline.control_dir(c["block"], c["cluster"], c["k"], c["mode"]))
    baseline = pipeline.load_baseline(args.baseline_dir or fm["inputs"]["baseline"])
    baseline.check_made_against(fm, filtered)
    repeats = controls.repeat_dirs(control, fm, baseline)
    if not repeats:
        raise cli.UserError(f"no finished control repeats in {control}; run control_experiment.py first")
    artifacts.hold(control)
    effect = controls.mean_deltas(filtered)
    random = {key: np.array([controls.mean_deltas(r)[key] for r in repeats]) for key in effect}
    comparison = {f"{m}_{k}": {"cluster_delta": effect[(m, k)], **controls.position(random[(m, k)], effect[(m, k)]),
                               "random_deltas": random[(m, k)].tolist()} for (m, k) in effect}
    title = f"{c['block']}, cluster {c['cluster']} of k={c['k']} ({c['mode']}) vs {len(repeats)} random sets"
    artifacts.write_json(control / "control_comparison.json", {"title": title, **comparison})
    plots.control_distribution(random, effect, comparison, control / "control_distribution.png", title)
    for key, c in comparison.items():
        print(f"{key:24s} cluster {c['cluster_delta']:+.4f}  random {c['random_mean']:+.4f} ± {c['random_std']:.4f}"
              f"  percentile {c['percentile']:5.1f}  p = {c['p_value']:.3f}")
    print(f"artifacts in {control}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
