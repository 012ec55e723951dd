"""Merge the per-class CSVs of several class ranges (class_analysis.py) into one.

Refuses ranges that overlap, gaps between ranges unless --allow_gaps, and CSVs made with other
settings (model, weights, data, cluster, mode, metric, methods, images per class: from the manifest
beside each CSV). Each CSV is read and checked too: exactly the rows of its range, in order, and
every column its methods give. Writes the merged CSV and its manifest.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.pipeline.classes import merge_class_tables


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add(p, "input_files", nargs="+", required=True, help="class_analysis CSVs (each with its manifest)")
    cli.add(p, "output", required=True, help="merged CSV (its manifest is written beside it)")
    cli.add(p, "allow_gaps", action="store_true", help="accept classes missing between the ranges")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    frame = merge_class_tables(args.input_files, args.output, args.allow_gaps)
    print(f"{frame['class_id'].nunique()} classes from {len(args.input_files)} files -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
