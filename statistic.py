"""Paired significance of the change in sparsity and faithfulness when a neuron cluster is blocked.

Pairs every image's value in a filtered run with its value in the baseline (by image index). For
one filtered run, statistical_results.json begins as the original's: per method (ig, saliency) its
numbers of faithfulness (n_samples, baseline_mean, ..., cohens_d, bootstrap_ci_lower/upper with
RandomState(--seed) resamples, percent_improved, percentile_5 ... percentile_95). Then, per method
and measure: means, the mean difference (filtered - baseline), a paired t-test,
a Wilcoxon signed-rank test, Cohen's d_z, a percentile bootstrap interval of the mean difference and
both tests' p-values adjusted across every test of the output (Holm and Benjamini-Hochberg). --all
does this for every finished filtered_* folder under --outputs and corrects across all of them.

Writes statistical_results.json and manifest.json to --output_dir (default
outputs/statistics/<filtered folder name>, with --all outputs/statistics/all). The statistics read the
runs' per_image.csv files: the faithfulness values the original recomputes from the attribution
files, made with the same definitions. --baseline_dir and --filtered_dir take a run's folder or its
attributions/ folder (the original's arguments).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from disentangle import cli
from disentangle.core.errors import UserError
from disentangle.io import layout
from disentangle.pipeline import summary
from disentangle.pipeline.paired_tests import TestConfig, paired_tests


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    r = p.add_argument_group("runs")
    cli.add(r, "outputs", default="outputs", help="folder holding baseline/ and filtered_*/")
    cli.add(r, "baseline_dir", default=None,
            help="output of baseline_eval.py (or its attributions/ folder); default: <outputs>/baseline")
    cli.add(r, "filtered_dir", default=None,
            help="output of filtered_eval.py (or its attributions/ folder); default: "
                 "<outputs>/filtered_<block>_cluster_<c>_k<k>")
    cli.add(r, "block", default="block_1", help="block of the default --filtered_dir")
    cli.add(r, "k", type=int, default=3, help="clustering of the default --filtered_dir")
    cli.add(r, "cluster_idx", type=int, default=0, help="cluster of the default --filtered_dir")
    cli.add(r, "stats_dir", default=None,
            help="optional check: must be the neuron statistics the filtered run was made from")
    cli.add(r, "all", action="store_true",
            help="test every finished filtered_* run under --outputs (instead of --filtered_dir) and "
                 "correct across all of them")
    s = p.add_argument_group("statistics")
    cli.add(s, "images", type=cli.positive, default=None,
            help="use the first N paired images in the order they were attributed (all when fewer); default: all")
    cli.add(s, "bootstrap", type=cli.positive, default=10000, help="bootstrap resamples of the mean difference")
    cli.add(s, "seed", type=int, default=42, help="bootstrap seed (the same for every test; 42 as the original)")
    cli.add(s, "alpha", type=cli.finite, default=0.05,
            help="level of the 'significant' flags; the interval covers 1 - alpha")
    # The original's --batch_size only paced its recomputation; nothing is recomputed here.
    cli.add(s, "batch_size", type=cli.positive, default=None, help=argparse.SUPPRESS)
    cli.add(p, "output_dir", default=None,
            help="default: <outputs>/statistics/<filtered folder name>, or <outputs>/statistics/all")
    return p


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
    cfg = TestConfig(args.images, args.bootstrap, args.seed, args.alpha)
    if args.all and (args.filtered_dir or args.stats_dir):
        raise UserError("--all tests every filtered run under --outputs; leave out --filtered_dir and --stats_dir")
    root = Path(args.outputs)
    if args.all:
        folders = [folder for folder, _ in summary.filtered_runs(root)]
        if not folders:
            raise UserError(f"no finished filtered runs under {root}; run filtered_eval.py or run_experiments.py")
        out = args.output_dir or layout.statistics_dir("all", root)
    else:
        folders = [Path(args.filtered_dir or layout.filtered_dir(args.block, args.cluster_idx, args.k, root=root))]
        out = args.output_dir or layout.statistics_dir(folders[0].name, root)
    original, tests, neuron_stats = paired_tests(args.baseline_dir or layout.baseline_dir(root), folders, out, cfg,
                                                 args.stats_dir)
    if neuron_stats:
        print(f"neuron statistics {neuron_stats['folder']}: {neuron_stats['block']}, k={neuron_stats['k']}")
    n = next(iter(tests.values()))["n"]
    if args.images and args.images > n:
        print(f"note: --num_images {args.images} asked for, the runs hold {n} paired images; using all of them")
    for m, r in original.items():
        print(f"{m} faithfulness: {r['baseline_mean']:.4f} -> {r['filtered_mean']:.4f}, difference "
              f"{r['mean_difference']:+.4f} [{r['bootstrap_ci_lower']:+.4f}, {r['bootstrap_ci_upper']:+.4f}], "
              f"t = {r['ttest_statistic']:.3f} (p = {r['ttest_pvalue']:.3g}), d = {r['cohens_d']:.3f}, "
              f"{r['percent_improved']:.1f}% of images improved")
    print_table(tests)
    return cli.artifacts_in(out)


if __name__ == "__main__":
    raise SystemExit(main())
