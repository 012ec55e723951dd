"""Merge the per-class CSVs of several class ranges (class_analysis.py) into one.

Refuses ranges that overlap, gaps between ranges unless --allow_gaps, and CSVs made with other
settings (model, weights, data, cluster, mode, metric, methods, images per class: from the manifest
.json beside each CSV). Writes the merged CSV and its manifest.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from disentangle import artifacts, cli

RANGE_KEYS = ("class_start", "class_end")


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--input_files", nargs="+", required=True, help="class_analysis CSVs (each with its .json manifest)")
    p.add_argument("--output", required=True, help="merged CSV (its manifest is written beside it as .json)")
    p.add_argument("--allow_gaps", action="store_true", help="accept classes missing between the ranges")
    args = p.parse_args(argv)
    runs = []
    for f in map(Path, args.input_files):
        sidecar = f.with_suffix(".json")
        if not f.is_file() or not sidecar.is_file():
            raise cli.UserError(f"{f} or its manifest {sidecar.name} is missing (class_analysis.py writes both)")
        manifest = json.loads(sidecar.read_text())
        if manifest.get("stage") != "class_analysis" or not manifest.get("complete"):
            raise cli.UserError(f"{sidecar} is not the manifest of a finished class_analysis run")
        runs.append((f, manifest, pd.read_csv(f)))
    runs.sort(key=lambda r: r[1]["config"]["class_start"])
    settings = lambda m: {k: v for k, v in m["config"].items() if k not in RANGE_KEYS}  # noqa: E731
    first = runs[0]
    for f, manifest, _ in runs[1:]:
        problem = artifacts.config_mismatch(settings(first[1]), settings(manifest))
        if problem:
            raise cli.UserError(f"{f} was made with other settings than {first[0]} ({problem})")
    for (fa, ma, _), (fb, mb, _) in zip(runs, runs[1:]):
        end, start = ma["config"]["class_end"], mb["config"]["class_start"]
        if start < end:
            raise cli.UserError(f"{fa} (classes to {end}) and {fb} (from {start}) overlap")
        if start > end and not args.allow_gaps:
            raise cli.UserError(f"classes {end}..{start} are in no input (between {fa} and {fb}); "
                                f"pass --allow_gaps to accept")
    frame = pd.concat([r[2] for r in runs], ignore_index=True)
    out = Path(args.output)
    artifacts.write_csv(out, frame)
    merged = artifacts.make_manifest("class_analysis", {**first[1]["config"],
                                                         "class_start": runs[0][1]["config"]["class_start"],
                                                         "class_end": runs[-1][1]["config"]["class_end"]},
                                     {}, {"merged": [str(r[0]) for r in runs]}, complete=True)
    artifacts.write_json(out.with_suffix(".json"), merged)
    print(f"{len(frame)} classes from {len(runs)} files -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
