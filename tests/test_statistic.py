"""Paired tests and corrections against scipy and known answers, and statistic.py end to end."""
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import baseline_eval
import filtered_eval
import neuron_stats
import statistic
from disentangle.neurons import significance
from disentangle.core.errors import UserError

SMALL = ["--images", "24", "--ig-steps", "4", "--batch-size", "12"]


def test_paired_tests_equal_scipy():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, 40)
    filt = base + rng.normal(0.02, 0.05, 40)
    filt[:3] = base[:3]                              # some zero differences: Wilcoxon drops them, as scipy does
    r = significance.paired_tests(filt, base, 1000, 0)
    t, w = stats.ttest_rel(filt, base), stats.wilcoxon(filt, base)
    assert (r["t"], r["p_ttest"]) == (float(t.statistic), float(t.pvalue))
    assert (r["wilcoxon_statistic"], r["p_wilcoxon"]) == (float(w.statistic), float(w.pvalue))
    diff = filt - base
    assert r["n"] == 40 and r["mean_difference"] == pytest.approx(diff.mean())
    assert r["mean_a"] == pytest.approx(filt.mean()) and r["mean_b"] == pytest.approx(base.mean())
    assert r["cohens_dz"] == pytest.approx(diff.mean() / diff.std(ddof=1))


def test_equal_differences_are_decided_without_scipy():
    x = np.arange(8) / 4                             # exact in binary: x + 0.5 - x is exactly 0.5
    same = significance.paired_tests(x, x, 100, 0)
    assert (same["t"], same["p_ttest"], same["wilcoxon_statistic"], same["p_wilcoxon"]) == (0, 1, 0, 1)
    assert same["cohens_dz"] == 0 and same["ci_low"] == same["ci_high"] == 0
    shifted = significance.paired_tests(x + 0.5, x, 100, 0)
    assert shifted["t"] == math.inf and shifted["p_ttest"] == 0 and shifted["cohens_dz"] == 0
    assert shifted["p_wilcoxon"] == pytest.approx(stats.wilcoxon(x + 0.5, x).pvalue)


def test_cohens_dz_known_answer():
    assert significance.cohens_dz(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)     # mean 2, sd 1
    assert significance.cohens_dz(np.array([-1.0, -3.0])) == pytest.approx(-2 / math.sqrt(2))
    assert significance.cohens_dz(np.full(5, 0.3)) == 0


def test_holm_and_benjamini_hochberg():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert significance.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert significance.benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    q = np.random.default_rng(2).uniform(0, 0.3, 50)
    q[[3, 7]] = q[5]                                 # ties
    bh, hl = significance.benjamini_hochberg(q), significance.holm(q)
    assert bh == pytest.approx(stats.false_discovery_control(q))
    assert (hl >= bh).all() and (bh >= q).all() and (hl <= 1).all()
    assert len(significance.holm([])) == 0 and len(significance.benjamini_hochberg([])) == 0
    with pytest.raises(ValueError):
        significance.holm([0.1, np.nan])


def test_bootstrap_interval(monkeypatch):
    rng = np.random.default_rng(3)
    diff = rng.normal(0.0, 1.0, 200)
    diff += 0.5 - diff.mean()                        # the sample's mean is exactly 0.5
    low, high = significance.bootstrap_ci(diff, 5000, seed=7)
    assert low < 0.5 < high and low > 0 and high - low < 0.5
    assert significance.bootstrap_ci(diff, 5000, seed=7) == (low, high)
    assert significance.bootstrap_ci(diff, 5000, seed=8) != (low, high)
    assert significance.bootstrap_ci(diff, 5000, seed=7, level=0.5)[0] > low
    monkeypatch.setattr(significance, "_BOOT_CHUNK", 1000)      # resampled in chunks: the same draws
    assert significance.bootstrap_ci(diff, 5000, seed=7) == (low, high)


def test_pairing_by_image_index():
    base = pd.DataFrame({"index": [5, 1, 3], "target": [0, 1, 2], "ig_sparsity": [0.5, 0.1, 0.3]})
    filt = pd.DataFrame({"index": [1, 3, 5], "target": [1, 2, 0], "ig_sparsity": [0.2, 0.4, 0.6]})
    b, f = significance.pair_images(base, filt, ["ig_sparsity"], 2)    # the first two in the baseline's order
    assert b["index"].tolist() == f["index"].tolist() == [5, 1]
    assert (f["ig_sparsity"] - b["ig_sparsity"]).tolist() == pytest.approx([0.1, 0.1])
    with pytest.raises(UserError, match="different images"):
        significance.pair_images(base, filt.assign(index=[1, 3, 6]), ["ig_sparsity"])
    with pytest.raises(UserError, match="explained for class"):
        significance.pair_images(base, filt.assign(target=[1, 2, 3]), ["ig_sparsity"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny):
    """A baseline, block_1 clusters (k=3) and two filtered runs in a temporary outputs folder."""
    root = tmp_path_factory.mktemp("outputs")
    assert baseline_eval.main([*SMALL, "--output_dir", str(root / "baseline")]) == 0
    assert neuron_stats.main(["--block", "block_1", "--n_clusters", "3", "--images", "24",
                              "--output_dir", str(root / "stats")]) == 0
    for c in (0, 1):
        assert filtered_eval.main(["--cluster_idx", str(c), "--stats_dir", str(root / "stats"),
                                   "--baseline_dir", str(root / "baseline"), "--batch-size", "12",
                                   "--output_dir", str(root / f"filtered_block_1_cluster_{c}_k3")]) == 0
    return root


def results(folder):
    return json.loads((folder / "statistical_results.json").read_text())


def test_one_filtered_run(runs, tmp_path, capsys):
    out = tmp_path / "one"
    assert statistic.main(["--outputs", str(runs), "--filtered_dir", str(runs / "filtered_block_1_cluster_0_k3"),
                           "--stats_dir", str(runs / "stats"), "--bootstrap", "500", "--batch_size", "7",
                           "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "block_1/k3/cluster0/detach/saliency/faithfulness" in printed and "block_1, k=3" in printed
    res = results(out)
    assert list(res["tests"]) == [f"block_1/k3/cluster0/detach/{m}/{k}" for m in ("ig", "saliency")
                                  for k in ("sparsity", "faithfulness")]
    assert res["settings"]["neuron_stats"] == {"folder": str(runs / "stats"), "block": "block_1", "k": 3}
    base = pd.read_csv(runs / "baseline" / "per_image.csv")
    for key, r in res["tests"].items():
        numbers = [v for k, v in r.items() if k in ("mean_baseline", "mean_filtered", "mean_difference", "t",
                                                  "cohens_dz", "ci_low", "ci_high") or k.startswith("p_")]
        assert r["n"] == 24 and len(numbers) == 13 and all(math.isfinite(v) for v in numbers), key
        assert r["mean_baseline"] == pytest.approx(base[f"{r['method']}_{r['measure']}"].mean())
        assert r["ci_low"] <= r["mean_difference"] <= r["ci_high"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["stage"] == "statistic"
    # The default folder is named after the filtered run; fewer images are the first N by index.
    assert statistic.main(["--outputs", str(runs), "--k", "3", "--cluster_idx", "1", "--num_images", "10",
                           "--bootstrap", "200"]) == 0
    res = results(runs / "statistics" / "filtered_block_1_cluster_1_k3")
    assert all(r["n"] == 10 for r in res["tests"].values())


ORIGINAL_KEYS = ["n_samples", "baseline_mean", "baseline_std", "filtered_mean", "filtered_std", "mean_difference",
                 "std_difference", "ttest_statistic", "ttest_pvalue", "cohens_d", "bootstrap_ci_lower",
                 "bootstrap_ci_upper", "percent_improved", "percentile_5", "percentile_25", "percentile_50",
                 "percentile_75", "percentile_95"]


def original_statistics(baseline, filtered):
    """The original statistic.py's numbers, computed as its code does (one resample at a time)."""
    d = filtered - baseline
    rng = np.random.RandomState(42)
    means = [np.mean(d[rng.choice(len(d), size=len(d), replace=True)]) for _ in range(10000)]
    t = stats.ttest_rel(filtered, baseline)
    return {"n_samples": len(d), "baseline_mean": np.mean(baseline), "baseline_std": np.std(baseline),
            "filtered_mean": np.mean(filtered), "filtered_std": np.std(filtered), "mean_difference": np.mean(d),
            "std_difference": np.std(d), "ttest_statistic": t.statistic, "ttest_pvalue": t.pvalue,
            "cohens_d": np.mean(d) / np.std(d, ddof=1), "bootstrap_ci_lower": np.percentile(means, 2.5),
            "bootstrap_ci_upper": np.percentile(means, 97.5), "percent_improved": np.sum(d > 0) / len(d) * 100,
            **{f"percentile_{p}": np.percentile(d, p) for p in (5, 25, 50, 75, 95)}}


def test_the_seed_command_gives_the_original_numbers(runs, tmp_path, capsys):
    """The seed's command line, attributions/ folders and all; the file begins with the original's
    entries, equal to its code's computation on the same per-image faithfulness."""
    out = tmp_path / "statistical_analysis_patch_wise"
    assert statistic.main(["--baseline_dir", str(runs / "baseline" / "attributions"),
                           "--filtered_dir", str(runs / "filtered_block_1_cluster_0_k3" / "attributions"),
                           "--num_images", "50000", "--batch_size", "200", "--stats_dir", str(runs / "stats"),
                           "--output_dir", str(out)]) == 0
    assert "the runs hold 24 paired images; using all of them" in capsys.readouterr().out
    res = results(out)
    assert list(res)[:2] == ["ig", "saliency"]
    base = pd.read_csv(runs / "baseline" / "per_image.csv")
    filt = pd.read_csv(runs / "filtered_block_1_cluster_0_k3" / "per_image.csv")
    for m in ("ig", "saliency"):
        assert list(res[m]) == ORIGINAL_KEYS
        want = original_statistics(base[f"{m}_faithfulness"].to_numpy(), filt[f"{m}_faithfulness"].to_numpy())
        assert res[m] == {k: pytest.approx(float(v), rel=1e-12, abs=1e-15) for k, v in want.items()}
    assert "--batch_size" not in statistic.parser().format_help()


def test_all_filtered_runs_corrected_together(runs, tmp_path):
    out = tmp_path / "all"
    assert statistic.main(["--all", "--outputs", str(runs), "--bootstrap", "500", "--output_dir", str(out)]) == 0
    tests = results(out)["tests"]
    assert len(tests) == 8 and {r["cluster"] for r in tests.values()} == {0, 1}
    for r in tests.values():
        for test in ("ttest", "wilcoxon"):
            raw = r[f"p_{test}"]
            assert raw <= r[f"p_{test}_bh"] <= r[f"p_{test}_holm"] <= 1
    p = np.array([r["p_ttest"] for r in tests.values()])
    assert [r["p_ttest_holm"] for r in tests.values()] == pytest.approx(significance.holm(p))


def other_model(runs, tmp_path):
    """A copy of a filtered run whose manifest names other weights."""
    folder = tmp_path / "filtered_other"
    shutil.copytree(runs / "filtered_block_1_cluster_0_k3", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["config"]["weights_sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return ["--filtered_dir", str(folder)]


def other_stats(runs, tmp_path):
    """A finished neuron statistics folder, but not the one the filtered run was made from."""
    shutil.copytree(runs / "stats", tmp_path / "stats_copy")
    return ["--filtered_dir", str(runs / "filtered_block_1_cluster_0_k3"), "--stats_dir", str(tmp_path / "stats_copy")]


BAD = {
    "missing filtered run": (lambda runs, tmp: ["--filtered_dir", str(tmp / "nowhere")], "no filtered run in"),
    "mismatched --stats_dir": (other_stats, "is not the neuron statistics of the filtered run"),
    "another model": (other_model, "come from different runs (weights_sha256"),
    "--all with --filtered_dir": (lambda runs, tmp: ["--all", "--filtered_dir", str(tmp)], "leave out --filtered_dir"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(runs, tmp_path, capsys, case):
    extra, message = BAD[case]
    out = tmp_path / "out"
    code = statistic.main(["--outputs", str(runs), *extra(runs, tmp_path), "--output_dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error:") and message in err, err
    assert not out.exists()
