"""LIME: the same segmentation and the same result as lime's own explainer, masks on the true object,
and lime_explain.py end to end with its one-line errors."""
import json

import numpy as np
import pytest
import torch
from lime import lime_image
from lime.wrappers.scikit_image import SegmentationAlgorithm

import lime_explain
from disentangle.explanations import agreement
from disentangle.data.images import Images
from disentangle.data.concepts import ConceptWorld
from disentangle.explanations.lime import (BatchedLimeImageExplainer, Classifier, LimeConfig, explain_image, explain_images)

CPU = torch.device("cpu")


def concept_images(indices) -> Images:
    return Images(ConceptWorld("val"), np.asarray(indices))


@pytest.mark.parametrize("cfg", [LimeConfig(num_samples=60, n_segments=30),
                                 LimeConfig(num_samples=60, segmentation="quickshift", hide_color=None)],
                         ids=["slic-black", "quickshift-mean"])
def test_same_segmentation_and_result_as_lime_itself(tiny, cfg):
    pixels = concept_images([5]).pixels(tiny.spec)[0]
    classifier = Classifier(tiny.model, tiny.spec, CPU, batch_size=16)
    ours = explain_image(pixels, classifier, cfg)
    reference_segmenter = (SegmentationAlgorithm("slic", n_segments=cfg.n_segments, compactness=cfg.compactness,
                                                 sigma=cfg.sigma, start_label=0) if cfg.segmentation == "slic" else
                           SegmentationAlgorithm("quickshift", kernel_size=cfg.kernel_size, max_dist=cfg.max_dist,
                                                 ratio=cfg.ratio, rng=cfg.seed))
    segments = reference_segmenter(pixels)
    assert np.array_equal(ours["segments"], segments)
    assert np.array_equal(np.unique(segments), np.arange(segments.max() + 1))   # LIME's numbering: 0..F-1
    # LIME itself: its Python loop over samples, the same classifier, the same seed and batches.
    stock = lime_image.LimeImageExplainer(kernel_width=0.25, random_state=cfg.seed).explain_instance(
        pixels, classifier, labels=(), hide_color=cfg.hide_color, top_labels=cfg.top_labels,
        num_samples=cfg.num_samples, batch_size=16, segmentation_fn=reference_segmenter, random_seed=cfg.seed)
    labels = [int(c) for c in stock.top_labels]
    assert ours["labels"].tolist() == labels
    for k, c in enumerate(labels):
        weights = np.zeros(segments.max() + 1)
        for f, w in stock.local_exp[c]:
            weights[f] = w
        np.testing.assert_allclose(ours["heatmaps"][k], weights[segments], rtol=1e-5, atol=1e-7)
    _, mask = stock.get_image_and_mask(labels[0], positive_only=True, num_features=cfg.num_features, hide_rest=False)
    assert np.array_equal(ours["masks"], mask)
    assert ours["score"] == pytest.approx(stock.score) and ours["intercept"] == pytest.approx(stock.intercept[labels[0]])


def test_neighbourhood_equals_lime_loop(tiny):
    """The batched perturbations are LIME's, picture for picture."""
    pixels = concept_images([3]).pixels(tiny.spec)[0]
    segments = LimeConfig(n_segments=20).segmenter()(pixels)
    fudged = np.zeros_like(pixels)
    seen = []

    def record(pictures):
        seen.append(torch.as_tensor(pictures).cpu().numpy())
        return np.zeros((len(pictures), 2))

    ours = BatchedLimeImageExplainer(CPU, random_state=3).data_labels(pixels, fudged, segments, record, 25, 10)
    batched, seen[:] = np.concatenate(seen), []
    stock = lime_image.LimeImageExplainer(random_state=3).data_labels(pixels, fudged, segments, record, 25, 10)
    assert np.array_equal(ours[0], stock[0]) and np.array_equal(batched, np.concatenate(seen))
    assert [len(s) for s in seen] == [10, 10, 5]


def test_masks_fall_on_the_object(tiny):
    """Known answer: LIME's top superpixels overlap the object far more than a random mask of the same size."""
    images = concept_images(range(0, 1200, 100))                                 # 12 images, every class
    objects = images.objects(56)
    result = explain_images(tiny.model, tiny.spec, images.pixels(tiny.spec), LimeConfig(num_samples=200), 256, CPU)
    masks = result.masks > 0
    iou = np.nanmean(agreement.iou(masks, objects))
    chance = agreement.chance_iou(masks.sum((1, 2)), objects.sum((1, 2)), 56 * 56).mean()
    hits = agreement.pointing_hits(result.heatmaps[:, 0], objects).mean()
    assert iou > 3 * chance and hits > 3 * objects.mean(), (iou, chance, hits)
    assert np.array_equal(result.labels[:, 0], result.top1)


FAST = ["--images", "3", "--num_samples", "40", "--n_segments", "20"]


def test_lime_explain_artifacts_and_determinism(tmp_path, tiny):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out in (a, b):
        assert lime_explain.main([*FAST, "--output_dir", str(out)]) == 0
    assert lime_explain.main([*FAST, "--batch_size", "7", "--output-dir", str(c)]) == 0
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names == sorted(["grading.json", "heatmaps.npz", "images.npz", "lime.npz", "manifest.json", "parameters.json",
                            "predictions.csv", *(f"overlays/lime/{i}.png" for i in ("0", "4", "8"))])
    for name in ("heatmaps.npz", "lime.npz", "predictions.csv", "parameters.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name   # same seed, same bytes
    with np.load(a / "lime.npz") as x, np.load(c / "lime.npz") as y:   # other batches: float rounding only
        assert np.array_equal(x["masks"], y["masks"]) and np.array_equal(x["labels"], y["labels"])
        np.testing.assert_allclose(x["label_heatmaps"], y["label_heatmaps"], atol=1e-5)
    params = json.loads((a / "parameters.json").read_text())
    assert params["segmentation"] == "slic" and params["segmentation_params"]["start_label"] == 0
    assert params["num_samples"] == 40 and params["hide_color"] == 0 and params["seed"] == 0
    with np.load(a / "lime.npz") as z:
        assert z["labels"].shape == (3, 5) and z["label_heatmaps"].shape == (3, 5, 56, 56)
        assert z["masks"].shape == z["segments"].shape == (3, 56, 56)
        assert 0 < z["masks"].sum() and set(np.unique(z["masks"])) <= {0, 1}
        with np.load(a / "heatmaps.npz") as h:
            assert np.array_equal(h["lime"], z["label_heatmaps"][:, 0]) and np.array_equal(h["targets"], z["labels"][:, 0])
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["methods"] == ["lime"]
    assert json.loads((c / "manifest.json").read_text())["runtime"]["batch_size"] == 7


def test_grading_known_answers():
    from disentangle.pipeline.explanations import grading
    masks = np.zeros((3, 4, 4), np.uint8)
    masks[0, :2] = 1                                   # 8 pixels
    masks[1, 0, 0] = 1
    refs = np.zeros((3, 4, 4), bool)
    refs[0, 1:3] = True                                # 8 pixels, 4 shared: IoU 4 / 12
    refs[1, 3, 3] = True                               # disjoint: IoU 0; image 2: both empty, left out
    g = grading(["a", "b", "c"], masks, refs, np.array([1.0, 2.0, 4.5]), {"b": {"num_samples": 50}})
    assert g["avg_iou"] == pytest.approx((1 / 3 + 0) / 2) and g["avg_time"] == pytest.approx(2.5)
    assert [r["iou"] for r in g["images"]] == [pytest.approx(1 / 3), 0.0, None]
    assert g["images"][1] == {"id": "b", "iou": 0.0, "time": 2.0, "num_samples": 50}


def test_per_image_parameters_and_grading_against_known_masks(tmp_path, tiny, capsys):
    from PIL import Image
    plain, tuned, graded = tmp_path / "plain", tmp_path / "tuned", tmp_path / "graded"
    assert lime_explain.main([*FAST, "--output_dir", str(plain)]) == 0
    (tmp_path / "p.json").write_text(json.dumps({"4": {"num_samples": 80, "hide_color": "mean"}}))
    assert lime_explain.main([*FAST, "--params_file", str(tmp_path / "p.json"), "--output_dir", str(tuned)]) == 0
    with np.load(plain / "lime.npz") as x, np.load(tuned / "lime.npz") as y:
        assert np.array_equal(x["label_heatmaps"][[0, 2]], y["label_heatmaps"][[0, 2]])   # the others as before
        assert not np.array_equal(x["label_heatmaps"][1], y["label_heatmaps"][1])
        masks = x["masks"]
    params = json.loads((tuned / "parameters.json").read_text())
    assert params["per_image"] == {"4": {"hide_color": None, "num_samples": 80}}
    g = json.loads((tuned / "grading.json").read_text())
    assert set(g) == {"avg_iou", "avg_time", "images"} and g["images"][1]["num_samples"] == 80
    assert 0 <= g["avg_iou"] <= 1 and g["avg_time"] > 0
    # LIME's own masks as the references: every IoU is 1.
    refs = tmp_path / "refs"
    refs.mkdir()
    for i, m in zip(("0", "4", "8"), masks):
        Image.fromarray(255 * m).save(refs / f"{i}.png")
    capsys.readouterr()
    assert lime_explain.main([*FAST, "--reference_masks", str(refs), "--output_dir", str(graded)]) == 0
    assert "grading: avg_iou 1.0" in capsys.readouterr().out
    assert [r["iou"] for r in json.loads((graded / "grading.json").read_text())["images"]] == [1.0, 1.0, 1.0]


BAD = {
    "hide colour": (["--hide_color", "grey"], "expected 'mean' or a pixel value"),
    "hide colour range": (["--hide_color", "300"], "--hide_color must be 'mean' or a pixel value 0..255"),
    "no samples": (["--num_samples", "0"], "argument --num_samples: must be at least 1"),
    "segmentation": (["--segmentation", "watershed"], "invalid choice: 'watershed'"),
    "class out of range": (["--target", "40"], "--target 40 is out of range"),
    "too many labels": (["--top_labels", "13"], "--top_labels 13 is more than the model's 12 classes"),
    "params: unknown image": (["--params_file", "{tmp}/unknown.json"], "names image '7', which is not among"),
    "params: unknown setting": (["--params_file", "{tmp}/setting.json"], "'kernel' (image '0') is not a LIME setting"),
    "params: a pickle": (["--params_file", "{tmp}/p.pkl"], "is not JSON"),
    "params: bad value": (["--params_file", "{tmp}/value.json"], "--num_samples must be at least 1"),
    "no reference mask": (["--reference_masks", "{tmp}"], "has no mask for image '0'"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, tiny, capsys, case):
    argv, message = BAD[case]
    (tmp_path / "unknown.json").write_text(json.dumps({"7": {"num_samples": 5}}))
    (tmp_path / "setting.json").write_text(json.dumps({"0": {"kernel": 5}}))
    (tmp_path / "value.json").write_text(json.dumps({"0": {"num_samples": 0}}))
    (tmp_path / "p.pkl").write_bytes(b"\x80\x04\x95")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = tmp_path / "out"
    try:
        code = lime_explain.main([*FAST, *argv, "--output_dir", str(out)])
    except SystemExit as e:    # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()
