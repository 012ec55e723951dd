"""Top-1/top-5 accuracy with a cluster's neurons blocked (detach) and ablated (zero), beside the baseline.

Writes outputs/accuracy/acc_<block>_c<cluster>_k<k>.json. Under detach the forward pass is
unchanged, so its accuracy equals the baseline's by construction (a check); zero ablates.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from disentangle.io import artifacts
from disentangle import cli
from disentangle.pipeline import experiment, readers as pipeline
from disentangle.core.hooks import MODES, block_hook, channel_mask, hooks
from disentangle.attribution.metrics import topk_correct
from disentangle.core.models import resolve_block


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--block", default=None, help="named block (default block_1, or the --stats_dir's)")
    p.add_argument("--cluster", type=int, default=0, help="cluster to block")
    p.add_argument("--k", type=int, default=None, help="number of clusters (default 3, or the --stats_dir's)")
    p.add_argument("--batches", type=cli.positive, default=10, help="number of batches of evenly spread images")
    p.add_argument("--stats_dir", default=None, help="default: outputs/neuron_stats/<block>_k<k>")
    cli.add_runtime_args(p)
    p.add_argument("--output", default=None, help="default: outputs/accuracy/acc_<block>_c<cluster>_k<k>.json")
    args = p.parse_args(argv)
    if args.batches < 1:
        raise cli.UserError(f"--batches must be at least 1, got {args.batches}")
    clusters = pipeline.load_clusters(args.stats_dir or pipeline.stats_dir(args.block or "block_1", args.k or 3))
    for flag, asked, there in (("--block", args.block, clusters.block), ("--k", args.k, clusters.k)):
        if asked is not None and asked != there:
            raise cli.UserError(f"{clusters.folder} holds {clusters.block} with k={clusters.k}, not {flag} {asked}")
    channels = clusters.channels(args.cluster)
    run = experiment.setup_like(clusters.manifest, argparse.Namespace(
        device=args.device, workers=args.workers, images=args.batches * args.batch_size))
    model = run.loaded.model
    path = resolve_block(run.loaded.spec, clusters.block)
    mask = channel_mask(channels, len(clusters.labels))
    counts = {name: torch.zeros(2, dtype=torch.long) for name in ("baseline", *MODES)}
    with torch.no_grad():
        for x, y, _ in tqdm(run.loader(args.batch_size), desc="accuracy", unit="batch"):
            x, y = x.to(run.device), y.to(run.device)
            for name in counts:
                fwd = [] if name == "baseline" else [(path, block_hook(mask, name))]
                with hooks(model, fwd):
                    logits = model(x)
                counts[name] += torch.stack([(logits.argmax(1) == y).sum(), topk_correct(logits, y, 5).sum()]).cpu()
    n = len(run.indices)
    result = {name: {"top1": int(c[0]) / n, "top5": int(c[1]) / n} for name, c in counts.items()}
    out = Path(args.output or pipeline.OUTPUTS / "accuracy" / f"acc_{clusters.block}_c{args.cluster}_k{clusters.k}.json")
    artifacts.write_json(out, {"block": clusters.block, "k": clusters.k, "cluster": args.cluster,
                               "n_blocked": len(channels), "n_neurons": len(clusters.labels), "n_images": n, **result,
                               "manifest": artifacts.make_manifest("accuracy", {**clusters.manifest["config"],
                                                                                 "images": n}, {"device": str(run.device)},
                                                                   {"neuron_stats": str(clusters.folder)}) | {"complete": True}})
    for name, r in result.items():
        print(f"{name:9s} top-1 {r['top1']:.1%}  top-5 {r['top5']:.1%}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
