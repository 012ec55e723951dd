"""centroid_analysis.py on a hand-made neuron_stats folder: known centroids, figures, bad input."""
import numpy as np
import pandas as pd
import pytest

import centroid_analysis
from disentangle.io import artifacts
from disentangle.neurons import clustering, statistics as neurons

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLUSTER_1 = [1, 4, 6, 8, 11]                         # 5 neurons; cluster 0 (the larger) holds the other 7
CENTRE = {0: 1.0, 1: 10.0}                           # statistic j of cluster c averages CENTRE[c] * (j + 1)
OFFSETS = {0: [-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3], 1: [-0.2, -0.1, 0.0, 0.1, 0.2]}  # each sums to 0
OUTPUTS = ("cluster_centroids.csv", "cluster_tsne.png", "cluster_scatter_3d.png",
           "cluster_scatter_3d_interactive.html")


def make_stats_dir(folder, block="block_1", k=2, manifest=True):
    """A finished neuron_stats folder with 12 neurons in two obvious clusters, as neuron_stats.py writes it."""
    labels = np.zeros(12, dtype=np.int64)
    labels[CLUSTER_1] = 1
    stats = {s: np.empty(12) for s in neurons.STATS}
    for c in (0, 1):
        idx = np.flatnonzero(labels == c)
        for j, s in enumerate(neurons.STATS):
            stats[s][idx] = CENTRE[c] * (j + 1) + np.array(OFFSETS[c]) * (j + 1)
    artifacts.write_npz(folder / f"stats_{block}.npz", **stats, names=np.array(neurons.STATS), n_images=10)
    z, mean, scale = clustering.standardize(neurons.stats_matrix(stats))
    centroids = np.stack([z[labels == c].mean(0) for c in (0, 1)])
    artifacts.write_npz(folder / "cluster_results.npz", labels=labels, centroids=centroids, sizes=np.array([7, 5]),
                        inertia=float(((z - centroids[labels]) ** 2).sum()), silhouette=0.9,
                        scaler_mean=mean, scaler_scale=scale, stat_names=np.array(neurons.STATS))
    if manifest:
        artifacts.write_json(folder / artifacts.MANIFEST, {
            "stage": "neuron_stats", "complete": True,
            "config": {"stats": {"block": block, "statistics": list(neurons.STATS)}, "block": block, "k": k,
                       "n_init": 10, "seed": 0, "model": "tiny_densenet", "weights_sha256": "0" * 64,
                       "data": {"name": "concepts"}}})
    return stats, labels


@pytest.fixture
def stats_dir(tmp_path):
    folder = tmp_path / "block_1_k2"
    make_stats_dir(folder)
    return folder


def test_centroids_and_figures(stats_dir, capsys):
    assert centroid_analysis.main(["--stats_dir", str(stats_dir), "--seed", "0"]) == 0
    frame = pd.read_csv(stats_dir / "cluster_centroids.csv")
    assert list(frame.columns) == ["cluster", "n_neurons", *neurons.STATS]
    assert frame["cluster"].tolist() == [0, 1] and frame["n_neurons"].tolist() == [7, 5]
    for c in (0, 1):
        for j, s in enumerate(neurons.STATS):
            assert frame.loc[c, s] == pytest.approx(CENTRE[c] * (j + 1)), (c, s)
    for name in ("cluster_tsne.png", "cluster_scatter_3d.png"):
        assert (stats_dir / name).read_bytes()[:8] == PNG_MAGIC, name
    html = (stats_dir / "cluster_scatter_3d_interactive.html").read_text()
    assert "plotly" in html and "neuron 3" in html and "mean_image_max: " in html
    out = capsys.readouterr().out
    assert "mean_image_max" in out and str(stats_dir) in out


def test_same_seed_same_csv_and_html(stats_dir):
    assert centroid_analysis.main(["--stats_dir", str(stats_dir)]) == 0
    first = {n: (stats_dir / n).read_bytes() for n in ("cluster_centroids.csv", "cluster_scatter_3d_interactive.html")}
    assert centroid_analysis.main(["--stats_dir", str(stats_dir)]) == 0
    for name, data in first.items():
        assert (stats_dir / name).read_bytes() == data, name


def test_default_folder_from_block_and_k(tmp_path, monkeypatch):
    make_stats_dir(tmp_path / "outputs" / "neuron_stats" / "block_1_k2")
    monkeypatch.chdir(tmp_path)
    assert centroid_analysis.main(["--k", "2", "--axes", "frac_active,kurtosis,min"]) == 0
    assert (tmp_path / "outputs" / "neuron_stats" / "block_1_k2" / "cluster_scatter_3d.png").exists()


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error:"), err
    return err


@pytest.mark.parametrize("axes", ["mean,std,bogus", "mean,std", "mean,mean,std"])
def test_bad_axes(stats_dir, capsys, axes):
    assert centroid_analysis.main(["--stats_dir", str(stats_dir), "--axes", axes]) == 2
    err = one_line_error(capsys)
    assert "--axes" in err
    if "bogus" in axes:
        assert "'bogus'" in err and all(s in err for s in neurons.STATS)
    assert not any((stats_dir / n).exists() for n in OUTPUTS)


def test_folder_without_manifest(tmp_path, capsys):
    folder = tmp_path / "no_manifest"
    make_stats_dir(folder, manifest=False)
    assert centroid_analysis.main(["--stats_dir", str(folder)]) == 2
    assert "manifest.json" in one_line_error(capsys)
    assert not any((folder / n).exists() for n in OUTPUTS)


@pytest.mark.parametrize("flags", [["--k", "3"], ["--block", "block_2"]])
def test_folder_of_another_block_or_k(stats_dir, capsys, flags):
    assert centroid_analysis.main(["--stats_dir", str(stats_dir), *flags]) == 2
    assert flags[0] in one_line_error(capsys)


def test_original_features_give_the_original_columns():
    """The original's centroid table: its columns, each the mean of a feature per cluster."""
    from disentangle.pipeline.clusters import centroid_table
    gen = np.random.default_rng(0)
    stats = {name: gen.random(10) for name in neurons.ORIGINAL}
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    frame = centroid_table(stats, labels, 3)
    df = pd.DataFrame({"mean": stats["mean_activation"], "rate": stats["activation_rate"],
                       "variance": stats["variance"], "cluster": labels})
    want = df.groupby("cluster").agg(mean=("mean", "mean"), rate=("rate", "mean"), variance=("variance", "mean"),
                                     n_neurons=("cluster", "size")).reset_index()
    assert list(frame.columns) == ["cluster", "mean", "rate", "variance", "n_neurons"]
    pd.testing.assert_frame_equal(frame, want, check_dtype=False)
