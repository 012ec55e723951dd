"""Evenly spread subsets, data sources and their errors."""
import numpy as np
import pytest
import torch

from disentangle.data.images import build_dataset, check_images, even_subset, make_loader
from disentangle.core.errors import UserError
from disentangle.core.models import get_spec


def test_even_subset_balanced_spread_and_deterministic():
    targets = np.arange(12_000) % 12
    idx = even_subset(targets, 200)
    assert len(idx) == 200 and len(set(idx)) == 200 and np.all(np.diff(idx) > 0)
    counts = np.bincount(targets[idx], minlength=12)
    assert counts.max() - counts.min() <= 1
    assert idx.min() < 600 and idx.max() > 11_000          # spread over the whole set, not its start
    assert np.array_equal(idx, even_subset(targets, 200))


def test_even_subset_with_small_classes():
    targets = np.array([0] * 2 + [1] * 50 + [2] * 50)
    idx = even_subset(targets, 30)
    assert np.bincount(targets[idx]).tolist() == [2, 14, 14]
    assert len(even_subset(targets, 102)) == 102


def test_even_subset_bad_counts():
    with pytest.raises(UserError, match="at least 1"):
        even_subset(np.zeros(5), 0)
    with pytest.raises(UserError, match="has 5"):
        even_subset(np.zeros(5), 6)


def test_missing_data_folder_is_a_clear_error(tmp_path):
    spec = get_spec("resnet18")
    with pytest.raises(UserError, match="not found.*data/README.md"):
        build_dataset("imagenet", spec, str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="not found"):
        build_dataset(str(tmp_path / "nowhere"), spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="one subfolder per class"):
        build_dataset(str(tmp_path / "empty"), spec)


def test_corrupt_image_is_caught_before_work(tmp_path):
    from PIL import Image
    (tmp_path / "a").mkdir()
    Image.new("RGB", (30, 30), "red").save(tmp_path / "a" / "good.png")
    (tmp_path / "a" / "bad.png").write_bytes(b"not an image at all")
    ds = build_dataset(str(tmp_path), get_spec("tiny_densenet"))
    with pytest.raises(UserError, match="cannot read image .*bad.png"):
        check_images(ds, np.arange(len(ds)))


def test_loader_yields_indices_in_order():
    ds = build_dataset("concepts", get_spec("tiny_densenet"))
    x, y, i = next(iter(make_loader(ds, [5, 7, 300], batch_size=8)))
    assert x.shape == (3, 3, 56, 56) and i.tolist() == [5, 7, 300] and y.tolist() == [5, 7, 0]
    assert torch.equal(x[1], ds[7][0])
