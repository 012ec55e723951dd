"""Attribution figures: the panels hold captum's baseline maps; the scripts write valid PNGs."""
import struct

import pytest
import torch

import neuron_stats
import run_images_attribution
import visualize_attribution
from disentangle.viz import figures
from disentangle.attribution.evaluation import EvalConfig
from disentangle.attribution.reference import attribute
from disentangle.data.concepts import ConceptWorld
from disentangle.core.hooks import channel_mask

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stats(tmp_path_factory, tiny):
    folder = tmp_path_factory.mktemp("figures") / "block_1_k3"
    assert neuron_stats.main(["--block", "block_1", "--n_clusters", "3", "--images", "24",
                              "--output_dir", str(folder)]) == 0
    return folder


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the magic bytes."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_baseline_panels_are_captum_maps(tiny):
    world = ConceptWorld("val", transform=tiny.spec.transform(square=True))
    x = torch.stack([world[i][0] for i in (1500, 7)])                                  # (2, 3, 56, 56)
    cfg = EvalConfig(ig_steps=8, target="pred")
    p = figures.attribution_panels(tiny.model, x, "features.denseblock1", channel_mask(range(8), 32), cfg, ig_batch=None)
    target = torch.from_numpy(p.target)
    assert target.tolist() == tiny.model(x).argmax(1).tolist()
    ig, _ = attribute(tiny.model, x, target, "ig", ig_steps=8)
    ref = ig.flatten(1).sum(1)                                                         # signed, before abs
    assert torch.allclose(torch.from_numpy(p.methods["ig"]["total_baseline"]), ref, rtol=1e-4, atol=0)
    assert torch.allclose(torch.from_numpy(p.methods["ig"]["baseline"]), ig.abs().sum(1),
                          atol=1e-5 * ig.abs().max().item())
    sal, _ = attribute(tiny.model, x, target, "saliency")
    assert torch.allclose(torch.from_numpy(p.methods["saliency"]["baseline"]), sal.sum(1), atol=1e-6)
    d = p.methods["ig"]
    assert d["difference"].shape == (2, 56, 56) and abs(d["difference"]).max() > 0   # blocking changes the map
    assert (d["masked"] == 0).all(1).sum() >= 20 * 16                                 # 20 of 196 patches of 4x4


def test_scripts_write_figures(stats, tmp_path, capsys):
    common = ["--stats_dir", str(stats), "--ig-steps", "4", "--output_dir", str(tmp_path)]
    assert visualize_attribution.main(["--img_idx", "1500", *common]) == 0
    png = tmp_path / "attr_example_1500_idx_0_k3.png"              # the original's name
    width, height = png_size(png)
    assert 1500 < width < 4000 and 600 < height < width and 50_000 < png.stat().st_size < 3_000_000

    capsys.readouterr()
    assert visualize_attribution.main(["--img_idx", "12000", *common]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: image index 12000 is out of range") and len(err.splitlines()) == 1

    out = tmp_path / "many"
    assert run_images_attribution.main(["--num_images", "3", "--batch-size", "2", *common[:-1], str(out)]) == 0
    assert sorted(p.name for p in out.glob("attr_example_*.png")) == [   # linspace(0, len - 1, 3), as the original
        "attr_example_0_idx_0_k3.png", "attr_example_11999_idx_0_k3.png", "attr_example_5999_idx_0_k3.png"]
    width, height = png_size(out / "attr_block_1_c0_k3_grid_patch.png")
    assert width > 1000 and height > 800   # three rows of four panels
