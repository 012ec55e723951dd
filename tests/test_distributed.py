"""Stages under torchrun with 2 CPU ranks (gloo), compared with one process: the attribution
baseline (with the whole-data-set accuracy counted by shards), the block x k grid with its blocked
runs, and a rank that hangs making the run fail with one line within the collective timeout."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
