"""Paired significance of the change in sparsity and faithfulness when a neuron cluster is blocked.

Pairs every image's value in a filtered run with its value in the baseline (by image index) and
reports, per method and measure: means, the mean difference (filtered - baseline), a paired t-test,
a Wilcoxon signed-rank test, Cohen's d_z, a percentile bootstrap interval of the mean difference and
both tests' p-values adjusted across every test of the output (Holm and Benjamini-Hochberg). --all
does this for every finished filtered_* folder under --outputs and corrects across all of them.

Writes statistical_results.json and manifest.json to --output_dir (default
outputs/statistics/<filtered folder name>, with --all outputs/statistics/all). The statistics read the
runs' per_image.csv files and recompute nothing, so --batch_size changes nothing.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from disentangle.io import artifacts
from disentangle import cli
from disentangle.pipeline import readers as pipeline, summary
from disentangle.neurons import significance
from disentangle.neurons.controls import MEASURES
from disentangle.core.errors import UserError


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    r = p.add_argument_group("runs")
    r.add_argument("--outputs", default="outputs", help="folder holding baseline/ and filtered_*/")
    r.add_argument("--baseline_dir", default=None, help="output of baseline_eval.py; default: <outputs>/baseline")
    r.add_argument("--filtered_dir", default=None,
                   help="output of filtered_eval.py; default: <outputs>/filtered_<block>_cluster_<c>_k<k>")
    r.add_argument("--block", default="block_1", help="block of the default --filtered_dir")
    r.add_argument("--k", type=int, default=3, help="clustering of the default --filtered_dir")
    r.add_argument("--cluster_idx", type=int, default=0, help="cluster of the default --filtered_dir")
    r.add_argument("--stats_dir", default=None,
                   help="optional check: must be the neuron statistics the filtered run was made from")
    r.add_argument("--all", action="store_true",
                   help="test every finished filtered_* run under --outputs (instead of --filtered_dir) and "
                        "correct across all of them")
    s = p.add_argument_group("statistics")
    s.add_argument("--num_images", type=cli.positive, default=None,
                   help="use the first N paired images in index order; default: all")
    s.add_argument("--bootstrap", type=cli.positive, default=10000, help="bootstrap resamples of the mean difference")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed (the same for every test)")
    s.add_argument("--alpha", type=float, default=0.05,
                   help="level of the 'significant' flags; the interval covers 1 - alpha")
    s.add_argument("--batch_size", "--batch-size", type=cli.positive, default=None,
                   help="accepted for the original command line; changes nothing (statistics read the "
                        "per-image artifacts)")
    p.add_argument("--output_dir", default=None,
                   help="default: <outputs>/statistics/<filtered folder name>, or <outputs>/statistics/all")
    return p


def check_args(args) -> None:
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be at least 1, got {args.bootstrap}")
    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha must lie strictly between 0 and 1, got {args.alpha}")
    if args.num_images is not None and args.num_images < 2:
        raise UserError(f"--num_images must be at least 2 (a paired test needs two pairs), got {args.num_images}")
    if args.all and (args.filtered_dir or args.stats_dir):
        raise UserError("--all tests every filtered run under --outputs; leave out --filtered_dir and --stats_dir")


def load_filtered(folder: Path, baseline: pipeline.Baseline) -> tuple[dict, pd.DataFrame]:
    """A finished filtered run made against ``baseline``: its manifest and per-image table."""
    manifest = pipeline.finished(folder, "filtered run")
    if manifest.get("stage") != "filtered_eval":
        raise UserError(f"{folder} holds a {manifest.get('stage')} run, not a filtered run")
    baseline.check_made_against(manifest, folder)
    return manifest, artifacts.read_csv(folder / "per_image.csv", ("index",), "the filtered run's per-image table")


def check_stats_dir(stats_dir: str, folder: Path, manifest: dict) -> dict:
    """The block and k of ``--stats_dir``, which must be the neuron statistics the run was made from."""
    used = manifest.get("inputs", {}).get("neuron_stats")
    if used is None or Path(used).resolve() != Path(stats_dir).resolve():
        raise UserError(f"--stats_dir {stats_dir} is not the neuron statistics of the filtered run in {folder} "
                        f"(it was made from {used})")
    cfg = pipeline.finished(Path(stats_dir), "neuron statistics")["config"]
    return {"folder": stats_dir, "block": cfg.get("block"), "k": cfg.get("k")}


def _json_number(v):
    """Infinite t (all differences the same non-zero value) as null: JSON has no infinity."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def print_table(tests: dict) -> None:
    width = max(len(k) for k in tests)
    print(f"{'test':{width}}  {'n':>4}  {'mean diff':>10}  {'95% CI':^21}  {'d_z':>6}  "
          f"{'p t-test (Holm, BH)':^26}  {'p Wilcoxon (Holm, BH)':^26}")
    for key, r in tests.items():
        print(f"{key:{width}}  {r['n']:4d}  {r['mean_difference']:+10.4f}  "
              f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]  {r['cohens_dz']:+6.2f}  "
              f"{r['p_ttest']:8.2g} ({r['p_ttest_holm']:6.2g}, {r['p_ttest_bh']:6.2g})  "
              f"{r['p_wilcoxon']:8.2g} ({r['p_wilcoxon_holm']:6.2g}, {r['p_wilcoxon_bh']:6.2g})")


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    root = Path(args.outputs)
    baseline = pipeline.load_baseline(args.baseline_dir or root / "baseline")
    neuron_stats = None
    if args.all:
        folders = [folder for folder, _ in summary.filtered_runs(root)]
        if not folders:
            raise UserError(f"no finished filtered runs under {root}; run filtered_eval.py or run_experiments.py")
        out = Path(args.output_dir or root / "statistics" / "all")
    else:
        folders = [Path(args.filtered_dir or pipeline.filtered_dir(args.block, args.cluster_idx, args.k, root=root))]
        out = Path(args.output_dir or root / "statistics" / folders[0].name)

    # Read and check everything before writing anything.
    pairs, about = {}, {}
    for folder in folders:
        manifest, frame = load_filtered(folder, baseline)
        if args.stats_dir:
            neuron_stats = check_stats_dir(args.stats_dir, folder, manifest)
        c = manifest["config"]
        columns = [f"{m}_{measure}" for m in c["methods"] for measure in MEASURES]
        base, filt = significance.pair_images(baseline.per_image, frame, columns, args.num_images)
        for m in c["methods"]:
            for measure in MEASURES:
                key = f"{c['block']}/k{c['k']}/cluster{c['cluster']}/{c['mode']}/{m}/{measure}"
                if key in pairs:
                    raise UserError(f"{about[key]['filtered_dir']} and {folder} are runs of the same cluster "
                                    f"({key.rsplit('/', 2)[0]}); test one of them")
                pairs[key] = (filt[f"{m}_{measure}"].to_numpy(), base[f"{m}_{measure}"].to_numpy())
                about[key] = {"block": c["block"], "k": c["k"], "cluster": c["cluster"], "mode": c["mode"],
                              "method": m, "measure": measure, "metric": c["metric"], "filtered_dir": str(folder)}
    results = significance.compare_all(pairs, args.bootstrap, args.seed, args.alpha)
    tests = {}
    for key, r in results.items():
        flags = {f"significant_{t}_{c}": r[f"p_{t}_{c}"] <= args.alpha
                 for t in ("ttest", "wilcoxon") for c in ("holm", "bh")}
        r = {"n": r.pop("n"), "mean_baseline": r.pop("mean_b"), "mean_filtered": r.pop("mean_a"), **r}
        tests[key] = {**about[key], **{k: _json_number(v) for k, v in r.items()}, **flags}

    config = {**{k: baseline.manifest["config"][k] for k in pipeline.MODEL_KEYS},
              "filtered": [f.name for f in folders], "num_images": args.num_images, "bootstrap": args.bootstrap,
              "seed": args.seed, "alpha": args.alpha}
    inputs = {"baseline": str(baseline.folder), "filtered": [str(f) for f in folders]}
    if neuron_stats:
        inputs["neuron_stats"] = neuron_stats["folder"]
    manifest = artifacts.make_manifest("statistic", config, {"batch_size": args.batch_size}, inputs)
    artifacts.open_derived(out, manifest)
    artifacts.write_json(out / "statistical_results.json", {
        "settings": {"baseline_dir": str(baseline.folder), "filtered_dirs": [str(f) for f in folders],
                     "num_images": args.num_images, "bootstrap": args.bootstrap, "seed": args.seed,
                     "alpha": args.alpha, "ci_level": 1 - args.alpha, "neuron_stats": neuron_stats,
                     "difference": "filtered - baseline, paired by image index", "n_tests": len(tests)},
        "corrections": {
            "family": f"all {len(tests)} tests of this file; the t-test and the Wilcoxon p-values are adjusted "
                      f"separately",
            "holm": significance.HOLM_NOTE, "benjamini_hochberg": significance.BH_NOTE,
            "ties": "when every difference is zero both tests give statistic 0 and p = 1; when every difference "
                    "is the same non-zero value t is infinite (written as null) with p = 0; d_z is 0 in both "
                    "cases. Wilcoxon drops zero differences (scipy's default).",
            "bootstrap": f"percentile interval of the mean difference from {args.bootstrap} resamples of the "
                         f"images, seed {args.seed} for every test"},
        "tests": tests})
    manifest["complete"] = True
    artifacts.write_json(out / artifacts.MANIFEST, manifest)

    if neuron_stats:
        print(f"neuron statistics {neuron_stats['folder']}: {neuron_stats['block']}, k={neuron_stats['k']}")
    print_table(tests)
    print(f"artifacts in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
