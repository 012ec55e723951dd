"""Linear explanations without greedy search, as the original's explain_neurons_no_gs.py (its
appendix B.4): each neuron's --description_length (5) highest-weighted concepts of one elastic net,
fitted once.

Writes <result_dir>/le_<mode>_<target>_<layer>.csv with the original's columns and its manifest
beside it, as explain_neurons.py does (the same file name as the original; a file from another
search is not replaced without --overwrite).
"""
from __future__ import annotations

from disentangle import cli
from disentangle.pipeline.linear import FITS, FitConfig


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    cli.neuron_data_args(p)
    f = p.add_argument_group("fit (the defaults are the original's)")
    cli.add(f, "start_neuron", type=int, default=0, help="first neuron to explain")
    cli.add(f, "end_neuron", type=int, default=None, help="one past the last neuron (default: all)")
    cli.add(f, "description_length", type=cli.positive, default=5, help="concepts per explanation")
    cli.add(f, "glm_lambda", type=float, default=0.05, help="the elastic net's penalty")
    cli.add(f, "glm_neuron_batch", type=cli.positive, default=128, help="neurons per elastic-net solve")
    cli.add(f, "fit", choices=FITS, default="adam", help="adam (the original's) or exact least squares")
    cli.output_args(p, "results", "folder of le_<mode>_<target>_<layer>.csv")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    fit = FitConfig(args.start_neuron, args.end_neuron, args.description_length, search="none", fit=args.fit,
                    glm_lambda=args.glm_lambda, glm_neuron_batch=args.glm_neuron_batch)
    return cli.explain_and_report(args, fit)


if __name__ == "__main__":
    raise SystemExit(main())
