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
    assert names == sorted(["heatmaps.npz", "images.npz", "lime.npz", "manifest.json", "parameters.json",
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


BAD = {
    "hide colour": (["--hide_color", "grey"], "expected 'mean' or a pixel value"),
    "hide colour range": (["--hide_color", "300"], "--hide_color must be 'mean' or a pixel value 0..255"),
    "no samples": (["--num_samples", "0"], "argument --num_samples: must be at least 1"),
    "segmentation": (["--segmentation", "watershed"], "invalid choice: 'watershed'"),
    "class out of range": (["--target", "40"], "--target 40 is out of range"),
    "too many labels": (["--top_labels", "13"], "--top_labels 13 is more than the model's 12 classes"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, tiny, capsys, case):
    argv, message = BAD[case]
    out = tmp_path / "out"
    try:
        code = lime_explain.main([*FAST, *argv, "--output_dir", str(out)])
    except SystemExit as e:    # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()
