"""Baseline attributions (IG and Saliency) and their sparsity, faithfulness and accuracy.

Writes to --output_dir (default outputs/baseline/): accuracy.json, metrics.json, per_image.csv,
attributions/<method>/batch_*.npz and manifest.json. A rerun resumes an interrupted run and
skips a finished one.
"""
from __future__ import annotations

import time
from pathlib import Path

from disentangle.io import artifacts
from disentangle.core import runtime
from disentangle import cli
from disentangle.attribution import evaluation
from disentangle.attribution.engine import METHODS
from disentangle.attribution.metrics import METRICS


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add_model_data_args(p, images=100, engine=True)
    a = p.add_argument_group("attributions and metrics")
    a.add_argument("--methods", default="ig,saliency", help=f"comma-separated, from {', '.join(METHODS)}")
    a.add_argument("--metric", default="patch", help=f"{' or '.join(METRICS)}: score single pixels or a 14x14 "
                                                      f"grid of patches")
    a.add_argument("--ig-steps", type=cli.positive, default=50, help="Integrated Gradients steps (Gauss-Legendre)")
    a.add_argument("--ig-batch", type=cli.positive, default=256,
                   help="rows per IG forward/backward: the images x steps of a batch are chunked to this")
    a.add_argument("--target", default="pred", help="class to explain: 'pred' (predicted) or 'label' (true)")
    a.add_argument("--precision", default="fp32",
                   help=f"{', '.join(evaluation.PRECISIONS)}: the model's forward passes in fp32, or under bf16/fp16 "
                        f"autocast (faster on GPUs; attributions are close to fp32's, not equal: see bench/)")
    a.add_argument("--mass", type=float, default=0.9, help="sparsity: share of attribution mass to cover")
    a.add_argument("--drop-fraction", type=float, default=0.1,
                   help="faithfulness: share of pixels/patches masked, the most important first")
    a.add_argument("--mask-value", type=cli.finite, default=0.0,
                   help="faithfulness: value written into masked pixels, in normalised input space "
                        "(0 = the data set's mean colour)")
    o = p.add_argument_group("output")
    o.add_argument("--output_dir", default="outputs/baseline", help="artifact folder")
    o.add_argument("--overwrite", action="store_true", help="replace a folder holding a run with other settings")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = evaluation.EvalConfig(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                                metric=args.metric, ig_steps=args.ig_steps, mass=args.mass,
                                drop_fraction=args.drop_fraction, mask_value=args.mask_value, target=args.target,
                                precision=args.precision)
    run = cli.setup(args)
    out = Path(args.output_dir)
    manifest = artifacts.make_manifest(
        "baseline_eval", {**run.config(), "seed": args.seed, **cfg.recorded()},
        {"device": str(run.device), "batch_size": args.batch_size, "ig_batch": args.ig_batch,
         "workers": run.workers, "channels_last": run.channels_last},
        weights_path=run.loaded.weights["path"])
    state = artifacts.open_output(out, manifest, args.overwrite)
    if state == "complete":
        print(f"{out} is already complete for these settings; nothing to do")
        return 0
    if state == "fresh":
        artifacts.write_json(out / artifacts.MANIFEST, manifest)
    start = time.time()
    auto = runtime.AutoBatch(args.batch_size, run.device)
    evaluation.run(run.loaded.model, run.loader(auto.start), cfg, out, run.device, args.ig_batch,
                   desc=f"baseline {args.model}", auto=auto)
    result = evaluation.finalize(out, cfg)
    manifest["complete"] = True
    manifest["seconds"] = round(time.time() - start, 1)
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    acc, met = result["accuracy"], result["metrics"]
    print(f"{args.model} on {len(run.indices)} images: top-1 {acc['top1']:.1%}, top-5 {acc['top5']:.1%}")
    for m in cfg.methods:
        s, f = met[m]["sparsity"], met[m]["faithfulness"]
        print(f"  {m:9s} sparsity {s['mean']:.3f} ± {s['std']:.3f}   faithfulness {f['mean']:.3f} ± {f['std']:.3f}"
              f"   ({cfg.metric})")
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
