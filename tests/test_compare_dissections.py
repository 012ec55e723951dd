"""compare_dissections.py as seed 001's analysis: unique concepts per layer and overall, exact on
hand-made descriptions, from our result folders and bare descriptions CSVs alike, and one
units-per-concept chart per layer with the runs side by side."""
import pandas as pd
from PIL import Image

import compare_dissections


def descriptions(per_layer: dict[str, list[str]]) -> pd.DataFrame:
    rows = [{"layer": layer, "unit": u, "description": d, "similarity": 0.1 * u}
            for layer, labels in per_layer.items() for u, d in enumerate(labels)]
    return pd.DataFrame(rows)


A = {"conv1": ["red"] * 4 + ["blue"], "layer2": ["dog"] * 5 + ["cat", "red"], "layer4": ["dog", "sky", "sea", "sea"]}
B = {"conv1": ["green"] * 5, "layer2": ["cat"] * 4 + ["sky"], "layer4": ["tree"] * 3 + ["dog"]}


def test_unique_concepts_are_exact(tmp_path, capsys):
    descriptions(A).to_csv(tmp_path / "imagenet.csv", index=False)            # the release's four columns
    (tmp_path / "places").mkdir()
    descriptions(B).assign(category="").to_csv(tmp_path / "places" / "descriptions.csv", index=False)
    out = tmp_path / "cmp"
    assert compare_dissections.main([str(tmp_path / "imagenet.csv"), str(tmp_path / "places"), "--layers",
                                     "layer2,layer4", "--output_dir", str(out)]) == 0
    table = pd.read_csv(out / "unique_concepts.csv")
    assert list(table.columns) == ["run", "layer", "unique_concepts"]
    got = {(r.run, r.layer): r.unique_concepts for r in table.itertuples()}
    assert got == {("imagenet", "layer2"): 3, ("imagenet", "layer4"): 3, ("imagenet", "overall"): 5,
                   ("places", "layer2"): 2, ("places", "layer4"): 2, ("places", "overall"): 4}
    assert "conv1" not in set(table["layer"])
    charts = sorted(p.name for p in out.glob("units_per_concept_*.png"))
    assert charts == ["units_per_concept_layer2.png", "units_per_concept_layer4.png"]
    assert Image.open(out / charts[0]).size[0] > 800                   # two panels side by side
    assert "imagenet" in capsys.readouterr().out


def test_more_than_min_units(tmp_path):
    from disentangle.viz import dissection
    frames = {"a": descriptions(A), "b": descriptions(B)}
    for n, f in frames.items():
        f.to_csv(tmp_path / f"{n}.csv", index=False)
    shown = []
    original = dissection._concept_bars

    def spy(ax, lab, layer, min_units, more_than=False):
        vc = lab[lab["layer"] == layer]["description"].value_counts()
        shown.append((layer, sorted(vc[vc > min_units].index) if more_than else None))
        original(ax, lab, layer, min_units, more_than)
    dissection._concept_bars = spy
    try:
        assert compare_dissections.main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--layers", "conv1",
                                         "--output_dir", str(tmp_path / "o")]) == 0
    finally:
        dissection._concept_bars = original
    assert shown == [("conv1", ["red"]), ("conv1", ["green"])]         # 4 and 5 units; blue's 1 is left out


def test_bad_input(tmp_path, capsys):
    descriptions(A).to_csv(tmp_path / "a.csv", index=False)
    descriptions(B).to_csv(tmp_path / "b.csv", index=False)
    assert compare_dissections.main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--layers", "fc",
                                     "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no layer 'fc'" in err
    assert compare_dissections.main([str(tmp_path / "a.csv"), str(tmp_path / "nothing")]) == 2
    assert "neither a dissection result folder nor a descriptions CSV" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
