"""The concept world: deterministic, labelled per pixel, and exportable as an ImageFolder."""
import numpy as np
import pytest

from disentangle.data import concepts
from disentangle.data.concepts import CATEGORIES, CLASSES, COLOURS, SHAPES, ConceptWorld, render
from disentangle.data.images import Images, dataset_source
from disentangle.core.errors import UserError
from disentangle.core.models import get_spec


def test_same_seed_same_bytes_other_seed_other_image():
    a, b = render(0, "val", 17), render(0, "val", 17)
    assert a.image.tobytes() == b.image.tobytes() and a.seg.tobytes() == b.seg.tobytes()
    assert render(1, "val", 17).image.tobytes() != a.image.tobytes()
    assert render(0, "train", 17).image.tobytes() != a.image.tobytes()


def test_classes_and_categories():
    assert len(CLASSES) >= 10
    assert set(CATEGORIES) == {"shape", "colour", "texture"}
    assert CLASSES == tuple(sorted(CLASSES))  # ImageFolder order equals label order


@pytest.mark.parametrize("index", range(0, 48, 5))
def test_pixel_labels_match_the_object(index):
    s = render(0, "val", index)
    colour, shape = concepts.class_parts(s.label)
    obj = s.seg[0] > 0
    assert 0.03 < obj.mean() < 0.5
    assert (s.seg[1] > 0).tolist() == obj.tolist()            # colour labelled exactly on the object
    assert ((s.seg[2] > 0) == ~obj).all()                      # texture exactly on the background
    assert set(np.unique(s.seg[0][obj])) == {SHAPES.index(shape) + 1}
    assert set(np.unique(s.seg[1][obj])) == {list(COLOURS).index(colour) + 1}
    mean_rgb = s.image[obj].mean(0)
    nearest = min(COLOURS, key=lambda c: np.abs(np.asarray(COLOURS[c]) - mean_rgb).sum())
    assert nearest == colour


def test_dataset_targets_are_balanced_without_rendering():
    world = ConceptWorld("val", n=120)
    assert np.bincount(world.targets).tolist() == [10] * 12
    with pytest.raises(IndexError):
        world.sample(120)
    with pytest.raises(UserError, match="multiple of 14"):
        ConceptWorld("val", size=50)


def test_export_round_trip_gives_identical_tensors(tmp_path):
    spec = get_spec("tiny_densenet")
    concepts.export_imagefolder(tmp_path, "val", n=24)
    folder, world = dataset_source(str(tmp_path)), dataset_source("concepts")
    assert folder.classes == list(CLASSES)
    seg = np.load(tmp_path / "segmentation.npz")
    for j, (path, label) in enumerate(folder.folder.samples):
        i = int(path.rsplit("_", 1)[1].split(".")[0])
        (x_file,), (x_world,) = (Images(s, np.array([k])).pixels(spec) for s, k in ((folder, j), (world, i)))
        assert folder.targets[j] == world.targets[i] and np.array_equal(x_file, x_world)
        k = list(seg["files"]).index(f"{CLASSES[label]}/val_{i:06d}.png")
        assert np.array_equal(seg["seg"][k], world.sample(i).seg)
