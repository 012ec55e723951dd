"""Evenly spread subsets, data sources and their errors."""
import numpy as np
import pytest
import torch

from disentangle.data.images import Images, dataset_images, dataset_source, even_subset
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
    with pytest.raises(UserError, match="not found.*data/README.md"):
        dataset_source("imagenet", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="not found"):
        dataset_source(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="one subfolder per class"):
        dataset_source(str(tmp_path / "empty"))


def test_corrupt_image_is_caught_before_work(tmp_path):
    from PIL import Image
    (tmp_path / "a").mkdir()
    Image.new("RGB", (30, 30), "red").save(tmp_path / "a" / "good.png")
    (tmp_path / "a" / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(UserError, match="cannot read image .*bad.png"):
        dataset_images(str(tmp_path), 2)


def test_loader_yields_indices_in_order():
    world, transform = dataset_source("concepts"), get_spec("tiny_densenet").transform(square=True)
    x, y, i = next(iter(Images(world, np.array([5, 7, 300])).loader(transform, batch_size=8)))
    assert x.shape == (3, 3, 56, 56) and i.tolist() == [5, 7, 300] and y.tolist() == [5, 7, 0]
    assert torch.equal(x[1], transform(world[7][0]))
