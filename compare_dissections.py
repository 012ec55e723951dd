"""Side-by-side of dissection runs (two models, two weights, two methods): unique concepts per layer,
category shares, and, for runs over the same units, where their labels agree.

Writes to --output_dir: comparison.csv (one row per run and layer), unique_concepts.png,
category_shares.png, units.csv (per unit, each run's label, when the runs share layers and unit
counts) and manifest.json.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io.schema import AGREE, COMPARISON_LEAD
from disentangle.pipeline.dissect import compare_dissections


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="result folders of dissect_neurons.py (two or more)")
    cli.add(p, "names", default=None, help="comma-separated display names (default: folder names)")
    cli.output_args(p, None, "default: outputs/dissect/compare_<run1>_vs_<run2>...", overwrite=False)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    comparison = compare_dissections(args.runs, args.names.split(",") if args.names else None, args.output_dir)
    run, _, _, layer, _, labelled, unique = COMPARISON_LEAD
    print(comparison.table[[run, layer, labelled, unique]].to_string(index=False))
    if comparison.units is not None:
        units = comparison.units
        print(f"labels agree on {units[AGREE].mean():.0%} of {len(units)} units")
    return cli.artifacts_in(comparison.folder)


if __name__ == "__main__":
    raise SystemExit(main())
