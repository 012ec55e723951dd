"""The InterpScore trials from a model: activations and interventions per image and level.

The levels follow the seed's data: 5 is the clean image, 1-3 the image with noise (level 1 the
strongest: Gaussian blur of sigma ``0.1 + 2 s`` pixels and Gaussian noise of std ``0.5 s`` in
normalised units, strength ``s = (4 - level) / 3``), and 4 the units' own DeepDream images, each
unit's from three start images (``featureviz.INITS``: a colour gradient, grey, Perlin noise), named
as the seed's ``neuron_<unit>_<start>.jpg`` (``dream_trials``).

Per trial and neuron (a channel of a layer): its activation (the spatial or token mean of the
channel; a 2-D layer's unit as it is), and its interventions, the channel multiplied by 0 and by
2 (the original's λ): ``delta0_<n>``/``delta2_<n>`` the relative change ``‖E^λ − E‖ / ‖E‖`` of the
image embedding ``E``, which for our models is the pooled input of the classifier (the original
uses CLIP's image embedding), and ``ablate_<n>``/``amplify_<n>`` the change of the true class's
probability (the probability variant of causality).
"""
from __future__ import annotations

import io
import itertools
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from tqdm import tqdm

from ..core import distributed
from ..core.errors import UserError
from ..core.hooks import capture, channel_mask, hooks, scale_hook
from ..core.seeding import generator
from ..io.schema import (CATEGORY, EXPERIMENT, GROUND_TRUTH, IMAGE_BASENAME, IMAGE_FILENAME, IMAGE_INDEX, LEVEL,
                         TRIAL_KINDS, TRIAL_LEAD, trial_column)
from .featureviz import INITS, Normalise, dream, start_image

CLEAN_LEVEL, DREAM_LEVEL = 5, 4
NOISE_LEVELS = (1, 2, 3)
LEVELS = (*NOISE_LEVELS, DREAM_LEVEL, CLEAN_LEVEL)
FACTORS = {"0": 0.0, "2": 2.0}        # λ of the interventions: delta0_/ablate_ and delta2_/amplify_


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    """The levels to extract, sorted: the clean level 5 and at least one other (1-3 noise, 4 DeepDream)."""
    levels = tuple(sorted(set(int(level) for level in levels)))
    if not set(levels) <= set(LEVELS) or CLEAN_LEVEL not in levels or len(levels) < 2:
        raise UserError(f"--levels takes the clean level 5 and some of 1 2 3 (noise) and 4 (DeepDream), got "
                        f"{' '.join(map(str, levels))}")
    return levels


def perturb(x: torch.Tensor, level: int, gen: torch.Generator) -> torch.Tensor:
    """``x (B, 3, S, S)`` at ``level`` (module doc): unchanged at the clean level."""
    if level == CLEAN_LEVEL:
        return x
    strength = (4 - level) / 3
    x = TF.gaussian_blur(x, kernel_size=7, sigma=0.1 + 2 * strength)
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    return x + 0.5 * strength * noise


def unit_means(output: torch.Tensor) -> torch.Tensor:
    """A layer's output -> one value per unit ``(B, C)``: spatial mean of ``(B, C, H, W)``, token
    mean of ``(B, T, C)``, ``(B, C)`` as it is."""
    if output.dim() == 4:
        return output.float().mean((2, 3))
    if output.dim() == 3:
        return output.float().mean(1)
    return output.float().reshape(len(output), -1)


@torch.no_grad()
def interventions(model: torch.nn.Module, layer: str, classifier: str, x: torch.Tensor, y: torch.Tensor | None,
                  neurons: Sequence[int]) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """``x (B, 3, S, S)`` -> (unit means ``(B, C)`` of ``layer``, columns): per neuron ``delta0_``,
    ``delta2_`` (embedding changes, module doc) and, with labels ``y (B,)``, ``ablate_``, ``amplify_``."""
    seen: dict[str, torch.Tensor] = {}

    def embedding(module, inputs, output):
        seen["e"] = inputs[0].float().flatten(1)

    def run() -> tuple[torch.Tensor, torch.Tensor | None]:
        with hooks(model, [(classifier, embedding)]):
            logits = model(x)
        p = None if y is None else logits.float().softmax(1).gather(1, y[:, None]).squeeze(1)
        return seen["e"], p

    with capture(model, [layer]) as rec:
        e, p = run()
    if rec.outputs[layer].dim() == 3:
        raise UserError(f"{layer} gives tokens (B, T, C): interventions here scale channels of (B, C, H, W) or (B, C)")
    acts = unit_means(rec.outputs[layer])
    norm = e.norm(dim=1)
    columns: dict[str, np.ndarray] = {}
    for n in neurons:
        mask = channel_mask([n], rec.outputs[layer].shape[1])
        for name, factor in FACTORS.items():
            with hooks(model, [(layer, scale_hook(mask, factor))]):
                e_l, p_l = run()
            # A zero embedding has no relative change: NaN, left out of C.
            columns[trial_column(f"delta{name}", n)] = ((e_l - e).norm(dim=1) / norm).cpu().double().numpy()
            if p is not None:
                columns[trial_column("ablate" if factor == 0 else "amplify", n)] = (p_l - p).cpu().double().numpy()
    return acts, columns


@torch.no_grad()
def extract_trials(model: torch.nn.Module, loader: Iterable, layer: str, classifier: str, class_names: list[str],
                   neurons: list[int], levels: Sequence[int], device: torch.device, seed: int,
                   batches: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per image of ``loader`` (batches ``(x (B, 3, S, S), labels (B,), indices (B,))``) and
    level (module doc), sorted by level then image as the seed's data. Each batch's noise comes
    from its own generator, seeded by ``seed`` and its number (``batches``: the numbers of the
    loader's batches, a rank's share; default 0, 1, ...), so a batch is the same on any rank.
    ``trial_category`` is ``experiment`` and ``ground_truth`` the class name in lower case."""
    levels = [level for level in check_levels(levels) if level != DREAM_LEVEL]
    numbers = itertools.count() if batches is None else iter(batches)
    rows = []
    for x, y, idx in tqdm(loader, desc="trials", unit="batch"):
        x, y = x.to(device), y.to(device)
        gen = generator(seed, next(numbers))
        for level in levels:
            acts, columns = interventions(model, layer, classifier, perturb(x, level, gen), y, neurons)
            frame = {LEVEL: level, IMAGE_INDEX: idx.numpy(), GROUND_TRUTH: [class_names[int(c)].lower() for c in y],
                     CATEGORY: EXPERIMENT}
            frame.update({trial_column("activation", n): acts[:, n].cpu().double().numpy() for n in neurons})
            frame.update(columns)
            rows.append(pd.DataFrame(frame))
    return joined(rows, neurons)


def joined(frames: Sequence[pd.DataFrame], neurons: Sequence[int]) -> pd.DataFrame:
    """Trials of several parts (batches, ranks, the level-4 rows) in the seed's order."""
    return _ordered(pd.concat(frames, ignore_index=True), neurons)


def _ordered(out: pd.DataFrame, neurons: Sequence[int]) -> pd.DataFrame:
    """Rows by level then image, as the seed's data; the lead columns, the image names where there
    are any, then each kind of column per neuron."""
    per_neuron = [trial_column(kind, n) for kind in TRIAL_KINDS for n in neurons if trial_column(kind, n) in out]
    names = [c for c in (IMAGE_FILENAME, IMAGE_BASENAME) if c in out]
    return out.sort_values([LEVEL, IMAGE_INDEX], kind="stable").reset_index(drop=True)[
        [*TRIAL_LEAD, *names, *per_neuron]]


def unit_concepts(trials: pd.DataFrame, neurons: Sequence[int]) -> dict[int, str]:
    """Each neuron's concept: the ground truth whose clean trials activate it most on average."""
    clean = trials[trials[LEVEL] == CLEAN_LEVEL]
    return {n: str(clean.groupby(GROUND_TRUTH)[trial_column("activation", n)].mean().idxmax()) for n in neurons}


def dream_trials(model: torch.nn.Module, layer: str, classifier: str, neurons: list[int], concepts: dict[int, str],
                 normalise: Normalise, size: int, device: torch.device, seed: int, steps: int = 64,
                 chunk: int = 32) -> tuple[pd.DataFrame, dict[str, bytes]] | None:
    """Level 4 (module doc): per start image and neuron, the neuron's DeepDream from it, saved as a
    JPEG (quality 95) and measured as the decoded file, as a trial whose ground truth is the neuron's
    concept (``concepts``). Returns the rows and the JPEG bytes by file name."""
    # Under torchrun each rank dreams every N-th (start, chunk of neurons); rank 0 measures them all
    # (the other ranks get None).
    rank = distributed.group(device)
    items = [(kind, i) for kind in INITS for i in range(0, len(neurons), chunk)]
    mine = rank.shard(items)
    starts = {kind: start_image(kind, size, seed) for kind in dict.fromkeys(kind for kind, _ in mine)}
    made = {}
    for kind, i in mine:
        batch = neurons[i:i + chunk]
        made[kind, i] = [(n, _jpeg(img)) for n, img in
                         zip(batch, dream(model, layer, batch, starts[kind], normalise, device, steps, seed=seed))]
    parts = distributed.gather(made)
    if parts is None:
        return None
    made = {item: part for every in parts for item, part in every.items()}
    files: dict[str, bytes] = {}
    pixels = []
    for kind, i in items:
        for n, data in made[kind, i]:
            name = f"neuron_{n}_{kind}.jpg"
            files[name] = data
            pixels.append((name, n, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))))
    rows = []
    for i in range(0, len(pixels), chunk):
        part = pixels[i:i + chunk]
        x = normalise.to(device)(torch.from_numpy(np.stack([p for _, _, p in part])).permute(0, 3, 1, 2)
                                 .float().div(255).to(device))
        acts, columns = interventions(model, layer, classifier, x, None, neurons)
        frame = {LEVEL: DREAM_LEVEL, IMAGE_INDEX: -1, GROUND_TRUTH: [concepts[n].lower() for _, n, _ in part],
                 CATEGORY: EXPERIMENT, IMAGE_BASENAME: [name for name, _, _ in part]}
        frame.update({trial_column("activation", n): acts[:, n].cpu().double().numpy() for n in neurons})
        frame.update(columns)
        rows.append(pd.DataFrame(frame))
    return pd.concat(rows, ignore_index=True), files


def _jpeg(image: np.ndarray) -> bytes:
    """``(S, S, 3)`` uint8 as a JPEG file of quality 95."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()
