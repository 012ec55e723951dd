"""Side-by-side of dissection runs (two models, two weights, two methods): unique concepts per layer,
category shares, and, for runs over the same units, where their labels agree.

Writes to --output_dir: comparison.csv (one row per run and layer), unique_concepts.png,
category_shares.png, units.csv (per unit, each run's label, when the runs share layers and unit
counts) and manifest.json.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from disentangle.io import artifacts
from disentangle import cli
from disentangle.dissection import report as dissection_report
from disentangle.core.errors import UserError


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="result folders of dissect_neurons.py (two or more)")
    p.add_argument("--names", default=None, help="comma-separated display names (default: folder names)")
    p.add_argument("--output_dir", default=None, help="default: outputs/dissect/compare_<run1>_vs_<run2>...")
    return p


def read_run(folder: Path) -> tuple[pd.DataFrame, dict, dict]:
    manifest = artifacts.read_manifest(folder)
    if manifest is None or manifest.get("stage") != "dissect_neurons":
        raise UserError(f"{folder} is not a dissect_neurons.py result folder (no matching manifest.json)")
    if not manifest.get("complete"):
        raise UserError(f"{folder} holds an unfinished dissection; rerun dissect_neurons.py there first")
    frame = artifacts.read_csv(folder / "descriptions.csv", ("layer", "unit", "description"), "descriptions")
    return frame, artifacts.read_json(folder / "summary.json", "dissection summary"), manifest


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    folders = [Path(r) for r in args.runs]
    if len(folders) < 2:
        raise UserError("give at least two result folders to compare")
    names = args.names.split(",") if args.names else [f.name for f in folders]
    if len(names) != len(folders) or len(set(names)) != len(names):
        raise UserError(f"--names needs {len(folders)} distinct names, got {names}")
    runs = {n: read_run(f) for n, f in zip(names, folders)}
    out = Path(args.output_dir or "outputs/dissect/compare_" + "_vs_".join(names))
    inputs = {n: str(f.resolve()) for n, f in zip(names, folders)}
    manifest = artifacts.make_manifest("compare_dissections", {"runs": inputs}, {}, inputs)
    artifacts.open_derived(out, manifest)

    rows = []
    for name, (_, summary, manifest) in runs.items():
        cfg = manifest["config"]
        for layer, s in summary["layers"].items():
            rows.append({"run": name, "model": cfg["model"], "method": cfg["method"], "layer": layer,
                         "units": s["units"], "labelled_units": s["labelled_units"],
                         "unique_concepts": s["unique_concepts"],
                         **{f"share_{k}": v for k, v in s.get("category_shares", {}).items()}})
    artifacts.write_csv(out / "comparison.csv", pd.DataFrame(rows).fillna(0.0))
    summaries = {name: summary for name, (_, summary, _) in runs.items()}
    dissection_report.unique_concepts_figure(summaries, out / "unique_concepts.png")
    dissection_report.category_shares_figure(summaries, out / "category_shares.png")

    frames = [f.set_index(["layer", "unit"])["description"].rename(n) for n, (f, _, _) in runs.items()]
    same_units = all(set(f.index) == set(frames[0].index) for f in frames)
    if same_units:
        units = pd.concat(frames, axis=1).reset_index()
        units["agree"] = units[names].nunique(axis=1) == 1
        artifacts.write_csv(out / "units.csv", units)
    artifacts.write_json(out / artifacts.MANIFEST, {**manifest, "complete": True})

    print(pd.DataFrame(rows)[["run", "layer", "labelled_units", "unique_concepts"]].to_string(index=False))
    if same_units:
        print(f"labels agree on {units['agree'].mean():.0%} of {len(units)} units")
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
