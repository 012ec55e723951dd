"""Linear explanations of a layer's neurons: activation ≈ Σ w_k · P(concept_k | image) + b.

Writes to --output_dir: explanations.csv (layer, unit, val correlation, weight1, concept1, ...,
bias; up to --max_length concepts per neuron, in the order the greedy search added them) and
manifest.json. See disentangle/neurons/linear.py for the method.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io.schema import BIAS, EXPLANATION_LEAD, concept_column, weight_column
from disentangle.pipeline.linear import FitConfig, explain
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.neuron_data_args(p)
    f = p.add_argument_group("fit")
    cli.add(f, "start_neuron", type=int, default=0, help="first neuron to explain")
    cli.add(f, "end_neuron", type=int, default=None, help="one past the last neuron (default: all)")
    cli.add(f, "max_length", type=cli.positive, default=10, help="most concepts in one explanation")
    cli.add(f, "tolerance", type=float, default=0.02,
            help="a concept is added only if it raises validation correlation by at least this much")
    cli.add(f, "candidates", type=cli.positive, default=20,
            help="concepts per neuron kept from the elastic-net path for the greedy search")
    cli.add(f, "alpha", type=float, default=0.99, help="elastic-net mixing: 1 is the lasso, 0 ridge")
    cli.output_args(p, None, "default: outputs/linear_explanations/<model>_<layer>_<mode>")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    fit = FitConfig(args.start_neuron, args.end_neuron, args.max_length, args.tolerance, args.candidates, args.alpha)
    data = cli.neuron_data(args)
    session = setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args), args.seed)
    outcome = explain(session, data, fit, args.output_dir, args.overwrite)
    if outcome.skipped:
        print(f"{outcome.folder} already holds these explanations; nothing to do")
        return 0
    frame = outcome.table
    _, unit, val_corr = EXPLANATION_LEAD
    corr = frame[val_corr]
    lengths = frame[[concept_column(i) for i in range(1, fit.max_length + 1)]].ne("").sum(axis=1)
    print(f"{len(frame)} neurons of {args.block}: validation correlation mean {corr.mean():.3f}, "
          f"median {corr.median():.3f}; {lengths.mean():.1f} concepts per explanation")
    for _, row in frame.sort_values(val_corr, ascending=False).head(5).iterrows():
        terms = " + ".join(f"{row[weight_column(i)]:.2f}·{row[concept_column(i)]}"
                           for i in range(1, fit.max_length + 1) if row[concept_column(i)])
        print(f"  unit {row[unit]:>4}: r = {row[val_corr]:.3f}  {terms} {row[BIAS]:+.2f}")
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
