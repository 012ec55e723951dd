"""What dissection runs found, as numbers: the counts of summary.json and the side-by-side tables
of several runs (their figures: ``viz.dissection``).

A *labelled* unit is a mask-IoU detector (IoU above the threshold) or, for CLIP-Dissect, any unit
(every unit gets its best concept). Counts follow Network Dissection's comparisons: unique concepts
per layer and overall, units per concept, and the share of labelled units per category.
"""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from ..io.schema import AGREE, COMPARISON_LEAD, SUMMARY_LAYERS, SUMMARY_OVERALL, DissectionCounts, share_column


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """The labelled units of a ``descriptions.csv`` frame."""
    return frame[frame["detector"]] if "detector" in frame else frame


def counts(lab: pd.DataFrame, units: pd.DataFrame) -> DissectionCounts:
    """The counts of the labelled units ``lab`` among ``units``."""
    shares = lab["category"].fillna("").value_counts(normalize=True)
    return DissectionCounts(int(len(units)), int(len(lab)), int(lab["description"].nunique()),
                            {k: int(v) for k, v in lab["description"].value_counts().items()},
                            {k or "(none)": float(v) for k, v in shares.items()})


def summarize(frame: pd.DataFrame) -> dict:
    """summary.json of a ``descriptions.csv`` frame: the counts overall and per layer."""
    lab = labelled(frame)
    return {SUMMARY_OVERALL: asdict(counts(lab, frame)),
            SUMMARY_LAYERS: {layer: asdict(counts(lab[lab["layer"] == layer], frame[frame["layer"] == layer]))
                             for layer in frame["layer"].drop_duplicates()}}


def unique_concepts_table(summaries: dict[str, dict]) -> pd.DataFrame:
    """unique_concepts.csv: per run, the unique concepts of its labelled units in each layer, then
    over all its layers (layer ``overall``)."""
    rows = [{"run": name, "layer": layer, "unique_concepts": s["unique_concepts"]}
            for name, summary in summaries.items()
            for layer, s in [*summary[SUMMARY_LAYERS].items(), (SUMMARY_OVERALL, summary[SUMMARY_OVERALL])]]
    return pd.DataFrame(rows, columns=["run", "layer", "unique_concepts"])


def comparison_table(summaries: dict[str, dict], configs: dict[str, dict]) -> pd.DataFrame:
    """comparison.csv: one row per run and layer with its counts and category shares (0 where a run
    has none of a category); ``configs``: each run's manifest config (empty for a bare CSV)."""
    rows = []
    for name, summary in summaries.items():
        cfg = configs[name]
        for layer, s in summary[SUMMARY_LAYERS].items():
            lead = (name, cfg.get("model", ""), cfg.get("method", ""), layer, s["units"], s["labelled_units"],
                    s["unique_concepts"])
            rows.append({**dict(zip(COMPARISON_LEAD, lead)),
                         **{share_column(k): v for k, v in s.get("category_shares", {}).items()}})
    return pd.DataFrame(rows).fillna(0.0)


def unit_agreement(frames: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    """units.csv: per layer and unit, each run's label and whether they all agree; None when the
    runs do not cover the same units."""
    labels = [f.set_index(["layer", "unit"])["description"].rename(n) for n, f in frames.items()]
    if any(set(f.index) != set(labels[0].index) for f in labels):
        return None
    units = pd.concat(labels, axis=1).reset_index()
    units[AGREE] = units[list(frames)].nunique(axis=1) == 1
    return units
