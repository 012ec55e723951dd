"""Significance tests against scipy on known data, corrections, and statistic.py end to end."""
import json

import numpy as np
import pytest
from scipy import stats

import statistic
from disentangle import significance


def test_paired_tests_match_scipy():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, 40)
    filt = base + rng.normal(0.03, 0.05, 40)
    r = significance.paired_tests(filt, base, n_boot=2000, seed=1)
    t = stats.ttest_rel(filt, base)
    w = stats.wilcoxon(filt, base)
    assert r["t"] == pytest.approx(t.statistic) and r["p_ttest"] == pytest.approx(t.pvalue)
    assert r["wilcoxon_statistic"] == pytest.approx(w.statistic) and r["p_wilcoxon"] == pytest.approx(w.pvalue)
    diff = filt - base
    assert r["cohens_dz"] == pytest.approx(diff.mean() / diff.std(ddof=1))
    low, high = r["ci95_mean_difference"]
    assert low < diff.mean() < high and low > 0
    assert significance.paired_tests(filt, base, 2000, 1) == r                     # seeded
    same = significance.paired_tests(base, base, 100, 0)
    assert same["p_ttest"] == 1 and same["p_wilcoxon"] == 1 and same["cohens_dz"] == 0


def test_corrections():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert significance.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(2)
    q = rng.uniform(0, 0.2, 30)
    assert significance.benjamini_hochberg(q) == pytest.approx(stats.false_discovery_control(q))
    assert (significance.holm(q) >= q).all() and (significance.holm(q) <= 1).all()


def test_statistic_script(tmp_path, tiny, capsys):
    import baseline_eval
    import filtered_eval
    import neuron_stats
    small = ["--images", "24", "--ig-steps", "4", "--batch-size", "12"]
    assert baseline_eval.main([*small, "--output_dir", str(tmp_path / "baseline")]) == 0
    assert neuron_stats.main(["--block", "block_2", "--n_clusters", "3", "--images", "24",
                              "--output_dir", str(tmp_path / "stats")]) == 0
    for c in (0, 1):
        assert filtered_eval.main(["--cluster_idx", str(c), "--stats_dir", str(tmp_path / "stats"),
                                   "--baseline_dir", str(tmp_path / "baseline"), "--batch-size", "12",
                                   "--output_dir", str(tmp_path / f"filtered_block_2_cluster_{c}_k3")]) == 0
    common = ["--baseline_dir", str(tmp_path / "baseline"), "--bootstrap", "500"]
    assert statistic.main([*common, "--filtered_dir", str(tmp_path / "filtered_block_2_cluster_0_k3"),
                           "--stats_dir", str(tmp_path / "stats"), "--output_dir", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "statistical_results.json").read_text())["tests"]
    assert len(one) == 4 and all(np.isfinite(v["p_ttest"]) and v["n"] == 24 for v in one.values())
    assert statistic.main([*common, "--all", "--outputs", str(tmp_path), "--output_dir", str(tmp_path / "grid")]) == 0
    grid = json.loads((tmp_path / "grid" / "statistical_results.json").read_text())["tests"]
    assert len(grid) == 8 and all(v["p_ttest_holm"] >= v["p_ttest"] for v in grid.values())
    capsys.readouterr()
    assert statistic.main([*common, "--filtered_dir", str(tmp_path / "nowhere")]) == 2
    assert statistic.main([*common, "--filtered_dir", str(tmp_path / "filtered_block_2_cluster_0_k3"),
                           "--stats_dir", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error: ") for e in err)
