"""Summaries of blocked runs: the grid's table (one row per block, k, cluster, mode, method and
measure) and a cluster's place among its random controls."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import UserError
from ..io import artifacts, layout, readers
from ..neurons import controls


def write_grid_summary(root: str | Path, out: str | Path | None = None) -> tuple[Path, pd.DataFrame]:
    """``grid_summary`` of ``root`` written to ``out`` (default: the layout's); returns both."""
    root = Path(root)
    frame = grid_summary(root)
    if frame.empty:
        raise UserError(f"no finished filtered runs under {root}; run filtered_eval.py or run_experiments.py")
    out = Path(out or layout.grid_summary_file(root))
    artifacts.write_csv(out, frame)
    return out, frame


def filtered_runs(root: Path) -> list[tuple[Path, dict]]:
    out = []
    for d in sorted(root.glob("filtered_*")):
        m = artifacts.read_manifest(d)
        if m and m.get("complete") and m.get("stage") == "filtered_eval":
            out.append((d, m))
    return out


def grid_summary(root: Path) -> pd.DataFrame:
    """The summary table of every finished filtered run under ``root`` with its controls, each
    checked to be made against the baseline in ``root/baseline``."""
    baseline = readers.load_baseline(root / "baseline")
    rows = []
    for folder, manifest in filtered_runs(root):
        baseline.check_made_against(manifest, folder)
        c = manifest["config"]
        metrics = artifacts.read_json(folder / "metrics.json", "metrics")
        acc = artifacts.read_json(folder / "accuracy.json", "accuracy")
        n_neurons = len(artifacts.read_npz(Path(manifest["inputs"]["neuron_stats"]) / "cluster_results.npz",
                                           ("labels",), "cluster")["labels"])
        control = layout.control_dir(c["block"], c["cluster"], c["k"], c["mode"], root)
        repeats = controls.repeat_dirs(control, manifest, baseline)
        random = [controls.mean_deltas(r) for r in repeats]
        for method in c["methods"]:
            for measure in controls.MEASURES:
                entry = metrics[method]
                delta = entry[f"{measure}_delta"]["mean"]
                row = {"block": c["block"], "k": c["k"], "cluster": c["cluster"], "mode": c["mode"],
                       "method": method, "metric": c["metric"], "measure": measure,
                       "n_blocked": len(c["channels"]), "n_neurons": n_neurons, "n_images": c["images"],
                       "baseline_mean": entry[f"{measure}_baseline"]["mean"], "filtered_mean": entry[measure]["mean"],
                       "delta_mean": delta, "delta_std": entry[f"{measure}_delta"]["std"],
                       "top1_baseline": acc["top1_baseline"], "top1_filtered": acc["top1"]}
                if random:
                    pos = controls.position(np.array([r[(method, measure)] for r in random]), delta)
                    row.update(control_n=pos["n_random"], control_delta_mean=pos["random_mean"],
                               control_delta_std=pos["random_std"], control_percentile=pos["percentile"],
                               control_p=pos["p_value"])
                rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values(["block", "k", "cluster", "mode", "method", "measure"], kind="stable")
    return frame.reset_index(drop=True)


def filtered_run(folder: str | Path, **asked) -> dict:
    """The manifest of a finished filtered run, checked to be of the ``asked`` config values
    (``block``, ``k``, ``cluster``, ``mode``) that are not None."""
    folder = Path(folder)
    fm = readers.finished(folder, "filtered run")
    if fm.get("stage") != "filtered_eval":
        raise UserError(f"{folder} holds a {fm.get('stage')} run, not a filtered run")
    for key, value in asked.items():
        if value is not None and fm["config"].get(key) != value:
            raise UserError(f"{folder} is a run of {key} {fm['config'].get(key)!r}, not {value!r}")
    return fm


def compare_to_controls(filtered: str | Path, control: str | Path | None = None,
                        baseline_dir: str | Path | None = None) -> tuple[Path, str, dict]:
    """Where the filtered run's mean deltas sit among its random controls' (default folder: the
    layout's), all checked to be made against the same baseline (default: the filtered run's own).
    Writes ``control_comparison.json`` and ``control_distribution.png`` into the control folder;
    returns ``(control folder, title, comparison)``."""
    from ..viz import plots
    filtered = Path(filtered)
    fm = filtered_run(filtered)
    c = fm["config"]
    control = Path(control or layout.control_dir(c["block"], c["cluster"], c["k"], c["mode"]))
    baseline = readers.load_baseline(baseline_dir or fm["inputs"]["baseline"])
    baseline.check_made_against(fm, filtered)
    repeats = controls.repeat_dirs(control, fm, baseline)
    if not repeats:
        raise UserError(f"no finished control repeats in {control}; run control_experiment.py first")
    artifacts.hold(control)
    effect = controls.mean_deltas(filtered)
    random = {key: np.array([controls.mean_deltas(r)[key] for r in repeats]) for key in effect}
    comparison = {f"{m}_{k}": {"cluster_delta": effect[(m, k)], **controls.position(random[(m, k)], effect[(m, k)]),
                               "random_deltas": random[(m, k)].tolist()} for (m, k) in effect}
    title = f"{c['block']}, cluster {c['cluster']} of k={c['k']} ({c['mode']}) vs {len(repeats)} random sets"
    artifacts.write_json(control / "control_comparison.json", {"title": title, **comparison})
    plots.control_distribution(random, effect, comparison, control / "control_distribution.png", title)
    return control, title, comparison
