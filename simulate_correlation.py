"""Score explanations by simulation: Pearson correlation, on the test split, between each neuron's
real activation and the one simulated from its explanation alone.

Takes one or more explanation files: explain_neurons.py's explanations.csv and/or
dissect_neurons.py's descriptions.csv (one concept per neuron), so methods share one table.
Writes to --output_dir: correlations.csv (method, layer, unit, test correlation), summary.csv
(per method: neurons, neurons simulated, mean and median correlation), correlations.png and
manifest.json.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io.schema import SIMULATION_SUMMARY_COLUMNS
from disentangle.pipeline.linear import explanation_files, simulate_correlation
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("explanations", nargs="+", help="explanations.csv and/or descriptions.csv files")
    cli.add(p, "names", default=None, help="comma-separated method names (default: folder names)")
    cli.neuron_data_args(p)
    cli.output_args(p, None, "default: outputs/simulation/<model>_<layer>_<mode>", overwrite=False)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    files = explanation_files(args.explanations, args.names.split(",") if args.names else None)
    data = cli.neuron_data(args)
    session = setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args), args.seed)
    result = simulate_correlation(session, data, files, args.output_dir)
    table = result.summary
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    method, _, neurons, simulated, _, _ = SIMULATION_SUMMARY_COLUMNS
    for _, s in table.iterrows():
        if s[simulated] < s[neurons]:
            print(f"note: {s[method]}: {s[neurons] - s[simulated]} neurons have descriptions outside "
                  f"the concept set and are not simulated")
    return cli.artifacts_in(result.folder)


if __name__ == "__main__":
    raise SystemExit(main())
