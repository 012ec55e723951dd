"""Clustering as the original computes it: its features, its k-means, its published partitions.

The known answers are the original's published DenseNet-121 statistics and clusters (all 16
block x k), read from ../shared/fixtures/seed000 when it is there (a user's clone has no shared/).
"""
import json

import numpy as np
import pytest
import torch

import neuron_stats
from disentangle.neurons import statistics

from .conftest import ROOT

SEED000 = ROOT.parent / "shared" / "fixtures" / "seed000"
needs_fixtures = pytest.mark.skipif(not SEED000.is_dir(), reason="../shared/fixtures/seed000 is not here")


@needs_fixtures
@pytest.mark.parametrize("block", [1, 2, 3, 4])
def test_from_stats_reproduces_the_published_clusters(tmp_path, block):
    stats = SEED000 / f"stats_block_{block}.npz"
    for k in (2, 3, 4, 5):
        out = tmp_path / f"block_{block}_k{k}"
        assert neuron_stats.main(["--from_stats", str(stats), "--block", f"block_{block}", "--n_clusters", str(k),
                                  "--output_dir", str(out)]) == 0
        published = np.load(SEED000 / f"cluster_results_block_{block}_k{k}.npz")
        ours = np.load(out / "cluster_results.npz")
        assert {"selected_block", "labels", "n_clusters"} <= set(ours.files)
        assert str(ours["selected_block"]) == str(published["selected_block"]) == f"block_{block}"
        assert int(ours["n_clusters"]) == int(published["n_clusters"]) == k
        np.testing.assert_array_equal(ours["labels"], published["labels"])      # the same partition, same numbers
        manifest = json.loads((out / "manifest.json").read_text())
        assert {"selected_block": f"block_{block}", "n_clusters": k, "num_neurons": len(published["labels"]),
                "stats_files": {f"block_{block}": f"stats_block_{block}.npz"}}.items() <= manifest.items()
        saved = np.load(out / f"stats_block_{block}.npz")
        for name in statistics.ORIGINAL:
            np.testing.assert_array_equal(saved[name], np.load(stats)[name])


def test_from_stats_refuses_a_file_without_statistics(tmp_path, capsys):
    bad = tmp_path / "stats.npz"
    np.savez(bad, something=np.zeros(5))
    assert neuron_stats.main(["--from_stats", str(bad), "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "activation_rate" in err
    assert not (tmp_path / "o").exists()


def test_original_features_against_numpy_on_planted_activations():
    """Streaming features equal the original's NumPy formulas on the spatial means, in batches."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(37, 6, 5, 4, generator=g, dtype=torch.float64) * torch.tensor([0.05, 0.1, 0.2, 0.3, 1, 2],
                                                                                 dtype=torch.float64)[:, None, None]
    a[:, 0] = 0.0                                                   # a dead channel: rate 0, variance 0
    moments = statistics.ImageMeanMoments()
    for part in a.split(8):
        moments.update(part)
    got = moments.result()
    m = a.mean((2, 3)).numpy()                                      # (N, C) as the original's hook
    np.testing.assert_allclose(got["activation_rate"], (m > 0.1).mean(0), rtol=0, atol=0)
    np.testing.assert_allclose(got["mean_activation"], m.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got["variance"], m.var(0), rtol=1e-9, atol=1e-15)


def test_original_kmeans_is_the_seeds_call_and_stable_renumbers():
    from sklearn.cluster import KMeans

    from disentangle.neurons.clustering import kmeans
    z = np.random.default_rng(3).normal(size=(60, 3))
    np.testing.assert_array_equal(kmeans(z, 4, seed=0, variant="original")["labels"],
                                  KMeans(n_clusters=4, random_state=42).fit(z).labels_)
    sizes = kmeans(z, 4, seed=0, variant="stable")["sizes"]
    assert list(sizes) == sorted(sizes, reverse=True)


@needs_fixtures
def test_the_random_control_draws_the_published_set(tmp_path):
    """control_visualization.py --block block_1 --n_random 214, on the published k=3 clusters of
    block_1, counts the drawn neurons per cluster as the published control_summary.json does."""
    import control_visualization
    stats = tmp_path / "block_1_k3"
    assert neuron_stats.main(["--from_stats", str(SEED000 / "stats_block_1.npz"), "--block", "block_1",
                              "--n_clusters", "3", "--output_dir", str(stats)]) == 0
    assert control_visualization.main(["--block", "block_1", "--n_random", "214", "--stats_dir", str(stats),
                                       "--output_dir", str(tmp_path / "control_random")]) == 0
    ours = json.loads((tmp_path / "control_random" / "control_summary.json").read_text())
    published = json.loads((SEED000 / "control_summary.json").read_text())
    assert {k: ours[k] for k in published} == published
    assert list(ours)[:len(published)] == list(published)


@needs_fixtures
def test_the_stage_tests_check_the_published_keys():
    """The keys and columns the stage tests require of our files are the published files' own."""
    import pandas as pd
    from disentangle.io.schema import class_columns
    from disentangle.pipeline.summary import ORIGINAL_KEYS, WIDE_LEAD
    from .test_class_analysis import ORIGINAL_COLUMNS
    from .test_grid import ORIGINAL_SUMMARY
    from .test_statistic import ORIGINAL_KEYS as STATISTIC_KEYS
    assert list(pd.read_csv(SEED000 / "mask_grid_summary_patch.csv", nrows=0).columns) == ORIGINAL_SUMMARY
    assert ORIGINAL_SUMMARY == WIDE_LEAD + [f"{m}_{k}" for m in ("ig", "saliency") for k in ORIGINAL_KEYS]
    columns = list(pd.read_csv(SEED000 / "class_analysis_metrics_head.csv", nrows=0).columns)
    assert columns == ORIGINAL_COLUMNS == list(class_columns())[:len(columns)]
    published = json.loads((SEED000 / "statistical_results_patch.json").read_text())
    assert list(published["ig"]) == STATISTIC_KEYS
    control = json.loads((SEED000 / "control_random_patch_metrics.json").read_text())
    assert list(control["ig"]) == ["sparsity_mean", "sparsity_std", "faithfulness_mean", "faithfulness_std"]
    assert list(control)[2:] == ["experiment_type", "block_filtered", "neurons_filtered", "neurons_total",
                                 "random_seed", "metric_type"]
    single = json.loads((SEED000 / "cluster_analysis_ig_0.json").read_text())
    assert list(single) == ["cluster_magnitudes", "cluster_percentages", "cluster_sparsity", "reconstruction_error",
                            "cluster_independence"]
    aggregate = json.loads((SEED000 / "aggregate_stats_ig.json").read_text())
    assert list(aggregate) == ["cluster_magnitudes", "cluster_percentages", "cluster_sparsity",
                               "reconstruction_errors", "cluster_independence"]
