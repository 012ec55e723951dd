"""Baseline attributions (IG and Saliency) and their sparsity, faithfulness and accuracy.

Writes to --output_dir (default outputs/baseline/): accuracy.json (top-1 over the whole data set,
as the original), metrics.json (per method sparsity_mean, sparsity_std, faithfulness_mean,
faithfulness_std), per_image.csv, attributions/<method>_<i>.npy (one map per image, as the
original; --attribution_format npz for one file per batch) and manifest.json. A rerun resumes an
interrupted run and skips a finished one.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io import layout
from disentangle.pipeline.baseline import run_baseline
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.model_args(p, images=100, order="strided")
    cli.runtime_args(p, engine=True)
    cli.attribution_args(p)
    cli.attribution_format_args(p, "npy")
    cli.output_args(p, str(layout.baseline_dir()))
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = cli.eval_config(args)
    session = setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args), args.seed,
                    cli.image_order(args, "strided"))
    outcome = run_baseline(session, cfg, args.output_dir, args.overwrite, cli.attribution_format(args))
    if outcome.skipped:
        print(f"{outcome.folder} is already complete for these settings; nothing to do")
        return 0
    acc, met = outcome.result["accuracy"], outcome.result["metrics"]
    print(f"{args.model}: top-1 {acc['top1']:.1%}, top-5 {acc['top5']:.1%} on {acc['n_images']} images"
          f"{' (the whole data set)' if 'images' in acc else ''}; attributions of {len(session.images)} images:")
    for m in cfg.methods:
        e = met[m]
        print(f"  {m:9s} sparsity {e['sparsity_mean']:.3f} ± {e['sparsity_std']:.3f}   "
              f"faithfulness {e['faithfulness_mean']:.3f} ± {e['faithfulness_std']:.3f}   ({cfg.metric})")
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
