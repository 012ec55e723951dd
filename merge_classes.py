"""Merge the per-class CSVs of several class ranges (class_analysis.py) into one.

Refuses ranges that overlap, gaps between ranges unless --allow_gaps, and CSVs made with other
settings (model, weights, data, cluster, mode, metric, methods, images per class: from the manifest
.json beside each CSV). Each CSV is read and checked too: exactly the rows of its range, in order,
and every column its methods give. Writes the merged CSV and its manifest.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from disentangle.io import artifacts
from disentangle.neurons import classes
from disentangle import cli

RANGE_KEYS = ("class_start", "class_end")


def read_part(f: Path) -> tuple[dict, pd.DataFrame]:
    """A finished class_analysis CSV and its manifest, checked against each other."""
    sidecar = f.with_suffix(".json")
    if not f.is_file() or not sidecar.is_file():
        raise cli.UserError(f"{f} or its manifest {sidecar.name} is missing (class_analysis.py writes both)")
    manifest = artifacts.read_json(sidecar, "manifest")
    if not isinstance(manifest, dict) or manifest.get("stage") != "class_analysis" or not manifest.get("complete"):
        raise cli.UserError(f"{sidecar} is not the manifest of a finished class_analysis run")
    c = manifest["config"]
    frame = artifacts.read_csv(f, classes.columns(c["methods"]), "per-class table")
    rows, span = frame["class"].tolist(), range(c["class_start"], c["class_end"])
    # A merged file with gaps (--allow_gaps) records how many classes it holds.
    ok = rows == list(span) if c.get("classes", len(span)) == len(span) else \
        len(rows) == c["classes"] and rows == sorted(set(rows)) and set(rows) <= set(span)
    if not ok:
        raise cli.UserError(f"{f} holds the classes {_span(frame['class'].tolist())}, but its manifest says "
                            f"{c['class_start']}..{c['class_end'] - 1}: the CSV was changed or is another run's")
    return manifest, frame


def _span(values: list) -> str:
    return f"{values[0]}..{values[-1]} ({len(values)} rows)" if values else "none"


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--input_files", nargs="+", required=True, help="class_analysis CSVs (each with its .json manifest)")
    p.add_argument("--output", required=True, help="merged CSV (its manifest is written beside it as .json)")
    p.add_argument("--allow_gaps", action="store_true", help="accept classes missing between the ranges")
    args = p.parse_args(argv)
    out = Path(args.output)
    inputs = [Path(f) for f in args.input_files]
    if out.suffix != ".csv":
        raise cli.UserError(f"--output {out} must be a .csv file (its manifest goes beside it as .json)")
    used = {q.resolve() for f in inputs for q in (f, f.with_suffix(".json"))}
    if out.resolve() in used or out.with_suffix(".json").resolve() in used:
        raise cli.UserError(f"--output {out} or its manifest would overwrite an input; choose another file")
    runs = sorted(((f, *read_part(f)) for f in inputs), key=lambda r: r[1]["config"]["class_start"])
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
    artifacts.hold(out, folder=False)
    merged = artifacts.make_manifest("class_analysis", {**first[1]["config"],
                                                         "class_start": runs[0][1]["config"]["class_start"],
                                                         "class_end": runs[-1][1]["config"]["class_end"],
                                                         "classes": len(frame)},
                                     {}, {"merged": {str(f): artifacts.sha256_file(f) for f, _, _ in runs}},
                                     complete=True)
    out.with_suffix(".json").unlink(missing_ok=True)   # never a new CSV beside an old manifest
    artifacts.write_csv(out, frame)
    artifacts.write_json(out.with_suffix(".json"), merged)
    print(f"{len(frame)} classes from {len(runs)} files -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
