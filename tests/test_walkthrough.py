"""docs/walkthrough.md runs as written: its Python cells, in order, in one namespace, with the
answers it shows."""
import re

import numpy as np

from tests.conftest import ROOT


def test_walkthrough_cells_run(tmp_path, monkeypatch, capsys, tiny):
    text = (ROOT / "docs" / "walkthrough.md").read_text()
    cells = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(cells) >= 10
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for i, cell in enumerate(cells):
        exec(compile(cell, f"walkthrough cell {i + 1}", "exec"), ns)
    out = capsys.readouterr().out
    assert "tiny_densenet (12, 3, 56, 56) concepts" in out
    # The known answers the text states: the clusters' signed maps add up to the full map, blocking a
    # cluster removes mass, the object is found, colours are detected early, the units are selective.
    assert (ns["parts"].sum(0) - ns["full"]).abs().max() < 1e-5 * ns["full"].abs().max()
    assert ns["ig"][1].abs().sum() < ns["ig"][0].abs().sum()
    assert np.nanmean(ns["dt"].iou(ns["mask"], ns["objects"])) > 0.3
    best = ns["descriptions"].sort_values("iou", ascending=False).iloc[0]
    assert best["layer"] == "block_1" and best["description"] in ("red", "green", "blue")
    assert len(ns["scores"]) and (ns["scores"]["S"] > 0.5).all()
    assert (tmp_path / "walkthrough" / "baseline" / "per_image.csv").exists()
