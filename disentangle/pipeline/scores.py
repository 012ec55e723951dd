"""The InterpScore stage (interpretability_score.py): trials from a model (``--extract``), the seed's
``extract_activations``, causality from the image files a data.csv names, and the score of each
mapped neuron with its figures. See ``neurons.trials`` and ``neurons.scores`` for the methods."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..core import distributed
from ..core.errors import UserError
from ..core.hooks import capture
from ..core.layers import layer_width, resolve_layer
from ..core.models import LoadedModel, load_model
from ..data.images import read_rgb
from ..io import artifacts
from ..io.schema import IMAGE_BASENAME, IMAGE_FILENAME, trial_column
from ..neurons import scores
from ..neurons.featureviz import Normalise
from ..neurons.trials import (DREAM_LEVEL, LEVELS, check_levels, dream_trials, extract_trials, interventions,
                              joined, unit_concepts, unit_means)
from .session import Session


@dataclass(frozen=True)
class ExtractConfig:
    """The trials to extract: the channels ``neurons`` (None: every one) of ``block`` (a named block
    or module path), each image at ``levels`` (the seed's: 1 2 3 noisy, 5 clean, and 4: each neuron's
    DeepDream images)."""
    block: str = "block_4"
    neurons: tuple[int, ...] | None = None
    levels: tuple[int, ...] = LEVELS

    def __post_init__(self):
        check_levels(self.levels)


@dataclass
class Trials:
    path: Path                       # the trials file written
    table: pd.DataFrame              # its rows: one per image and level
    neurons: list[int]
    images: int


def _channels(loaded: LoadedModel, layer: str, example: torch.Tensor, neurons: Sequence[int] | None) -> list[int]:
    n_channels = layer_width(loaded.model, layer, example)
    chosen = list(range(n_channels)) if neurons is None else [int(n) for n in neurons]
    bad = [n for n in chosen if not 0 <= n < n_channels]
    if bad:
        raise UserError(f"neuron {bad[0]} is not a channel of {layer} (0..{n_channels - 1})")
    return chosen


def extract_trials_file(session: Session, cfg: ExtractConfig, out: str | Path) -> Trials:
    """Trials of the session's images (the session's seed seeds the noise) into the CSV ``out``."""
    layer = resolve_layer(session.spec, cfg.block, session.model)
    neurons = _channels(session.loaded, layer, session.example(), cfg.neurons)
    # Concepts are the class names without ImageFolder's numeric prefix (00_red_circle -> red_circle).
    names = [c.split("_", 1)[1] if c[:2].isdigit() else c for c in session.images.source.classes]
    # Under torchrun each rank takes every N-th batch of images (each batch's noise has its own
    # seed) and every N-th chunk of DeepDreams; rank 0 joins the trials and writes.
    size = session.runtime.images_per_batch(session.device)
    mine = session.shard(size)
    parts = distributed.gather(extract_trials(session.model, session.loader(size, batches=mine), layer,
                                              session.spec.classifier, names, neurons, cfg.levels, session.device,
                                              session.seed, mine))
    frame = None if parts is None else joined(parts, neurons)
    out = Path(out)
    if DREAM_LEVEL in cfg.levels:
        spec = session.spec
        made = dream_trials(session.model, layer, spec.classifier, neurons,
                            None if frame is None else unit_concepts(frame, neurons),
                            Normalise(spec.mean, spec.std), spec.input_size, session.device, session.seed)
        if made is not None:
            dreams, files = made
            folder = dream_folder(out)
            for name, data in files.items():
                artifacts.write_bytes(folder / name, data)
            dreams[IMAGE_FILENAME] = [str(folder / name) for name in dreams[IMAGE_BASENAME]]
            frame = joined([frame, dreams], neurons)

    def write() -> pd.DataFrame:
        artifacts.write_csv(out, frame)
        return frame
    return Trials(out, distributed.decide(write), neurons, len(session.images))


def dream_folder(data_csv: str | Path) -> Path:
    """Where --extract writes the level-4 DeepDream images: ``<data>_deepdream/`` beside data.csv."""
    data_csv = Path(data_csv)
    return data_csv.with_name(f"{data_csv.stem}_deepdream")


def _images(loaded: LoadedModel, paths: Sequence[str | Path], device: torch.device) -> torch.Tensor:
    transform = loaded.spec.transform()
    return torch.stack([transform(read_rgb(p)) for p in paths]).to(device)


@torch.no_grad()
def extract_activations(image_paths: Sequence[str | Path], layer_name: str, model_type: str = "tiny_densenet",
                        weights: str | None = None, device: str | torch.device = "cpu",
                        batch_size: int = 32) -> pd.DataFrame:
    """The seed's ``extract_activations``: one row per image (indexed by its path), one column
    ``activation_<u>`` per unit of ``layer_name`` (a block name or module path of the registered
    ``model_type``): the unit's spatial (or token) mean, as the seed's extractor averages."""
    if not len(image_paths):
        raise UserError("extract_activations needs at least one image path")
    missing = [str(p) for p in image_paths if not Path(p).is_file()]
    if missing:
        raise UserError(f"image {missing[0]} not found")
    loaded = load_model(model_type, weights, device)
    layer = resolve_layer(loaded.spec, layer_name, loaded.model)
    parts = []
    for start in range(0, len(image_paths), batch_size):
        x = _images(loaded, image_paths[start:start + batch_size], torch.device(device))
        with capture(loaded.model, [layer]) as rec:
            loaded.model(x)
        parts.append(unit_means(rec.outputs[layer]).cpu().double().numpy())
    acts = np.concatenate(parts)
    return pd.DataFrame(acts, index=pd.Index([str(p) for p in image_paths], name="image"),
                        columns=[trial_column("activation", u) for u in range(acts.shape[1])])


def image_file(row: pd.Series, images_dir: Path) -> Path | None:
    """The image file a trial names: ``image_basename`` or ``image_filename`` under ``images_dir``
    (the seed's S3 address keeps its path after the bucket), or ``image_filename`` itself."""
    names = [row.get(IMAGE_BASENAME)]
    filename = row.get(IMAGE_FILENAME)
    if isinstance(filename, str):
        tail = filename.split("://", 1)[-1].split("/", 1)[-1] if "://" in filename else filename
        names += [tail, Path(tail).name]
    for name in names:
        if isinstance(name, str) and (images_dir / name).is_file():
            return images_dir / name
    return Path(filename) if isinstance(filename, str) and Path(filename).is_file() else None


def image_intervention(loaded: LoadedModel, block: str, images_dir: str | Path, device: torch.device
                       ) -> scores.Intervene:
    """C from the image files of the trials (``image_file``): the function ``score_neurons`` calls
    with the rows C draws; a neuron id is a channel of ``block``. Missing images give NaN deltas."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise UserError(f"images folder {images_dir} not found")
    layer = resolve_layer(loaded.spec, block, loaded.model)

    def intervene(rows: pd.DataFrame, neuron: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            channel = int(neuron)
        except ValueError:
            raise UserError(f"neuron {neuron!r} is not a channel index of {block}") from None
        files = [image_file(row, images_dir) for _, row in rows.iterrows()]
        found = [f for f in files if f is not None]
        d0, d2 = np.full(len(files), np.nan), np.full(len(files), np.nan)
        if found:
            x = _images(loaded, found, device)
            _channels(loaded, layer, x[:1], [channel])
            _, columns = interventions(loaded.model, layer, loaded.spec.classifier, x, None, [channel])
            at = [i for i, f in enumerate(files) if f is not None]
            d0[at], d2[at] = columns[trial_column("delta0", channel)], columns[trial_column("delta2", channel)]
        return d0, d2

    return intervene


def score_file(data: str | Path, neuron_map: str | Path, results: str | Path, cfg: scores.ScoreConfig,
               intervene: scores.Intervene | None = None) -> tuple[scores.Scores, pd.DataFrame]:
    """Score every neuron of the ``neuron_map`` JSON on the trials of ``data`` into the CSV file
    ``results`` (which must be neither input); returns the scores and the trials. One line if no
    neuron of the map can be scored."""
    if Path(results).resolve() in {Path(p).resolve() for p in (data, neuron_map)}:
        raise UserError(f"the results path {results} is one of the inputs; choose another file")
    trials = scores.load_trials(data, cfg.human_score_col)
    mapping = scores.load_neuron_map(neuron_map)
    result = scores.score_neurons(trials, mapping, cfg, intervene)
    if result.table.empty:
        why = "; ".join(f"{n}: {reason}" for n, reason in result.skipped.items())
        raise UserError(f"no neuron of {neuron_map} could be scored on {data} ({why})")
    artifacts.write_csv(results, result.table)
    return result, trials


def score_figures(trials: pd.DataFrame, result: scores.Scores, cfg: scores.ScoreConfig, folder: str | Path
                  ) -> list[Path]:
    """The seed's expected figures: one page per scored neuron (``neuron_<id>.png``) and the
    summary of S, C, R, H across neurons (``summary.png``)."""
    from ..viz.scores import neuron_figure, summary_figure
    exp = scores.experiment_trials(trials)
    folder = Path(folder)
    written = [neuron_figure(exp, row, cfg, folder / f"neuron_{row['Neuron']}.png")
               for row in result.table.to_dict("records")]
    return [*written, summary_figure(result.table, folder / "summary.png")]
