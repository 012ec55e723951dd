"""Stages under torchrun with 2 CPU ranks (gloo), compared with one process, for every script
family: the attribution baseline (with the whole-data-set accuracy counted by shards), the block x k
grid, neuron statistics and clusters, blocked accuracy, decomposition, mask-IoU dissection and
CLIP-Dissect, linear explanations and their ablation scores, InterpScore trials, CAMs, LIME and
feature visualizations; and a rank that hangs making the run fail with one line within the
collective timeout. The merges themselves are checked in process on planted streams."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def env(tmp_path, **extra):
    # One thread per process, as torchrun sets: the same kernels, so one process's numbers exactly.
    return {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"), **extra}


def one(script, *args, e):
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=e, capture_output=True, text=True)


def two(script, *args, e):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           script, *args], cwd=ROOT, env=e, capture_output=True, text=True)


def both(tmp_path, script, *args, flag="--output_dir"):
    """``script`` as one process into ``tmp_path/one`` and as 2 ranks into ``tmp_path/two``; both
    must succeed. Returns the 2-rank run."""
    e = env(tmp_path)
    a = one(script, *args, flag, str(tmp_path / "one"), e=e)
    b = two(script, *args, flag, str(tmp_path / "two"), e=e)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr + b.stderr)[-3000:]
    return b


def same_arrays(a: Path, b: Path, keys=None) -> None:
    za, zb = np.load(a), np.load(b)
    assert sorted(za.files) == sorted(zb.files)
    for key in keys or za.files:
        np.testing.assert_array_equal(za[key], zb[key])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """30 concept-world images as class folders: a data set small enough to be counted whole."""
    from disentangle.data.concepts import export_imagefolder
    root = tmp_path_factory.mktemp("data") / "images"
    export_imagefolder(root, "val", 30)
    return root


def test_baseline_two_ranks_equal_one_process(tmp_path, folder):
    b = both(tmp_path, "baseline_eval.py", "--data", str(folder), "--images", "22", "--ig-steps", "4",
             "--batch-size", "4")
    for name in ("per_image.csv", "accuracy.json", "metrics.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    ones = sorted(p.name for p in (tmp_path / "one" / "attributions").iterdir())
    assert ones == sorted(p.name for p in (tmp_path / "two" / "attributions").iterdir()) and len(ones) == 44
    for name in ones[::7]:
        np.testing.assert_array_equal(np.load(tmp_path / "one" / "attributions" / name),
                                      np.load(tmp_path / "two" / "attributions" / name))
    # Only rank 0 speaks: one summary.
    assert b.stdout.count("artifacts in") == 1


def test_grid_two_ranks_equal_one_process(tmp_path, folder):
    both(tmp_path, "run_experiments.py", "--data", str(folder), "--images", "12", "--blocks", "block_4", "--ks", "2",
         "--control_ks=2", "--repeats", "1", "--ig-steps", "2", "--stats_images", "24", "--batch-size", "4",
         flag="--outputs")
    one_table = pd.read_csv(tmp_path / "one" / "mask_grid_summary.csv")
    assert len(one_table) >= 3
    assert (tmp_path / "one" / "mask_grid_summary.csv").read_bytes() == \
        (tmp_path / "two" / "mask_grid_summary.csv").read_bytes()


def test_an_interrupted_two_rank_run_resumes_to_one_process_numbers(tmp_path, folder):
    """2 ranks killed mid-run keep their finished batches; a rerun with 2 ranks computes only the
    rest, and the results equal one process's."""
    e = env(tmp_path)
    args = ["baseline_eval.py", "--data", str(folder), "--images", "20", "--ig-steps", "24", "--batch-size", "2"]
    run = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            *args, "--output_dir", str(tmp_path / "two")], cwd=ROOT, env=e,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = tmp_path / "two" / "parts"
    try:
        for _ in range(600):
            if parts.is_dir() and len(list(parts.iterdir())) >= 3:
                break
            time.sleep(0.05)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert 3 <= len(list(parts.glob("batch_*.npz"))) < 10 and not (tmp_path / "two" / "per_image.csv").exists()
    # The finished batches' attribution files (<method>_<position>.npy, 2 images a batch), which a
    # resumed run must not write again.
    done = {int(p.stem.split("_")[1]) for p in parts.glob("batch_*.npz")}
    maps = tmp_path / "two" / "attributions"
    kept = {p.name: p.stat().st_mtime_ns for p in maps.glob("*.npy") if int(p.stem.split("_")[-1]) // 2 in done}
    b = two(*args, "--output_dir", str(tmp_path / "two"), e=e)
    a = one(*args, "--output_dir", str(tmp_path / "one"), e=e)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr + b.stderr)[-3000:]
    assert len(kept) >= 6 and all((maps / n).stat().st_mtime_ns == t for n, t in kept.items())
    assert len(list(maps.glob("*.npy"))) == 40
    for name in ("per_image.csv", "metrics.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def _rank_pid(parent: int, rank: str) -> int | None:
    """The process torchrun started as ``rank`` (found by its environment)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), None)
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


@pytest.mark.slow            # about a minute: the collective timeout, then torchrun's 30 s to stop the ranks
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks through /proc")
def test_a_hanging_rank_fails_the_run_with_one_line(tmp_path, folder):
    e = env(tmp_path, DISENTANGLE_DIST_TIMEOUT="10")
    args = ["--data", str(folder), "--images", "16", "--ig-steps", "16", "--batch-size", "2",
            "--output_dir", str(tmp_path / "hang")]
    run = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "baseline_eval.py", *args], cwd=ROOT, env=e, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        pid = None
        for _ in range(200):
            pid = _rank_pid(run.pid, "1")
            if pid is not None and (tmp_path / "hang" / "manifest.json").exists():
                break
            time.sleep(0.1)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)              # rank 1 hangs in the middle of its batches
        started = time.time()
        _, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0
    assert time.time() - started < 200
    lines = [line for line in err.splitlines() if line.startswith("error: rank 0:")]
    assert len(lines) == 1 and "another rank died or hangs" in lines[0], err[-3000:]


def test_feature_visualizations_two_ranks_equal_one_process(tmp_path):
    b = both(tmp_path, "visualize_features.py", "--blocks", "block_2", "--units", "0-5", "--steps", "6",
             "--batch_size", "2")
    same_arrays(*(tmp_path / n / "tiny_densenet_block_2" / "features.npz" for n in ("one", "two")),
                keys=("units", "images", "activations"))
    assert b.stdout.count("units/s") == 1


def test_cams_two_ranks_equal_one_process(tmp_path):
    both(tmp_path, "cam_explain.py", "--images", "10", "--batch_size", "3", "--methods", "gradcam,scorecam")
    same_arrays(tmp_path / "one" / "heatmaps.npz", tmp_path / "two" / "heatmaps.npz")
    assert (tmp_path / "one" / "predictions.csv").read_bytes() == (tmp_path / "two" / "predictions.csv").read_bytes()


def test_lime_two_ranks_equal_one_process(tmp_path):
    both(tmp_path, "lime_explain.py", "--images", "5", "--batch_size", "2", "--num_samples", "40", "--top_labels", "2")
    same_arrays(tmp_path / "one" / "lime.npz", tmp_path / "two" / "lime.npz")
    pa, pb = (pd.read_csv(tmp_path / n / "predictions.csv") for n in ("one", "two"))
    pd.testing.assert_frame_equal(pa, pb)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    """block_2 of tiny_densenet in 3 clusters (one process), for the stages that read clusters."""
    out = tmp_path_factory.mktemp("stats") / "block_2_k3"
    run = one("neuron_stats.py", "--block", "block_2", "--k", "3", "--images", "24", "--output_dir", str(out),
              e=env(out.parent))
    assert run.returncode == 0, run.stderr[-2000:]
    return out


@pytest.mark.parametrize("features", ["original", pytest.param("extended", marks=pytest.mark.slow)])
def test_neuron_stats_two_ranks_equal_one_process(tmp_path, features):
    both(tmp_path, "neuron_stats.py", "--block", "block_3", "--k", "3", "--images", "36", "--batch_size", "8",
         "--features", features)
    for name in ("stats_block_3.npz", "cluster_results.npz"):
        same_arrays(tmp_path / "one" / name, tmp_path / "two" / name)


def test_accuracy_and_decomposition_two_ranks_equal_one_process(tmp_path, clusters):
    e = env(tmp_path)
    args = ["accuracy.py", "--stats_dir", str(clusters), "--batches", "5", "--batch_size", "6"]
    a = one(*args, "--output", str(tmp_path / "one.json"), e=e)
    b = two(*args, "--output", str(tmp_path / "two.json"), e=e)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr + b.stderr)[-3000:]
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()
    assert json.loads((tmp_path / "one.json").read_text())["n_images"] == 30
    both(tmp_path, "decomposition_analysis.py", "--stats_dir", str(clusters), "--images", "5", "--method", "saliency",
         "--batch_size", "2")
    names = sorted(p.name for p in (tmp_path / "one").glob("*.json"))
    assert len(names) == 6 and names == sorted(p.name for p in (tmp_path / "two").glob("*.json"))
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_mask_iou_dissection_two_ranks_equal_one_process(tmp_path):
    e = env(tmp_path)
    args = ["dissect_neurons.py", "--blocks", "block_2,block_4", "--images", "26", "--batch_size", "4"]
    for name, run in (("one", one), ("two", two)):
        r = run(*args, "--output_dir", str(tmp_path / name), "--activation_dir", str(tmp_path / f"{name}_cache"), e=e)
        assert r.returncode == 0, r.stderr[-3000:]
    for name in ("descriptions.csv", "summary.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    tallies = sorted(p.name for p in (tmp_path / "one_cache").iterdir())
    assert len(tallies) == 2 and tallies == sorted(p.name for p in (tmp_path / "two_cache").iterdir())
    for name in tallies:                       # thresholds, counts and top images, exactly
        same_arrays(tmp_path / "one_cache" / name, tmp_path / "two_cache" / name)


def test_clip_dissect_two_ranks_equal_one_process(tmp_path, tiny_clip):
    both(tmp_path, "describe_neurons.py", "--clip_model", tiny_clip, "--clip_weights", "random", "--target_model",
         "tiny_densenet", "--target_layers", "block_4", "--d_probe", "concepts", "--probe_images", "22",
         "--batch_size", "4", "--activation_dir", "none", flag="--result_dir")
    (a,), (b,) = ((tmp_path / n).iterdir() for n in ("one", "two"))          # one run folder: rank 0's
    assert (a / "descriptions.csv").read_bytes() == (b / "descriptions.csv").read_bytes()
    assert json.loads((b / "args.txt").read_text())["blocks"] == ["block_4"]


def test_linear_explanations_and_ablation_two_ranks_equal_one_process(tmp_path):
    data = ["--block", "block_4", "--images", "60", "--batch_size", "8", "--activation_dir", "none"]
    both(tmp_path, "explain_neurons.py", *data, "--neuron_batch", "12", "--max_length", "3")
    name = "le_label_tiny_densenet_block_4.csv"
    assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    e = env(tmp_path)
    for tag, run in (("one", one), ("two", two)):
        r = run("simulate_ablation.py", str(tmp_path / tag / name), *data, "--unit_chunk", "5",
                "--output_dir", str(tmp_path / tag / "ablation"), e=e)
        assert r.returncode == 0, r.stderr[-3000:]
    for result in ("ablation/ablation.csv", "ablation/ablation.json", name):       # the score is written back too
        assert (tmp_path / "one" / result).read_bytes() == (tmp_path / "two" / result).read_bytes(), result


def test_interpscore_trials_two_ranks_equal_one_process(tmp_path):
    e = env(tmp_path)
    args = ["interpretability_score.py", "--block", "block_3", "--images", "14", "--batch_size", "4",
            "--neurons", "0,1,2,5,7", "--extract"]
    for name, run in (("one", one), ("two", two)):
        (tmp_path / name).mkdir()
        r = run(*args, str(tmp_path / name / "data.csv"), e=e)
        assert r.returncode == 0, r.stderr[-3000:]
    a, b = (pd.read_csv(tmp_path / n / "data.csv") for n in ("one", "two"))
    assert len(a) == 14 * 4 + 5 * 3                           # 14 images at 4 levels, 3 DeepDreams per neuron
    a["image_filename"] = a["image_filename"].str.replace(str(tmp_path / "one"), "")
    b["image_filename"] = b["image_filename"].str.replace(str(tmp_path / "two"), "")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    dreams = sorted(p.name for p in (tmp_path / "one" / "data_deepdream").iterdir())
    assert len(dreams) == 15
    for name in dreams:
        assert (tmp_path / "one" / "data_deepdream" / name).read_bytes() == \
            (tmp_path / "two" / "data_deepdream" / name).read_bytes()


# --- the merges, in process --------------------------------------------------------------------
def test_moments_merged_from_parts_in_any_order_equal_one_stream():
    """Per-batch sums added in batch order: two ranks' parts, merged either way round, give one
    stream's statistics bit for bit (the shift is batch 0's on both)."""
    from disentangle.neurons.statistics import ChannelMoments, ImageMeanMoments
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(5, 4, 3, 3, generator=g) * 3 + 1 for _ in range(7)]
    for kind in (ChannelMoments, ImageMeanMoments):
        whole = kind()
        for a in batches:
            whole.update(a)
        ranks = [kind(), kind()]
        for r in ranks:
            r.shift = whole.shift
        for b, a in enumerate(batches):
            ranks[b % 2].update(a, b)
        for first, second in ((0, 1), (1, 0)):
            merged = kind()
            merged.shift = whole.shift
            merged.merge(ranks[first].parts)
            merged.merge(ranks[second].parts)
            for key, value in whole.result().items():
                np.testing.assert_array_equal(merged.result()[key], value, err_msg=key)


def test_quantile_streams_merged_equal_one_stream_with_ties_to_the_lower_image():
    """Exact top-k merge: the thresholds of two half-streams merged equal numpy.quantile of all
    values, and tied peaks pick the lower image index whichever half comes first."""
    from disentangle.dissection.netdissect import TopQuantile
    g = torch.Generator().manual_seed(1)
    acts = torch.randn(12, 3, 4, 4, generator=g)
    acts[2] += 5
    acts[7] = acts[2]                                          # images 2 and 7: the tied top peaks of every unit
    idx = torch.arange(12)
    halves = []
    for part in (slice(0, 12, 2), slice(1, 12, 2)):
        q = TopQuantile(12 * 16, 0.05, top_images=3)
        for s in range(0, 6, 2):
            q.update(acts[part][s:s + 2], idx[part][s:s + 2])
        halves.append(q)
    expected = np.quantile(acts.transpose(0, 1).reshape(3, -1).numpy(), 0.95, axis=1)
    for first, second in ((0, 1), (1, 0)):
        merged = TopQuantile(12 * 16, 0.05, top_images=3)
        merged.merge(halves[first])
        merged.merge(halves[second])
        np.testing.assert_allclose(merged.thresholds().numpy(), expected, rtol=1e-6)
        peaks = acts.amax((2, 3)).T                            # (U, N)
        for u in range(3):
            order = sorted(range(12), key=lambda i: (-float(peaks[u, i]), i))[:3]
            assert merged.image_idx[u].tolist() == order and order[:2] == [2, 7]
