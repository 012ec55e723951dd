"""Per-class baseline and filtered metrics (IG and Saliency: sparsity, faithfulness; accuracy).

  python class_analysis.py --cluster_idx 0 --class_start 0 --class_end 200 --images_per_class 50 \
      --stats_dir outputs/neuron_stats/block_1_k3
  torchrun --nproc_per_node=4 class_analysis.py ...     # the same CSV, the classes shared by 4 ranks

Writes outputs/class_analysis_metrics_<start>_<end>.csv (one row per class) and a manifest beside
it (.json). Finished classes are kept while running, so an interrupted run resumes; merge_classes.py
joins the CSVs of several class ranges.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from disentangle.io import artifacts
from disentangle.core import runtime
from disentangle.neurons import classes
from disentangle import cli
from disentangle.core import distributed
from disentangle.pipeline import experiment, readers as pipeline
from disentangle.attribution.engine import METHODS
from disentangle.attribution.evaluation import PRECISIONS, EvalConfig
from disentangle.core.hooks import MODES, channel_mask
from disentangle.core.models import resolve_block


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--cluster_idx", type=int, default=0, help="cluster to block")
    p.add_argument("--stats_dir", default="outputs/neuron_stats/block_1_k3", help="output of neuron_stats.py")
    p.add_argument("--class_start", type=int, default=0, help="first class (inclusive)")
    p.add_argument("--class_end", type=int, default=None, help="last class (exclusive); default: every class")
    p.add_argument("--images_per_class", type=cli.positive, default=50, help="images per class, evenly spread over it")
    p.add_argument("--mode", default="detach", help=f"{' or '.join(MODES)}")
    p.add_argument("--metric", default="patch", help="pixel or patch")
    p.add_argument("--methods", default="ig,saliency", help=f"comma-separated, from {', '.join(METHODS)}")
    p.add_argument("--ig-steps", type=cli.positive, default=50, help="Integrated Gradients steps")
    p.add_argument("--ig-batch", type=cli.positive, default=256, help="rows (image x step) per IG forward/backward")
    p.add_argument("--precision", default="fp32",
                   help=f"{', '.join(PRECISIONS)}: the model's forward passes in fp32, or under bf16/fp16 autocast")
    cli.add_runtime_args(p, engine=True)
    p.add_argument("--output", default=None, help="default: outputs/class_analysis_metrics_<start>_<end>.csv")
    p.add_argument("--overwrite", action="store_true", help="replace a result made with other settings")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.mode not in MODES:
        raise cli.UserError(f"unknown mode {args.mode!r}; choose from {', '.join(MODES)}")
    if args.images_per_class < 1:
        raise cli.UserError(f"--images_per_class must be at least 1, got {args.images_per_class}")
    cfg = EvalConfig(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                     metric=args.metric, ig_steps=args.ig_steps, precision=args.precision)
    clusters = pipeline.load_clusters(args.stats_dir)
    channels = clusters.channels(args.cluster_idx)
    with distributed.process_group(runtime.resolve_device(args.device)) as (rank, world, device):
        run = experiment.setup_like(clusters.manifest, argparse.Namespace(device=str(device), workers=0, images=1,
                                                                          channels_last=args.channels_last))
        targets, names = np.asarray(run.dataset.targets), list(run.dataset.classes)
        end = len(names) if args.class_end is None else args.class_end
        if not 0 <= args.class_start < end <= len(names):
            raise cli.UserError(f"classes {args.class_start}..{end} are out of range: the data has {len(names)} "
                                f"classes (0..{len(names) - 1})")
        largest = int(np.bincount(targets, minlength=len(names))[args.class_start:end].max())
        if args.images_per_class > largest:
            raise cli.UserError(f"--images_per_class {args.images_per_class} is more than any class in "
                                f"{args.class_start}..{end - 1} holds (at most {largest}); a class with fewer "
                                f"images uses all of them (its n_images column says how many)")
        out = Path(args.output or pipeline.OUTPUTS / f"class_analysis_metrics_{args.class_start}_{end}.csv")
        if out.suffix != ".csv":
            raise cli.UserError(f"--output {out} must be a .csv file (its manifest goes beside it as .json)")
        config = {**{k: clusters.manifest["config"][k] for k in ("model", "weights_sha256", "data", "block", "k")},
                  "cluster": args.cluster_idx, "channels": channels.tolist(), "mode": args.mode,
                  "images_per_class": args.images_per_class, "class_start": args.class_start, "class_end": end,
                  **cfg.recorded()}
        manifest = artifacts.make_manifest("class_analysis", config,
                                           {"device": str(device), "world_size": world, "batch_size": args.batch_size,
                                            "channels_last": args.channels_last},
                                           {"neuron_stats": str(clusters.folder)})
        sidecar = out.with_suffix(".json")
        if rank == 0:
            artifacts.hold(out, folder=False)
        if sidecar.exists():
            old = artifacts.read_json(sidecar, "manifest")
            if not isinstance(old, dict) or old.get("stage") != "class_analysis" or "config" not in old:
                raise cli.UserError(f"{sidecar} is not the manifest of a class_analysis run; choose another --output")
            if artifacts.config_mismatch(old["config"], config) is None:
                if rank == 0:
                    print(f"{out} is already complete for these settings; nothing to do")
                return 0
            if not args.overwrite:
                raise cli.UserError(f"{out} was made with other settings "
                                    f"({artifacts.config_mismatch(old['config'], config)}); pass --overwrite")
        parts = out.with_suffix(".parts")
        if rank == 0 and artifacts.open_output(parts, manifest, args.overwrite, progress="class_*.json") == "fresh":
            artifacts.write_json(parts / artifacts.MANIFEST, manifest)
        distributed.barrier()

        block = resolve_block(run.loaded.spec, clusters.block)
        mask = channel_mask(channels, len(clusters.labels))
        mine = list(range(args.class_start, end))[rank::world]
        auto = runtime.AutoBatch(args.batch_size, device)   # 'auto': a class that runs out of memory is redone in halves
        start = time.time()
        n_images = 0
        for c in tqdm(mine, desc=f"classes (rank {rank}/{world})", unit="class", disable=None):
            if classes.done(parts, c):
                continue
            idx = classes.class_images(targets, c, args.images_per_class)
            row = auto(lambda size: classes.analyse_class(run.loaded.model, run.dataset, idx, cfg, block, mask,
                                                          args.mode, size, device, auto.scaled(args.ig_batch),
                                                          run.loaded.spec.stem))
            classes.write_part(parts, c, {"class": c, "class_name": names[c], "n_images": len(idx), **row})
            n_images += len(idx)
        seconds = time.time() - start
        distributed.barrier()
        if rank == 0:
            frame = classes.gather(parts, list(range(args.class_start, end)))
            artifacts.write_csv(out, frame)
            manifest.update(complete=True, seconds=round(seconds, 1))
            artifacts.write_json(sidecar, manifest)
            shutil.rmtree(parts)
            print(f"{len(frame)} classes, {int(frame['n_images'].sum())} images x (baseline + filtered); "
                  f"rank 0 did {n_images} images in {seconds:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
