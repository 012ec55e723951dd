"""Linear explanations of a layer's neurons: activation ≈ Σ w_k · P(concept_k | image) + b.

Writes, as the original's explain_neurons.py, <result_dir>/le_<mode>_<target>_<layer>.csv (layer,
unit, val correlation, weight0, concept0, ..., weight9, concept9, bias: up to --max_length concepts
per neuron by descending weight, 0 in unused slots) and its manifest beside it
(le_<mode>_<target>_<layer>.manifest.json). The defaults are the original's protocol (one elastic net
ranks the candidates, a windowed greedy search with Adam fits); see disentangle/neurons/linear.py.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.pipeline.linear import CANDIDATES, SEARCHES, FitConfig


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    f = cli.explain_args(p)
    cli.add(f, "max_length", type=cli.positive, default=10, help="most concepts in one explanation")
    cli.add(f, "tolerance", type=float, default=0.02,
            help="a concept is added only if it raises validation correlation by at least this much")
    cli.add(f, "candidates_from", choices=CANDIDATES, default="glm",
            help="glm: concepts ranked by the weights of one elastic net at --glm_lambda (the original); "
                 "path: the --candidates concepts entering an elastic-net path first (ours)")
    cli.add(f, "search", choices=SEARCHES, default="original",
            help="original: each step tries the next --width concepts of the ranking not yet chosen or bad, "
                 "a concept gaining less than --tolerance is bad for good; exhaustive: each step tries every "
                 "candidate with exact least squares (ours; --fit does not apply)")
    cli.add(f, "width", type=cli.positive, default=10, help="original search: concepts tried per step")
    cli.add(f, "candidates", type=cli.positive, default=20, help="path: concepts kept per neuron")
    cli.add(f, "alpha", type=float, default=0.99, help="elastic-net mixing: 1 is the lasso, 0 ridge")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    fit = FitConfig(args.start_neuron, args.end_neuron, args.max_length, args.tolerance, args.search, args.fit,
                    args.candidates_from, args.glm_lambda, args.glm_neuron_batch, args.width, args.candidates,
                    args.alpha, args.neuron_batch)
    return cli.explain_and_report(args, fit)

if __name__ == "__main__":
    raise SystemExit(main())
