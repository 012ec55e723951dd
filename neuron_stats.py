"""Per-neuron activation statistics of one block, and k-means clusters of its neurons.

Writes outputs/neuron_stats/<block>_k<k>/: stats_<block>.npz (each statistic per channel),
cluster_results.npz (selected_block, labels, n_clusters, plus centroids, inertia, silhouette) and
manifest.json. Statistics already computed for the same block, model and images under another k
are reused; --from_stats clusters a saved stats_<block>.npz (the original's too) without a model.
"""
from __future__ import annotations

from disentangle import cli
from disentangle.io import layout
from disentangle.pipeline.clusters import cluster_saved_stats, run_neuron_stats
from disentangle.pipeline.session import setup


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add(p, "block", default="block_1", help="named block of the model (see docs/models.md), or a module path")
    cli.add(p, "k", type=int, default=3, help="number of k-means clusters")
    cli.clustering_method_args(p)
    cli.add(p, "from_stats", default=None,
            help="cluster this stats_<block>.npz (e.g. the original's published statistics) without a model")
    cli.model_args(p, images=1000, order="first")
    cli.runtime_args(p)
    cli.output_args(p, None, "default: outputs/neuron_stats/<block>_k<k>")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = args.output_dir or layout.stats_dir(args.block, args.k)
    if args.from_stats:
        outcome = cluster_saved_stats(args.from_stats, args.block, args.k, out, args.overwrite, args.kmeans,
                                      args.n_init, args.seed)
        source = args.from_stats
    else:
        session = setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args),
                        args.seed, cli.image_order(args, "first"))
        outcome = run_neuron_stats(session, args.block, args.k, args.n_init, out, args.overwrite, args.features,
                                   args.kmeans)
        source = args.model
    if outcome.skipped:
        print(f"{outcome.folder} is already complete for these settings; nothing to do")
        return 0
    r = outcome.result
    sizes = ", ".join(f"{c}: {s}" for c, s in enumerate(r["sizes"]))
    print(f"{args.block} of {source}: {r['n_channels']} neurons in {args.k} clusters ({sizes}); "
          f"silhouette {r['silhouette']:.3f}, inertia {r['inertia']:.1f}")
    return cli.artifacts_in(outcome.folder)


if __name__ == "__main__":
    raise SystemExit(main())
