"""Summaries of blocked runs: the grid's table (one row per block, k, cluster, mode, method and
measure) and a cluster's place among its random controls."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import UserError
from ..io import artifacts, layout, readers
from ..neurons import controls


WIDE_LEAD = ["block", "k_clusters", "clusterId", "accuracy_top1"]
"""The original's mask_grid_summary.csv: these, then per method ``<m>_faithfulness_mean``,
``<m>_faithfulness_std``, ``<m>_sparsity_mean``, ``<m>_sparsity_std``; our columns follow."""
ORIGINAL_KEYS = ("faithfulness_mean", "faithfulness_std", "sparsity_mean", "sparsity_std")


def write_grid_summary(root: str | Path, out: str | Path | None = None) -> tuple[Path, pd.DataFrame]:
    """``grid_summary`` of ``root``: the wide table (the original's ``mask_grid_summary.csv``) to
    ``out`` (default: the layout's) and the long one beside it (``mask_grid_long.csv``); returns
    the wide file's path and the long table."""
    root = Path(root)
    wide, frame = grid_summary(root)
    if frame.empty:
        raise UserError(f"no finished filtered runs under {root}; run filtered_eval.py or run_experiments.py")
    out = Path(out or layout.grid_summary_file(root))
    artifacts.write_csv(out, wide)
    artifacts.write_csv(out.with_name(layout.GRID_LONG), frame)
    return out, frame


def filtered_runs(root: Path) -> list[tuple[Path, dict]]:
    out = []
    for d in sorted(root.glob("filtered_*")):
        m = artifacts.read_manifest(d)
        if m and m.get("complete") and m.get("stage") == "filtered_eval":
            out.append((d, m))
    return out


def grid_summary(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary tables of every finished filtered run under ``root`` with its controls, each
    checked to be made against the baseline in ``root/baseline``: the wide one (a row per run, the
    baseline's last, the original's columns first) and the long one (a row per run, method and
    measure)."""
    baseline = readers.load_baseline(root / "baseline")
    rows, wide = [], []
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
        run = {"block": c["block"], "k_clusters": c["k"], "clusterId": c["cluster"], "accuracy_top1": acc["top1"]}
        run.update({f"{m}_{key}": metrics[m][key] for m in c["methods"] for key in ORIGINAL_KEYS})
        run.update(mode=c["mode"], metric=c["metric"], n_blocked=len(c["channels"]), n_neurons=n_neurons,
                   n_images=c["images"], accuracy_top1_baseline=acc["top1_baseline"])
        for method in c["methods"]:
            for measure in controls.MEASURES:
                entry = metrics[method]
                delta = entry[f"{measure}_delta_mean"]
                row = {"block": c["block"], "k": c["k"], "cluster": c["cluster"], "mode": c["mode"],
                       "method": method, "metric": c["metric"], "measure": measure,
                       "n_blocked": len(c["channels"]), "n_neurons": n_neurons, "n_images": c["images"],
                       "baseline_mean": entry[f"{measure}_baseline_mean"], "filtered_mean": entry[f"{measure}_mean"],
                       "delta_mean": delta, "delta_std": entry[f"{measure}_delta_std"],
                       "top1_baseline": acc["top1_baseline"], "top1_filtered": acc["top1"]}
                run[f"{method}_{measure}_delta_mean"] = delta
                if random:
                    pos = controls.position(np.array([r[(method, measure)] for r in random]), delta)
                    row.update(control_n=pos["n_random"], control_delta_mean=pos["random_mean"],
                               control_delta_std=pos["random_std"], control_percentile=pos["percentile"],
                               control_p=pos["p_value"])
                    run[f"{method}_{measure}_control_percentile"] = pos["percentile"]
                    run[f"{method}_{measure}_control_p"] = pos["p_value"]
                rows.append(row)
        wide.append(run)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values(["block", "k", "cluster", "mode", "method", "measure"], kind="stable")
    wide_frame = pd.DataFrame(wide)
    if len(wide_frame):
        wide_frame = wide_frame.sort_values(["block", "k_clusters", "clusterId", "mode"], kind="stable")
        base = artifacts.read_json(baseline.folder / "metrics.json", "metrics")
        methods = baseline.manifest["config"]["methods"]
        row = {"block": "baseline", "k_clusters": 0, "clusterId": 0,
               "accuracy_top1": artifacts.read_json(baseline.folder / "accuracy.json", "accuracy")["top1"]}
        row.update({f"{m}_{key}": base[m][key] for m in methods for key in ORIGINAL_KEYS})
        wide_frame = pd.concat([wide_frame, pd.DataFrame([row])], ignore_index=True)
        lead = WIDE_LEAD + [f"{m}_{key}" for m in methods for key in ORIGINAL_KEYS]
        wide_frame = wide_frame[lead + [c for c in wide_frame.columns if c not in lead]]
    return wide_frame.reset_index(drop=True), frame.reset_index(drop=True)


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


def original_control_summary(clusters: readers.Clusters, n_random: int, seed: int, out: str | Path) -> dict:
    """The original control_visualization.py's summary of its random set (``experiment.
    original_random_set``) against ``clusters``: ``control_summary.json`` (block, total_neurons,
    filtered_neurons, kept_neurons, filtered_percentage, n_random, filtered_by_cluster: count per
    cluster, most first) and ``control_scatter_3d.png`` (the neurons' statistics, drawn and kept
    apart) into ``out``; returns the summary."""
    from ..viz import plots
    from .clusters import load_stats
    from .experiment import original_random_set
    labels = clusters.labels.astype(np.int64)
    chosen = original_random_set(clusters.block, len(labels), n_random, seed)
    drawn = np.isin(np.arange(len(labels)), chosen)
    counts = pd.Series(labels[chosen]).value_counts()
    summary = {"block": clusters.block, "total_neurons": len(labels), "filtered_neurons": int(drawn.sum()),
               "kept_neurons": int((~drawn).sum()), "filtered_percentage": float(drawn.sum() / len(labels) * 100),
               "n_random": n_random, "filtered_by_cluster": {str(k): int(v) for k, v in counts.items()},
               "seed": seed, "neuron_stats": str(clusters.folder)}
    out = Path(out)
    artifacts.write_json(out / "control_summary.json", summary)
    stats = load_stats(clusters.folder, clusters.block, len(labels))
    plots.cluster_scatter_3d(stats, drawn.astype(np.int64), tuple(stats)[:3], out / "control_scatter_3d.png",
                             f"{clusters.block}: {n_random} random neurons (seed {seed}) of {len(labels)}",
                             names={1: "filtered", 0: "kept"})
    return summary
