"""Concurrent runs, --overwrite, reruns after errors, inputs checked against each other, and bad
input: one line and a non-zero exit, nothing half-written, never a traceback."""
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

import accuracy
import baseline_eval
import class_analysis
import collect_metrics
import control_visualization
import filtered_eval
import interpretability_score
import merge_classes
import run_experiments
from disentangle.io import artifacts
from disentangle.attribution import evaluation
from disentangle.core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--images", "12", "--ig-steps", "2", "--batch-size", "6"]


def base(out, *extra):
    return baseline_eval.main([*SMALL, "--output_dir", str(out), *extra])


def one_line(capsys, *expected):
    """The captured stderr ends in exactly one error line (progress bars before it aside)."""
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def holder(path: Path, folder: bool = True) -> subprocess.Popen:
    """Another process holding the lock of ``path`` until it is killed."""
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from disentangle.io import artifacts; "
            f"artifacts.hold({str(path)!r}, folder={folder}); print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# --- concurrency ----------------------------------------------------------------------------------
def test_a_live_run_holds_its_folder_and_a_killed_one_resumes(tmp_path, tiny, capsys):
    out = tmp_path / "b"
    proc = holder(out)
    try:
        assert base(out) == 2
        one_line(capsys, f"{out} is in use by another run (process {proc.pid})")
        assert not (out / "manifest.json").exists()
    finally:
        proc.kill()
        proc.wait()
    assert base(out) == 0                                # the kernel released the dead process's lock
    assert json.loads((out / "manifest.json").read_text())["complete"]
    assert not (out / artifacts.LOCK).exists()
    assert base(out) == 0 and "nothing to do" in capsys.readouterr().out   # released after each run


def test_two_runs_started_together_one_stops_the_other_completes(tmp_path, tiny):
    out = tmp_path / "c"
    cmd = [sys.executable, "baseline_eval.py", "--images", "24", "--ig-steps", "4", "--batch-size", "4",
           "--output_dir", str(out)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    finished = pd.read_csv(out / "per_image.csv")
    assert json.loads((out / "manifest.json").read_text())["complete"] and len(finished) == 24
    if codes == [0, 2]:                                  # they overlapped: the second stopped at once
        assert any("is in use by another run" in r[1] for r in results)
    else:                                                # one finished first: the other found it complete
        assert codes == [0, 0] and any("nothing to do" in r[0] for r in results)


def test_a_second_grid_into_the_same_outputs_stops(tmp_path, capsys):
    proc = holder(tmp_path)
    try:
        assert run_experiments.main(["--outputs", str(tmp_path), "--blocks", "block_4", "--ks", "2"]) == 2
        one_line(capsys, "is in use by another run")
    finally:
        proc.kill()
        proc.wait()


def test_output_files_are_locked_too(tmp_path, staged, capsys):
    out = tmp_path / "m.csv"
    proc = holder(out, folder=False)
    try:
        assert class_analysis.main(["--stats_dir", str(staged / "stats"), "--class_end", "1",
                                    "--images_per_class", "2", "--ig-steps", "2", "--output", str(out)]) == 2
        one_line(capsys, "is in use by another run")
        assert not out.with_suffix(".parts").exists()
    finally:
        proc.kill()
        proc.wait()


# --- --overwrite ----------------------------------------------------------------------------------
def test_overwrite_never_empties_a_folder_of_other_files(tmp_path, tiny, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    assert base(".", "--overwrite") == 2
    one_line(capsys, "holds files that are not this project's artifacts")
    assert (work / "notes.txt").read_text() == "mine"
    # A run in the working directory itself is never emptied, whatever it holds.
    monkeypatch.chdir(tmp_path)
    assert base(work / "run") == 0
    monkeypatch.chdir(work / "run")
    assert base(".", "--metric", "pixel", "--overwrite") == 2
    one_line(capsys, "--overwrite will not empty", "current directory")
    assert (Path("per_image.csv")).exists()


def test_overwrite_never_empties_a_folder_of_runs(tmp_path, tiny, capsys):
    outputs = tmp_path / "outputs"
    assert base(outputs / "baseline") == 0
    (outputs / "manifest.json").write_text((outputs / "baseline" / "manifest.json").read_text())
    assert base(outputs, "--metric", "pixel", "--overwrite") == 2
    one_line(capsys, "--overwrite will not empty", "it holds other runs")
    assert (outputs / "baseline" / "per_image.csv").exists()


def test_every_script_that_can_suggest_overwrite_has_it(capsys):
    """The "pass --overwrite" errors come from open_output (and the blocked-run cells and the grid
    built on it): every script reaching it takes the flag, as its --help shows."""
    import importlib
    with_flag = set()
    for p in sorted(ROOT.glob("*.py")):
        if p.name == "utils.py":                          # the seed's helper names, not a script
            continue
        assert importlib.import_module(p.stem).main(["--help"]) == 0, p.name
        if "--overwrite" in capsys.readouterr().out:
            with_flag.add(p.name)
        else:
            assert not any(call in p.read_text() for call in ("open_output", "experiment.run_", "grid.execute")), p.name
    assert {"baseline_eval.py", "neuron_stats.py", "filtered_eval.py", "control_experiment.py", "class_analysis.py",
            "run_experiments.py", "dissect_neurons.py", "explain_neurons.py", "cam_explain.py"} <= with_flag


# --- reruns after an error ------------------------------------------------------------------------
def test_a_run_stopped_before_its_first_result_does_not_block_the_corrected_rerun(tmp_path, tiny, monkeypatch,
                                                                                  capsys):
    out = tmp_path / "b"
    assert base(out, "--batch-size", "0") == 2           # refused before anything is written
    assert not out.exists()
    real = evaluation.evaluate_masks

    def fails(*a, **k):
        raise UserError("cannot read image x.jpg: truncated")

    monkeypatch.setattr(evaluation, "evaluate_masks", fails)
    assert base(out, "--batch-size", "4") == 2
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    monkeypatch.setattr(evaluation, "evaluate_masks", real)
    assert base(out) == 0                                # other batch size, nothing kept: replaced
    assert len(pd.read_csv(out / "per_image.csv")) == 12


def test_an_unfinished_run_with_results_is_resumed_or_replaced_as_told(tmp_path, tiny, monkeypatch, capsys):
    out = tmp_path / "b"
    real, calls = evaluation.evaluate_masks, []

    def second_fails(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise UserError("cannot read image x.jpg: truncated")
        return real(*a, **k)

    monkeypatch.setattr(evaluation, "evaluate_masks", second_fails)
    assert base(out) == 2
    monkeypatch.setattr(evaluation, "evaluate_masks", real)
    capsys.readouterr()
    assert base(out, "--batch-size", "4") == 2
    one_line(capsys, "--batch_size 6 to resume it", "or pass --overwrite")
    assert base(out, "--batch-size", "4", "--overwrite") == 0
    assert len(pd.read_csv(out / "per_image.csv")) == 12


# --- inputs checked against each other ------------------------------------------------------------
@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("grid")
    assert run_experiments.main(["--outputs", str(root), "--blocks", "block_4", "--ks", "2", "--images", "12",
                                 "--stats_images", "24", "--ig-steps", "2", "--batch-size", "6", "--repeats",
                                 "2"]) == 0
    return root


def test_control_ks_follow_the_ks_given(grid):
    summary = pd.read_csv(grid / "mask_grid_long.csv")
    assert summary["control_n"].notna().all() and (summary["k"] == 2).all()
    assert (grid / "control" / "block_4_cluster_1_k2" / "control_comparison.json").exists()
    with pytest.raises(UserError, match="--control_ks 3 must be among --ks 2"):
        run_experiments.main.__wrapped__(["--ks", "2", "--control_ks", "3", "--dry-run"])


def test_summary_refuses_runs_made_against_a_replaced_baseline(grid, tmp_path, capsys):
    import shutil
    root = tmp_path / "g"
    shutil.copytree(grid, root)
    assert collect_metrics.main(["--outputs", str(root)]) == 0
    per_image = root / "baseline" / "per_image.csv"
    frame = pd.read_csv(per_image)
    frame.loc[0, "ig_sparsity"] += 0.01                # the baseline was replaced by another of the same settings
    frame.to_csv(per_image, index=False)
    assert collect_metrics.main(["--outputs", str(root)]) == 2
    one_line(capsys, "was made against an earlier baseline", "--overwrite")
    capsys.readouterr()
    assert base(root / "baseline", "--images", "12", "--metric", "pixel", "--overwrite") == 0
    capsys.readouterr()
    assert collect_metrics.main(["--outputs", str(root)]) == 2
    one_line(capsys, "was not made against the baseline", "metric: 'pixel' in the baseline, 'patch' in the run")


def test_control_visualization_refuses_the_controls_of_another_cluster(grid, capsys):
    assert control_visualization.main(["--filtered_dir", str(grid / "filtered_block_4_cluster_0_k2"),
                                       "--control_dir", str(grid / "control" / "block_4_cluster_1_k2")]) == 2
    one_line(capsys, "is not a random control for block_4 cluster 0 of k=2")
    assert control_visualization.main(["--filtered_dir", str(grid / "filtered_block_4_cluster_0_k2"),
                                       "--cluster_idx", "1"]) == 2
    one_line(capsys, "is a run of cluster 0, not 1")


def test_accuracy_checks_block_and_k_against_the_stats_dir(grid, tmp_path, capsys):
    stats = str(grid / "neuron_stats" / "block_4_k2")
    assert accuracy.main(["--stats_dir", stats, "--block", "block_1", "--output", str(tmp_path / "a.json")]) == 2
    one_line(capsys, "holds block_4 with k=2, not --block block_1")
    assert accuracy.main(["--stats_dir", stats, "--k", "3", "--output", str(tmp_path / "a.json")]) == 2
    one_line(capsys, "not --k 3")


def merge_inputs(staged, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for f, start, end in ((a, "0", "1"), (b, "1", "2")):
        assert class_analysis.main(["--stats_dir", str(staged / "stats"), "--class_start", start, "--class_end",
                                    end, "--images_per_class", "2", "--ig-steps", "2", "--output", str(f)]) == 0
    return a, b


def test_merge_reads_and_checks_each_csv(staged, tmp_path, capsys):
    a, b = merge_inputs(staged, tmp_path)
    good = pd.read_csv(b)
    cases = {"header only": (good.iloc[:0], "has no rows"),
             "other classes": (good.assign(class_id=5), "holds the classes 5..5"),
             "missing column": (good.drop(columns=["mean_diff"]), "lacks the column mean_diff")}
    for name, (frame, message) in cases.items():
        frame.to_csv(b, index=False)
        assert merge_classes.main(["--input_files", str(a), str(b), "--output", str(tmp_path / "m.csv")]) == 2, name
        one_line(capsys, message)
    good.to_csv(b, index=False)
    assert merge_classes.main(["--input_files", str(a), str(b), "--output", str(tmp_path / "m.json")]) == 2
    one_line(capsys, "must be a .csv file")
    assert merge_classes.main(["--input_files", str(a), str(b), "--output", str(a)]) == 2
    one_line(capsys, "would overwrite an input")
    assert merge_classes.main(["--input_files", str(a), str(b), "--output", str(tmp_path / "m.csv")]) == 0
    merged = json.loads((tmp_path / "m.manifest.json").read_text())
    assert merged["config"]["classes"] == 2 and len(pd.read_csv(tmp_path / "m.csv")) == 2 * 2   # classes x methods


LE_FILE = "le_label_tiny_densenet_block_4.csv"


def test_simulation_needs_the_explanations_own_split(tmp_path, capsys):
    import explain_neurons
    import simulate_correlation
    common = ["--images", "120", "--activation_dir", str(tmp_path / "acts")]
    expl = tmp_path / "le"
    assert explain_neurons.main([*common, "--end_neuron", "4", "--result_dir", str(expl)]) == 0
    for extra, key in ((["--seed", "1"], "seed"), (["--images", "144"], "images")):
        assert simulate_correlation.main([str(expl / LE_FILE), *common, *extra,
                                          "--result_dir", str(tmp_path / "sim")]) == 2
        one_line(capsys, f"was made with {key}", "the test split must be the explanations' own")
    assert simulate_correlation.main([str(expl / LE_FILE), *common,
                                      "--result_dir", str(tmp_path / "sim")]) == 0


# --- bad input: one line, non-zero, nothing written -----------------------------------------------
def test_damaged_inputs_are_one_line_errors(staged, tmp_path, capsys):
    import shutil
    (tmp_path / "empty.pt").write_bytes(b"")
    assert base(tmp_path / "b1", "--weights", str(tmp_path / "empty.pt")) == 2
    one_line(capsys, "weights file", "is empty")
    assert not (tmp_path / "b1").exists()
    filt = ["--baseline_dir", str(staged / "baseline"), "--output_dir", str(tmp_path / "f")]
    assert filtered_eval.main(["--stats_dir", str(staged / "baseline"), *filt]) == 2
    one_line(capsys, "holds a baseline_eval run, not neuron statistics")
    bad_stats = tmp_path / "stats"
    shutil.copytree(staged / "stats", bad_stats)
    (bad_stats / "cluster_results.npz").write_bytes(b"not a zip")
    assert filtered_eval.main(["--stats_dir", str(bad_stats), *filt]) == 2
    one_line(capsys, "cluster_results.npz is not an NPZ archive")
    bad_base = tmp_path / "base"
    shutil.copytree(staged / "baseline", bad_base)
    (bad_base / "per_image.csv").unlink()
    assert filtered_eval.main(["--stats_dir", str(staged / "stats"), "--baseline_dir", str(bad_base),
                               "--output_dir", str(tmp_path / "f")]) == 2
    one_line(capsys, "per_image.csv is missing")
    assert not (tmp_path / "f").exists()
    assert class_analysis.main(["--stats_dir", str(staged / "stats"), "--batch-size", "0",
                                "--output", str(tmp_path / "c.csv")]) == 2
    one_line(capsys, "argument --batch-size")
    assert not (tmp_path / "c.parts").exists()
    assert class_analysis.main(["--stats_dir", str(staged / "stats"), "--images_per_class", "5000",
                                "--output", str(tmp_path / "c.csv")]) == 2
    one_line(capsys, "--images_per_class 5000 is more than any class")


def test_damaged_cache_files_are_named(tmp_path, capsys):
    import explain_neurons
    acts = tmp_path / "acts"
    args = ["--images", "120", "--end_neuron", "2", "--activation_dir", str(acts)]
    assert explain_neurons.main([*args, "--result_dir", str(tmp_path / "le")]) == 0
    cache = sorted(acts.glob("le_acts_*.npz"))[0]
    for damage in (b"", b"PK\x03\x04 broken"):
        cache.write_bytes(damage)
        assert explain_neurons.main([*args, "--result_dir", str(tmp_path / "le2")]) == 2
        one_line(capsys, f"cache file {cache}", "delete it")


def test_a_huge_image_is_refused_by_name(tmp_path, capsys):
    from PIL import Image
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (32, 32), "red").save(tmp_path / "imgs" / cls / "ok.png")
    Image.new("1", (14000, 14000)).save(tmp_path / "imgs" / "a" / "huge.png")   # 196 Mpixel, 20 kB
    assert baseline_eval.main(["--model", "resnet18", "--weights", "random", "--data", str(tmp_path / "imgs"),
                               "--images", "3", "--output_dir", str(tmp_path / "out")]) == 2
    one_line(capsys, "huge.png is too large for PIL's decompression-bomb guard")
    assert not (tmp_path / "out").exists()


def test_trial_tables_are_checked_cell_by_cell(tmp_path, capsys):
    frame = pd.DataFrame({"trial_category": ["experiment"] * 4, "ground_truth": ["cat", "dog", "cat", "dog"],
                          "level": [5, 5, 5, 5], "activation_1": [1.0, 0.0, 2.0, 0.5],
                          "soft_correct": [1.0, 0.0, 1.0, 0.5]})
    (tmp_path / "map.json").write_text(json.dumps({"1": "cat"}))
    cases = {"empty category": (frame.assign(trial_category=["experiment", "", "experiment", "experiment"]),
                                "column 'trial_category': the cell is empty"),
             "infinite activation": (frame.assign(activation_1=[1.0, np.inf, 2.0, 0.5]), "'inf' is not a finite"),
             "human score above 1": (frame.assign(soft_correct=[1.0, 1.5, 1.0, 0.5]), "is outside [0, 1]")}
    for name, (bad, message) in cases.items():
        bad.to_csv(tmp_path / "t.csv", index=False)
        assert interpretability_score.main([str(tmp_path / "t.csv"), str(tmp_path / "map.json"),
                                            str(tmp_path / "r.csv")]) == 2, name
        one_line(capsys, message)
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert interpretability_score.main([str(tmp_path / "t.csv"), str(tmp_path / "map.json"),
                                        str(tmp_path / "t.csv")]) == 2
    one_line(capsys, "is one of the inputs")
    assert pd.read_csv(tmp_path / "t.csv").equals(frame)
    assert interpretability_score.main(["--extract", str(tmp_path / "x.csv"), "--neurons", "a,b"]) == 2
    one_line(capsys, "--neurons takes comma-separated channel indices")


def test_an_empty_explanations_file(tmp_path, capsys):
    import simulate_correlation
    (tmp_path / "e.csv").write_text("")
    assert simulate_correlation.main([str(tmp_path / "e.csv"), "--images", "120", "--activation_dir", "none",
                                      "--result_dir", str(tmp_path / "sim")]) == 2
    one_line(capsys, "e.csv is not a readable CSV")
    assert not (tmp_path / "sim").exists()


def test_json_is_always_valid_and_nan_flags_are_refused(tmp_path, capsys):
    artifacts.write_json(tmp_path / "x.json", {"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.nan})
    assert json.loads((tmp_path / "x.json").read_text(), parse_constant=pytest.fail) == \
        {"a": None, "b": [None, 1.5], "c": None}
    assert base(tmp_path / "b", "--mask-value", "nan") == 2
    one_line(capsys, "argument --mask-value: must be a finite number")
    assert base(tmp_path / "b", "--ig-batch", "0") == 2
    one_line(capsys, "argument --ig-batch: must be at least 1")


def test_ctrl_c_is_one_line_and_the_run_resumes(tmp_path, tiny):
    out = tmp_path / "b"
    cmd = [sys.executable, "baseline_eval.py", "--images", "96", "--ig-steps", "8", "--batch-size", "8",
           "--output_dir", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((out / "parts").glob("batch_*.npz")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err.splitlines()[-1]
    assert not (out / artifacts.LOCK).exists()
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode == 0
    assert len(pd.read_csv(out / "per_image.csv")) == 96


def test_the_hub_is_offline_whatever_the_environment(monkeypatch):
    import huggingface_hub.constants
    from disentangle.core import clip
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(UserError, match="not in the local Hugging Face cache and are never downloaded"):
        clip.load_clip("ViT-B-16", "openai")
    assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.HF_HUB_OFFLINE is True
