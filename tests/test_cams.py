"""The Grad-CAM family: agreement with pytorch-grad-cam, maps on the true object, batching, hooks,
and cam_explain.py end to end with its one-line errors."""
import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import cam_explain
from disentangle.explanations import agreement, cams
from disentangle.data.images import normalise, pixel_transform
from disentangle.data.concepts import ConceptWorld
from disentangle.core.errors import UserError
from disentangle.core.models import load_model
from tests.conftest import ROOT

LAYER = "features.norm5"
# Largest difference measured: 6e-7 on tiny_densenet, 2e-6 on EfficientNet-Lite0 (maps in [0, 1]).
TOLERANCE = 1e-5


def concept_batch(spec, indices):
    """Pictures ``(N, 56, 56, 3)``, model input ``(N, 3, 56, 56)`` and object masks ``(N, 56, 56)``."""
    world = ConceptWorld("val", transform=pixel_transform(spec, square=True))
    pixels = np.stack([world[i][0] for i in indices])
    return pixels, normalise(torch.from_numpy(pixels), spec), world.segmentation(indices)[:, 0] > 0


def reference_maps(model, layer, x, method, monkeypatch, in_place_after_layer):
    """pytorch-grad-cam's maps for the top-1 class. Its ``EigenCAM`` gets the package's own sign
    correction (otherwise the sign is whatever LAPACK returns)."""
    import pytorch_grad_cam as pgc
    import pytorch_grad_cam.eigen_cam
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction
    monkeypatch.setattr(pytorch_grad_cam.eigen_cam, "get_2d_projection", get_2d_projection_with_sign_correction)
    classes = {"gradcam": pgc.GradCAM, "gradcampp": pgc.GradCAMPlusPlus, "scorecam": pgc.ScoreCAM,
               "ablationcam": pgc.AblationCAM, "eigencam": pgc.EigenCAM}
    ref_model = copy.deepcopy(model).requires_grad_(True)   # its gradient hook needs a graph through the layer
    module = ref_model.get_submodule(layer)
    cam = classes[method](ref_model, [module])
    # torchvision's DenseNet applies F.relu(inplace=True) to norm5's output. On the CPU the reference's
    # stored activations alias that tensor and become post-ReLU values (on a GPU, .cpu() copies them
    # first). A hook after the reference's hands the rest of the model a copy, so the reference keeps
    # the values the layer produced, as ours does.
    extra = module.register_forward_hook(lambda m, i, o: o.clone()) if in_place_after_layer else None
    try:
        return cam(x, None)
    finally:
        if extra is not None:
            extra.remove()
        cam.activations_and_grads.release()


@pytest.mark.parametrize("method", cams.METHODS)
def test_agrees_with_pytorch_grad_cam(tiny, method, monkeypatch):
    _, x, _ = concept_batch(tiny.spec, range(0, 96, 12))
    ours, _ = cams.explain(tiny.model, LAYER, x, [method], None, batch_size=16)
    ref = reference_maps(tiny.model, LAYER, x, method, monkeypatch, in_place_after_layer=True)
    assert ours[method].shape == ref.shape == (8, 56, 56)
    np.testing.assert_allclose(ours[method].numpy(), ref, atol=TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


def cat_photo(spec):
    import skimage.data
    pixels = pixel_transform(spec)(Image.fromarray(skimage.data.chelsea()))[None]
    return normalise(torch.from_numpy(pixels), spec)


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "eigencam",
                                    pytest.param("scorecam", marks=pytest.mark.slow),
                                    pytest.param("ablationcam", marks=pytest.mark.slow)])
def test_agrees_with_pytorch_grad_cam_on_efficientnet(lite0, method, monkeypatch):
    x = cat_photo(lite0.spec)
    ours, _ = cams.explain(lite0.model, "bn2", x, [method], None, batch_size=256)
    ref = reference_maps(lite0.model, "bn2", x, method, monkeypatch, in_place_after_layer=False)
    np.testing.assert_allclose(ours[method].numpy(), ref, atol=TOLERANCE, rtol=0)


def test_maps_fall_on_the_object(tiny):
    """Known answer: on the concept world every method's top-20% mask overlaps the object far more
    than a random mask of the same size, and the maximum lands on the object far more often than chance."""
    _, x, objects = concept_batch(tiny.spec, range(0, 1200, 50))              # 24 images, every class
    maps, _ = cams.explain(tiny.model, LAYER, x, cams.METHODS, None, batch_size=256)
    top = agreement.BinarizeConfig()
    for m, v in maps.items():
        masks = agreement.binarize(v.numpy(), top)
        iou = np.nanmean(agreement.iou(masks, objects))
        chance = agreement.chance_iou(masks.sum((1, 2)), objects.sum((1, 2)), 56 * 56).mean()
        hits = agreement.pointing_hits(v.numpy(), objects).mean()
        assert iou > 3 * chance and hits > 2 * objects.mean(), (m, iou, chance, hits)


def test_batches_and_chunks_do_not_change_the_maps(tiny):
    _, x, _ = concept_batch(tiny.spec, range(3))
    whole, _ = cams.explain(tiny.model, LAYER, x, cams.METHODS, None, batch_size=96)
    small, _ = cams.explain(tiny.model, LAYER, x, cams.METHODS, None, batch_size=20)  # chunks span images
    one = [cams.explain(tiny.model, LAYER, x[i:i + 1], cams.METHODS, None, batch_size=7)[0] for i in range(3)]
    for m in cams.METHODS:
        np.testing.assert_allclose(small[m], whole[m], atol=1e-5)
        np.testing.assert_allclose(torch.cat([o[m] for o in one]), whole[m], atol=1e-5)


def test_fixed_target_and_map_range(tiny):
    _, x, _ = concept_batch(tiny.spec, range(4))
    maps, p = cams.explain(tiny.model, LAYER, x, ["gradcam", "eigencam"], 7, batch_size=4)
    assert p.target.tolist() == [7] * 4
    for v in maps.values():
        assert v.min() >= 0 and v.max() <= 1 + 1e-6


def no_hooks(model):
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in model.modules())


def test_hooks_are_removed_also_on_error(tiny):
    model = tiny.model
    _, x, _ = concept_batch(tiny.spec, range(2))
    for m in cams.METHODS:
        cams.explain(model, LAYER, x, [m], None, batch_size=8)
        assert no_hooks(model), m
    with pytest.raises(UserError, match="needs a \\(B, C, H, W\\) feature map"):
        cams.explain(model, "classifier", x, ["gradcam"], None, batch_size=8)
    assert no_hooks(model)
    with pytest.raises(UserError, match="ablationcam: the model reads more than"):   # inside a dense block
        cams.explain(model, "features.denseblock4.denselayer1", x, ["ablationcam"], None, batch_size=8)
    assert no_hooks(model)
    with pytest.raises(RuntimeError, match="out of bounds"):
        cams.explain(model, LAYER, x, ["gradcam"], 99, batch_size=8)
    assert no_hooks(model)

    class Boom(RuntimeError):
        pass

    def explode(module, inputs, output):
        raise Boom
    handle = model.get_submodule("classifier").register_forward_hook(explode)
    try:
        with pytest.raises(Boom):
            cams.explain(model, LAYER, x, ["scorecam"], None, batch_size=8)
    finally:
        handle.remove()
    assert no_hooks(model)


# --- cam_explain.py ----------------------------------------------------------------------------


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_cam_explain_artifacts_and_rerun(tmp_path, tiny, capsys):
    out = tmp_path / "cams"
    argv = ["--images", "6", "--methods", "gradcam,eigencam", "--output-dir", str(out)]
    assert cam_explain.main(argv) == 0
    ids = ["0", "2", "4", "6", "8", "10"]          # six images spread over the twelve classes
    assert files(out) == sorted(["heatmaps.npz", "images.npz", "manifest.json", "predictions.csv",
                                 *(f"{kind}/{m}/{i}.png" for kind in ("overlays", "masks")
                                   for m in ("gradcam", "eigencam") for i in ids)])
    with np.load(out / "heatmaps.npz") as z:
        assert z["ids"].tolist() == ids
        assert z["gradcam"].shape == z["eigencam"].shape == (6, 56, 56) and z["gradcam"].dtype == np.float32
        targets = z["targets"]
        for m in ("gradcam", "eigencam"):           # the greyscale masks are the maps in 8 bits
            mask = Image.open(out / "masks" / m / f"{ids[1]}.png")
            assert mask.mode == "L" and mask.size == (56, 56)
            np.testing.assert_array_equal(np.asarray(mask), np.round(255 * z[m][1]).astype(np.uint8))
    with np.load(out / "images.npz") as z:
        assert z["pixels"].shape == (6, 56, 56, 3) and z["objects"].shape == (6, 56, 56)
        assert z["pixels"].dtype == np.uint8 and z["objects"].any()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["layer"] == LAYER and manifest["config"]["target"] is None
    assert manifest["config"]["weights_sha256"] == tiny.weights["sha256"]
    assert set(manifest["seconds_per_image"]) == {"gradcam", "eigencam"}
    table = (out / "predictions.csv").read_text().splitlines()
    assert table[0] == "id,label,target,target_name,probability,top1,top1_name" and len(table) == 7
    assert [int(r.split(",")[2]) for r in table[1:]] == targets.tolist()
    before = (out / "heatmaps.npz").read_bytes()
    assert cam_explain.main(argv) == 0 and "nothing to do" in capsys.readouterr().out
    assert (out / "heatmaps.npz").read_bytes() == before


def test_cam_explain_photo_folder(tmp_path, tiny):
    photos_dir = tmp_path / "photos"
    photos_dir.mkdir()
    Image.new("RGB", (90, 70), "red").save(photos_dir / "red.png")
    Image.new("RGB", (64, 64), "blue").save(photos_dir / "blue.jpg")
    out = tmp_path / "cams"
    assert cam_explain.main(["--images", str(photos_dir), "--methods", "gradcam", "--target", "3",
                             "--output_dir", str(out)]) == 0
    with np.load(out / "heatmaps.npz") as z:
        assert z["ids"].tolist() == ["blue", "red"] and z["targets"].tolist() == [3, 3]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["data"]["name"] == "photos" and set(manifest["config"]["data"]["files"]) == {"blue", "red"}


def folder_with_a_text_file(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (64, 64), "red").save(folder / "ok.png")
    (folder / "notes.jpg").write_text("not an image")
    return ["--images", str(folder)]


BAD = {
    "not an image": (folder_with_a_text_file, "cannot read image"),
    "no such layer": (["--layer", "features.norm9"], "unknown layer 'features.norm9' for tiny_densenet"),
    "class out of range": (["--target", "12"], "--target 12 is out of range: the model has 12 classes"),
    "target not a class": (["--target", "cat"], "expected 'pred', 'top1', 'label' or a class index"),
    "unknown method": (["--methods", "gradcam,fullgrad"], "unknown method fullgrad"),
    "no such folder": (["--images", "/nonexistent/photos"], "not a number, 'samples', or a folder"),
    "data with photos": (["--images", "samples", "--data", "concepts"], "--data applies to --images N"),
    "layer not a feature map": (["--layer", "classifier"], "a CAM needs a (B, C, H, W) feature map"),
    "layer not a cut": (["--methods", "ablationcam", "--layer", "features.denseblock4.denselayer1"],
                        "ablationcam: the model reads more than"),
    "zero batch": (["--batch-size", "0"], "argument --batch-size: must be at least 1"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, tiny, capsys, case):
    argv, message = BAD[case]
    argv = argv(tmp_path) if callable(argv) else argv
    out = tmp_path / "out"
    code = cam_explain.main(["--images", "2", "--methods", "gradcam", *argv, "--output_dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()


def test_help_explains_every_flag():
    res = subprocess.run([sys.executable, "cam_explain.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0
    for flag in ("--images", "--data", "--model", "--weights", "--methods", "--layer", "--target", "--batch-size",
                 "--device", "--seed", "--output_dir", "--overwrite", "samples"):
        assert flag in res.stdout, flag
