"""The interpretability-score stage (interpretability_score.py): trials from a model (``--extract``),
and the score of each mapped neuron from a trials file. See ``neurons.trials`` and
``neurons.scores`` for the methods."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.errors import UserError
from ..core.layers import layer_width, resolve_layer
from ..io import artifacts
from ..neurons import scores
from ..neurons.trials import extract_trials
from .session import Session


@dataclass(frozen=True)
class ExtractConfig:
    """The trials to extract: the channels ``neurons`` (None: every one) of ``block`` (a named block),
    each image at ``levels`` perturbation levels (the highest clean)."""
    block: str = "block_4"
    neurons: tuple[int, ...] | None = None
    levels: int = 5

    def __post_init__(self):
        if self.levels < 2:
            raise UserError(f"--levels must be at least 2, got {self.levels}")


@dataclass
class Trials:
    path: Path                       # the trials file written
    table: pd.DataFrame              # its rows: one per image and level
    neurons: list[int]
    images: int


def extract_trials_file(session: Session, cfg: ExtractConfig, out: str | Path) -> Trials:
    """Trials of the session's images (the session's seed seeds the perturbation noise) into the
    CSV file ``out``."""
    path = resolve_layer(session.spec, cfg.block)
    n_channels = layer_width(session.model, path, session.example())
    neurons = list(range(n_channels)) if cfg.neurons is None else list(cfg.neurons)
    if any(not 0 <= n < n_channels for n in neurons):
        raise UserError(f"--neurons must be channels 0..{n_channels - 1} of {cfg.block}")
    # Trial categories are the class names without ImageFolder's numeric prefix (00_red_circle -> red_circle).
    names = [c.split("_", 1)[1] if c[:2].isdigit() else c for c in session.images.source.classes]
    frame = extract_trials(session.model, session.loader(), path, names, neurons, cfg.levels, session.device,
                           session.seed)
    artifacts.write_csv(out, frame)
    return Trials(Path(out), frame, neurons, len(session.images))


def score_file(data: str | Path, neuron_map: str | Path, results: str | Path, cfg: scores.ScoreConfig) -> pd.DataFrame:
    """Score every neuron of the ``neuron_map`` JSON on the trials of ``data`` into the CSV file
    ``results`` (which must be neither input); returns the ranked results."""
    if Path(results).resolve() in {Path(p).resolve() for p in (data, neuron_map)}:
        raise UserError(f"the results path {results} is one of the inputs; choose another file")
    trials = scores.load_trials(data, cfg.human_score_col)
    mapping = scores.load_neuron_map(neuron_map, trials)
    result = scores.score_neurons(trials, mapping, cfg)
    artifacts.write_csv(results, result)
    return result
