"""Score explanations by simulation: Pearson correlation, on the test split, between each neuron's
real activation and the one simulated from its explanation alone.

Takes explanation files (le_<mode>_<target>_<layer>.csv of explain_neurons.py or of the
Linear-Explanations release, descriptions.csv of dissect_neurons.py, CLIP-Dissect's, NetDissect's
or MILAN's one-concept files), or as the original --explanation_path FILE or --explanation_method
METHOD (default le_label). Writes each file's 'sim correlation' column back into it, as the
original does, and to --output_dir: correlations.csv (method, layer, unit, test correlation),
summary.csv (per method: neurons, neurons simulated, mean, median and SEM of the correlation, the
simulator), correlations.png and manifest.json. The simulator is the --mode's concept matrix: in
label mode the images' labels (the label protocol), which is not the paper's SigLIP simulation.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io.schema import SIMULATION_SUMMARY_COLUMNS
from disentangle.neurons.simulation import concepts_of
from disentangle.pipeline.linear import explanation_files, simulate_correlation
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    cli.explanation_args(p, several=True)
    cli.add(p, "names", default=None, help="comma-separated method names (default: folder names)")
    cli.neuron_data_args(p)
    cli.output_args(p, None, "default: outputs/simulation/<model>_<layer>_<mode>", overwrite=False)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    paths, names = cli.explanation_paths(args)
    files = explanation_files(paths, args.names.split(",") if args.names else names)
    # A SigLIP (or CLIP) simulator scores exactly the explanations' concepts, as the original does.
    concepts = None if cli.concept_mode(args) == "label" or args.concept_set else \
        list(dict.fromkeys(c for f in files.values() for c in concepts_of(f)))
    data = cli.neuron_data(args, "simulator", concepts)
    session = setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args), args.seed)
    result = simulate_correlation(session, data, files, args.output_dir)
    table = result.summary
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    method, _, neurons, simulated, mean, _, sem, simulator = SIMULATION_SUMMARY_COLUMNS
    for _, s in table.iterrows():
        print(f"{s[method]} ({files[s[method]]}): average correlation {s[mean]:.4f} +- {s[sem]:.4f}, "
              f"simulated with {s[simulator]}")
        if s[simulated] < s[neurons]:
            print(f"note: {s[method]}: {s[neurons] - s[simulated]} neurons have descriptions outside "
                  f"the concept set and are not simulated")
    return cli.artifacts_in(result.folder)


if __name__ == "__main__":
    raise SystemExit(main())
