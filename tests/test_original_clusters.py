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
