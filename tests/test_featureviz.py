"""Feature visualization (disentangle/neurons/featureviz.py, visualize_features.py): known answers on
units wired to red and to vertical stripes, the parameterisation's pieces, reproducibility, and the
stage's files, resume and errors."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from disentangle.neurons import featureviz as fv


class Wired(nn.Module):
    """Unit 0: red minus the mean of green and blue at each pixel (linear). Unit 1: a 9 x 15 filter
    of vertical stripes of period 8 pixels (cosine across x, the same in every row), rectified."""

    def __init__(self):
        super().__init__()
        self.detect = nn.Conv2d(3, 2, (9, 15), padding=(4, 7), bias=False)
        with torch.no_grad():
            self.detect.weight.zero_()
            self.detect.weight[0, :, 4, 7] = torch.tensor([1.0, -0.5, -0.5])
            self.detect.weight[1] = torch.cos(2 * math.pi * torch.arange(-7, 8) / 8) / 27
        self.out = nn.Identity()

    def forward(self, x):
        d = self.detect(x)
        return self.out(torch.cat([d[:, :1], torch.relu(d[:, 1:])], 1))


@pytest.fixture(scope="module")
def wired_images():
    model = Wired().eval().requires_grad_(False)
    norm = fv.Normalise((0.5,) * 3, (0.25,) * 3)
    cfg = fv.VizConfig(steps=128, lr=0.05)
    images, acts = fv.visualize(model, "out", [0, 1], norm, 56, cfg, fv.colour_basis(None), torch.device("cpu"))
    return model, norm, cfg, images, acts


def test_a_unit_wired_to_red_gives_a_red_image(wired_images):
    _, _, _, images, acts = wired_images
    x = images[0].astype(float) / 255
    red_dominant = (x[..., 0] - x[..., 1:].max(-1)) > 0.2
    assert red_dominant.mean() > 0.6, red_dominant.mean()
    assert x[..., 0].mean() > 0.6 > 0.3 > x[..., 1].mean() and x[..., 2].mean() < 0.3
    assert acts[0] > 1.0           # far above a grey image's 0


def test_a_unit_wired_to_vertical_stripes_gives_vertical_stripes(wired_images):
    _, _, _, images, _ = wired_images
    lum = images[1].astype(float).mean(-1) / 255
    assert np.abs(np.diff(lum, axis=1)).mean() > 1.8 * np.abs(np.diff(lum, axis=0)).mean()
    power = np.abs(np.fft.fft2(lum - lum.mean()))
    fy, fx = np.unravel_index(power.argmax(), power.shape)
    fy, fx = min(fy, 56 - fy), min(fx, 56 - fx)
    # The strongest wave runs across x with a period of about 8 pixels, within the transforms' 10 degrees
    # of rotation of vertical.
    assert fx in range(5, 9) and math.degrees(math.atan2(fy, fx)) < 12, (fy, fx)


def test_reproducible_and_independent_of_the_batch(wired_images):
    model, norm, cfg, images, _ = wired_images
    again, _ = fv.visualize(model, "out", [0, 1], norm, 56, cfg, fv.colour_basis(None), torch.device("cpu"))
    np.testing.assert_array_equal(again, images)
    torch.testing.assert_close(fv.random_spectra([1], 56, 0), fv.random_spectra([0, 1], 56, 0)[1:], rtol=0, atol=0)
    torch.testing.assert_close(fv.transform_parameters([1], 5, 0), fv.transform_parameters([0, 1], 5, 0)[:, 1:],
                               rtol=0, atol=0)
    assert not torch.equal(fv.random_spectra([0], 56, 0), fv.random_spectra([0], 56, 1))


def test_parameterisation_pieces():
    # The colour basis is a square root of the pixels' covariance, scaled to a unit largest column.
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [0.3, 0.2, 0.4]])
    pixels = torch.randn(5000, 3, generator=g, dtype=torch.float64) @ mix.T.double()
    basis = fv.colour_basis(pixels).double()
    cov = torch.cov(pixels.T)
    torch.testing.assert_close(basis @ basis.T, cov / torch.linalg.eigvalsh(cov).max(), atol=1e-6, rtol=1e-5)
    assert fv.colour_basis(None).norm(dim=0).max() == pytest.approx(1.0)
    # Low frequencies are scaled up by 1/f, the constant term as the lowest frequency of the grid.
    s = fv.spectrum_scale(8, 8, 1.0)
    assert s.shape == (8, 5) and s[0, 0] == s[0, 1] == pytest.approx(8.0) and s[0, 4] == pytest.approx(2.0)
    # A fresh image is grey with a little structure, at any size.
    for size in (32, 224):
        with torch.no_grad():
            start = fv.FourierImages(fv.random_spectra(range(3), size, 0), torch.eye(3))()
        assert abs(float(start.mean()) - 0.5) < 0.02 and 0.03 < float(start.std()) < 0.1
    # The robust view gives the model's input size; without motion it is the padded image resized.
    x = torch.rand(2, 3, 56, 56)
    still = torch.tensor([[0.0, 0.0, 1.0, 0.0]] * 2)
    padded = torch.nn.functional.pad(x, [3] * 4, value=0.5)
    torch.testing.assert_close(fv.robust_view(x, still, 56),
                               torch.nn.functional.interpolate(padded, size=(56, 56), mode="bilinear"), atol=1e-5,
                               rtol=0)
    assert fv.robust_view(x, fv.transform_parameters([0, 1], 1, 0)[0], 32).shape == (2, 3, 32, 32)


def test_the_objective_picks_each_images_own_unit():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    assert fv.unit_objective(maps, torch.tensor([2, 0])).tolist() == [maps[0, 2].mean(), maps[1, 0].mean()]
    tokens = torch.randn(2, 5, 4)
    torch.testing.assert_close(fv.unit_objective(tokens, torch.tensor([1, 3])),
                               torch.stack([tokens[0, :, 1].mean(), tokens[1, :, 3].mean()]))
    flat = torch.randn(2, 4)
    assert fv.unit_objective(flat, torch.tensor([3, 1])).tolist() == [flat[0, 3], flat[1, 1]]


def test_start_images_and_dream(wired_images):
    model, norm, _, _, _ = wired_images
    grey = fv.start_image("gray", 56)
    assert abs(float(grey.mean()) - 0.5) < 0.01 and 0.01 < float(grey.std()) < 0.03
    ramp = fv.start_image("gradient", 56)
    assert ramp[:, 0, 0].tolist() == pytest.approx([0.2, 0.3, 0.8]) and ramp[:, -1, -1].tolist() == pytest.approx(
        [0.9, 0.6, 0.2])
    noise = fv.start_image("perlin", 56, seed=3)
    assert noise.min() == 0 and noise.max() == 1 and torch.equal(noise, fv.start_image("perlin", 56, seed=3))
    assert torch.equal(noise[0], noise[2])
    # Smooth: neighbouring pixels differ far less than random pixels do.
    assert (noise[0, :, 1:] - noise[0, :, :-1]).abs().mean() < 0.1 * (noise[0] - noise[0].flip(0, 1)).abs().mean() + 0.05
    with pytest.raises(Exception, match="unknown start image"):
        fv.start_image("plasma", 8)
    dreamt = fv.dream(model, "out", [0], grey, norm, torch.device("cpu"), steps=32)
    x = dreamt[0].astype(float) / 255
    assert x[..., 0].mean() > x[..., 1].mean() + 0.2       # DeepDream from grey turns the red unit's image red


def test_the_stage_writes_resumes_and_refuses(tmp_path, capsys):
    import json

    import visualize_features
    args = ["--blocks", "block_1", "--units", "0-2,5", "--steps", "4", "--output_dir", str(tmp_path)]
    assert visualize_features.main(args) == 0
    out = tmp_path / "tiny_densenet_block_1"
    assert sorted(p.name for p in out.glob("*_feature.png")) == [f"unit_{u:04d}_feature.png" for u in (0, 1, 2, 5)]
    z = np.load(out / "features.npz")
    assert z["units"].tolist() == [0, 1, 2, 5] and z["images"].shape == (4, 56, 56, 3) and z["images"].dtype == np.uint8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["colour"].startswith("data") and manifest["config"]["steps"] == 4
    assert "units/s" in capsys.readouterr().out
    assert visualize_features.main(args) == 0
    assert "already complete" in capsys.readouterr().out
    assert visualize_features.main([*args[:-2], "--units", "99", "--output_dir", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == "error: unit 99 is not a unit of block_1 (0..31)"
    assert visualize_features.main(["--units", "a-b"]) == 2
    assert "--units takes" in capsys.readouterr().err
