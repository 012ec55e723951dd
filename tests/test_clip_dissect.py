"""CLIP-Dissect: similarity functions on a hand-built image-concept matrix, and the script's flow
with a small randomly initialised open_clip model read from a local folder."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import dissect_neurons
from disentangle.dissection import clip_dissect


@pytest.fixture(scope="module")
def planted():
    """240 images with graded CLIP similarities to 6 concepts; neuron u's activation rises with
    the image's similarity to concept u (so its top images, and their order, follow concept u)."""
    g = torch.Generator().manual_seed(0)
    clip = 0.15 + 0.15 * torch.rand(240, 6, generator=g)
    target = 10 * (clip - 0.15) ** 2 + 0.005 * torch.randn(240, 6, generator=g)
    return clip, target


@pytest.mark.parametrize("method", clip_dissect.METHODS)
def test_planted_neurons_get_their_concepts(planted, method):
    clip, target = planted
    sim = clip_dissect.SIMILARITY[method](clip, target)
    assert sim.shape == (6, 6)
    assert sim.argmax(1).tolist() == list(range(6))


def _reference_pmi(clip, target, top_k, a, lam, weights):
    """Per neuron, as in the CLIP-Dissect release (one neuron at a time)."""
    probs = torch.softmax(a * clip, dim=1)
    inds = torch.topk(target, dim=0, k=top_k)[1]
    rows = []
    for u in range(target.shape[1]):
        cur = probs.gather(0, inds[:, u:u + 1].expand(-1, probs.shape[1]))
        if weights is not None:
            cur = 1 + weights.unsqueeze(1) * (cur - 1)
        rows.append(torch.sum(torch.log(cur + 1e-7), dim=0, keepdim=True))
    p = torch.cat(rows)
    prior = torch.logsumexp(p, dim=0, keepdim=True) - math.log(p.shape[0])
    return p - lam * prior


def test_batched_functions_match_per_neuron_reference():
    g = torch.Generator().manual_seed(3)
    # float64: sums of 100 logs differ in float32 by summation order alone.
    clip, target = torch.rand(300, 9, generator=g).double(), torch.randn(300, 70, generator=g).double()
    w = 0.998 - torch.arange(100).double() / 100 * (0.998 - 0.97)
    torch.testing.assert_close(clip_dissect.soft_wpmi(clip, target, chunk=16),
                               _reference_pmi(clip, target, 100, 10, 1, w))
    torch.testing.assert_close(clip_dissect.wpmi(clip, target, chunk=16), _reference_pmi(clip, target, 28, 2, 0.6, None))
    c = (clip - clip.mean(0)) ** 3
    t = (target - target.mean(0)) ** 3
    torch.testing.assert_close(clip_dissect.cos_similarity_cubed(clip, target), (t / t.norm(dim=0)).T @ (c / c.norm(dim=0)))
    torch.testing.assert_close(clip_dissect.cos_similarity(clip, target),
                               (target / target.norm(dim=0)).T @ (clip / clip.norm(dim=0)))


def test_clip_method_flow_and_cache(tmp_path, tiny, tiny_clip):
    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = ["--method", "clip", "--clip_model", tiny_clip, "--target_layers", "block_4", "--probe_images", "48",
            "--batch_size", "24", "--activation_dir", str(cache), "--top_units", "2", "--top_images", "2"]
    assert dissect_neurons.main(argv + ["--result_dir", str(out)]) == 0
    frame = pd.read_csv(out / "descriptions.csv")
    names = {"circle", "square", "triangle", "cross", "red", "green", "blue", "stripes", "checker", "dots", "noise"}
    assert len(frame) == 32 and set(frame["description"]) <= names
    assert np.isfinite(frame["similarity"]).all()
    assert frame["category"].notna().all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["clip"]["sha256"]
    files = sorted(p.name for p in cache.iterdir())
    assert [f.split("_")[0] for f in files] == ["clip", "clip", "summary"]
    # Another similarity function reuses every cached array.
    assert dissect_neurons.main(argv + ["--result_dir", str(tmp_path / "r2"), "--similarity", "cos_similarity_cubed"]) == 0
    assert sorted(p.name for p in cache.iterdir()) == files


def test_missing_concept_set_and_checkpoint(tmp_path, capsys):
    assert dissect_neurons.main(["--method", "clip", "--d_probe", "concepts", "--concept_set", str(tmp_path / "x.txt"),
                                 "--result_dir", str(tmp_path / "o")]) == 2
    assert "concept list" in capsys.readouterr().err
    (tmp_path / "open_clip_config.json").write_text("{}")
    assert dissect_neurons.main(["--method", "clip", "--clip_model", f"local-dir:{tmp_path}",
                                 "--result_dir", str(tmp_path / "o")]) == 2
    assert "holds no CLIP checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
