"""baseline_eval.py end to end: artifacts, determinism, resume, and bad input."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import baseline_eval
from disentangle.attribution import evaluation
from disentangle.data.concepts import ConceptWorld
from disentangle.data.images import even_subset, folder_order
from tests.conftest import ROOT

FAST = ["--images", "24", "--ig-steps", "8", "--batch-size", "8"]


def run(out, *extra):
    return baseline_eval.main([*FAST, "--output_dir", str(out), *extra])


def files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def test_artifacts(tmp_path, tiny):
    """The original's files and keys: per-image NPY maps, flat metric keys (std ddof 0), accuracy
    over the whole data set; the images at positions i * (len // N) of the ImageFolder order."""
    out = tmp_path / "baseline"
    assert run(out, "--metric", "pixel") == 0
    assert {str(p) for p in files(out)} == {
        "accuracy.json", "metrics.json", "per_image.csv", "manifest.json",
        *(f"attributions/{m}_{i}.npy" for m in ("ig", "saliency") for i in range(24))}
    frame = pd.read_csv(out / "per_image.csv")
    targets = ConceptWorld("val").targets
    assert frame["index"].tolist() == folder_order(targets)[np.arange(24) * (12000 // 24)].tolist()
    assert (frame["target"] == frame["label"]).all()                     # the true label is explained
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["metric"] == "pixel" and metrics["settings"]["protocol"] == "original"
    assert all(isinstance(v, dict) for v in metrics.values())            # as the original's collect_metrics reads it
    for m in ("ig", "saliency"):
        assert list(metrics[m])[:4] == ["sparsity_mean", "sparsity_std", "faithfulness_mean", "faithfulness_std"]
        assert metrics[m]["sparsity_mean"] == pytest.approx(frame[f"{m}_sparsity"].mean())
        assert metrics[m]["faithfulness_std"] == pytest.approx(np.std(frame[f"{m}_faithfulness"]))   # ddof 0
        assert 0 <= frame[f"{m}_sparsity"].min() and frame[f"{m}_sparsity"].max() < 1
    assert metrics["ig"]["convergence_delta_abs_max"] == pytest.approx(frame["ig_delta"].abs().max())
    acc = json.loads((out / "accuracy.json").read_text())
    assert acc["n_images"] == 12000 and acc["top1"] >= 0.8 and acc["images"]["n_images"] == 24
    assert acc["images"]["top1"] == pytest.approx(frame["top1"].mean())
    for i in (0, 9, 23):
        a = np.load(out / "attributions" / f"ig_{i}.npy")
        assert a.shape == (3, 56, 56) and a.dtype == np.float32
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["weights_sha256"] == tiny.weights["sha256"]
    assert manifest["config"]["metric"] == "pixel" and manifest["config"]["seed"] == 0
    assert manifest["config"]["image_order"] == "strided"


def test_compact_attributions_and_extended_options(tmp_path, tiny):
    """--attribution_format npz (one file per batch), --image_order spread, --protocol extended,
    --target pred: this project's choices, each recorded."""
    out = tmp_path / "baseline"
    assert run(out, "--attribution_format", "npz", "--image_order", "spread", "--protocol", "extended",
               "--target", "pred") == 0
    frame = pd.read_csv(out / "per_image.csv")
    assert frame["index"].tolist() == even_subset(ConceptWorld("val").targets, 24).tolist()
    assert (frame["target"] == frame["pred"]).all()
    assert {str(p) for p in files(out / "attributions")} == {
        f"{m}/batch_0000{b}.npz" for m in ("ig", "saliency") for b in range(3)}
    with np.load(out / "attributions" / "ig" / "batch_00001.npz") as z:
        assert z["attributions"].shape == (8, 3, 56, 56)
        assert z["indices"].tolist() == frame["index"][8:16].tolist()
        assert z["targets"].tolist() == frame["target"][8:16].tolist()
        assert np.allclose(z["delta"], frame["ig_delta"][8:16])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ig"]["faithfulness_std"] == pytest.approx(frame["ig_faithfulness"].std(ddof=1))
    acc = json.loads((out / "accuracy.json").read_text())
    assert acc == {"top1": pytest.approx(frame["top1"].mean()), "top5": pytest.approx(frame["top5"].mean()),
                   "n_images": 24}
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert (config["protocol"], config["target"], config["image_order"]) == ("extended", "pred", "spread")


def test_same_seed_identical_artifacts(tmp_path, tiny):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(a) == 0 and run(b) == 0
    assert files(a) == files(b)
    for rel in files(a):
        if rel.name != "manifest.json":
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["config"] == mb["config"]


def test_interrupted_run_resumes_to_the_same_result(tmp_path, tiny, monkeypatch, capsys):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run(full) == 0
    real, calls = evaluation.evaluate_masks, []

    def dies_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_masks", dies_on_second_batch)
    assert run(cut) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not json.loads((cut / "manifest.json").read_text())["complete"]
    assert not (cut / "metrics.json").exists() and (cut / "parts" / "batch_00000.npz").exists()
    monkeypatch.setattr(evaluation, "evaluate_masks", real)
    calls.clear()
    assert run(cut) == 0
    assert (cut / "per_image.csv").read_bytes() == (full / "per_image.csv").read_bytes()
    assert run(cut) == 0 and "nothing to do" in capsys.readouterr().out


def test_other_settings_in_the_same_folder(tmp_path, tiny, capsys):
    out = tmp_path / "b"
    assert run(out) == 0
    assert run(out, "--metric", "pixel") == 2
    assert "other settings (metric: 'patch' there, 'pixel' now)" in capsys.readouterr().err
    assert run(out, "--metric", "pixel", "--overwrite") == 0
    assert json.loads((out / "metrics.json").read_text())["settings"]["metric"] == "pixel"


def corrupt_folder(tmp_path):
    from PIL import Image
    root = tmp_path / "folder"
    (root / "cls").mkdir(parents=True)
    Image.new("RGB", (56, 56), "red").save(root / "cls" / "ok.png")
    (root / "cls" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return ["--data", str(root), "--images", "2"]


BAD = {
    "missing data root": (["--data", "imagenet", "--data-root", "/nonexistent/val"], "data folder /nonexistent/val not found"),
    "unknown model": (["--model", "vgg11"], "unknown model 'vgg11'"),
    "unknown method": (["--methods", "ig,gradcam"], "unknown method gradcam"),
    "zero images": (["--images", "0"], "argument --images: must be at least 1"),
    "too many images": (["--images", "99999"], "asked for 99999 images"),
    "bad metric": (["--metric", "voxel"], "unknown metric 'voxel'"),
    "bad device": (["--device", "tpu"], "unknown device 'tpu'"),
    "missing weights file": (["--weights", "/nonexistent.pth"], "weights file /nonexistent.pth not found"),
}


@pytest.mark.parametrize("case", [*BAD, "corrupt image"])
def test_bad_input_one_line_nonzero_nothing_written(tmp_path, tiny, capsys, case):
    argv, message = BAD.get(case) or (corrupt_folder(tmp_path), "cannot read image")
    out = tmp_path / "out"
    code = baseline_eval.main([*FAST, *argv, "--output_dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()


def test_command_line_exit_status_and_help():
    res = subprocess.run([sys.executable, "baseline_eval.py", "--images", "0"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip() == "error: argument --images: must be at least 1, got 0 (see baseline_eval.py --help)"
    res = subprocess.run([sys.executable, "baseline_eval.py", "--images", "many"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    helptext = subprocess.run([sys.executable, "baseline_eval.py", "--help"], cwd=ROOT,
                              capture_output=True, text=True).stdout
    for flag in ("--images", "--metric", "--methods", "--model", "--data", "--batch-size", "--ig-steps",
                 "--device", "--seed", "--mask-value", "--output_dir"):
        assert flag in helptext
