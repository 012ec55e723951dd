"""Agreement measures on hand-made masks, and compare_explanations.py on CAM and LIME folders."""
import json

import numpy as np
import pandas as pd
import pytest

import cam_explain
import compare_explanations
import lime_explain
from disentangle.explanations import agreement


def test_top_share_keeps_ties_together_and_never_zeros():
    maps = np.zeros((3, 4, 5))
    maps[0] = np.arange(20).reshape(4, 5)            # distinct values: exactly the top 4
    maps[1, :2] = 0.5                                # a 10-pixel plateau: kept whole
    maps[2, 0, 0] = 1.0                              # one positive pixel: nothing else
    masks = agreement.binarize(maps, agreement.BinarizeConfig("top", 0.2))
    assert masks[0].sum() == 4 and masks[0].ravel()[-4:].all()
    assert masks[1].sum() == 10 and masks[1, :2].all()
    assert masks[2].sum() == 1
    assert not agreement.binarize(np.zeros((1, 4, 4)), agreement.BinarizeConfig()).any()


def test_otsu_splits_two_levels_and_leaves_constant_maps_empty():
    maps = np.full((2, 6, 6), 0.1)
    maps[0, 1:3, 1:4] = 0.9
    masks = agreement.binarize(maps, agreement.BinarizeConfig("otsu"))
    assert np.array_equal(masks[0], maps[0] > 0.5) and not masks[1].any()


def test_iou_pointing_and_chance():
    a = np.zeros((3, 4, 4), bool)
    b = np.zeros((3, 4, 4), bool)
    a[0, :2], b[0, 1:3] = True, True                 # 4 shared of 12
    a[1, 0, 0] = b[1, 0, 0] = True
    iou = agreement.iou(a, b)
    assert iou[0] == pytest.approx(1 / 3) and iou[1] == 1 and np.isnan(iou[2])
    objects = np.zeros((2, 4, 4), bool)
    objects[:, :2, :2] = True
    maps = np.zeros((2, 4, 4))
    maps[0, 1, 1] = 1                                # maximum on the object
    maps[1, 0, :] = 1                                # plateau of 4, half on the object: not most
    assert agreement.pointing_hits(maps, objects).tolist() == [True, False]
    # A random 4-pixel mask and a 4-pixel object in 16 pixels share 1 pixel on average: 1 / 7.
    assert agreement.chance_iou(np.array([4]), np.array([4]), 16)[0] == pytest.approx(1 / 7)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("explanations")
    assert cam_explain.main(["--images", "12", "--methods", "gradcam,gradcampp,eigencam",
                             "--output_dir", str(root / "cams")]) == 0
    assert lime_explain.main(["--images", "12", "--num_samples", "150", "--n_segments", "30",
                              "--output_dir", str(root / "lime")]) == 0
    return root


def test_compare_writes_tables_figure_and_finds_the_object(folders, tmp_path, capsys):
    out = tmp_path / "compare"
    assert compare_explanations.main(["--inputs", str(folders / "cams"), str(folders / "lime"),
                                      "--figure_images", "3", "--output_dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "ground_truth.csv", "manifest.json",
                                                     "pairwise_iou.csv", "pairwise_iou_mean.csv", "summary.json"]
    pairs = pd.read_csv(out / "pairwise_iou.csv", dtype={"image": str})
    methods = ["gradcam", "gradcampp", "eigencam", "lime"]
    assert len(pairs) == 6 * (12 + 1)                # 6 pairs, 12 images and their mean
    mean = pairs[pairs["image"] == "mean"].set_index(["method_a", "method_b"])["iou"]
    per_image = pairs[pairs["image"] != "mean"].groupby(["method_a", "method_b"])["iou"].mean()
    pd.testing.assert_series_equal(mean.sort_index(), per_image.sort_index(), check_names=False)
    matrix = pd.read_csv(out / "pairwise_iou_mean.csv").set_index("method")
    assert list(matrix.index) == methods and matrix.loc["gradcam", "lime"] == pytest.approx(mean[("gradcam", "lime")])
    truth = pd.read_csv(out / "ground_truth.csv", dtype={"image": str})
    assert len(truth) == 4 * 12
    # Known answer, on the maps themselves: the mask holds the top 20 % of positive pixels, plus any
    # pixels tied with the last one (a plateau of a CAM or a whole LIME superpixel), never more.
    for folder in ("cams", "lime"):
        with np.load(folders / folder / "heatmaps.npz") as z:
            ids = z["ids"]
            for m in (f for f in z.files if f not in ("ids", "targets")):
                got = truth[truth["method"] == m].set_index("image").loc[[str(i) for i in ids], "mask_share"]
                for v, share in zip(z[m].reshape(len(ids), -1), got):
                    k = int(np.ceil(0.2 * v.size))
                    kth = np.sort(v)[::-1][k - 1]
                    above, tied = int((v > kth).sum()), int((v == kth).sum())
                    expected = above + tied if kth > 0 else int((v > 0).sum())
                    assert round(share * v.size) == expected and above < k <= above + tied, (m, share)
    summary = json.loads((out / "summary.json").read_text())["ground_truth"]
    for m in methods:                                # known answer: on the object, far above chance
        assert summary[m]["iou"] > 2.5 * summary[m]["chance_iou"], (m, summary[m])
        assert summary[m]["pointing_game"] > 2.5 * summary[m]["pointing_chance"], (m, summary[m])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["binarize"] == "top" and len(manifest["config"]["heatmaps_sha256"]) == 2
    assert "pointing game" in capsys.readouterr().out
    assert compare_explanations.main(["--inputs", str(folders / "cams"), str(folders / "lime"),
                                      "--binarize", "otsu", "--output_dir", str(tmp_path / "otsu")]) == 0


def other_images(folders, tmp_path):
    assert cam_explain.main(["--images", "6", "--methods", "gradcam", "--output_dir", str(tmp_path / "six")]) == 0
    return [str(folders / "lime"), str(tmp_path / "six")]


def other_target(folders, tmp_path):
    assert cam_explain.main(["--images", "12", "--methods", "eigencam", "--target", "3",
                             "--output_dir", str(tmp_path / "t3")]) == 0
    return [str(folders / "lime"), str(tmp_path / "t3")]


def unfinished(folders, tmp_path):
    manifest = json.loads((folders / "cams" / "manifest.json").read_text())
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    return [str(tmp_path / "half")]


BAD = {
    "other images": (other_images, "explain different images"),
    "other target": (other_target, "explain different classes (image 0: 0 vs 3)"),
    "method twice": (lambda f, t: [str(f / "cams"), str(f / "cams")], "method gradcam appears in two inputs"),
    "no such input": (lambda f, t: ["/nonexistent/cams"], "no explanations in /nonexistent/cams"),
    "unfinished input": (unfinished, "is unfinished"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_inputs_one_line_exit_2_nothing_written(folders, tmp_path, capsys, case):
    make, message = BAD[case]
    inputs = make(folders, tmp_path)
    capsys.readouterr()
    out = tmp_path / "out"
    assert compare_explanations.main(["--inputs", *inputs, "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()
