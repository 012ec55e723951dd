"""An open_clip image–text model for open-vocabulary concept scores (CLIP-Dissect, linear explanations).

Weights are never downloaded: ``--clip_weights`` is a pretrained tag already in the local cache
(Hugging Face hub cache or ``~/.cache/clip``), a checkpoint file, or ``random`` (by name only, for
testing the code path). ``--clip_model local-dir:PATH`` reads ``open_clip_config.json`` and the
checkpoint from a folder.
"""
from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..io.artifacts import first_line, sha256_file
from .errors import UserError

DEFAULT_MODEL, DEFAULT_WEIGHTS = "ViT-B-16", "openai"
# The names of OpenAI's clip package (CLIP-Dissect's --clip_model) -> open_clip's architectures.
OPENAI_NAMES = {"RN50": "RN50", "RN101": "RN101", "RN50x4": "RN50x4", "RN50x16": "RN50x16", "RN50x64": "RN50x64",
                "ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16", "ViT-L/14": "ViT-L-14",
                "ViT-L/14@336px": "ViT-L-14-336"}


@dataclass
class Clip:
    model: torch.nn.Module
    preprocess: Callable          # PIL image -> (3, S, S)
    tokenizer: Callable
    info: dict                    # {"model", "weights", "sha256"} for manifests and cache keys
    device: torch.device

    @torch.no_grad()
    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, 3, S, S)`` preprocessed images -> ``(B, D)`` unit-norm image embeddings."""
        return F.normalize(self.model.encode_image(x.to(self.device)).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """``(M, D)`` unit-norm text embeddings of ``texts``."""
        out = [self.model.encode_text(self.tokenizer(list(texts[i:i + batch_size])).to(self.device)).float()
               for i in range(0, len(texts), batch_size)]
        return F.normalize(torch.cat(out), dim=-1)


def offline() -> None:
    """Forbid the Hugging Face hub any network access, whatever the environment says: weights come
    from the local cache or a file, and a cache miss fails at once instead of trying to download."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:      # imported before: it read the environment then
        constants.HF_HUB_OFFLINE = True


def load_clip(model_name: str = DEFAULT_MODEL, weights: str = DEFAULT_WEIGHTS,
              device: str | torch.device = "cpu") -> Clip:
    offline()
    import open_clip
    from open_clip.factory import _find_checkpoint_in_dir

    model_name = OPENAI_NAMES.get(model_name, model_name)
    local_dir = model_name.startswith("local-dir:")
    hint = "pass --clip_weights FILE (a checkpoint), or place the weights in the cache (see data/README.md)"
    if local_dir:
        folder = Path(model_name.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            raise UserError(f"{folder} holds no open_clip_config.json (needed by --clip_model {model_name})")
        checkpoint = _find_checkpoint_in_dir(folder)
        if checkpoint is None:
            raise UserError(f"{folder} holds no CLIP checkpoint (open_clip_model.safetensors or .bin/.pt)")
        pretrained, sha = None, sha256_file(checkpoint)
    elif weights == "random":
        pretrained, sha = None, None
    elif Path(weights).is_file():
        pretrained, sha = weights, sha256_file(weights)
    else:
        if model_name not in open_clip.list_models():
            raise UserError(f"unknown CLIP model {model_name!r}; see open_clip.list_models()")
        if not open_clip.get_pretrained_cfg(model_name, weights):
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
            raise UserError(f"{weights!r} is neither a file nor a pretrained tag of {model_name} (tags: {tags})")
        pretrained, sha = weights, None
    logging.disable(logging.ERROR)      # open_clip logs the failure as well as raising it
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained,
                                                                     device=device)
    except Exception as e:  # open_clip raises RuntimeError/OSError/ValueError for missing or bad weights
        if "local cache" in str(e) or "Failed to download" in str(e):
            raise UserError(f"the CLIP weights {model_name} / {weights} are not in the local Hugging Face cache "
                            f"and are never downloaded; {hint}") from None
        raise UserError(f"cannot load CLIP {model_name} with weights {weights!r} ({first_line(e)}); {hint}") from None
    finally:
        logging.disable(logging.NOTSET)
    model.eval().requires_grad_(False)
    info = {"model": model_name, "weights": "local-dir" if local_dir else weights, "sha256": sha}
    return Clip(model, preprocess, open_clip.get_tokenizer(model_name), info, torch.device(device))


def read_concepts(path: str | os.PathLike) -> list[str]:
    """One concept per line; blank lines dropped, duplicates an error (labels must be unique)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"concept list {p} not found")
    words = [w.strip() for w in p.read_text().splitlines() if w.strip()]
    if not words:
        raise UserError(f"concept list {p} is empty")
    dup = sorted(w for w, n in Counter(words).items() if n > 1)
    if dup:
        raise UserError(f"concept list {p} repeats {', '.join(dup[:5])}")
    return words
