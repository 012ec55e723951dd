"""Paired significance of the change in faithfulness and sparsity when a cluster is blocked.

Pairs each image's filtered and baseline values (from the runs' per_image.csv) and reports, per
method and measure: paired t-test, Wilcoxon signed-rank, Cohen's d_z, a bootstrap 95 % interval of
the mean change, and p-values adjusted across every test of the output (Holm and Benjamini–Hochberg).
--all does this for every filtered run under --outputs, correcting across the whole grid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from disentangle import artifacts, cli, pipeline, significance, summary
from disentangle.controls import MEASURES


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline_dir", default="outputs/baseline", help="output of baseline_eval.py")
    p.add_argument("--filtered_dir", default=None, help="default: outputs/filtered_<block>_cluster_<c>_k<k>")
    p.add_argument("--block", default="block_1", help="with --k and --cluster_idx: the default --filtered_dir")
    p.add_argument("--k", type=int, default=3, help="number of clusters")
    p.add_argument("--cluster_idx", type=int, default=0, help="cluster")
    p.add_argument("--num_images", type=int, default=None, help="use the first N paired images; default: all")
    p.add_argument("--batch_size", type=int, default=None,
                   help="accepted for the original command line; statistics read per-image artifacts, so unused")
    p.add_argument("--stats_dir", default=None, help="if given, must be the neuron statistics the filtered run used")
    p.add_argument("--all", action="store_true", help="every finished filtered run under --outputs")
    p.add_argument("--outputs", default="outputs", help="root for --all")
    p.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--alpha", type=float, default=0.05, help="level for the 'significant' flags")
    p.add_argument("--output_dir", default=None, help="default: outputs/statistics/<filtered folder name> (or grid/)")
    return p


def tests_of(folder: Path, manifest: dict, baseline: pipeline.Baseline, num_images: int | None, args) -> dict:
    pipeline.same_model(baseline.manifest, manifest, str(baseline.folder), str(folder))
    frame = pd.read_csv(folder / "per_image.csv")
    if frame["index"].tolist() != baseline.per_image["index"].tolist():
        raise cli.UserError(f"{folder} and {baseline.folder} hold different images")
    if num_images is not None:
        if not 1 < num_images <= len(frame):
            raise cli.UserError(f"--num_images must be between 2 and {len(frame)}, got {num_images}")
        frame, base = frame.iloc[:num_images], baseline.per_image.iloc[:num_images]
    else:
        base = baseline.per_image
    c = manifest["config"]
    out = {}
    for m in c["methods"]:
        for k in MEASURES:
            key = f"{c['block']}/k{c['k']}/cluster{c['cluster']}/{c['mode']}/{m}/{k}"
            out[key] = significance.paired_tests(frame[f"{m}_{k}"].to_numpy(), base[f"{m}_{k}"].to_numpy(),
                                                 args.bootstrap, args.seed)
    return out


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    baseline = pipeline.load_baseline(args.baseline_dir)
    if args.all:
        runs = summary.filtered_runs(Path(args.outputs))
        if not runs:
            raise cli.UserError(f"no finished filtered runs under {args.outputs}")
        out = Path(args.output_dir or Path(args.outputs) / "statistics" / "grid")
    else:
        folder = Path(args.filtered_dir or pipeline.filtered_dir(args.block, args.cluster_idx, args.k))
        manifest = pipeline.finished(folder, "filtered run")
        if args.stats_dir and Path(manifest["inputs"]["neuron_stats"]).resolve() != Path(args.stats_dir).resolve():
            raise cli.UserError(f"{folder} was made from {manifest['inputs']['neuron_stats']}, not {args.stats_dir}")
        runs = [(folder, manifest)]
        out = Path(args.output_dir or pipeline.OUTPUTS / "statistics" / folder.name)
    results = {}
    for folder, manifest in runs:
        results.update(tests_of(folder, manifest, baseline, args.num_images, args))
    keys = list(results)
    for name, fn in (("holm", significance.holm), ("bh", significance.benjamini_hochberg)):
        for test in ("ttest", "wilcoxon"):
            adjusted = fn(np.array([results[k][f"p_{test}"] for k in keys]))
            for k, p in zip(keys, adjusted):
                results[k][f"p_{test}_{name}"] = float(p)
                results[k][f"significant_{test}_{name}"] = bool(p <= args.alpha)
    artifacts.write_json(out / "statistical_results.json", {
        "settings": {"alpha": args.alpha, "bootstrap": args.bootstrap, "seed": args.seed,
                     "num_images": args.num_images, "n_tests": len(keys),
                     "correction": "Holm (family-wise) and Benjamini-Hochberg (false discovery rate) across all "
                                   "tests in this file"},
        "tests": results})
    artifacts.write_json(out / artifacts.MANIFEST, artifacts.make_manifest(
        "statistic", {"baseline": baseline.manifest["config"], "runs": [str(f) for f, _ in runs]}, {},
        {"baseline": str(baseline.folder), "filtered": [str(f) for f, _ in runs]}, complete=True))
    for k in keys:
        r = results[k]
        print(f"{k:45s} Δ {r['mean_difference']:+.4f} [{r['ci95_mean_difference'][0]:+.4f}, "
              f"{r['ci95_mean_difference'][1]:+.4f}]  d_z {r['cohens_dz']:+.2f}  p_t {r['p_ttest']:.2g} "
              f"(Holm {r['p_ttest_holm']:.2g})  p_W {r['p_wilcoxon']:.2g}")
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
