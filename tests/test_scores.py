"""Interpretability score: known-answer data, every flag, malformed input, extraction end to end."""
import json

import numpy as np
import pandas as pd
import pytest

import interpretability_score
from disentangle.neurons import scores


def trials(n=60, seed=0):
    """Clean level 5 plus levels 4 and 3. Neuron 1 fires only for cats; neuron 2 ignores the concept;
    neuron 3 is weakly selective. Cat activations of neuron 1: 4 at level 5, 3 at level 4, 5 at level 3."""
    rng = np.random.default_rng(seed)
    rows = []
    for level, cat_level_mean in ((5, 4.0), (4, 3.0), (3, 5.0)):
        pair = rng.normal(1, 1, n // 2)  # each cat trial has a dog twin with the same base value
        for i in range(n):
            cat = i % 2 == 0
            rows.append({"trial_category": "cat" if cat else "dog", "ground_truth": int(cat), "level": level,
                         "activation_1": (cat_level_mean if cat else 0.0) + rng.normal(0, 0.01),
                         "activation_2": pair[i // 2],                           # same for cats and dogs
                         "activation_3": pair[i // 2] + (0.8 if cat else 0.0),   # weakly selective
                         "ablate_1": -0.4, "amplify_1": 0.2, "ablate_2": 0.0, "amplify_2": 0.0,
                         "ablate_3": -0.1, "amplify_3": 0.1,
                         "soft_correct": 1.0 if cat else 0.0, "other_human": 0.5})
    return pd.DataFrame(rows)


@pytest.fixture
def files(tmp_path):
    data, mapping = tmp_path / "data.csv", tmp_path / "map.json"
    trials().to_csv(data, index=False)
    mapping.write_text(json.dumps({"1": "cat", "2": "cat", "3": "cat"}))
    return data, mapping, tmp_path / "results.csv"


def score(files, *flags):
    data, mapping, out = files
    assert interpretability_score.main([str(data), str(mapping), str(out), "--quiet", *flags]) == 0
    return pd.read_csv(out).set_index("neuron")


def test_known_answers(files):
    r = score(files)
    assert r.loc[1, "S"] > 0.99 and r.loc[2, "S"] == 0                # selective vs independent
    assert r.loc[1, "C"] == pytest.approx(0.3) and r.loc[2, "C"] == 0  # (0.4 + 0.2) / 2
    assert r.loc[1, "R"] == pytest.approx(0.75, abs=0.01)              # ratios 0.75 and 1.25
    assert r.loc[1, "H"] == pytest.approx(1.0)                         # top activations are all cats
    assert r.loc[1, "score"] == pytest.approx(0.3 * r.loc[1, "S"] + 0.3 * 0.3 + 0.2 * r.loc[1, "R"] + 0.2 * 1.0, abs=1e-6)
    assert r.index[0] == 1 and r.loc[1, "rank"] == 1
    assert {"activation_threshold", "hedges_g", "p_value", "weights_used", "notes"} <= set(r.columns)


def test_hedges_g_formula():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 1.0, 2.0])
    pooled = np.sqrt((3 * a.var(ddof=1) + 3 * b.var(ddof=1)) / 6)
    assert scores.hedges_g(a, b) == pytest.approx((a.mean() - b.mean()) / pooled * (1 - 3 / (4 * 8 - 9)))


def test_weights_change_the_ranking(files):
    by_s = score(files, "--weights", "1 0 0 0")
    by_h = score(files, "--weights", "0 0 0 1")
    assert by_s.loc[1, "score"] == pytest.approx(by_s.loc[1, "S"])
    assert by_s.index[0] == 1 and by_s.loc[2, "score"] == 0
    assert by_s.loc[1, "weights_used"] == "S=1.000" and by_h.loc[1, "weights_used"] == "H=1.000"


def test_each_flag_changes_what_it_should(files):
    base = score(files)
    assert score(files, "--clean-level", "4").loc[1, "R"] != pytest.approx(base.loc[1, "R"])
    assert score(files, "--recognizable-levels", "4 5").loc[1, "R"] == pytest.approx(0.75, abs=0.01)
    assert score(files, "--recognizable-levels", "3 5").loc[1, "R"] == pytest.approx(0.75, abs=0.01)
    assert np.isnan(score(files, "--recognizable-levels", "5").loc[1, "R"])
    strict = score(files, "--min-p-value", "1e-12")
    assert base.loc[3, "p_value"] > 1e-12 and strict.loc[3, "S"] == 0 < base.loc[3, "S"]
    low = score(files, "--threshold-percentile", "0.1")
    assert low.loc[2, "activation_threshold"] < base.loc[2, "activation_threshold"]
    assert score(files, "--human-score-col", "other_human").loc[1, "H"] == pytest.approx(0.5)
    missing = score(files, "--human-score-col", "nobody")
    assert np.isnan(missing.loc[1, "H"]) and "H not available" in missing.loc[1, "notes"]
    assert missing.loc[1, "weights_used"] == "S=0.375 C=0.375 R=0.250"   # renormalised without H


def test_quiet_prints_nothing(files, capsys):
    data, mapping, out = files
    interpretability_score.main([str(data), str(mapping), str(out), "--quiet"])
    assert capsys.readouterr().out == ""
    interpretability_score.main([str(data), str(mapping), str(out)])
    assert "rank" in capsys.readouterr().out


def test_malformed_input_names_the_row_or_key(files, capsys):
    data, mapping, out = files
    frame = pd.read_csv(data)

    def fails(message):
        assert interpretability_score.main([str(data), str(mapping), str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err

    frame.drop(columns=["level"]).to_csv(data, index=False)
    fails("lacks the column 'level'")
    bad = frame.astype({"activation_2": object})
    bad.loc[6, "activation_2"] = "high"
    bad.to_csv(data, index=False)
    fails("line 8 (data row 7), column 'activation_2': 'high' is not a number")
    frame.to_csv(data, index=False)
    mapping.write_text(json.dumps({"1": "cat", "77": "dog"}))
    fails("neuron '77' has no column 'activation_77'")
    mapping.write_text("{not json")
    fails("is not valid JSON")
    mapping.write_text(json.dumps({"1": 5}))
    fails("neuron '1' maps to 5")


def test_extract_on_the_concept_world_end_to_end(tmp_path, tiny):
    data = tmp_path / "trials.csv"
    assert interpretability_score.main(["--extract", str(data), "--images", "24", "--neurons", "0,1,2",
                                        "--levels", "3", "--batch-size", "12", "--quiet"]) == 0
    frame = pd.read_csv(data)
    assert len(frame) == 24 * 3 and sorted(frame["level"].unique()) == [1, 2, 3]
    assert {"activation_0", "ablate_2", "amplify_1", "trial_category"} <= set(frame.columns)
    assert set(frame["trial_category"]) >= {"red_circle", "blue_cross"}
    clean, noisy = frame[frame.level == 3], frame[frame.level == 1]
    assert not np.allclose(clean["activation_0"].to_numpy(), noisy["activation_0"].to_numpy())
    (tmp_path / "map.json").write_text(json.dumps({"0": "red", "1": "circle"}))
    assert interpretability_score.main([str(data), str(tmp_path / "map.json"), str(tmp_path / "r.csv"),
                                        "--clean-level", "3", "--recognizable-levels", "2 3", "--quiet"]) == 0
    result = pd.read_csv(tmp_path / "r.csv")
    assert len(result) == 2 and result["S"].between(0, 1).all() and result["C"].notna().all()
