"""Known-answer tests of sparsity and faithfulness on hand-built attribution maps."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from disentangle.attribution.metrics import faithfulness, importance, masked_input, sparsity, top_mask

N_PIX = 56 * 56


def maps(*planes):
    """Stack (H, W) planes into (B, 1, H, W)."""
    return torch.stack([torch.as_tensor(p, dtype=torch.float32) for p in planes])[:, None]


def reference_sparsity(a: np.ndarray, mass=0.9) -> float:
    """Straightforward per-image definition: smallest k whose top-k sum reaches mass * total."""
    v = np.sort(a.ravel())[::-1].astype(np.float64)
    if v.sum() == 0:
        v = np.ones_like(v)
    k = int(np.searchsorted(np.cumsum(v), mass * v.sum() * (1 - 1e-9)) + 1)
    return 1 - k / v.size


def test_mass_on_k_pixels():
    for k in (1, 10, 37):
        a = torch.zeros(56, 56)
        a.view(-1)[torch.randperm(N_PIX)[:k]] = 2.5
        got = sparsity(maps(a), "pixel")[0].item()
        assert got == pytest.approx(1 - math.ceil(0.9 * k - 1e-9) / N_PIX, abs=1e-6)


def test_uniform_and_all_zero_maps_are_defined():
    s = sparsity(maps(torch.ones(56, 56), torch.zeros(56, 56)), "pixel")
    expected = 1 - math.ceil(0.9 * N_PIX) / N_PIX
    assert torch.isfinite(s).all()
    assert s.tolist() == pytest.approx([expected, expected], abs=1e-6)
    assert sparsity(maps(torch.zeros(56, 56)), "patch")[0].item() == pytest.approx(1 - math.ceil(0.9 * 196) / 196)


def test_patch_versus_pixel():
    a = torch.zeros(56, 56)
    a[8:12, 20:24] = 1.0  # exactly one 4x4 patch of the 14x14 grid
    assert sparsity(maps(a), "patch")[0].item() == pytest.approx(1 - 1 / 196)
    assert sparsity(maps(a), "pixel")[0].item() == pytest.approx(1 - 15 / N_PIX)  # ceil(0.9 * 16) = 15
    imp = importance(maps(a), "patch")
    assert imp.shape == (1, 196) and imp.sum() == 16 and imp[0, 2 * 14 + 5] == 16


def test_channels_sum_absolute_values():
    a = torch.zeros(1, 3, 28, 28)
    a[0, 0, 0, 0], a[0, 1, 0, 0], a[0, 2, 5, 5] = 1.0, -1.0, 2.0  # pixel (0,0): |1| + |-1| = 2
    assert importance(a, "pixel")[0, 0] == 2 and importance(a, "pixel")[0, 5 * 28 + 5] == 2
    assert sparsity(a, "pixel")[0].item() == pytest.approx(1 - 2 / 784)


def test_ties_and_random_maps_match_reference():
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (6, 3, 28, 28), generator=gen).float()  # many ties
    a[1] = torch.rand(3, 28, 28, generator=gen) ** 8
    got = sparsity(a, "pixel")
    want = [reference_sparsity(np.abs(x.numpy()).sum(0)) for x in a]
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    # Batched equals one at a time.
    assert torch.equal(got, torch.cat([sparsity(x[None], "pixel") for x in a]))


def test_patch_metric_needs_grid_multiple():
    with pytest.raises(ValueError, match="divisible by 14"):
        sparsity(torch.ones(1, 1, 30, 30), "patch")


def test_top_mask_counts():
    a = torch.rand(2, 3, 56, 56)
    assert top_mask(a, "pixel", 0.1).sum(dim=(1, 2, 3)).tolist() == [round(0.1 * N_PIX)] * 2
    assert top_mask(a, "patch", 0.1).sum(dim=(1, 2, 3)).tolist() == [20 * 16] * 2  # round(19.6) patches


class RegionModel(nn.Module):
    """Logit 0 = 4 * mean of channel 0 over a region R; logit 1 = 0. So p0 = sigmoid(logit 0)."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x):
        l0 = 4 * (x[:, 0] * self.region).sum((1, 2)) / self.region.sum()
        return torch.stack([l0, torch.zeros_like(l0)], 1)


def test_faithfulness_known_drop():
    region = torch.zeros(56, 56, dtype=torch.bool)
    region.view(-1)[:314] = True                       # round(0.1 * 3136) pixels: exactly the masked set
    model = RegionModel(region)
    x = torch.ones(2, 3, 56, 56)
    attr = region.float().expand(2, 3, 56, 56).clone()
    attr[1] = torch.flip(attr[1], dims=(1, 2))         # second map points away from R
    target = torch.zeros(2, dtype=torch.long)
    drop = faithfulness(model, x, attr, target, "pixel", 0.1, mask_value=0.0)
    p_full = torch.sigmoid(torch.tensor(4.0))
    assert drop[0].item() == pytest.approx((p_full - 0.5).item(), abs=1e-6)  # R masked: logit 0 -> 0
    assert drop[1].item() == pytest.approx(0.0, abs=1e-6)                      # R untouched
    # The mask value is configurable: masking R with 1 (its current value) changes nothing.
    assert faithfulness(model, x, attr, target, "pixel", 0.1, mask_value=1.0)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_masked_input_uses_mask_value_everywhere_in_mask():
    x = torch.rand(1, 3, 56, 56)
    attr = torch.zeros(1, 3, 56, 56)
    attr[..., :4, :4] = 1.0
    xm = masked_input(x, attr, "patch", 1 / 196, mask_value=-7.0)
    assert (xm[..., :4, :4] == -7).all() and torch.equal(xm[..., 4:, :], x[..., 4:, :])
