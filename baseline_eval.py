"""Baseline attributions (IG and Saliency) and their sparsity, faithfulness and accuracy.

Writes to --output_dir (default outputs/baseline/): accuracy.json, metrics.json, per_image.csv,
attributions/<method>/batch_*.npz and manifest.json. A rerun resumes an interrupted run and
skips a finished one.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io import layout
from disentangle.pipeline.baseline import run_baseline
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.model_args(p, images=100)
    cli.runtime_args(p, engine=True)
    cli.attribution_args(p)
    cli.output_args(p, str(layout.baseline_dir()))
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = cli.eval_config(args)
    session = setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args), args.seed)
    outcome = run_baseline(session, cfg, args.output_dir, args.overwrite)
    if outcome.skipped:
        print(f"{outcome.folder} is already complete for these settings; nothing to do")
        return 0
    acc, met = outcome.result["accuracy"], outcome.result["metrics"]
    print(f"{args.model} on {len(session.images)} images: top-1 {acc['top1']:.1%}, top-5 {acc['top5']:.1%}")
    for m in cfg.methods:
        s, f = met[m]["sparsity"], met[m]["faithfulness"]
        print(f"  {m:9s} sparsity {s['mean']:.3f} ± {s['std']:.3f}   faithfulness {f['mean']:.3f} ± {f['std']:.3f}"
              f"   ({cfg.metric})")
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
