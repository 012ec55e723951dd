"""Gather the grid's artifacts into one table: one row per block, k, cluster, mode, method and measure."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import artifacts
from ..neurons import controls
from . import readers as pipeline


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
    baseline = pipeline.load_baseline(root / "baseline")
    rows = []
    for folder, manifest in filtered_runs(root):
        baseline.check_made_against(manifest, folder)
        c = manifest["config"]
        metrics = artifacts.read_json(folder / "metrics.json", "metrics")
        acc = artifacts.read_json(folder / "accuracy.json", "accuracy")
        n_neurons = len(artifacts.read_npz(Path(manifest["inputs"]["neuron_stats"]) / "cluster_results.npz",
                                           ("labels",), "cluster")["labels"])
        control = pipeline.control_dir(c["block"], c["cluster"], c["k"], c["mode"], root)
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
