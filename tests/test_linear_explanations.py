"""Linear explanations: planted neurons with known explanations, the solvers against sklearn and
NumPy, and the three scripts end to end (label and CLIP modes, description files, ablation)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import ElasticNet

import explain_neurons
import simulate_ablation
import simulate_correlation
from disentangle.neurons import linear as le
from disentangle.neurons import simulation
from disentangle.data.concepts import ConceptWorld
from disentangle.data.images import ClassFolder, Images
from disentangle.neurons.activations import label_concepts


@pytest.fixture(scope="module")
def planted():
    """Concept labels of 600 concept-world images and three planted neurons: 0.7·red + 0.3·circle
    (plus a little noise), exactly [blue], and pure noise."""
    world = ConceptWorld("val", 600)
    x, names = label_concepts(Images(world, np.arange(600)), None)
    x = torch.from_numpy(x)
    g = torch.Generator().manual_seed(0)
    red, circle, blue = (x[:, names.index(n)] for n in ("red", "circle", "blue"))
    y = torch.stack([0.7 * red + 0.3 * circle + 0.02 * torch.randn(600, generator=g, dtype=torch.float64),
                     blue, torch.randn(600, generator=g, dtype=torch.float64)], 1)
    split = {k: torch.from_numpy(v) for k, v in le.split_indices(600, seed=0).items()}
    return x, y, names, split


def test_planted_neurons(planted):
    x, y, names, split = planted
    tr, va, te = split["train"], split["val"], split["test"]
    entry = le.elastic_net_path(x[tr], y[tr])
    ex = le.greedy_explanations(x[tr], y[tr], x[va], y[va], le.candidates(entry, 20), 10, 0.02)
    mixed, single, noise = ex
    assert sorted(names[c] for c in mixed.concepts) == ["circle", "red"]
    w = dict(zip((names[c] for c in mixed.concepts), mixed.weights))
    assert w["red"] == pytest.approx(0.7, abs=0.01) and w["circle"] == pytest.approx(0.3, abs=0.01)
    assert abs(mixed.bias) < 0.01
    assert [names[c] for c in single.concepts] == ["blue"] and single.val_corr > 0.999
    test_corr = [le.pearson(le.simulate(x[te], e.concepts, e.weights, e.bias), y[te, u]) for u, e in enumerate(ex)]
    assert test_corr[0] > 0.99 and test_corr[1] > 0.999
    assert abs(test_corr[2]) < 0.2


def test_elastic_net_matches_sklearn():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 8, generator=g, dtype=torch.float64)
    y = x[:, :2] @ torch.tensor([[1.0, 0.0], [0.5, -1.0]], dtype=torch.float64) \
        + 0.3 * torch.randn(200, 2, generator=g, dtype=torch.float64)
    x, y = (x - x.mean(0)) / x.std(0), (y - y.mean(0)) / y.std(0)
    lam = torch.tensor([0.05, 0.2], dtype=torch.float64)
    w = le.elastic_net(x.T @ x / 200, x.T @ y / 200, lam, alpha=0.7, iters=5000, tol=1e-12)
    for u in range(2):
        ref = ElasticNet(alpha=lam[u].item(), l1_ratio=0.7, fit_intercept=False, tol=1e-12, max_iter=100000)
        np.testing.assert_allclose(w[:, u].numpy(), ref.fit(x.numpy(), y[:, u].numpy()).coef_, atol=1e-6)


def test_fit_and_score_matches_numpy():
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(150, 6, generator=g, dtype=torch.float64), torch.randn(150, 3, generator=g, dtype=torch.float64)
    tr, va = slice(0, 100), slice(100, 150)
    train, val = le.Moments.of(x[tr], y[tr]), le.Moments.of(x[va], y[va])
    sets = torch.tensor([[0, 3], [1, 4], [2, 5]])
    w, corr = le._fit_and_score(train, val, torch.arange(3), sets)
    for u in range(3):
        a = np.c_[x[tr][:, sets[u]].numpy(), np.ones(100)]
        coef = np.linalg.lstsq(a, y[tr][:, u].numpy(), rcond=None)[0]
        np.testing.assert_allclose(w[u].numpy(), coef[:2], rtol=1e-6)
        pred = x[va][:, sets[u]].numpy() @ coef[:2]
        assert corr[u].item() == pytest.approx(np.corrcoef(pred, y[va][:, u].numpy())[0, 1], rel=1e-6)


def test_level_hook_keeps_pattern_and_real_levels_change_nothing(tiny):
    model = tiny.model
    x = torch.randn(6, 3, 56, 56)
    y = torch.arange(6)
    from disentangle.core.hooks import capture
    with torch.no_grad(), capture(model, ["features.denseblock4"]) as rec:
        model(x)
    real = rec.outputs["features.denseblock4"].mean((2, 3))                       # (6, C)
    units = [0, 5]
    levels = {"same": real[:, units].T, "shifted": real[:, units].T + 1.0}
    d = simulation.ablation_deltas(model, "features.denseblock4", x, y, units, levels, "avg", chunk=2)
    assert d["same"].max() < 1e-5
    assert d["shifted"].min() > 0


@pytest.fixture(scope="module")
def explained(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("le")
    common = ["--images", "240", "--batch_size", "80", "--activation_dir", str(root / "cache")]
    assert explain_neurons.main(common + ["--end_neuron", "6", "--result_dir", str(root / "le")]) == 0
    return root, common


LE_FILE = "le_label_tiny_densenet_block_4.csv"


def test_explain_neurons_csv(explained):
    root, _ = explained
    frame = pd.read_csv(root / "le" / LE_FILE)
    assert list(frame.columns[:5]) == ["layer", "unit", "val correlation", "weight0", "concept0"]
    assert frame.columns[-1] == "bias" and "concept9" in frame and "concept10" not in frame and len(frame) == 6
    assert frame["unit"].tolist() == list(range(6)) and (frame["val correlation"] > 0.5).all()
    for _, row in frame.iterrows():                   # by descending weight, 0 in the unused slots
        weights = [row[f"weight{i}"] for i in range(10) if str(row[f"concept{i}"]) != "0"]
        assert weights == sorted(weights, reverse=True)
        assert all(row[f"weight{i}"] == 0 for i in range(len(weights), 10))
    manifest = json.loads((root / "le" / "le_label_tiny_densenet_block_4.manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["search"] == "original" and manifest["config"]["fit"] == "adam"
    assert manifest["config"]["split"] == "70/10/20"


def test_simulation_scripts(explained, capsys):
    root, common = explained
    desc = root / "desc" / "descriptions.csv"
    desc.parent.mkdir()
    pd.DataFrame({"layer": ["block_4"] * 3, "unit": [0, 1, 2], "description": ["red", "circle", "sunset"],
                  "similarity": [0.1, 0.1, 0.1]}).to_csv(desc, index=False)
    out = root / "sim"
    assert simulate_correlation.main([str(root / "le" / LE_FILE), str(desc), "--names", "LE,desc",
                                      "--result_dir", str(out)] + common) == 0
    table = pd.read_csv(out / "summary.csv").set_index("method")
    assert table.loc["LE", "simulated"] == 6 and table.loc["desc", "simulated"] == 2
    assert table.loc["LE", "mean correlation"] > table.loc["desc", "mean correlation"]
    assert "1 neurons have descriptions outside" in capsys.readouterr().out
    corr = pd.read_csv(out / "correlations.csv")
    assert corr["test correlation"].between(-1, 1).all()

    abl = root / "abl"
    assert simulate_ablation.main([str(root / "le" / LE_FILE), "--result_dir", str(abl),
                                   "--unit_chunk", "3"] + common) == 0
    result = json.loads((abl / "ablation.json").read_text())
    assert result["units"] == 6 and result["test_images"] == 48       # 20 % of 240
    assert 0 < result["score"] <= 1


def test_clip_mode_with_tiny_clip(tmp_path, tiny, tiny_clip):
    out = tmp_path / "le"
    assert explain_neurons.main(["--mode", "clip", "--clip_model", tiny_clip, "--images", "60", "--end_neuron", "3",
                                 "--activation_dir", "none", "--result_dir", str(out)]) == 0
    frame = pd.read_csv(out / "le_clip_tiny_densenet_block_4.csv")
    assert len(frame) == 3 and frame["concept0"].notna().all()
    assert json.loads((out / "le_clip_tiny_densenet_block_4.manifest.json").read_text())["config"]["mode"] == "clip"


@pytest.mark.parametrize("argv, message", [
    (["--end_neuron", "99"], "not within the layer's 32 neurons"),
    (["--target_layer", "block_9"], "unknown layer 'block_9'"),
    (["--images", "5"], "too few for a train/val/test split"),
    (["--mode", "clip", "--dataset_name", "{tmp}"], "is not an image folder"),
])
def test_bad_input(tmp_path, capsys, tiny, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = tmp_path / "out"
    assert explain_neurons.main(argv + ["--result_dir", str(out), "--activation_dir", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_explanation_from_another_model_is_refused(explained, tmp_path, capsys):
    root, common = explained
    manifest = json.loads((root / "le" / "le_label_tiny_densenet_block_4.manifest.json").read_text())
    manifest["config"]["weights_sha256"] = "0" * 64
    other = tmp_path / "other"
    other.mkdir()
    (other / "le_label_tiny_densenet_block_4.manifest.json").write_text(json.dumps(manifest))
    (other / LE_FILE).write_text((root / "le" / LE_FILE).read_text())
    assert simulate_correlation.main([str(other / LE_FILE), "--result_dir", str(tmp_path / "s")]
                                     + common) == 2
    assert "was made with weights_sha256" in capsys.readouterr().err


def test_label_concepts_on_a_folder_with_superclasses(tmp_path):
    from PIL import Image

    from disentangle.core.errors import UserError
    for c in ("cat", "dog", "car"):
        (tmp_path / "img" / c).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / c / "0.png")
    images = Images(ClassFolder(tmp_path / "img"), np.arange(3))
    sup = tmp_path / "sup.json"
    sup.write_text(json.dumps({"animal": ["cat", "dog"]}))
    x, names = label_concepts(images, str(sup))
    assert names == ["car", "cat", "dog", "animal"]
    np.testing.assert_array_equal(x, [[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 1]])
    sup.write_text(json.dumps({"animal": ["cat", "cow"]}))
    with pytest.raises(UserError, match="unknown classes"):
        label_concepts(images, str(sup))


def test_the_originals_files_and_flags(explained, tmp_path, monkeypatch, capsys):
    """A file in the release's format (no layer column, weight0.., 0 in unused slots, earlier
    simulation columns) found by --explanation_method in the release's layout; the correlation is
    written back into it, as the original does, and labelled with its simulator."""
    root, common = explained
    ours = pd.read_csv(root / "le" / LE_FILE)
    release = ours.drop(columns=["layer", "sim correlation"], errors="ignore").assign(**{"sim ablation(optim)": 0.5})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "ours" / "LE_label").mkdir(parents=True)
    path = tmp_path / "results" / "ours" / "LE_label" / "tiny_densenet_block_4.csv"
    release.to_csv(path, index=False)
    assert simulate_correlation.main(["--explanation_method", "le_label", "--output_dir", str(tmp_path / "s")]
                                     + common) == 0
    out = capsys.readouterr().out
    assert "average correlation" in out and "+-" in out and "labels (label protocol)" in out
    back = pd.read_csv(path)
    assert list(back.columns) == [*release.columns, "sim correlation"] and back["sim correlation"].between(-1, 1).all()
    summary = pd.read_csv(tmp_path / "s" / "summary.csv")
    assert summary.loc[0, "method"] == "le_label" and summary.loc[0, "simulator"] == "labels (label protocol)"
    c = pd.read_csv(tmp_path / "s" / "correlations.csv")["test correlation"]
    assert summary.loc[0, "sem correlation"] == pytest.approx(c.std(ddof=1) / len(c) ** 0.5)
    assert simulate_correlation.main(["--explanation_method", "milan"] + common) == 2
    assert "no milan explanations of tiny_densenet block_4" in capsys.readouterr().err


def test_label_names_and_superclass_ids_as_the_originals_files(tmp_path):
    """The original's <dataset>_labels_clean.txt (class names in class order) and
    <dataset>_superclass_to_ids.json (class indices; '_' reads as a space)."""
    from PIL import Image

    from disentangle.core.errors import UserError
    for c in ("n01", "n02", "n03"):
        (tmp_path / "img" / c).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / c / "0.png")
    images = Images(ClassFolder(tmp_path / "img"), np.arange(3))
    (tmp_path / "labels.txt").write_text("tench\ngoldfish\ngreat white shark\n")
    (tmp_path / "sup.json").write_text(json.dumps({"fish_like": [0, 1, 2], "small_fish": [0, 1]}))
    x, names = label_concepts(images, str(tmp_path / "sup.json"), str(tmp_path / "labels.txt"))
    assert names == ["tench", "goldfish", "great white shark", "fish like", "small fish"]
    np.testing.assert_array_equal(x, [[1, 0, 0, 1, 1], [0, 1, 0, 1, 1], [0, 0, 1, 1, 0]])
    (tmp_path / "labels.txt").write_text("tench\ngoldfish\n")
    with pytest.raises(UserError, match="names 2 classes, the data has 3"):
        label_concepts(images, None, str(tmp_path / "labels.txt"))


def test_the_originals_concept_files_are_its_data_sets_defaults(tmp_path, monkeypatch, capsys):
    """Placed in data/concept_sets as in the original's repository, imagenet_val's class names and
    superclasses are label mode's defaults (announced, and recorded in the manifest); 'none' turns the
    superclasses off, and another data set reads neither."""
    from PIL import Image

    import explain_neurons
    from disentangle.neurons.activations import original_concept_files
    rng = np.random.default_rng(0)
    for c in ("n01", "n02", "n03"):
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "val" / c / f"{i}.png")
    sets = tmp_path / "data" / "concept_sets"
    sets.mkdir(parents=True)
    (sets / "imagenet_labels_clean.txt").write_text("tench\ngoldfish\nshark\n")
    (sets / "imagenet_superclass_to_ids.json").write_text(json.dumps({"small_fish": [0, 1]}))
    (sets / "combined_concepts_imagenet.txt").write_text("fish\nwater\n")
    monkeypatch.chdir(tmp_path)
    assert original_concept_files("imagenet_val", "siglip") == {"concept_set": str(sets.relative_to(tmp_path) /
                                                                                  "combined_concepts_imagenet.txt")}
    assert original_concept_files("places365_val", "label") == {} and original_concept_files("concepts", "label") == {}
    common = ["--dataset_name", "imagenet_val", "--data_root", str(tmp_path / "val"), "--images", "36",
              "--end_neuron", "4", "--activation_dir", "none", "--weights", "random", "--workers", "0"]
    assert explain_neurons.main([*common, "--result_dir", "a"]) == 0
    assert "concept_set: the original's data/concept_sets/imagenet_labels_clean.txt" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "a" / "le_label_tiny_densenet_block_4.manifest.json").read_text())
    assert manifest["config"]["class_names"].endswith("imagenet_labels_clean.txt")
    assert manifest["config"]["superclasses"].endswith("imagenet_superclass_to_ids.json")
    named = pd.read_csv(tmp_path / "a" / LE_FILE)
    used = set(named.filter(like="concept").to_numpy().ravel()) - {"0", 0}
    assert used and used <= {"tench", "goldfish", "shark", "small fish"}
    assert explain_neurons.main([*common, "--superclasses", "none", "--result_dir", "b"]) == 0
    assert json.loads((tmp_path / "b" / "le_label_tiny_densenet_block_4.manifest.json").read_text()
                      )["config"]["superclasses"] is None
