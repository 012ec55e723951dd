"""Linear explanations without greedy search, as the original's explain_neurons_no_gs.py (its
appendix B.4): each neuron's --description_length (5) highest-weighted concepts of one elastic net,
fitted once.

Writes <result_dir>/le_<mode>_<target>_<layer>.csv with the original's columns and its manifest
beside it, as explain_neurons.py does (the same file name as the original; a file from another
search is not replaced without --overwrite).
"""
from __future__ import annotations

from disentangle import cli
from disentangle.pipeline.linear import FitConfig


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    f = cli.explain_args(p)
    cli.add(f, "description_length", type=cli.positive, default=5, help="concepts per explanation")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    fit = FitConfig(args.start_neuron, args.end_neuron, args.description_length, search="none", fit=args.fit,
                    glm_lambda=args.glm_lambda, glm_neuron_batch=args.glm_neuron_batch,
                    neuron_batch=args.neuron_batch)
    return cli.explain_and_report(args, fit)


if __name__ == "__main__":
    raise SystemExit(main())
