"""describe_neurons.py: CLIP-Dissect's script with its flags, its output folder and files, 2-D
layers, planted units through the whole flow, and the seeds' command lines stopping with one line
where weights, probe data or the concept set are absent."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import describe_neurons
import dissect_neurons
from disentangle.dissection import netdissect


def one_line(capsys, message):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def run_folder(root):
    (folder,) = list(root.iterdir())
    return folder


def test_a_conv_block_and_a_2d_layer(tmp_path, tiny, tiny_clip):
    argv = ["--clip_model", tiny_clip, "--clip_weights", "random", "--target_model", "tiny_densenet",
            "--target_layers", "block_4,classifier", "--d_probe", "concepts", "--probe_images", "48",
            "--batch_size", "24", "--device", "cpu", "--activation_dir", tmp_path / "acts", "--result_dir",
            tmp_path / "results"]
    assert describe_neurons.main([str(a) for a in argv]) == 0
    folder = run_folder(tmp_path / "results")
    assert folder.name.startswith("tiny_densenet_") and len(folder.name.split("_")) == 7   # <target>_yy_mm_dd_HH_MM
    frame = pd.read_csv(folder / "descriptions.csv")
    assert list(frame.columns[:4]) == ["layer", "unit", "description", "similarity"]
    assert frame.groupby("layer").size().to_dict() == {"block_4": 32, "classifier": 12}
    args = json.loads((folder / "args.txt").read_text())
    assert args["similarity_fn"] == "soft_wpmi" and args["pool_mode"] == "avg" and args["blocks"] == ["block_4",
                                                                                                    "classifier"]


def test_planted_units_are_described_through_the_whole_flow(tmp_path, tiny, tiny_clip, monkeypatch):
    """Unit u's activation is the probe images' CLIP similarity to concept (u * 3) % 11: with
    cos_similarity its own concept scores 1, the most any can (the next best is 6e-4 lower); the
    flow (CLIP embeddings, similarity, argmax, CSV) must give unit u that concept."""
    from disentangle.core.clip import load_clip
    from disentangle.data.images import probe_images
    from disentangle.pipeline.dissect import DissectConfig, concept_list
    from disentangle.pipeline.session import setup
    images = probe_images("concepts", 48)
    session = setup("tiny_densenet", images=images)
    clip = load_clip(tiny_clip, "random")
    feats = torch.from_numpy(netdissect.clip_image_features(clip, session.loader(transform=[clip.preprocess])))
    concepts, _ = concept_list(session, DissectConfig(method="clip"))
    sim = feats @ clip.encode_texts(concepts).T                                            # (N, M)
    plant = [(u * 3) % len(concepts) for u in range(8)]

    def planted(model, paths, loader, device, pool="avg"):
        return {p: sim[:, plant].numpy() for p in paths}
    monkeypatch.setattr(netdissect, "summaries", planted)
    assert describe_neurons.main(["--clip_model", tiny_clip, "--clip_weights", "random", "--target_model",
                                  "tiny_densenet", "--target_layers", "block_4", "--d_probe", "concepts",
                                  "--probe_images", "48", "--similarity_fn", "cos_similarity", "--device", "cpu",
                                  "--activation_dir", "none", "--result_dir", str(tmp_path)]) == 0
    frame = pd.read_csv(run_folder(tmp_path) / "descriptions.csv")
    assert frame["description"].tolist() == [concepts[c] for c in plant]


def test_the_seeds_command_lines_stop_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert describe_neurons.main([]) == 2
    one_line(capsys, "concept set data/20k.txt not found")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "20k.txt").write_text("dog\ncat\nsky\n")
    assert describe_neurons.main([]) == 2
    one_line(capsys, "data/broden1_224")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(photos / f"{i}.png")
    assert describe_neurons.main(["--clip_model", "RN50", "--target_model", "resnet18_places", "--target_layers",
                                  "layer3,layer4,fc", "--d_probe", str(photos)]) == 2
    one_line(capsys, "resnet18_places365.pth.tar")
    assert describe_neurons.main(["--clip_model", "RN50", "--target_model", "resnet18", "--weights", "random",
                                  "--target_layers", "layer3,layer4,fc", "--d_probe", str(photos)]) == 2
    one_line(capsys, "RN50")                   # CLIP's weights are never downloaded
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("descriptions.csv"))


def test_original_layer_spellings_and_2d_layers(tmp_path, tiny_clip):
    from disentangle.core.layers import resolve_layer
    from disentangle.core.models import load_model
    loaded = load_model("resnet18", "random")
    assert resolve_layer(loaded.spec, "fc", loaded.model) == "fc"
    vgg_like = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 5))
    assert resolve_layer(loaded.spec, "layer4[1]", loaded.model) == "layer4.1"
    tokens = torch.randn(2, 7, 5)
    assert torch.equal(netdissect.pool_units(tokens), tokens[:, 0])
    maps = torch.randn(2, 4, 3, 3)
    assert torch.equal(netdissect.pool_units(maps, "max"), maps.amax((2, 3)))
    assert netdissect.pool_units(vgg_like(torch.randn(2, 3, 32, 32))).shape == (2, 5)


@pytest.mark.parametrize("flag", [["--clip_model", "RN50"], ["--similarity_fn", "wpmi"], ["--pool_mode", "max"],
                                  ["--concept_set", "x.txt"]])
def test_a_clip_flag_given_to_mask_iou_is_an_error(tmp_path, capsys, flag):
    assert dissect_neurons.main(flag + ["--result_dir", str(tmp_path / "o")]) == 2
    one_line(capsys, f"{flag[0]} applies to --method clip")
    assert not (tmp_path / "o").exists()
