"""Per-neuron statistics on known inputs, and k-means with a seed."""
import numpy as np
import pytest
import scipy.stats
import torch

from disentangle.neurons.clustering import kmeans, standardize
from disentangle.core.errors import UserError
from disentangle.neurons.statistics import STATS, ChannelMoments


def test_known_channels_streamed_over_batches():
    gen = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(5):
        a = torch.zeros(7, 3, 4, 4)
        a[:, 0] = 3.0                                               # constant
        a[:, 1] = 0.0                                               # never active
        a[:, 2] = torch.randn(7, 4, 4, generator=gen).exp() + 10    # skewed, offset from 0
        batches.append(a)
    moments = ChannelMoments()
    for a in batches:
        moments.update(a)
    s = moments.result()
    assert set(s) == set(STATS)
    assert s["mean"][0] == 3 and s["std"][0] == 0 and s["skewness"][0] == 0 and s["kurtosis"][0] == 0
    assert s["frac_active"][0] == 1 and s["max"][0] == 3 and s["min"][0] == 3
    assert all(s[k][1] == 0 for k in STATS)
    v = torch.cat(batches)[:, 2].flatten().double().numpy()
    assert s["mean"][2] == pytest.approx(v.mean(), rel=1e-12)
    assert s["std"][2] == pytest.approx(v.std(), rel=1e-9)
    assert s["skewness"][2] == pytest.approx(scipy.stats.skew(v), rel=1e-6)
    assert s["kurtosis"][2] == pytest.approx(scipy.stats.kurtosis(v), rel=1e-6)
    per_image_max = torch.cat(batches)[:, 2].flatten(1).amax(1).double().mean().item()
    assert s["mean_image_max"][2] == pytest.approx(per_image_max)
    assert s["max"][2] == pytest.approx(v.max()) and s["frac_active"][2] == 1


def test_kmeans_seeded_stable_and_numbered_by_size():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (5, 3)), rng.normal(5, 0.1, (12, 3)), rng.normal(-5, 0.1, (8, 3))])
    z, mean, scale = standardize(x)
    a, b = kmeans(z, 3, seed=7), kmeans(z, 3, seed=7)
    assert np.array_equal(a["labels"], b["labels"]) and a["inertia"] == b["inertia"]
    assert a["sizes"].tolist() == [12, 8, 5]
    assert set(a["labels"][5:17]) == {0} and set(a["labels"][17:]) == {1} and set(a["labels"][:5]) == {2}
    assert a["silhouette"] > 0.9
    assert np.allclose(z * scale + mean, x)


def test_kmeans_bad_k():
    z = np.random.default_rng(0).normal(size=(6, 2))
    with pytest.raises(UserError, match="k=7 is out of range"):
        kmeans(z, 7, seed=0)
    with pytest.raises(UserError, match="out of range"):
        kmeans(z, 1, seed=0)
    with pytest.raises(UserError, match="fewer than k=3 distinct"):
        kmeans(np.repeat([[0.0, 1.0], [2.0, 3.0]], 3, axis=0), 3, seed=0)
