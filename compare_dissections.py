"""Side-by-side of dissection runs (two models, two weights, two methods), as seed 001 compares them:
unique concepts per layer and overall, units per concept per layer, category shares, and, for runs
over the same units, where their labels agree.

Takes result folders of dissect_neurons.py / describe_neurons.py, or descriptions CSV files
(layer,unit,description,similarity: ours or CLIP-Dissect's, e.g. its
data/CLIP_Dissect_results/*.csv). Writes to --output_dir: unique_concepts.csv (run, layer,
unique_concepts, with a row 'overall' per run), units_per_concept_<layer>.png (the runs side by
side), comparison.csv, unique_concepts.png, category_shares.png, units.csv (when the runs cover the
same units) and manifest.json.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io.schema import AGREE
from disentangle.pipeline.dissect import compare_dissections


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="result folders or descriptions CSV files (two or more)")
    cli.add(p, "names", default=None, help="comma-separated display names (default: folder or file names)")
    cli.add(p, "layers", type=cli.names, default=None,
            help="comma-separated layers to compare (default: every layer of the runs)")
    cli.add(p, "min_units", type=int, default=3,
            help="units_per_concept_<layer>.png shows concepts with more than this many units")
    cli.output_args(p, None, "default: outputs/dissect/compare_<run1>_vs_<run2>...", overwrite=False)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    comparison = compare_dissections(args.runs, args.names.split(",") if args.names else None, args.output_dir,
                                     args.layers, args.min_units)
    print(comparison.unique.pivot(index="layer", columns="run", values="unique_concepts")
          .reindex(list(dict.fromkeys(comparison.unique["layer"])))[list(dict.fromkeys(comparison.unique["run"]))]
          .to_string())
    if comparison.units is not None:
        units = comparison.units
        print(f"labels agree on {units[AGREE].mean():.0%} of {len(units)} units")
    return cli.artifacts_in(comparison.folder)


if __name__ == "__main__":
    raise SystemExit(main())
