"""Mask-IoU dissection: the exact quantile, the IoU tally, and known answers from a wired model."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import compare_dissections
import dissect_neurons
from disentangle.dissection import netdissect as dissection
from disentangle.core.models import get_spec
from disentangle.data.images import Labels, probe_images


def _disk(r: float, half: int) -> np.ndarray:
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    return (x * x + y * y <= r * r).astype(np.float32)


class Wired(nn.Module):
    """Four hand-wired channels on tiny_densenet's input normalisation (mean 0.5, std 0.25), at 1/4
    resolution like a real block: 0 red (R above G and B), 1 circle (a disk minus its surrounding
    ring, matched at five radii: only a circle fills the disk and leaves the ring empty), 2 noise
    texture (local high-frequency energy), 3 random (a zero-mean random 5x5 filter)."""

    def __init__(self):
        super().__init__()
        kernels = []
        for r in range(5, 10):
            ring = _disk(r + 2.5, 13) - _disk(r + 0.5, 13)
            kernels.append(_disk(r, 13) / _disk(r, 13).sum() - ring / ring.sum())
        self.register_buffer("circle", torch.tensor(np.stack(kernels))[:, None])
        w = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(0))
        self.register_buffer("random", w - w.mean((2, 3), keepdim=True))
        self.features = nn.Identity()

    def forward(self, x):
        rgb = x * 0.25 + 0.5
        red = F.relu(rgb[:, :1] - rgb[:, 1:].amax(1, keepdim=True) - 0.3)
        obj = torch.sigmoid((rgb.amax(1, keepdim=True) - rgb.amin(1, keepdim=True) - 0.35) * 20)
        circle = F.conv2d(F.avg_pool2d(obj, 2), self.circle, padding=13).amax(1, keepdim=True)
        circle = F.interpolate(F.max_pool2d(F.relu(circle - 0.6), 7, 1, 3), scale_factor=2)
        grey = rgb.mean(1, keepdim=True)
        high = (grey - F.avg_pool2d(grey, 3, 1, 1, count_include_pad=False)).abs()
        noise = F.avg_pool2d(high, 5, 1, 2, count_include_pad=False)
        random = F.conv2d(rgb, self.random, padding=2)
        return self.features(F.avg_pool2d(torch.cat([red, circle, noise, random], 1), 4))


def test_quantile_matches_numpy():
    a = torch.randn(7, 3, 5, 4) ** 3
    for q in (0.005, 0.05, 0.3):
        tq = dissection.TopQuantile(7 * 5 * 4, q, top_images=2)
        for s in range(0, 7, 3):
            tq.update(a[s:s + 3], torch.arange(s, min(s + 3, 7)))
        want = np.quantile(a.transpose(0, 1).reshape(3, -1).double().numpy(), 1 - q, axis=1)
        np.testing.assert_allclose(tq.thresholds().numpy(), want, rtol=1e-6)
    peak = a.amax((2, 3))
    assert torch.equal(tq.image_idx, peak.topk(2, dim=0).indices.T)


def test_iou_tally_matches_brute_force():
    """Two units, three concepts in two categories, against a per-pixel NumPy count; category 1 is
    annotated on image 0 only, so unit pixels on image 1 must not enter its unions."""
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 2, 4, 4, generator=g)
    planes = torch.zeros(2, 2, 8, 8, dtype=torch.long)
    planes[:, 0] = torch.randint(0, 3, (2, 8, 8), generator=g)          # category 0: ids 1, 2
    planes[0, 1, :4] = 3                                               # category 1: id 3, image 0 only
    thr = torch.tensor([0.5, 0.7])
    tally = dissection.MaskIoU(thr, n_labels=3, n_categories=2, unit_chunk=1)
    tally.update(a, Labels(planes, torch.tensor([0, 1])))
    iou = tally.tally.iou(torch.tensor([-1, 0, 0, 1])).numpy()
    up = F.interpolate(a, size=(8, 8), mode="bilinear", align_corners=False).numpy()
    for u in range(2):
        m = up[:, u] > thr[u].item()
        for c, cat in ((1, 0), (2, 0), (3, 1)):
            lab = (planes[:, cat] == c).numpy()
            annotated = np.array([(planes[b, cat] > 0).any().item() for b in range(2)])
            inter = (m & lab).sum()
            union = m[annotated].sum() + lab.sum() - inter
            assert iou[u, c - 1] == pytest.approx(inter / union)


def test_probe_sets_describe_themselves_as_before(tmp_path):
    """Cache keys and manifests hold a probe set's describe(): it and the image order stay as they were."""
    from PIL import Image
    assert probe_images("concepts", 96, 2).describe() == {"name": "concepts", "split": "val", "n": 96, "seed": 2,
                                                          "size": 56}
    (tmp_path / "a").mkdir()
    for name in ("b.png", "a/c.png", "a/d.jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    for n, order, digest in ((None, ["a/c.png", "a/d.jpg", "b.png"], "0a4d8704d9237d74"),
                             (2, ["a/c.png", "a/d.jpg"], "032808cf0b987ff4")):
        images = probe_images(str(tmp_path), n)
        assert [str(f.relative_to(tmp_path)) for f in images.source.files] == order
        assert images.describe() == {"name": "folder", "root": str(tmp_path.resolve()), "n": len(order),
                                     "files_sha256": digest}


@pytest.fixture(scope="module")
def wired_labels():
    images = probe_images("concepts", 480)
    probe = images.source
    transform = get_spec("tiny_densenet").transform(square=True)

    def run(quantile):
        res = dissection.dissect_layers(Wired().eval(), ["features"], images,
                                        lambda: images.loader([transform], 120),
                                        torch.device("cpu"), quantile, 5)["features"]
        tally = dissection.Tally(*(torch.from_numpy(res[k]) for k in ("intersection", "label_pixels", "unit_pixels")))
        return pd.DataFrame(dissection.label_units(tally.iou(probe.label_category()), probe.concepts, 0.04))
    return run


def test_wired_channels_get_their_concepts(wired_labels):
    rows = wired_labels(0.005)
    assert list(rows["description"][:3]) == ["red", "circle", "noise"]
    assert list(rows["category"][:3]) == ["colour", "shape", "texture"]
    assert rows["detector"].tolist() == [True, True, False, False]
    # The random channel overlaps nothing: far below the detector threshold.
    assert rows["iou"][3] < 0.015
    # Noise texture covers ~20 % of all pixels, so a 0.5 % mask cannot reach IoU 0.04 (at most
    # 0.005 / 0.2); with a 2 % mask the texture channel is a detector and the random one is not.
    wide = wired_labels(0.02)
    assert list(wide["description"][:3]) == ["red", "circle", "noise"]
    assert wide["detector"].tolist()[:3] == [True, True, True] and wide["iou"][2] > 0.06
    assert not wide["detector"][3]


def test_script_on_tiny_densenet_and_cache(tmp_path, tiny, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = ["--target_layers", "block_1,block_4", "--probe_images", "96", "--batch_size", "48",
            "--result_dir", str(out), "--activation_dir", str(cache), "--top_units", "2", "--top_images", "3"]
    assert dissect_neurons.main(argv) == 0
    frame = pd.read_csv(out / "descriptions.csv")
    assert list(frame.columns[:4]) == ["layer", "unit", "description", "similarity"]
    assert len(frame) == 64 and set(frame["layer"]) == {"block_1", "block_4"}
    assert (frame["iou"] == frame["similarity"]).all()
    for f in ("summary.json", "units_per_concept.png", "category_shares.png", "strips_block_1.png",
              "strips_block_4.png", "manifest.json"):
        assert (out / f).exists(), f
    assert len(list(cache.glob("tally_*.npz"))) == 2
    # Another IoU threshold reuses the cached tallies and gives the same IoUs.
    out2 = tmp_path / "run2"
    assert dissect_neurons.main(argv[:-4] + ["--top_images", "3", "--top_units", "0", "--result_dir", str(out2),
                                             "--iou_threshold", "0.01"]) == 0
    again = pd.read_csv(out2 / "descriptions.csv")
    np.testing.assert_array_equal(again["iou"], frame["iou"])
    assert (again["detector"] == (again["iou"] > 0.01)).all()
    assert len(list(cache.glob("tally_*.npz"))) == 2

    # Side by side: same units, same best concepts; more detectors at the lower IoU threshold.
    cmp = tmp_path / "cmp"
    capsys.readouterr()
    assert compare_dissections.main([str(out), str(out2), "--names", "t04,t01", "--output_dir", str(cmp)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["run", "t04", "t01"] and printed[2].split()[0] == "block_1"
    unique = pd.read_csv(cmp / "unique_concepts.csv")
    assert list(unique["layer"]) == ["block_1", "block_4", "overall"] * 2
    table = pd.read_csv(cmp / "comparison.csv").set_index(["run", "layer"])
    assert (table.loc["t01", "labelled_units"] >= table.loc["t04", "labelled_units"]).all()
    assert pd.read_csv(cmp / "units.csv")["agree"].all()
    for f in ("unique_concepts.png", "category_shares.png", "units_per_concept_block_1.png",
              "units_per_concept_block_4.png"):
        assert (cmp / f).exists(), f


@pytest.mark.parametrize("argv, message", [
    (["--target_layers", "block_9"], "unknown layer 'block_9'"),
    (["--d_probe", "{tmp}"], "no image files"),
    (["--quantile", "1.5"], "--quantile must be in (0, 1)"),
    (["--d_probe", "broden", "--broden_root", "{tmp}"], "is not a Broden folder"),
    (["--method", "clip", "--clip_weights", "openai", "--clip_model", "RN50"], "the CLIP weights RN50 / openai are not in the local Hugging Face cache"),
])
def test_bad_input_one_line_nothing_written(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert dissect_neurons.main(argv + ["--result_dir", str(out), "--activation_dir", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_image_folder_needs_clip(tmp_path, capsys):
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert dissect_neurons.main(["--d_probe", str(tmp_path), "--result_dir", str(tmp_path / "o")]) == 2
    assert "has no pixel labels" in capsys.readouterr().err
