"""InterpScore: the seed's own data against the original's numbers, the seed's Python API, every
flag, the original's output, figures, bad input, and extraction from a model end to end."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats

import interpretability_score
from disentangle.io.schema import RESULT_COLUMNS
from disentangle.neurons import scores
from tests.conftest import ROOT

SEED002 = ROOT.parent / "shared" / "fixtures" / "seed002"
needs_fixture = pytest.mark.skipif(not (SEED002 / "joined_experiment_data.csv").is_file(),
                                   reason="../shared/fixtures/seed002 is not here")

# The original's interpretability_score.py (commit 60753e1) run on the fixture with the seed's
# command line, its C at 0.0 (no image files: the value its calculate_causality_score returns when
# it finds none): neuron -> (S, R, H, InterpScore), in its output order.
ORIGINAL = {
    297: (1.0, 0.3766629946895456, 0.8712011577424024, 0.561966038107987),
    1116: (0.9993783361772102, 0.234360535811092, 0.83984375, 0.5183956554970756),
    363: (0.9999999177647155, 0.16060339339734941, 0.8343558282208589, 0.498739784845731),
    967: (0.9999964100394444, 0.3125343815674384, 0.6338797814207651, 0.486602643256912),
    1157: (0.9999994561365572, 0.16831285138623409, 0.7761506276150628, 0.4861157337844635),
    89: (0.999999958988791, 0.2389168817863145, 0.6130030959752322, 0.4629799841875844),
    479: (0.9999999929400294, 0.4782756159312948, 0.2517241379310345, 0.43249993670058967),
    513: (0.9995422404479553, 0.31367308703677393, 0.32786885245901637, 0.41027104498593636),
    1424: (0.9997668303471939, 0.06746924707343688, 0.43953488372093025, 0.3766927402853903),
    355: (0.999980552552028, 0.04018537835508043, 0.20448179271708683, 0.3111619309060488),
}


def run(*args) -> int:
    return interpretability_score.main([str(a) for a in args])


def one_line(capsys, message):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@needs_fixture
def test_the_seeds_command_on_the_seeds_data(tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert run(SEED002 / "joined_experiment_data.csv", SEED002 / "neuron_label_map.json", out, "--clean-level", "5",
               "--threshold-percentile", "0.95", "--weights", "0.3 0.3 0.2 0.2", "--no_figures") == 0
    assert "Fire" in capsys.readouterr().out
    r = pd.read_csv(out)
    assert list(r.columns[:8]) == list(RESULT_COLUMNS)
    assert list(r["InterpScore"]) == sorted(r["InterpScore"], reverse=True)
    r = r.set_index("Neuron")
    assert set(r.index) == set(ORIGINAL)
    for neuron, (s, rob, h, _) in ORIGINAL.items():
        assert r.loc[neuron, ["S", "R", "H"]].tolist() == pytest.approx([s, rob, h], abs=1e-6), neuron
        assert np.isnan(r.loc[neuron, "C"]) and "C not available" in r.loc[neuron, "Notes"]
        assert r.loc[neuron, "Notes"].startswith("Threshold: ")
        # The README's weights, with C counted as 0 as the original counts it.
        assert r.loc[neuron, "InterpScore"] == pytest.approx(0.3 * s + 0.2 * rob + 0.2 * h, abs=1e-9)

    equal = tmp_path / "equal.csv"
    assert run(SEED002 / "joined_experiment_data.csv", SEED002 / "neuron_label_map.json", equal,
               "--weights", "0.25", "0.25", "0.25", "0.25", "--no_figures", "--quiet") == 0
    e = pd.read_csv(equal)
    assert list(e["Neuron"]) == list(ORIGINAL)                     # the original's ranking
    assert e["InterpScore"].tolist() == pytest.approx([v[3] for v in ORIGINAL.values()], abs=1e-9)


def test_the_seeds_api_returns_the_originals_formulas():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1, 1, 30), rng.normal(0, 2, 50)
    sp = math.sqrt((29 * x.var(ddof=1) + 49 * y.var(ddof=1)) / 78)
    g = (x.mean() - y.mean()) / sp * (1 - 3 / (4 * 80 - 9))
    s = scores.calculate_selectivity_score(x, y)
    assert isinstance(s, float) and s == pytest.approx(stats.norm.cdf(g / math.sqrt(2)), abs=1e-12)
    assert scores.calculate_selectivity_score([1.0], y) == 0.5
    assert scores.calculate_selectivity_score([2.0, 2.0], [1.0, 1.0]) == 1.0
    assert scores.calculate_selectivity_score([1.0, 1.0], [1.0, 1.0]) == 0.5

    assert scores.calculate_human_consistency_score([3.0, 4.0, 5.0], [1, 0, 1]) == pytest.approx(2 / 3)
    assert scores.calculate_human_consistency_score([], []) == 0.0

    assert scores.calculate_interpretability_score(0.8, 0.4, 0.6, 0.2) == pytest.approx(0.5)
    assert scores.calculate_interpretability_score(1, 0, 0, 0, weights=[3, 1, 0, 0]) == pytest.approx(0.75)
    assert scores.calculate_interpretability_score(1, 0, 0, 0, weights={"S": 1, "C": 1, "R": 2, "H": 0}) == 0.25
    assert scores.calculate_interpretability_score(0.8, math.nan, 0.6, 0.2) == pytest.approx(0.4)
    assert scores.calculate_interpretability_score(0.8, math.nan, 0.6, 0.2, missing="skip") == pytest.approx(1.6 / 3)


def planted_trials():
    """Cats and dogs at levels 1, 2, 3, 5. Neuron 1: cats 4 when clean; recognised cats 2 at the
    benign levels (r = 0.5) and 8 at level 3 (r = 2); unrecognised cats 100 (ignored by R);
    dogs 0. Embedding deltas of neuron 1 on clean cats: 0.2 (x0) and 0.4 (x2)."""
    rows = []
    for level in (1, 2, 3, 5):
        for i in range(20):
            cat = i % 2 == 0
            seen = i % 4 != 2                          # half the cats are recognised
            value = {5: 4.0, 3: 8.0}.get(level, 2.0) if seen or level == 5 else 100.0
            rows.append({"level": level, "ground_truth": "cat" if cat else "dog", "trial_category": "experiment",
                         "activation_1": (value if cat else 0.0) + 0.01 * i, "activation_2": 1.0 + 0.01 * (i % 5),
                         "delta0_1": 0.2, "delta2_1": 0.4, "ablate_1": -0.4, "amplify_1": 0.2,
                         "soft_correct": float(seen if cat else i % 3 == 0), "other_human": 0.5})
    return pd.DataFrame(rows)


def test_robustness_and_causality_known_answers():
    t = planted_trials()
    r = scores.calculate_robustness_score(t, "Cat", "activation_1")
    mu = np.mean([4.0 + 0.01 * i for i in range(0, 20, 2)])
    benign = np.mean([2.0 + 0.01 * i for i in range(0, 20, 4)])
    stress = np.mean([8.0 + 0.01 * i for i in range(0, 20, 4)])
    assert isinstance(r, float) and r == pytest.approx((benign / mu + mu / stress) / 2, abs=1e-6)
    # Every level-3 trial counts as recognised: the unrecognised 100s enter R_adv.
    loose = scores.calculate_robustness_score(t, "cat", "activation_1", recognizable_levels=(3,))
    assert loose < r
    assert scores.calculate_robustness_score(t, "bird", "activation_1") == 0.0

    c = scores.calculate_causality_score(t, 1, "Cat", "activation_1")
    assert isinstance(c, float) and c == pytest.approx(1 - math.exp(-0.3))
    assert math.isnan(scores.calculate_causality_score(t, 2, "cat", "activation_2"))   # no deltas
    called = {}

    def intervene(rows, neuron):
        called["n"] = (len(rows), neuron, set(rows["level"]), set(rows["ground_truth"]))
        return np.full(len(rows), 1.0), np.full(len(rows), 1.0)
    assert scores.calculate_causality_score(t, 2, "cat", "activation_2", n_images=3,
                                            intervene=intervene) == pytest.approx(1 - math.exp(-1))
    assert called["n"] == (3, "2", {5}, {"cat"})
    assert scores.calculate_probability_causality_score(t, 1, "cat") == pytest.approx(0.3)


@pytest.fixture
def files(tmp_path):
    data, mapping = tmp_path / "data.csv", tmp_path / "map.json"
    planted_trials().to_csv(data, index=False)
    mapping.write_text(json.dumps({"1": "Cat", "2": "cat"}))
    return data, mapping, tmp_path / "results.csv"


def score(files, *flags):
    data, mapping, out = files
    assert run(data, mapping, out, "--quiet", "--no_figures", *flags) == 0
    return pd.read_csv(out).set_index("Neuron")


def test_every_flag_has_its_effect(files):
    base = score(files)
    assert base.index[0] == 1 and base.loc[1, "S"] > 0.99 and base.loc[2, "S"] == pytest.approx(0.5, abs=0.05)
    assert base.loc[1, "C"] == pytest.approx(1 - math.exp(-0.3)) and np.isnan(base.loc[2, "C"])
    assert base.loc[1, "weights"] == "S=0.3 C=0.3 R=0.2 H=0.2"
    for quoted, split in ((["--weights", "0.1 0.2 0.3 0.4"], ["--weights", "0.1", "0.2", "0.3", "0.4"]),
                          (["--recognizable-levels", "1 3"], ["--recognizable-levels", "1", "3"])):
        assert score(files, *quoted).equals(score(files, *split))
    w = score(files, "--weights", "1 0 0 0")
    assert w.loc[1, "InterpScore"] == pytest.approx(w.loc[1, "S"])
    assert score(files, "--recognizable-levels", "3").loc[1, "R"] < base.loc[1, "R"]
    strict = score(files, "--min-p-value", "1e-300")
    assert strict["S"].equals(base["S"]) and base.loc[1, "significant"] and not strict.loc[1, "significant"]
    assert score(files, "--human-score-col", "other_human").loc[1, "H"] == pytest.approx(0.5)
    no_human = score(files, "--human-score-col", "nobody")
    assert np.isnan(no_human.loc[1, "H"]) and "H not available" in no_human.loc[1, "Notes"]
    low = score(files, "--threshold-percentile", "0.1")
    assert low.loc[2, "threshold"] < base.loc[2, "threshold"]
    assert score(files, "--clean-level", "3").loc[1, "n_concept_clean"] == 10
    skip = score(files, "--missing_axes", "skip")
    s, r, h = skip.loc[2, ["S", "R", "H"]]
    assert skip.loc[2, "InterpScore"] == pytest.approx((0.3 * s + 0.2 * r + 0.2 * h) / 0.7)
    prob = score(files, "--causality", "probability")
    assert prob.loc[1, "C"] == pytest.approx(0.3) and prob.loc[1, "causality"] == "probability"


def test_quiet_prints_nothing_and_figures_are_written(files, capsys):
    data, mapping, out = files
    assert run(data, mapping, out, "--quiet") == 0
    assert capsys.readouterr().out == ""
    folder = out.with_name("results_figures")
    assert sorted(p.name for p in folder.iterdir()) == ["neuron_1.png", "neuron_2.png", "summary.png"]
    assert Image.open(folder / "neuron_1.png").size[0] > 800


def test_the_seeds_example_map_skips_a_neuron_without_data(tmp_path, capsys):
    """The seed's format example (trial_category experiment, ground_truth the concept) and its map
    {89: cat, 156: dog, 201: car}, with no column for 201 and no car images."""
    rng = np.random.default_rng(1)
    rows = [{"trial_category": "experiment", "ground_truth": concept, "level": level,
             "activation_89": rng.normal(0.85 if concept == "cat" else 0.1, 0.05),
             "activation_156": rng.normal(0.78 if concept == "dog" else 0.1, 0.05), "soft_correct": 0.9}
            for level in (1, 2, 3, 5) for concept in ("cat", "dog") for _ in range(5)]
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "map.json").write_text(json.dumps({"89": "cat", "156": "dog", "201": "car"}))
    assert run(tmp_path / "data.csv", tmp_path / "map.json", tmp_path / "r.csv", "--quiet", "--no_figures") == 0
    assert "neuron 201 skipped: no column 'activation_201'" in capsys.readouterr().err
    r = pd.read_csv(tmp_path / "r.csv")
    assert sorted(r["Neuron"]) == [89, 156] and (r["S"] > 0.99).all()


def test_bad_input_gets_one_line(tmp_path, capsys):
    good = planted_trials()
    mapping, out = tmp_path / "map.json", tmp_path / "r.csv"
    mapping.write_text(json.dumps({"1": "cat"}))
    nan_category = good.astype({"ground_truth": object})
    nan_category.loc[3, "ground_truth"] = None
    text = good.astype({"activation_1": object})
    text.loc[5, "activation_1"] = "high"
    cases = {"": "is empty", ",".join(good.columns) + "\n": "has a header but no trials",
             nan_category.to_csv(index=False): "line 5 (data row 4), column 'ground_truth': the cell is empty",
             text.to_csv(index=False): "line 7 (data row 6), column 'activation_1': 'high' is not a number",
             good.assign(trial_category="control").to_csv(index=False): "no trial has trial_category 'experiment'"}
    for content, message in cases.items():
        (tmp_path / "t.csv").write_text(content)
        assert run(tmp_path / "t.csv", mapping, out) == 2, message
        one_line(capsys, message)
    good.to_csv(tmp_path / "t.csv", index=False)
    mapping.write_text(json.dumps({"7": "cat", "1": "bird"}))
    assert run(tmp_path / "t.csv", mapping, out) == 2
    one_line(capsys, "no neuron of")
    mapping.write_text("{not json")
    assert run(tmp_path / "t.csv", mapping, out) == 2
    one_line(capsys, "is not valid JSON")
    assert run(tmp_path / "t.csv", mapping, out, "--weights", "1 2 3") == 2
    one_line(capsys, "--weights takes four numbers")
    assert not out.exists()


def test_interventions_on_a_model_with_a_known_embedding():
    """Embedding = the channel means of a 1x1 conv (the classifier's input): scaling channel n by
    λ changes only that component, so Δλ = |λ - 1| |e_n| / ‖e‖."""
    from disentangle.neurons.trials import interventions
    model = torch.nn.Sequential()
    model.add_module("conv", torch.nn.Conv2d(3, 4, 1))
    model.add_module("pool", torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()))
    model.add_module("fc", torch.nn.Linear(4, 3))
    model.eval()
    x = torch.randn(5, 3, 8, 8)
    acts, cols = interventions(model, "conv", "fc", x, torch.tensor([0, 1, 2, 0, 1]), [1, 3])
    with torch.no_grad():
        e = model.conv(x).double().mean((2, 3))
    assert torch.allclose(acts.double(), e, atol=1e-6)
    for n in (1, 3):
        want = (e[:, n].abs() / e.norm(dim=1)).numpy()
        assert cols[f"delta0_{n}"] == pytest.approx(want, abs=1e-6)
        assert cols[f"delta2_{n}"] == pytest.approx(want, abs=1e-6)
        assert cols[f"ablate_{n}"].shape == (5,)


def test_extract_then_score_and_c_from_image_files(tmp_path, tiny):
    """--extract on an image folder; the same clean images named in a data.csv give the same C
    through --images_dir; extract_activations gives the clean activations."""
    from disentangle.pipeline.scores import extract_activations
    from disentangle.data.concepts import ConceptWorld
    world = ConceptWorld("val")
    folder = tmp_path / "imgs"
    files = []
    for i in range(8):                      # four images of each of the first two classes
        index = 12 * (i // 2) + i % 2
        path = folder / world.classes[int(world.targets[index])] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        world.image(index).save(path)
        files.append(path)
    data = tmp_path / "trials.csv"
    assert run("--extract", data, "--data", folder, "--images", len(files), "--neurons", "0,5", "--block", "block_4",
               "--batch-size", "4", "--quiet") == 0
    t = pd.read_csv(data)
    assert sorted(t["level"].unique()) == [1, 2, 3, 4, 5] and set(t["trial_category"]) == {"experiment"}
    assert list(t.columns[:6]) == ["level", "image_index", "ground_truth", "trial_category", "image_filename",
                                   "image_basename"]
    # Level 4: each neuron's DeepDream from the seed's three starts, named as its files, the neuron's
    # concept (the class activating it most when clean) as ground truth; the dream excites its neuron.
    dreams = t[t.level == 4].set_index("image_basename")
    assert sorted(dreams.index) == sorted(f"neuron_{n}_{k}.jpg" for n in (0, 5) for k in ("gradient", "gray", "perlin"))
    assert all((tmp_path / "trials_deepdream" / name).is_file() for name in dreams.index)
    for n in (0, 5):
        clean_n = t[t.level == 5]
        top = clean_n.groupby("ground_truth")[f"activation_{n}"].mean().idxmax()
        own = dreams.loc[[f"neuron_{n}_{k}.jpg" for k in ("gradient", "gray", "perlin")]]
        assert (own["ground_truth"] == top).all()
        a = clean_n[f"activation_{n}"]
        assert (own[f"activation_{n}"] > a.mean() + a.std()).all()
    assert {"activation_5", "delta0_0", "delta2_5", "ablate_0", "amplify_5"} <= set(t.columns)
    clean = t[t.level == 5].set_index("image_index")
    noisy = t[t.level == 1].set_index("image_index")
    assert not np.allclose(clean["activation_0"], noisy["activation_0"])
    concept = clean["ground_truth"].iloc[0]
    (tmp_path / "map.json").write_text(json.dumps({"0": concept, "5": concept}))
    assert run(data, tmp_path / "map.json", tmp_path / "r.csv", "--causality_images", "0", "--quiet",
               "--no_figures") == 0
    by_deltas = pd.read_csv(tmp_path / "r.csv").set_index("Neuron")
    assert by_deltas["C"].between(0, 1).all() and (by_deltas["causality_images"] == 4).all()

    from disentangle.data.images import ClassFolder
    order = ClassFolder(folder)
    named = t[t.level != 4].drop(columns=[c for c in t.columns if c.startswith(("delta", "ablate", "amplify"))])
    named["image_basename"] = [str(Path(order.path(int(i))).relative_to(folder)) for i in named["image_index"]]
    named.to_csv(tmp_path / "named.csv", index=False)
    assert run(tmp_path / "named.csv", tmp_path / "map.json", tmp_path / "r2.csv", "--causality_images", "0",
               "--images_dir", folder, "--block", "block_4", "--quiet", "--no_figures") == 0
    by_images = pd.read_csv(tmp_path / "r2.csv").set_index("Neuron")
    assert by_images.loc[[0, 5], "C"].tolist() == pytest.approx(by_deltas.loc[[0, 5], "C"].tolist(), abs=1e-6)

    acts = extract_activations([order.path(int(i)) for i in clean.index], "block_4", "tiny_densenet")
    assert acts.shape[0] == len(files) and acts.shape[1] > 5
    assert acts["activation_5"].to_numpy() == pytest.approx(clean["activation_5"].to_numpy(), abs=1e-5)
    by_path = extract_activations(list(acts.index[:2]), tiny.spec.blocks["block_4"], "tiny_densenet")
    assert by_path.to_numpy() == pytest.approx(acts.to_numpy()[:2], abs=1e-6)     # a module path, the same layer
