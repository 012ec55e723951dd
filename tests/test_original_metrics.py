"""The original's metric definitions (seed 000's utils.py), batched in the library and through the
original's names in ``utils.py``, against per-image NumPy arbiters of the same definitions."""
import numpy as np
import pytest
import torch

import utils
from disentangle.attribution import metrics


def np_mass_sparsity(values: np.ndarray, q: float = 0.9) -> float:
    v = np.sort(values.ravel())[::-1]
    if v.sum() == 0:
        return 0.0
    k = int(np.searchsorted(np.cumsum(v), q * v.sum())) + 1
    return 1.0 - k / v.size


def np_patches(attr: np.ndarray, g: int = 14) -> np.ndarray:
    a = np.abs(attr).sum(0) if attr.ndim == 3 else np.abs(attr)
    ph, pw = a.shape[0] // g, a.shape[1] // g
    return np.array([[a[i * ph:(i + 1) * ph, j * pw:(j + 1) * pw].sum() for j in range(g)] for i in range(g)])


def np_drop(model, img: torch.Tensor, attr: np.ndarray, f: float, metric: str, g: int = 14) -> float:
    with torch.no_grad():
        logits = model(img[None])
        c = int(logits.argmax(1))
        p0 = float(torch.softmax(logits, 1)[0, c])
    a = np.abs(attr).sum(0)
    h, w = a.shape
    keep = np.ones((h, w), np.float32)
    if metric == "pixel":
        top = np.argsort(-a.ravel(), kind="stable")[:max(1, int(round(f * a.size)))]
        keep.ravel()[top] = 0
    else:
        s = np_patches(attr, g)
        ph, pw = h // g, w // g
        for t in np.argsort(-s.ravel(), kind="stable")[:max(1, int(round(f * s.size)))]:
            i, j = divmod(int(t), g)
            keep[i * ph:(i + 1) * ph, j * pw:(j + 1) * pw] = 0
    with torch.no_grad():
        p1 = float(torch.softmax(model((img * torch.from_numpy(keep))[None]), 1)[0, c])
    return p0 - p1


@pytest.mark.parametrize("size", [56, 60, 224])
def test_sparsity_equals_the_per_image_definition(size):
    rng = np.random.default_rng(size)
    maps = rng.standard_normal((4, 3, size, size)) * rng.exponential(1, (4, 1, size, size))
    maps[3] = 0.0                                                           # all-zero: 0.0
    batched_pixel = metrics.sparsity(torch.from_numpy(maps), "pixel", 0.9, "original")
    batched_patch = metrics.sparsity(torch.from_numpy(maps), "patch", 0.9, "original")
    for i, a in enumerate(maps):
        pixel, patch = np_mass_sparsity(np.abs(a)), np_mass_sparsity(np_patches(a))
        assert utils.compute_sparsity_pixel_wise(a) == pytest.approx(pixel, abs=1e-6)
        assert utils.compute_sparsity_patch_wise(a) == pytest.approx(patch, abs=1e-6)
        assert float(batched_pixel[i]) == pytest.approx(pixel, abs=1e-6)
        assert float(batched_patch[i]) == pytest.approx(patch, abs=1e-6)
    assert utils.compute_sparsity_pixel_wise(maps[3]) == utils.compute_sparsity_patch_wise(maps[3]) == 0.0


def test_sparsity_known_answers():
    one_hot = np.zeros((3, 28, 28))
    one_hot[1, 5, 7] = 2.0                                                  # all mass in one value
    assert utils.compute_sparsity_pixel_wise(one_hot) == pytest.approx(1 - 1 / one_hot.size)
    assert utils.compute_sparsity_patch_wise(one_hot) == pytest.approx(1 - 1 / 196)
    uniform = np.ones((3, 28, 28))                  # 0.9 * 2352 = 2116.8: the first 2117 values reach it
    assert utils.compute_sparsity_pixel_wise(uniform) == pytest.approx(1 - 2117 / 2352, abs=1e-12)
    edge = np.zeros((30, 30))
    edge[28:, :] = 5.0                                                      # only in the remainder rows
    assert utils.compute_sparsity_patch_wise(edge) == 0.0                   # the grid holds no mass
    with pytest.raises(ValueError, match="too large"):
        utils.compute_sparsity_patch_wise(np.ones((3, 10, 10)))


@pytest.mark.parametrize("metric", ["pixel", "patch"])
def test_probability_drop_equals_the_per_image_definition(tiny, metric):
    model = tiny.model
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 56, 56, generator=g)
    attr = torch.randn(5, 3, 56, 56, generator=g, dtype=torch.float64)
    func = utils.probability_drop_pixel_wise if metric == "pixel" else utils.probability_drop_patch_wise
    with torch.no_grad():
        pred = model(x).argmax(1)
    batched = metrics.faithfulness(model, x, attr.float(), pred, metric, 0.1, protocol="original")
    for i in range(5):
        want = np_drop(model, x[i], attr[i].numpy(), 0.1, metric)
        assert func(model, x[i], attr[i].numpy()) == pytest.approx(want, abs=1e-6)
        assert float(batched[i]) == pytest.approx(want, abs=1e-6)


def test_patch_drop_leaves_the_remainder_unmasked():
    attr = torch.zeros(1, 1, 30, 30)
    attr[..., 28:, :] = 1.0                                                 # importance only outside the grid
    attr[..., 0, 0] = 0.5
    mask = metrics.top_mask(attr, "patch", 0.1, "original")
    assert not mask[..., 28:, :].any() and mask[..., 0:2, 0:2].all()
    with pytest.raises(ValueError, match="divisible"):
        metrics.top_mask(attr, "patch", 0.1, "extended")


def test_seed_and_loader_signatures(tmp_path):
    from PIL import Image
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (300, 260), (40 * i, 90, 200)).save(tmp_path / c / f"{i}.png")
    utils.set_seeds()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    loader = utils.get_imagenet_dataloader(tmp_path, batch_size=4, num_workers=0)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 0, 0, 1]
    sub = utils.get_imagenet_dataloader(tmp_path, batch_size=8, num_workers=0, n_samples=4)
    assert len(sub.dataset) == 4
    assert sorted(sub.dataset.indices) == sorted(np.random.default_rng(0).choice(6, 4, replace=False).tolist())


@pytest.mark.parametrize("metric", ["pixel", "patch"])
def test_engine_under_the_original_protocol_equals_utils_per_image(tiny, metric):
    """The batched engine's metrics (``--protocol original``, true-label targets) equal the original's
    per-image functions on the engine's own maps; faithfulness is of the predicted class."""
    from disentangle.attribution.evaluation import EvalConfig, evaluate_masks
    from disentangle.core.layers import layer_width, resolve_layer
    model, spec = tiny.model, tiny.spec
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 3, 56, 56, generator=g)
    labels = torch.arange(6) % 4
    block = resolve_layer(spec, "block_2")
    blocked = torch.zeros(2, layer_width(model, block, x[:1]), dtype=torch.bool)
    blocked[1, ::3] = True
    cfg = EvalConfig(metric=metric, ig_steps=8, target="label", protocol="original")
    out = evaluate_masks(model, x, labels, None, cfg, block, blocked, keep_maps=True, stem=spec.stem)
    sparsity = utils.compute_sparsity_pixel_wise if metric == "pixel" else utils.compute_sparsity_patch_wise
    drop = utils.probability_drop_pixel_wise if metric == "pixel" else utils.probability_drop_patch_wise
    for res in out:
        assert torch.equal(res["target"], labels)
        for m in cfg.methods:
            for i in range(6):
                a = res[f"{m}_attr"][i].numpy()
                assert float(res[f"{m}_sparsity"][i]) == pytest.approx(sparsity(a), abs=1e-6)
                assert float(res[f"{m}_faithfulness"][i]) == pytest.approx(drop(model, x[i], a), abs=1e-6)


def test_summaries_use_ddof_0_under_the_original_protocol():
    values = [0.1, 0.4, 0.7]
    assert metrics.summarize(values, 0)["std"] == pytest.approx(np.std(values))
    assert metrics.summarize(values)["std"] == pytest.approx(np.std(values, ddof=1))
