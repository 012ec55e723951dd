"""The registry: every model builds, blocks and CAM layers resolve, weights load or fail clearly."""
import json

import pytest
import torch
from PIL import Image

from disentangle.data import concepts
from disentangle.core import tiny as tiny_module
from disentangle.core.errors import UserError
from disentangle.core.layers import resolve_layer
from disentangle.core.models import MODELS, get_spec, load_model


@pytest.mark.parametrize("name", list(MODELS))
def test_registry_smoke_random_weights(name):
    loaded = load_model(name, "random")
    spec = loaded.spec
    assert loaded.weights["source"] == "random init"
    assert not any(p.requires_grad for p in loaded.model.parameters()) and not loaded.model.training
    for block in spec.blocks:
        assert isinstance(loaded.block(block), torch.nn.Module)
    loaded.model.get_submodule(spec.cam_layer)
    x = spec.transform()(Image.new("RGB", (300, 260), "gray"))[None]
    assert x.shape == (1, 3, spec.input_size, spec.input_size)
    with torch.no_grad():
        assert loaded.model(x).shape == (1, spec.num_classes)


def test_unknown_model_and_block():
    with pytest.raises(UserError, match="unknown model 'vgg'.*tiny_densenet"):
        get_spec("vgg")
    with pytest.raises(UserError, match="unknown block 'block_9' for densenet121.*block_1"):
        resolve_layer(get_spec("densenet121"), "block_9")
    assert resolve_layer(get_spec("resnet50"), "layer3") == "layer3"


def test_missing_hub_weights_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError) as e:
        load_model("densenet121")
    msg = str(e.value)
    assert "densenet121-a639ec97.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg and "--weights" in msg
    with pytest.raises(UserError, match="not found"):
        load_model("resnet18", str(tmp_path / "nope.pth"))


def test_weights_from_hub_cache_and_from_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = load_model("resnet18", "random").model
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(ref.state_dict(), cache / "resnet18-f37072fd.pth")
    loaded = load_model("resnet18")
    assert loaded.weights["source"] == "torch hub cache" and len(loaded.weights["sha256"]) == 64
    assert torch.equal(loaded.model.conv1.weight, ref.conv1.weight)
    # A Places365-style checkpoint: wrapped, DataParallel prefixes, 365 classes.
    places = load_model("resnet18", "random").model
    places.fc = torch.nn.Linear(512, 365)
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in places.state_dict().items()}},
               tmp_path / "resnet18_places365.pth.tar")
    loaded = load_model("resnet18", str(tmp_path / "resnet18_places365.pth.tar"))
    with torch.no_grad():
        assert loaded.model(torch.zeros(1, 3, 64, 64)).shape == (1, 365)


def test_old_densenet_key_names_load(tmp_path):
    ref = load_model("tiny_densenet", "random").model
    old = {k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v for k, v in ref.state_dict().items()
           if not k.endswith("num_batches_tracked")}  # as in checkpoints from before PyTorch 0.4.1
    assert any("norm.1" in k for k in old)
    torch.save(old, tmp_path / "old.pth")
    loaded = load_model("tiny_densenet", str(tmp_path / "old.pth"))
    assert torch.equal(loaded.model.features.denseblock1.denselayer1.norm1.weight,
                       ref.features.denseblock1.denselayer1.norm1.weight)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    torch.save(load_model("resnet18", "random").model.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(UserError, match="does not fit"):
        load_model("resnet50", str(tmp_path / "r18.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot read weights"):
        load_model("resnet18", str(tmp_path / "junk.pth"))


def test_efficientnet_lite0_real_weights_see_a_cat():
    import skimage.data
    loaded = load_model("efficientnet_lite0")
    assert loaded.weights["source"].startswith("package")
    x = loaded.spec.transform()(Image.fromarray(skimage.data.chelsea()))[None]
    with torch.no_grad():
        top1 = int(loaded.model(x).argmax(1))
    assert 281 <= top1 <= 285, top1  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_tiny_densenet_ships_with_the_code_and_is_accurate_on_heldout_images(tiny, monkeypatch):
    manifest = json.loads(tiny_module.SHIPPED.with_suffix(".json").read_text())
    assert manifest["sha256"] == tiny_module.SHIPPED_SHA256 == tiny.weights["sha256"]
    assert manifest["heldout_top1"] >= 0.9 and manifest["recipe"] == tiny_module.RECIPE
    assert tiny.weights["path"] == str(tiny_module.SHIPPED) and tiny.weights["source"] == "shipped with the code"
    # Loading never trains.
    monkeypatch.setattr(tiny_module, "train", lambda path: pytest.fail("loading the embedded model trained it"))
    assert load_model("tiny_densenet").weights["sha256"] == tiny_module.SHIPPED_SHA256
    # Check again on other held-out images than those the manifest reports.
    world = concepts.ConceptWorld("val", transform=tiny.spec.transform(square=True))
    idx = range(6000, 6600)
    x = torch.stack([world[i][0] for i in idx])
    with torch.no_grad():
        acc = (tiny.model(x).argmax(1) == torch.tensor([world.targets[i] for i in idx])).float().mean()
    assert acc >= 0.9, acc


def test_changed_shipped_weights_are_an_error_never_a_retrain(tmp_path, monkeypatch):
    damaged = tmp_path / "tiny_densenet.pt"
    data = bytearray(tiny_module.SHIPPED.read_bytes())
    data[-100] ^= 1
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(tiny_module, "SHIPPED", damaged)
    monkeypatch.setattr(tiny_module, "train", lambda path: pytest.fail("a damaged file was retrained"))
    with pytest.raises(UserError, match="SHA-256 .* the file was changed"):
        load_model("tiny_densenet")
    damaged.unlink()
    with pytest.raises(UserError, match="weights .* are missing"):
        load_model("tiny_densenet")


def test_train_tiny_refuses_to_overwrite(tmp_path, capsys):
    import train_tiny
    (tmp_path / "mine.pt").write_bytes(b"x")
    assert train_tiny.main(["--output", str(tmp_path / "mine.pt")]) == 2
    assert train_tiny.main(["--output", str(tmp_path / "mine.json")]) == 2
    assert train_tiny.main(["--output", str(tiny_module.SHIPPED)]) == 2
    err = capsys.readouterr().err
    assert "exists; choose a new file name" in err and "overwritten by its own manifest" in err


@pytest.mark.slow
def test_training_reproduces_the_recipe_into_a_new_file(tmp_path):
    import train_tiny
    out = tmp_path / "retrained.pt"
    assert train_tiny.main(["--output", str(out)]) == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["heldout_top1"] >= 0.9 and manifest["recipe"] == tiny_module.RECIPE
    loaded = load_model("tiny_densenet", str(out))
    assert loaded.weights["source"] == "file" and loaded.weights["sha256"] == manifest["sha256"]
