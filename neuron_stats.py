"""Per-neuron activation statistics of one block, and k-means clusters of its neurons.

Writes outputs/neuron_stats/<block>_k<k>/: stats_<block>.npz (each statistic per channel),
cluster_results.npz (labels, centroids, inertia, silhouette) and manifest.json. Statistics already
computed for the same block, model and images under another k are reused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from disentangle.io import artifacts
from disentangle import cli
from disentangle.neurons import clustering, statistics as neurons
from disentangle.pipeline import readers as pipeline
from disentangle.core.layers import layer_width
from disentangle.core.models import resolve_block


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--block", default="block_1", help="named block of the model (see README: Models)")
    p.add_argument("--n_clusters", "--k", dest="k", type=int, default=3, help="number of k-means clusters")
    p.add_argument("--n_init", type=cli.positive, default=10, help="k-means restarts (seeded); the best inertia wins")
    cli.add_model_data_args(p, images=1000)
    p.add_argument("--output_dir", default=None, help="default: outputs/neuron_stats/<block>_k<k>")
    p.add_argument("--overwrite", action="store_true", help="replace a folder holding a run with other settings")
    return p


CLUSTERING_KEYS = ("k", "n_init")


def reusable_stats(out: Path, config: dict) -> Path | None:
    """A finished sibling folder whose statistics were computed with the same settings (any k)."""
    for sibling in sorted(out.parent.glob(f"{config['block']}_k*")):
        m = artifacts.read_manifest(sibling)
        if sibling != out and m and m.get("complete") and m.get("stage") == "neuron_stats" and \
                artifacts.config_mismatch(*({k: v for k, v in c.items() if k not in CLUSTERING_KEYS}
                                            for c in (m["config"], config))) is None:
            return sibling / f"stats_{config['block']}.npz"
    return None


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run = cli.setup(args)
    path = resolve_block(run.loaded.spec, args.block)
    n_channels = layer_width(run.loaded.model, path, run.dataset[int(run.indices[0])][0][None].to(run.device))
    if not 2 <= args.k <= n_channels - 1:
        raise cli.UserError(f"k={args.k} is out of range for {args.block} of {args.model}, which has "
                            f"{n_channels} neurons (need 2 <= k <= {n_channels - 1})")
    if args.n_init < 1:
        raise cli.UserError(f"--n_init must be at least 1, got {args.n_init}")
    out = Path(args.output_dir) if args.output_dir else pipeline.stats_dir(args.block, args.k)
    manifest = artifacts.make_manifest(
        "neuron_stats", {**run.config(), "seed": args.seed, "block": args.block, "statistics": list(neurons.STATS),
                         "k": args.k, "n_init": args.n_init},
        {"device": str(run.device), "batch_size": args.batch_size, "workers": run.workers},
        weights_path=run.loaded.weights["path"])
    if artifacts.open_output(out, manifest, args.overwrite) == "complete":
        print(f"{out} is already complete for these settings; nothing to do")
        return 0
    stats_file = out / f"stats_{args.block}.npz"
    source = reusable_stats(out, manifest["config"])
    if source is not None:
        z = artifacts.read_npz(source, neurons.STATS, "neuron statistics")
        stats = {k: z[k] for k in neurons.STATS}
        manifest["inputs"] = {"statistics": str(source.parent)}
    else:
        stats = neurons.collect_stats(run.loaded.model, path, run.loader(args.batch_size), run.device,
                                      desc=f"{args.block} activations")
    artifacts.write_npz(stats_file, **stats, names=np.array(neurons.STATS), n_images=len(run.indices))
    z, mean, scale = clustering.standardize(neurons.stats_matrix(stats))
    result = clustering.kmeans(z, args.k, args.seed, args.n_init)
    artifacts.write_npz(out / "cluster_results.npz", **result, scaler_mean=mean, scaler_scale=scale,
                        stat_names=np.array(neurons.STATS))
    manifest["complete"] = True
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    sizes = ", ".join(f"{c}: {s}" for c, s in enumerate(result["sizes"]))
    print(f"{args.block} of {args.model}: {n_channels} neurons in {args.k} clusters ({sizes}); "
          f"silhouette {result['silhouette']:.3f}, inertia {result['inertia']:.1f}")
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
