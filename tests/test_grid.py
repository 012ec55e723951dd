"""The clusters stage end to end: filtered runs, controls, accuracy, the grid driver and its resume."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import accuracy
import collect_metrics
import control_experiment
import control_visualization
import filtered_eval
import neuron_stats
import run_experiments
from disentangle.neurons import controls
from disentangle.attribution import evaluation
from disentangle.core.models import get_spec
from disentangle.core.runtime import Runtime
from disentangle.pipeline import experiment
from disentangle.io import readers



def filtered(root, *extra):
    return filtered_eval.main(["--stats_dir", str(root / "stats"), "--baseline_dir", str(root / "baseline"),
                               "--batch-size", "12", *extra])


def test_filtered_run_alone_and_in_a_shared_pass_agree(staged):
    out_hook = staged / "hook"
    assert filtered(staged, "--cluster_idx", "1", "--output_dir", str(out_hook)) == 0
    hook = pd.read_csv(out_hook / "per_image.csv")
    base = pd.read_csv(staged / "baseline" / "per_image.csv")
    assert hook["index"].tolist() == base["index"].tolist() and hook["target"].tolist() == base["target"].tolist()
    assert np.allclose(hook["ig_sparsity_delta"], hook["ig_sparsity"] - base["ig_sparsity"], atol=1e-6)
    assert (hook["top1"] == base["top1"]).all()          # detach: the forward pass is unchanged
    manifest = json.loads((out_hook / "manifest.json").read_text())
    assert manifest["hook"]["mode"] == "detach" and manifest["inputs"]["baseline"] == str(staged / "baseline")
    # The same cell in a shared pass with another (as the grid runs it) gives the same numbers.
    settings = experiment.Settings(Runtime(device="cpu", workers=0, batch_size=12))
    clusters = readers.load_clusters(staged / "stats")
    ctx = experiment.open_context(staged / "baseline", settings.runtime, clusters)
    cell = experiment.filtered_cell(clusters, 1, staged / "shared")
    other = experiment.filtered_cell(clusters, 2, staged / "shared_other")
    experiment.run_cells(ctx, clusters.block, [cell, other], len(clusters.labels), "detach", settings)
    shared = pd.read_csv(staged / "shared" / "per_image.csv")
    for col in ("ig_sparsity", "ig_faithfulness", "saliency_sparsity", "saliency_faithfulness", "ig_delta"):
        assert np.allclose(shared[col], hook[col], atol=1e-4), col


def test_zero_mode_and_accuracy(staged):
    assert filtered(staged, "--cluster_idx", "0", "--mode", "zero", "--output_dir", str(staged / "zero")) == 0
    assert json.loads((staged / "zero" / "manifest.json").read_text())["config"]["mode"] == "zero"
    out = staged / "acc.json"
    assert accuracy.main(["--stats_dir", str(staged / "stats"), "--cluster", "0", "--batches", "2",
                          "--batch-size", "12", "--output", str(out)]) == 0
    acc = json.loads(out.read_text())
    assert list(acc)[:7] == ["block", "layer", "cluster", "top1_baseline", "top5_baseline", "top1_filtered",
                             "top5_filtered"]
    assert acc["n_images"] == 24 and acc["batches"] == 2
    assert (acc["top1_filtered"], acc["top5_filtered"]) == (acc["top1_baseline"], acc["top5_baseline"])
    # Known answer: the first two loader batches are the first 24 images of the ImageFolder order.
    from disentangle.core.models import load_model
    from disentangle.data.concepts import ConceptWorld
    from disentangle.data.images import folder_order
    from disentangle.io.readers import load_clusters
    model = load_model("tiny_densenet", None, torch.device("cpu")).model
    world = ConceptWorld("val", transform=get_spec("tiny_densenet").transform(square=True))
    first = folder_order(world.targets)[:24]
    x = torch.stack([world[int(i)][0] for i in first])
    y = torch.as_tensor(world.targets[first])
    channels = torch.as_tensor(load_clusters(staged / "stats").channels(0))

    def zero(module, inputs, output):
        output = output.clone()
        output[:, channels] = 0
        return output

    with torch.no_grad():
        plain = model(x).argmax(1)
        handle = model.features.denseblock2.register_forward_hook(zero)
        try:
            ablated = model(x).argmax(1)
        finally:
            handle.remove()
    assert acc["top1_baseline"] == pytest.approx((plain == y).double().mean().item())
    assert acc["top1_zero"] == pytest.approx((ablated == y).double().mean().item())


def test_accuracy_uses_every_batch_there_is(staged, capsys):
    out = staged / "acc_all.json"
    assert accuracy.main(["--stats_dir", str(staged / "stats"), "--cluster", "1", "--batches", "1000",
                          "--batch-size", "600", "--output", str(out)]) == 0
    assert "note: --batches 1000 asked for, the data set has 20 batches of 600 images" in capsys.readouterr().out
    acc = json.loads(out.read_text())
    assert acc["n_images"] == 12000 and acc["batches"] == 20


BAD = {
    "k larger than the neurons": (neuron_stats, ["--block", "block_1", "--n_clusters", "40", "--images", "8"],
                                  "k=40 is out of range for block_1 of tiny_densenet, which has 32 neurons"),
    "unknown block": (neuron_stats, ["--block", "block_9", "--images", "8"], "unknown block 'block_9'"),
    "missing baseline": (filtered_eval, ["--baseline_dir", "{root}/nowhere", "--stats_dir", "{root}/stats"],
                         "no baseline in"),
    "cluster out of range": (filtered_eval, ["--cluster_idx", "3", "--baseline_dir", "{root}/baseline",
                                             "--stats_dir", "{root}/stats"], "cluster 3 does not exist"),
    "other image count": (filtered_eval, ["--images", "30", "--baseline_dir", "{root}/baseline",
                                          "--stats_dir", "{root}/stats"], "has 24 images"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(staged, tmp_path, capsys, case):
    script, argv, message = BAD[case]
    out = tmp_path / "out"
    code = script.main([a.format(root=staged) for a in argv] + ["--output_dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_stats_from_another_model_are_refused(staged, tmp_path, capsys):
    other = tmp_path / "stats_random"
    assert neuron_stats.main(["--block", "block_2", "--n_clusters", "3", "--images", "24", "--weights", "random",
                              "--output_dir", str(other)]) == 0
    code = filtered(staged, "--stats_dir", str(other), "--output_dir", str(tmp_path / "out"))
    assert code == 2 and "come from different runs (weights_sha256" in capsys.readouterr().err


def test_control_position_known_answers():
    pos = controls.position(np.array([0.0, 1.0, 2.0, 3.0]), 10.0)
    assert pos["percentile"] == 100 and pos["p_value"] == pytest.approx(1 / 5)
    pos = controls.position(np.array([0.0, 1.0, 2.0, 3.0]), 1.5)
    assert pos["percentile"] == 50 and pos["p_value"] == 1.0


def test_control_experiment_draws_sets_of_the_cluster_size(staged):
    assert control_experiment.main(["--stats_dir", str(staged / "stats"), "--baseline_dir", str(staged / "baseline"),
                                     "--cluster_idx", "2", "--repeats", "2", "--batch-size", "12",
                                     "--output_dir", str(staged / "control")]) == 0
    n = len(readers.load_clusters(staged / "stats").channels(2))
    sets = [json.loads((staged / "control" / f"repeat_0{r}" / "manifest.json").read_text())["config"]["channels"]
            for r in range(2)]
    assert all(len(s) == n for s in sets) and sets[0] != sets[1]


def test_the_original_random_control(staged):
    """Without --cluster_idx: one set drawn as np.random.seed(42); np.random.choice(C, n, replace=False),
    the predictions explained, the original's metadata keys; control_visualization --n_random counts
    the same set in the clusters."""
    out = staged / "control_random"
    assert control_experiment.main(["--baseline_dir", str(staged / "baseline"), "--block", "block_2",
                                    "--n_random", "20", "--batch-size", "12", "--output_dir", str(out / "patch_wise")]) == 0
    np.random.seed(42)
    drawn = np.random.choice(32, 20, replace=False)
    manifest = json.loads((out / "patch_wise" / "manifest.json").read_text())
    assert manifest["config"]["channels"] == sorted(drawn.tolist())
    frame = pd.read_csv(out / "patch_wise" / "per_image.csv")
    assert (frame["target"] == frame["pred"]).all()
    metrics = json.loads((out / "patch_wise" / "metrics.json").read_text())
    assert list(metrics)[2:8] == ["experiment_type", "block_filtered", "neurons_filtered", "neurons_total",
                                  "random_seed", "metric_type"]                 # as the published file
    assert {k: metrics[k] for k in ("experiment_type", "block_filtered", "neurons_filtered", "neurons_total",
                                    "random_seed", "metric_type")} == {
        "experiment_type": "control_random", "block_filtered": "block_2", "neurons_filtered": 20,
        "neurons_total": 32, "random_seed": 42, "metric_type": "patch"}
    assert control_visualization.main(["--stats_dir", str(staged / "stats"), "--n_random", "20",
                                       "--output_dir", str(out)]) == 0
    summary = json.loads((out / "control_summary.json").read_text())
    labels = readers.load_clusters(staged / "stats").labels
    assert summary["filtered_by_cluster"] == {str(c): int(n) for c, n in pd.Series(labels[drawn]).value_counts().items()}
    assert (summary["total_neurons"], summary["filtered_neurons"], summary["kept_neurons"]) == (32, 20, 12)


ORIGINAL_SUMMARY = ["block", "k_clusters", "clusterId", "accuracy_top1", "ig_faithfulness_mean", "ig_faithfulness_std",
                    "ig_sparsity_mean", "ig_sparsity_std", "saliency_faithfulness_mean", "saliency_faithfulness_std",
                    "saliency_sparsity_mean", "saliency_sparsity_std"]
GRID = ["--images", "12", "--ig-steps", "4", "--batch-size", "12", "--blocks", "block_1,block_4", "--ks", "2,3",
        "--repeats", "2", "--stats_images", "24", "--n_init", "2"]


def test_grid_resumes_after_interruption_to_the_same_summary(tmp_path, tiny, monkeypatch, capsys):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_experiments.main([*GRID, "--outputs", str(full)]) == 0
    summary = pd.read_csv(full / "mask_grid_summary.csv")          # the original's wide table
    assert list(summary.columns[:12]) == ORIGINAL_SUMMARY
    assert len(summary) == 2 * (2 + 3) + 1 and summary["block"].iloc[-1] == "baseline"     # runs, then baseline
    run = summary[(summary["block"] == "block_4") & (summary["k_clusters"] == 3) & (summary["clusterId"] == 2)]
    metrics = json.loads((full / "filtered_block_4_cluster_2_k3" / "metrics.json").read_text())
    assert run["ig_faithfulness_mean"].item() == metrics["ig"]["faithfulness_mean"]
    assert run["accuracy_top1"].item() == metrics["accuracy_top1"]
    assert summary["ig_faithfulness_control_p"].notna().sum() == 2 * 3   # controls for k=3 only
    long = pd.read_csv(full / "mask_grid_long.csv")
    assert len(long) == 2 * (2 + 3) * 2 * 2          # blocks x clusters x methods x measures
    assert long["control_n"].notna().sum() == 2 * 3 * 2 * 2
    assert (full / "neuron_stats" / "block_4_k3" / "cluster_tsne.png").exists()
    assert (full / "control" / "block_1_cluster_0_k3" / "control_distribution.png").exists()

    real, calls = evaluation.run, []

    def dies_in_second_block(*args, **kwargs):     # the baseline's pass, the first block's, then this
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "run", dies_in_second_block)
    assert run_experiments.main([*GRID, "--outputs", str(cut)]) == 130
    assert not (cut / "mask_grid_summary.csv").exists()
    monkeypatch.setattr(evaluation, "run", real)
    capsys.readouterr()
    assert run_experiments.main([*GRID, "--outputs", str(cut)]) == 0
    out = capsys.readouterr().out
    assert "already complete" in out                    # finished steps were skipped, not redone
    assert (cut / "mask_grid_summary.csv").read_bytes() == (full / "mask_grid_summary.csv").read_bytes()
    assert collect_metrics.main(["--outputs", str(cut), "--output", str(tmp_path / "again.csv")]) == 0
    assert (tmp_path / "again.csv").read_bytes() == (full / "mask_grid_summary.csv").read_bytes()


def test_grid_config_carries_the_engine_flags_and_follows_ks():
    args = run_experiments.parser().parse_args(["--batch-size", "auto", "--channels-last", "--precision", "bf16",
                                                "--device", "cpu", "--ks", "2,4"])
    cfg = run_experiments.config(args)
    assert cfg.runtime.batch_size == "auto" and cfg.runtime.images_per_batch() == 32   # what 'auto' starts at
    assert cfg.runtime.channels_last and cfg.eval.precision == "bf16"
    assert cfg.controlled_ks == (2,) and cfg.grid_blocks == ["block_1", "block_2", "block_3", "block_4"]
