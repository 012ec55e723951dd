"""Where a cluster's effect sits among the effects of random neuron sets of the same size."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import artifacts
from ..core.errors import UserError

MEASURES = ("sparsity", "faithfulness")


def mean_deltas(folder: Path) -> dict[tuple[str, str], float]:
    """``{(method, measure): mean per-image delta}`` from a blocked run's ``metrics.json``."""
    metrics = artifacts.read_json(folder / "metrics.json", "metrics")
    return {(m, k): metrics[m][f"{k}_delta_mean"] for m in metrics["settings"]["methods"] for k in MEASURES}


def position(random: np.ndarray, effect: float) -> dict[str, float]:
    """Percentile of ``effect`` among ``random (R,)`` effects (share strictly below, ties half) and the
    empirical two-sided p-value ``(1 + #{|r - mean| >= |effect - mean|}) / (1 + R)``."""
    random = np.asarray(random, dtype=np.float64)
    centre = random.mean()
    below = (random < effect).sum() + 0.5 * (random == effect).sum()
    extreme = (np.abs(random - centre) >= abs(effect - centre) - 1e-15).sum()
    return {"percentile": float(100 * below / len(random)), "p_value": float((1 + extreme) / (1 + len(random))),
            "random_mean": float(centre), "random_std": float(random.std(ddof=1)) if len(random) > 1 else 0.0,
            "n_random": int(len(random))}


def repeat_dirs(folder: Path, filtered: dict, baseline) -> list[Path]:
    """The finished repeats of a control folder, each checked to control for the cluster of the
    ``filtered`` run's manifest (same block, clustering and mode) against the same ``baseline``
    (a ``readers.Baseline``)."""
    c = filtered["config"]
    out = []
    for d in sorted(folder.glob("repeat_*")):
        m = artifacts.read_manifest(d)
        if not (m and m.get("complete")):
            continue
        r = m["config"]
        if m.get("stage") != "control_experiment" or (r.get("block"), r.get("mode"), r.get("control_for")) != \
                (c["block"], c["mode"], {"k": c["k"], "cluster": c["cluster"]}):
            raise UserError(f"{d} is not a random control for {c['block']} cluster {c['cluster']} of k={c['k']} "
                            f"({c['mode']}); it controls for {r.get('block')} {r.get('control_for')} "
                            f"({r.get('mode')})")
        baseline.check_made_against(m, d, "control run")
        out.append(d)
    return out
