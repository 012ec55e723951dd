"""Per-class baseline and filtered metrics (IG and Saliency: sparsity, faithfulness; accuracy).

  python class_analysis.py --cluster_idx 0 --class_start 0 --class_end 200 --images_per_class 50 \
      --stats_dir outputs/neuron_stats/block_1_k3
  torchrun --nproc_per_node=4 class_analysis.py ...     # the same CSV, the classes shared by 4 ranks

As the original: the first --images_per_class images of each class, each explained for its
predicted class, pixel-wise metrics by default. Writes outputs/class_analysis_metrics_<start>_<end>.csv
(one row per class and method, the original's columns: class_id, class_name, method,
filtered_/baseline_ sparsity and faithfulness mean and std (ddof 0), mean_diff = baseline minus
filtered faithfulness; then n_images, accuracy, sparsity_diff) and its manifest beside it
(.manifest.json). Finished classes are kept while running, so an interrupted run
resumes; merge_classes.py joins the CSVs of several class ranges.
"""
from __future__ import annotations

from dataclasses import replace

from disentangle import cli
from disentangle.core.hooks import MODES
from disentangle.io import layout, readers
from disentangle.pipeline.classes import run_class_analysis


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.add(p, "cluster_idx", type=int, default=0, help="cluster to block")
    cli.add(p, "stats_dir", default=str(layout.stats_dir("block_1", 3)), help="output of neuron_stats.py")
    cli.add(p, "class_start", type=int, default=0, help="first class (inclusive)")
    cli.add(p, "class_end", type=int, default=None, help="last class (exclusive); default: every class")
    cli.add(p, "images_per_class", type=cli.positive, default=50, help="images per class (50: all of ImageNet's)")
    cli.image_order_args(p, "which images of a class: original (its first ones in ImageFolder order) or spread "
                            "(evenly over it)")
    cli.add(p, "mode", default="detach", help=f"{' or '.join(MODES)}")
    cli.attribution_args(p, target_flag=False, metrics=False, metric="pixel")
    cli.runtime_args(p, engine=True)
    cli.add(p, "output", default=None, help="default: outputs/class_analysis_metrics_<start>_<end>.csv")
    cli.add(p, "overwrite", action="store_true", help="replace a result made with other settings")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    clusters = readers.load_clusters(args.stats_dir)
    run_class_analysis(clusters, args.cluster_idx, args.class_start, args.class_end, args.images_per_class, args.mode,
                       replace(cli.eval_config(args), target="pred"), cli.runtime(args), args.output,
                       args.overwrite, default_out=layout.class_analysis_file,
                       image_order=cli.image_order(args, "first"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
