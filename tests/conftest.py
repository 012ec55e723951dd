"""Fixtures shared by the tests. The package is installed (requirements-dev.txt); the stage scripts
import as modules because pytest puts the repository root, the folder above tests/, on sys.path."""
import os
from pathlib import Path

import pytest
import torch

from disentangle.core.seeding import set_seeds

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub look-up must fail at once, never download
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _seeded():
    set_seeds(0)


@pytest.fixture(scope="session")
def tiny():
    """The trained tiny_densenet: the weights shipped with the code."""
    from disentangle.core.models import load_model
    return load_model("tiny_densenet")


@pytest.fixture(scope="session")
def tiny_random():
    from disentangle.core.models import load_model
    torch.manual_seed(0)
    return load_model("tiny_densenet", "random")


@pytest.fixture(scope="session")
def staged(tmp_path_factory, tiny):
    """A small baseline (24 images, IG-4) and block_2 clusters (k=3) in a temporary outputs folder,
    shared by the tests of the stages built on them."""
    import baseline_eval
    import neuron_stats
    root = tmp_path_factory.mktemp("outputs")
    assert baseline_eval.main(["--images", "24", "--ig-steps", "4", "--batch-size", "12",
                               "--output_dir", str(root / "baseline")]) == 0
    assert neuron_stats.main(["--block", "block_2", "--n_clusters", "3", "--images", "48",
                              "--output_dir", str(root / "stats")]) == 0
    return root


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """An open_clip CLIP with one small layer per tower, random weights, saved as a local folder."""
    import json

    import open_clip
    folder = tmp_path_factory.mktemp("tiny_clip")
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    torch.save(open_clip.CLIP(**cfg).state_dict(), folder / "open_clip_pytorch_model.bin")
    return f"local-dir:{folder}"


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory):
    """An open_clip model of SigLIP's architecture (CustomTextCLIP with a logit bias, a text tower
    without causal mask pooled at its last token), one small layer per tower, random weights, saved as
    a local folder. The tokenizer is open_clip's bundled one: SigLIP's own comes from the hub."""
    import json

    import open_clip
    folder = tmp_path_factory.mktemp("tiny_siglip")
    cfg = {"embed_dim": 32, "init_logit_bias": -10,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8,
                          "no_ln_pre": True, "pool_type": "avg", "final_ln_after_pool": True},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1,
                        "no_causal_mask": True, "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6}}}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": {**cfg, "custom_text": True},
                                                              "preprocess_cfg": {}}))
    torch.manual_seed(0)
    torch.save(open_clip.CustomTextCLIP(**cfg).state_dict(), folder / "open_clip_pytorch_model.bin")
    return f"local-dir:{folder}"
