"""Attribution figures: the panels hold the captum baseline maps; scripts write readable PNGs."""
import pytest
import torch

import neuron_stats
import run_images_attribution
import visualize_attribution
from disentangle import panels
from disentangle.attribution import attribute
from disentangle.concepts import ConceptWorld
from disentangle.hooks import channel_mask


@pytest.fixture(scope="module")
def stats(tmp_path_factory, tiny):
    folder = tmp_path_factory.mktemp("vis") / "block_1_k3"
    assert neuron_stats.main(["--block", "block_1", "--n_clusters", "3", "--images", "24", "--output_dir", str(folder)]) == 0
    return folder


def test_panels_baseline_is_the_captum_map(tiny):
    world = ConceptWorld("val", transform=tiny.spec.transform(square=True))
    x = torch.stack([world[i][0] for i in (1500, 7)])
    t = tiny.model(x).argmax(1)
    p = panels.attribution_panels(tiny.model, x, t, "features.denseblock1", channel_mask(range(8), 32),
                                  "patch", 0.1, 0.0, 8, 64)
    ref, _ = attribute(tiny.model, x, t, "ig", 8, 64)
    assert torch.allclose(torch.from_numpy(p["ig"]["baseline"]), ref.abs().sum(1), atol=1e-5 * ref.abs().max().item())
    assert (p["ig"]["masked"] == 0).sum() >= 20 * 16 * 3 and p["saliency"]["sparsity_filtered"].shape == (2,)


def test_scripts_write_figures(stats, tmp_path, capsys):
    common = ["--stats_dir", str(stats), "--ig-steps", "4", "--output_dir", str(tmp_path)]
    assert visualize_attribution.main(["--img_idx", "1500", *common]) == 0
    png = tmp_path / "attr_block_1_c0_k3_img1500_patch.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert run_images_attribution.main(["--num_images", "3", "--batch-size", "2", *common]) == 0
    assert len(list(tmp_path.glob("attr_block_1_c0_k3_img*_patch.png"))) == 4
    capsys.readouterr()
    assert visualize_attribution.main(["--img_idx", "999999", *common]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: image index 999999 is out of range") and len(err.splitlines()) == 1
