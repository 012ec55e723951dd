"""The neuron atlas (neuron_atlas.py): its verdict logic, its figures' known answers, the site built
from the stages it runs, refusal of another model's artifacts, the embedded default's red units, and
the site in a real browser (headless Chromium)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from disentangle.pipeline.atlas import agreement, verdicts, words
from disentangle.viz.atlas import histogram_svg, top_strip


def test_verdicts_agree_when_they_share_a_word():
    row = pd.Series({"dissection": "red", "linear explanation": "red circle", "interpscore concept": "blue_circle",
                     "clip-dissect": ""})
    found = verdicts(row)
    assert found == {"dissection": "red", "linear explanation": "red circle", "InterpScore concept": "blue_circle"}
    pairs, summary = agreement(found)
    assert pairs == [("dissection", "linear explanation", True), ("dissection", "InterpScore concept", False),
                     ("linear explanation", "InterpScore concept", True)]
    assert summary == "2/3" and words("Red_circle-ish") == {"red", "circle", "ish"}
    assert agreement({"dissection": "red"}) == ([], "")


def test_top_strip_overlays_the_map_and_outlines_the_mask():
    images = np.full((2, 8, 8, 3), 128, dtype=np.uint8)
    maps = np.zeros((2, 4, 4), dtype=np.float32)
    maps[0, 1:3, 1:3] = 1.0                          # a hot square in the middle of the first image
    strip = top_strip(images, maps, threshold=0.5, scale=1)
    assert strip.shape == (8, 8 + 4 + 8, 3)
    cyan = (strip[..., 0] < 60) & (strip[..., 1] > 200) & (strip[..., 2] > 200)
    assert cyan[:, :8].any() and not cyan[:, 12:].any()       # the mask's outline on the first image only
    ys, xs = np.nonzero(cyan[:, :8])
    assert ys.min() >= 1 and ys.max() <= 6 and xs.min() >= 1 and xs.max() <= 6
    assert (strip[:, 8:12] == 255).all()                      # the gap
    svg = histogram_svg(np.array([0.0, 1.0, 1.0, 2.0]), bins=4)
    assert svg.count("<rect") == 4 and "mean 1.00" in svg


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    """The atlas of tiny_densenet's block_1 on 240 probe images, its stages run into a fresh root."""
    import neuron_atlas
    root = tmp_path_factory.mktemp("atlas")
    args = ["--blocks", "block_1", "--images", "240", "--ks", "2,3", "--feature_steps", "32", "--outputs",
            str(root / "outputs"), "--results", str(root / "results"), "--output_dir", str(root / "site")]
    assert neuron_atlas.main(args) == 0
    return root, args


def test_the_site_and_its_stages(atlas, capsys):
    import neuron_atlas
    root, args = atlas
    site = root / "site"
    index = (site / "index.html").read_text()
    assert index.count('<tr data-block="block_1">') == 32
    for column in ("dissection", "iou", "linear explanation", "sim correlation", "S", "C", "R", "H", "InterpScore",
                   "cluster k=2", "cluster k=3", "activation_rate", "agreement"):
        assert f"<th>{column}</th>" in index, column
    assert "http" not in index.replace("http://www.w3.org/2000/svg", "")       # nothing fetched from a network
    units = json.loads((site / "units.json").read_text())
    assert len(units) == 32 and {u["unit"] for u in units} == set(range(32))
    for u in (0, 17, 31):
        page = (site / "units" / f"block_1_{u:04d}.html").read_text()
        img = f'src="../features/block_1/unit_{u:04d}_feature.png"'
        assert img in page and "feature" in img and (site / "features" / "block_1" / f"unit_{u:04d}_feature.png").is_file()
        assert (site / "top" / f"block_1_{u:04d}.png").is_file() and "<svg" in page and "Most correlated units" in page
    # The stages' artifacts are where their scripts put them, and a rerun reads them.
    outputs = root / "outputs"
    assert (outputs / "dissect" / "tiny_densenet_netdissect_concepts" / "descriptions.csv").is_file()
    assert (outputs / "features" / "tiny_densenet_block_1" / "features.npz").is_file()
    assert (root / "results" / "le_label_tiny_densenet_block_1.csv").is_file()
    capsys.readouterr()
    assert neuron_atlas.main(args) == 0
    assert "running" not in capsys.readouterr().out


def test_another_models_artifacts_are_refused(atlas, tmp_path, capsys):
    import neuron_atlas
    root, args = atlas
    outputs = tmp_path / "outputs"
    shutil.copytree(root / "outputs", outputs)
    manifest = outputs / "features" / "tiny_densenet_block_1" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["config"]["weights_sha256"] = "0" * 64
    manifest.write_text(json.dumps(m))
    argv = [*args[:args.index("--outputs")], "--outputs", str(outputs), "--results", str(root / "results"),
            "--output_dir", str(tmp_path / "site")]
    assert neuron_atlas.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "made with other weights of tiny_densenet" in err
    # Reading only: what has not run is left out, with a note.
    assert neuron_atlas.main(["--blocks", "block_2", "--images", "240", "--no_run", "--outputs", str(tmp_path / "none"),
                              "--results", str(tmp_path / "none"), "--output_dir", str(tmp_path / "bare")]) == 0
    out = capsys.readouterr().out
    assert "note: dissect_neurons: not run (--no_run)" in out
    assert (tmp_path / "bare" / "index.html").read_text().count("<tr data-block") == 32


def test_red_units_of_block_1_have_red_feature_visualizations(tmp_path):
    """On the embedded default: block_1's units that dissection labels red (detectors) mostly show
    red as their feature visualization's dominant colour, and red far more than green or blue."""
    import dissect_neurons
    import visualize_features
    assert dissect_neurons.main(["--blocks", "block_1", "--activation_dir", "none",
                                 "--output_dir", str(tmp_path / "d")]) == 0
    d = pd.read_csv(tmp_path / "d" / "descriptions.csv")
    red = d[(d["layer"] == "block_1") & (d["description"] == "red") & d["detector"]]["unit"].tolist()
    assert len(red) >= 4
    assert visualize_features.main(["--blocks", "block_1", "--units", ",".join(map(str, red)),
                                    "--output_dir", str(tmp_path / "f")]) == 0
    images = np.load(tmp_path / "f" / "tiny_densenet_block_1" / "features.npz")["images"].astype(float) / 255
    shares = np.stack([((images[..., c] - images[..., [o for o in range(3) if o != c]].max(-1)) > 0.2).mean((1, 2))
                       for c in range(3)], 1)                                 # (units, colour) dominant pixels
    assert (shares.argmax(1) == 0).mean() >= 0.75, shares
    assert shares[:, 0].mean() > 2 * shares[:, 1:].mean(), shares


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")
    return chromium, sync_playwright


def test_the_site_in_a_headless_browser(atlas, tmp_path):
    chromium, sync_playwright = _browser()
    root, _ = atlas
    index = (root / "site" / "index.html").resolve().as_uri()
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed {r.url}"))
            page.goto(index)
            rows = page.locator("#units tbody tr")
            assert rows.count() == 32 and page.locator("#shown").inner_text() == "32"
            # Sort by unit, descending on the second click.
            header = page.locator("#units thead th", has_text="unit").first
            header.click()
            header.click()
            assert rows.first.locator("td").nth(2).inner_text() == "31"
            # Filter: only the rows holding the text stay.
            page.fill("#filter", "colour")
            shown = int(page.locator("#shown").inner_text())
            visible = [r for r in rows.all() if r.is_visible()]
            assert 0 < shown < 32 and len(visible) == shown and all("colour" in r.inner_text() for r in visible)
            page.fill("#filter", "")
            page.screenshot(path=str(tmp_path / "index.png"))
            page.goto(index.replace("index.html", "units/block_1_0005.html"))
            assert page.locator("img.feature").evaluate("i => i.naturalWidth") > 0
            assert page.locator("img.top").evaluate("i => i.naturalWidth") > 0
            page.screenshot(path=str(tmp_path / "unit.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert (tmp_path / "index.png").stat().st_size > 10_000 and (tmp_path / "unit.png").stat().st_size > 10_000


def test_a_clip_dissect_result_joins_the_verdicts(atlas, tmp_path):
    import neuron_atlas
    root, args = atlas
    csv = tmp_path / "descriptions.csv"
    pd.DataFrame({"layer": "block_1", "unit": range(32), "description": ["crimson"] * 31 + ["red paint"],
                  "similarity": 0.5}).to_csv(csv, index=False)
    argv = [*args[:args.index("--output_dir")], "--output_dir", str(tmp_path / "site"), "--no_run",
            "--clip_dissect", str(csv)]
    assert neuron_atlas.main(argv) == 0
    assert "<th>clip-dissect</th>" in (tmp_path / "site" / "index.html").read_text()
    page = (tmp_path / "site" / "units" / "block_1_0031.html").read_text()
    assert "<b>red paint</b>" in page
    units = {u["unit"]: u for u in json.loads((tmp_path / "site" / "units.json").read_text())}
    assert units[0]["clip-dissect"] == "crimson"
