"""Per-class analysis (single process, two torchrun ranks, resume), merging ranges, decomposition."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import class_analysis
import decomposition_analysis
import merge_classes
from disentangle.neurons import classes, decomposition
from disentangle.data.concepts import ConceptWorld
from disentangle.data.images import folder_order
import utils
from tests.conftest import ROOT

FAST = ["--images_per_class", "2", "--ig-steps", "4", "--batch-size", "4"]
ORIGINAL_COLUMNS = ["class_id", "class_name", "method", "filtered_sparsity_mean", "filtered_sparsity_std",
                    "filtered_faithfulness_mean", "filtered_faithfulness_std", "baseline_sparsity_mean",
                    "baseline_sparsity_std", "baseline_faithfulness_mean", "baseline_faithfulness_std", "mean_diff"]


@pytest.fixture
def stats(staged):
    return staged / "stats"


def analyse(stats, out, *extra):
    return class_analysis.main([*FAST, "--stats_dir", str(stats), "--output", str(out), *extra])


def test_two_ranks_give_the_single_process_csv(stats, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*FAST, "--stats_dir", str(stats), "--class_start", "2", "--class_end", "7"]
    one = subprocess.run([sys.executable, "class_analysis.py", *args, "--output", str(tmp_path / "one.csv")],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "class_analysis.py",
                          *args, "--output", str(tmp_path / "two.csv")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    frame = pd.read_csv(tmp_path / "one.csv")
    assert frame["class_id"].tolist() == [2, 2, 3, 3, 4, 4, 5, 5, 6, 6] and (frame["n_images"] == 2).all()
    assert frame["method"].tolist() == ["ig", "saliency"] * 5
    assert json.loads((tmp_path / "two.manifest.json").read_text())["runtime"]["world_size"] == 2


def test_rows_and_resume(stats, tmp_path, monkeypatch):
    full = tmp_path / "full.csv"
    assert analyse(stats, full, "--class_end", "4") == 0
    frame = pd.read_csv(full)
    assert list(frame.columns[:12]) == ORIGINAL_COLUMNS
    assert np.allclose(frame["mean_diff"], frame["baseline_faithfulness_mean"] - frame["filtered_faithfulness_mean"])
    assert frame["top1_baseline"].equals(frame["top1_filtered"])          # detach keeps the forward pass
    real, calls = classes.analyse_class, []

    def dies_on_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(classes, "analyse_class", dies_on_third)
    cut = tmp_path / "cut.csv"
    assert analyse(stats, cut, "--class_end", "4") == 130
    assert not cut.exists() and len(list((tmp_path / "cut.parts").glob("class_*.json"))) == 2
    monkeypatch.setattr(classes, "analyse_class", real)
    assert analyse(stats, cut, "--class_end", "4") == 0
    assert cut.read_bytes() == full.read_bytes() and not (tmp_path / "cut.parts").exists()


def test_merge_refuses_overlaps_gaps_and_other_settings(stats, tmp_path, capsys):
    a, b, c, d = (tmp_path / f"{n}.csv" for n in "abcd")
    assert analyse(stats, a, "--class_start", "0", "--class_end", "3") == 0
    assert analyse(stats, b, "--class_start", "3", "--class_end", "5") == 0
    assert analyse(stats, c, "--class_start", "6", "--class_end", "8") == 0
    assert analyse(stats, d, "--class_start", "2", "--class_end", "4", "--metric", "patch") == 0
    merged = tmp_path / "merged.csv"
    assert merge_classes.main(["--input_files", str(b), str(a), "--output", str(merged)]) == 0
    assert pd.read_csv(merged)["class_id"].drop_duplicates().tolist() == [0, 1, 2, 3, 4]
    capsys.readouterr()
    for files, message in (([a, b, c], "classes 5..6 are in no input"), ([a, d], "other settings than"),):
        assert merge_classes.main(["--input_files", *map(str, files), "--output", str(tmp_path / "x.csv")]) == 2
        assert message in capsys.readouterr().err
    assert merge_classes.main(["--input_files", str(a), str(b), str(c), "--allow_gaps", "--output", str(merged)]) == 0
    assert analyse(stats, d, "--class_start", "2", "--class_end", "4", "--metric", "patch") == 0  # complete: skipped
    overlap = tmp_path / "o.csv"
    assert analyse(stats, overlap, "--class_start", "2", "--class_end", "4") == 0
    assert merge_classes.main(["--input_files", str(a), str(overlap), "--output", str(tmp_path / "x.csv")]) == 2
    assert "overlap" in capsys.readouterr().err


def test_bad_class_range(stats, tmp_path, capsys):
    assert analyse(stats, tmp_path / "x.csv", "--class_end", "200") == 2
    assert "out of range: the data has 12 classes" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["ig", "saliency"])
def test_cluster_maps_add_up_to_the_full_map(tiny, method):
    world = ConceptWorld("val", transform=tiny.spec.transform(square=True))
    x = torch.stack([world[i][0] for i in (3, 500, 1050)])
    target = tiny.model(x).argmax(1)
    labels = torch.tensor([i % 4 for i in range(32)])
    full, parts = decomposition.cluster_maps(tiny.model, x, target, "features.denseblock2", labels, method, 16, 64)
    assert parts.shape == (4, *full.shape)
    assert torch.allclose(parts.sum(0), full, atol=1e-6 * full.abs().max().item())
    s = decomposition.shares(full, parts)
    assert torch.allclose(s["signed_share"].sum(0), torch.ones(3), atol=1e-4) and (s["remainder"] < 1e-5).all()
    # The original's per-image numbers, as its NumPy code computes them from the maps.
    o = decomposition.original_stats(full, parts)
    for b in range(3):
        maps = [parts[c, b].numpy() for c in range(4)]
        norms = [np.linalg.norm(m) for m in maps]
        assert np.allclose(o["cluster_magnitudes"][:, b], norms, rtol=1e-5)
        assert np.allclose(o["cluster_percentages"][:, b], [100 * n / sum(norms) for n in norms], rtol=1e-5)
        assert np.allclose(o["cluster_sparsity"][:, b], [utils.compute_sparsity_pixel_wise(m) for m in maps])
        corr = [abs(np.corrcoef(maps[i].ravel(), maps[j].ravel())[0, 1]) for i in range(4) for j in range(i + 1, 4)]
        assert o["cluster_independence"][b] == pytest.approx(np.mean(corr), rel=1e-5)
        assert o["reconstruction_error"][b] == pytest.approx(np.abs(full[b].numpy() - sum(maps)).mean(), abs=1e-7)


def test_decomposition_script_single_and_aggregate(stats, tmp_path):
    out = tmp_path / "dec"
    assert decomposition_analysis.main(["--img_idx", "1050", "--stats_dir", str(stats), "--ig-steps", "8",
                                        "--output_dir", str(out)]) == 0
    single = json.loads((out / "cluster_analysis_ig_1050.json").read_text())
    assert list(single)[:5] == ["cluster_magnitudes", "cluster_percentages", "cluster_sparsity",
                                "reconstruction_error", "cluster_independence"]
    assert single["dataset_index"] == int(folder_order(ConceptWorld("val").targets)[1050])
    assert single["remainder_relative"] < 1e-5 and sum(single["signed_share"]) == pytest.approx(1, abs=1e-4)
    assert sum(single["cluster_percentages"].values()) == pytest.approx(100, abs=1e-4)      # the figure's labels
    assert sum(single["mass_share"]) >= 1 - 1e-6           # |part| over |full|: cancelling parts exceed 1
    assert (out / "cluster_analysis_ig_1050.png").read_bytes()[:4] == b"\x89PNG"
    assert decomposition_analysis.main(["--num_images", "6", "--stats_dir", str(stats), "--ig-steps", "4",
                                        "--method", "saliency", "--output_dir", str(out)]) == 0
    agg = json.loads((out / "aggregate_stats_saliency.json").read_text())
    positions = np.linspace(0, 11999, 6, dtype=int).tolist()
    assert agg["images"] == positions and sorted(agg["cluster_percentages"]) == ["0", "1", "2"]
    per_image = [json.loads((out / f"cluster_analysis_saliency_{i}.json").read_text()) for i in positions]
    for c in "012":
        values = [p["cluster_magnitudes"][c] for p in per_image]
        assert agg["cluster_magnitudes"][c] == {"mean": pytest.approx(np.mean(values)),
                                                "std": pytest.approx(np.std(values))}
    assert sum(a["mean"] for a in agg["cluster_percentages"].values()) == pytest.approx(100, abs=1e-4)
    assert agg["reconstruction_errors"]["mean"] < 1e-5 and 0 <= agg["cluster_independence"]["mean"] <= 1
