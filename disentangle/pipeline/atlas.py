"""The neuron atlas (neuron_atlas.py): every unit of some blocks with every method's verdict, as a
static site (``viz.atlas``).

Per block it reads the artifacts of the stages under the outputs root, running those that have not
run (unless ``run_missing`` is off): network dissection (``dissect_neurons``, mask-IoU on the probe
images), neuron statistics and clusters for each k (``neuron_stats``), linear explanations with
their simulation correlation (``explain_neurons``, ``simulate_correlation``, label mode), InterpScore
(``interpretability_score --extract``, then scoring each unit against its own concept, the class
whose clean images activate it most) and feature visualizations (``visualize_features``). A
CLIP-Dissect result (``describe_neurons``) is read where one is given. An artifact made with another
model or other weights is refused with one line; one made with other settings of the same model is
used as it is and its settings are shown.

The atlas's own pass over the probe images gives each unit's activation summary per image (spatial
mean and max), its top-activating images with their activation maps (masked as the dissection
thresholds them), its histogram and its most correlated units.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.errors import UserError
from ..core.hooks import capture
from ..core.layers import resolve_layer
from ..core.runtime import Runtime
from ..data.images import normalise, probe_images
from ..dissection.netdissect import layer_batches
from ..io import artifacts, layout
from ..io.schema import BIAS, EXPLANATION_LEAD, concept_column, weight_column
from ..neurons.activations import ConceptConfig, NeuronDataConfig
from ..neurons.featureviz import VizConfig
from ..neurons.scores import ScoreConfig
from ..neurons.trials import NOISE_LEVELS, CLEAN_LEVEL, unit_concepts
from . import dissect, linear
from .clusters import run_neuron_stats
from .features import choose_colour, run_features
from .scores import ExtractConfig, extract_trials_file, score_file
from .session import Session, setup

STAGE = "neuron_atlas"
SIM_CORRELATION = "sim correlation"


@dataclass(frozen=True)
class AtlasConfig:
    model: str = "tiny_densenet"
    weights: str | None = None
    blocks: tuple[str, ...] | None = None        # None: every block of the model
    outputs: str = str(layout.OUTPUTS)           # the stages' artifacts
    results: str = "results"                     # explain_neurons.py's --result_dir
    probe: str = "concepts"                      # the dissection's and the atlas's images
    images: int | None = None                    # probe images (None: the dissection's default)
    ks: tuple[int, ...] = (2, 3, 4, 5)
    top_images: int = 8
    related: int = 5                             # most correlated units shown per unit
    run_missing: bool = True
    clip_dissect: str | None = None              # a describe_neurons.py result (folder or CSV)
    feature_steps: int = 256
    seed: int = 0
    runtime: Runtime = field(default_factory=Runtime)

    def __post_init__(self):
        if self.top_images < 1 or self.related < 0 or any(k < 2 for k in self.ks):
            raise UserError("--top_images must be at least 1, --related 0 or more and every k at least 2")


@dataclass
class BlockData:
    """What the atlas shows of one block."""
    name: str
    path: str
    units: pd.DataFrame                     # one row per unit (the index's columns)
    mean: np.ndarray                        # (N, U) spatial-mean activation per probe image
    peak: np.ndarray                        # (N, U) spatial max
    top: np.ndarray                         # (U, T) probe-image positions, most activating first
    maps: np.ndarray                        # (U, T, S, S) activation maps upsampled to the image
    thresholds: np.ndarray | None           # (U,) the dissection's mask thresholds
    explanations: dict[int, str]            # unit -> 'w·concept + ...' text
    feature_dir: Path | None                # the block's visualize_features folder
    sources: dict[str, str]                 # verdict -> the artifact it came from


@dataclass
class Atlas:
    model: str
    weights: dict
    probe: str
    images: np.ndarray                      # (N, S, S, 3) uint8 probe images
    blocks: list[BlockData]
    correlation: np.ndarray                 # (ΣU, ΣU) Pearson correlation of the mean activations
    notes: list[str]                        # what was missing or read from other settings


def _check_model(manifest: dict | None, what: Path, model: str, weights: dict) -> dict | None:
    """A finished artifact's manifest, None when there is none yet; one line when it was made with
    another model or other weights."""
    if manifest is None:
        return None
    if not manifest.get("complete"):
        raise UserError(f"{what} holds an unfinished run; finish it (rerun its stage) or move it away")
    c = manifest.get("config", {})
    if c.get("model") != model:
        raise UserError(f"{what} was made with model {c.get('model')!r}, not {model!r}; choose another --outputs")
    if c.get("weights_sha256") != weights["sha256"]:
        raise UserError(f"{what} was made with other weights of {model} (weights_sha256 "
                        f"{str(c.get('weights_sha256'))[:12]}); choose another --outputs or rerun it")
    return manifest


class Stages:
    """The stages' artifacts of one atlas, run on demand with their scripts' defaults."""

    def __init__(self, cfg: AtlasConfig, log: Callable[[str], None]):
        self.cfg, self.log = cfg, log
        self.root = Path(cfg.outputs)
        self._sessions: dict[tuple, Session] = {}
        self.notes: list[str] = []

    def session(self, images: int | None, order: str = "spread", probe: bool = False) -> Session:
        key = (images, order, probe)
        if key not in self._sessions:
            c = self.cfg
            chosen = probe_images(c.probe, c.images, c.seed) if probe else images
            self._sessions[key] = setup(c.model, c.weights, None, chosen, runtime=c.runtime, seed=c.seed,
                                        order=order)
        return self._sessions[key]

    @property
    def weights(self) -> dict:
        return self.session(None, probe=True).loaded.weights

    def folders(self, block: str) -> list[Path]:
        """Where the stages of ``block`` keep their artifacts (their manifests)."""
        c, root = self.cfg, self.root
        return [self.dissection_dir(), *(layout.stats_dir(block, k, root) for k in c.ks),
                linear.explanation_file(c.results, "label", c.model, block),
                layout.interpscore_dir(c.model, block, root), layout.features_dir(c.model, block, root)]

    def dissection_dir(self) -> Path:
        probe = self.session(None, probe=True).images.source.name
        return layout.dissect_dir(self.cfg.model, "netdissect", probe, self.root)

    def check(self, blocks: Sequence[str]) -> None:
        """Refuse, before any work, an artifact made with another model or other weights."""
        for b in blocks:
            for folder in self.folders(b):
                _check_model(artifacts.read_manifest(folder), folder, self.cfg.model, self.weights)

    def _missing(self, what: str) -> bool:
        """True when a missing stage is to be skipped (``run_missing`` off), with a note."""
        if not self.cfg.run_missing:
            self.notes.append(f"{what}: not run (--no_run)")
            return True
        self.log(f"running {what}")
        return False

    def dissection(self) -> pd.DataFrame | None:
        s = self.session(None, probe=True)
        if not s.images.source.pixel_labels:
            self.notes.append(f"dissection: the probe set {self.cfg.probe} has no pixel labels")
            return None
        folder = self.dissection_dir()
        found = _check_model(artifacts.read_manifest(folder), folder, self.cfg.model, s.loaded.weights)
        if found is None:
            if self._missing("dissect_neurons"):
                return None
            dissect.run_dissection(s, None, dissect.DissectConfig(), folder, layout.activations_dir(self.root))
        return dissect.read_run(folder).frame.assign(source=str(folder))

    def clip_dissect(self) -> pd.DataFrame | None:
        if self.cfg.clip_dissect is None:
            return None
        run = dissect.read_run(self.cfg.clip_dissect)
        if run.manifest is not None:
            _check_model(run.manifest, Path(self.cfg.clip_dissect), self.cfg.model, self.weights)
        return run.frame

    def clusters(self, block: str) -> dict[int, np.ndarray]:
        out = {}
        for k in self.cfg.ks:
            folder = layout.stats_dir(block, k, self.root)
            found = _check_model(artifacts.read_manifest(folder), folder, self.cfg.model, self.weights)
            if found is None:
                if self._missing(f"neuron_stats {block} k={k}"):
                    continue
                run_neuron_stats(self.session(1000, "first"), block, k, 10, folder)
            out[k] = artifacts.read_npz(folder / "cluster_results.npz", ("labels",), "clusters")["labels"]
        return out

    def statistics(self, block: str) -> dict[str, np.ndarray]:
        """The neuron statistics of the first clustering folder there is (they do not depend on k)."""
        for k in self.cfg.ks:
            path = layout.stats_dir(block, k, self.root) / f"stats_{block}.npz"
            if path.is_file():
                z = np.load(path)
                return {name: z[name] for name in z.files if z[name].ndim == 1}
        return {}

    def explanations(self, block: str) -> pd.DataFrame | None:
        path = linear.explanation_file(self.cfg.results, "label", self.cfg.model, block)
        found = _check_model(artifacts.read_manifest(path), path, self.cfg.model, self.weights)
        data = NeuronDataConfig(block, "avg", ConceptConfig("label"), str(layout.activations_dir(self.root)))
        if found is None:
            if self._missing(f"explain_neurons {block}"):
                return None
            linear.explain(self.session(1200), data, linear.FitConfig(), self.cfg.results)
        frame = artifacts.read_csv(path, EXPLANATION_LEAD, "explanations")
        if SIM_CORRELATION not in frame and not self._missing(f"simulate_correlation {block}"):
            linear.simulate_correlation(self.session(1200), data, {"le_label": path},
                                        layout.simulation_dir(self.cfg.model, block, "label", root=self.root))
            frame = artifacts.read_csv(path, EXPLANATION_LEAD, "explanations")
        return frame

    def interpscore(self, block: str) -> pd.DataFrame | None:
        folder = layout.interpscore_dir(self.cfg.model, block, self.root)
        results = folder / "results.csv"
        manifest = artifacts.read_manifest(folder)
        found = _check_model(manifest, folder, self.cfg.model, self.weights)
        if found is None:
            if self._missing(f"interpretability_score --extract {block}"):
                return None
            session = self.session(120)
            w = session.loaded.weights
            levels = (*NOISE_LEVELS, CLEAN_LEVEL)
            config = {"model": self.cfg.model, "weights_sha256": w["sha256"], "block": block, "images": 120,
                      "levels": list(levels), "seed": self.cfg.seed, "concepts": "top clean class"}
            manifest = artifacts.make_manifest("interpretability_score", config, {"device": str(session.device)})
            artifacts.open_output(folder, manifest)
            trials = extract_trials_file(session, ExtractConfig(block, None, levels), folder / "data.csv")
            mapping = {str(n): c for n, c in unit_concepts(trials.table, trials.neurons).items()}
            artifacts.write_json(folder / "neuron_map.json", mapping)
            score_file(folder / "data.csv", folder / "neuron_map.json", results, ScoreConfig())
            artifacts.write_manifest(folder, {**manifest, "complete": True})
        return artifacts.read_csv(results, ("Neuron", "Concept", "S", "C", "R", "H", "InterpScore"), "InterpScore")

    def features(self, block: str) -> Path | None:
        folder = layout.features_dir(self.cfg.model, block, self.root)
        found = _check_model(artifacts.read_manifest(folder), folder, self.cfg.model, self.weights)
        if found is None:
            if self._missing(f"visualize_features {block}"):
                return None
            s = self.session(None, probe=True)
            colour, name = choose_colour("auto", s.spec)
            run_features(s.loaded, block, None, VizConfig(steps=self.cfg.feature_steps), colour, name, s.device,
                         folder, self.cfg.seed)
        return folder


def explanation_text(row: pd.Series) -> str:
    """``0.81·red + 0.20·circle +0.03`` of an explanation row (empty slots skipped)."""
    terms = [f"{float(row[weight_column(i)]):.2f}·{row[concept_column(i)]}" for i in range(10)
             if concept_column(i) in row and isinstance(row[concept_column(i)], str) and row[concept_column(i)] != "0"]
    return " + ".join(terms) + (f" {float(row[BIAS]):+.2f}" if terms and BIAS in row else "")


def probe_pass(session: Session, paths: Sequence[str], top: int
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per layer ``(N, U)`` spatial mean and max of every unit per probe image, and ``(U, top)``
    the positions of its most activating images by max (ties by position)."""
    means: dict[str, list] = {p: [] for p in paths}
    peaks: dict[str, list] = {p: [] for p in paths}
    for acts, _, _ in layer_batches(session.model, list(paths), session.loader(), session.device, "atlas: activations"):
        for p, a in acts.items():
            means[p].append(a.float().mean((2, 3)).cpu())
            peaks[p].append(a.float().amax((2, 3)).cpu())
    mean = {p: torch.cat(v).double().numpy() for p, v in means.items()}
    peak = {p: torch.cat(v).double().numpy() for p, v in peaks.items()}
    tops = {p: np.argsort(-peak[p].T, axis=1, kind="stable")[:, :top] for p in paths}
    return mean, peak, tops


@torch.no_grad()
def top_maps(session: Session, path: str, pixels: np.ndarray, tops: np.ndarray, chunk: int = 64) -> np.ndarray:
    """``(U, T, h, w)`` each unit's activation map on each of its top images ``tops (U, T)``
    (positions into ``pixels (N, S, S, 3)``), at the layer's resolution; only those maps are kept of
    each batch."""
    wanted = np.unique(tops)
    out: np.ndarray | None = None
    for start in range(0, len(wanted), chunk):
        part = wanted[start:start + chunk]
        x = normalise(torch.from_numpy(pixels[part]).to(session.device), session.spec)
        with capture(session.model, [path]) as rec:
            session.model(x)
        maps = rec.outputs[path].float().cpu().numpy()               # (B, U, h, w)
        if out is None:
            out = np.zeros((*tops.shape, *maps.shape[2:]), dtype=np.float32)
        units, slots = np.nonzero(np.isin(tops, part))
        out[units, slots] = maps[np.searchsorted(part, tops[units, slots]), units]
    return out


def build(cfg: AtlasConfig, log: Callable[[str], None] = print) -> Atlas:
    """Run or read every stage for ``cfg.blocks`` and the atlas's probe pass (module doc)."""
    stages = Stages(cfg, log)
    session = stages.session(None, probe=True)
    blocks = list(cfg.blocks or session.spec.blocks)
    paths = {b: resolve_layer(session.spec, b, session.model) for b in blocks}
    stages.check(blocks)
    dissection = stages.dissection()
    clip = stages.clip_dissect()
    mean, peak, tops = probe_pass(session, list(paths.values()), cfg.top_images)
    pixels = session.images.pixels(session.spec)                     # (N, S, S, 3) as the model sees them
    out = []
    for b in blocks:
        p = paths[b]
        n = mean[p].shape[1]
        units = pd.DataFrame({"block": b, "unit": np.arange(n)})
        sources: dict[str, str] = {}
        thresholds = None
        if dissection is not None:
            d = dissection[dissection["layer"] == b].set_index("unit")
            units["dissection"] = units["unit"].map(d["description"]).fillna("")
            units["dissection category"] = units["unit"].map(d["category"]).fillna("")
            units["iou"] = units["unit"].map(d["iou"])
            units["detector"] = units["unit"].map(d["detector"]).fillna(False).astype(bool)
            thresholds = units["unit"].map(d["threshold"]).to_numpy(dtype=float)
            sources["dissection"] = str(dissection["source"].iloc[0])
        if clip is not None:
            c = clip[clip["layer"].isin([b, p])].set_index("unit")
            units["clip-dissect"] = units["unit"].map(c["description"]).fillna("")
            sources["clip-dissect"] = str(cfg.clip_dissect)
        explanations: dict[int, str] = {}
        le = stages.explanations(b)
        if le is not None:
            le = le.set_index(EXPLANATION_LEAD[1])
            explanations = {int(u): explanation_text(r) for u, r in le.iterrows()}
            units["linear explanation"] = units["unit"].map(le[concept_column(0)]).map(
                lambda c: c if isinstance(c, str) and c != "0" else "")
            units["le val correlation"] = units["unit"].map(le[EXPLANATION_LEAD[2]])
            if SIM_CORRELATION in le:
                units[SIM_CORRELATION] = units["unit"].map(le[SIM_CORRELATION])
            sources["linear explanation"] = str(linear.explanation_file(cfg.results, "label", cfg.model, b))
        scores = stages.interpscore(b)
        if scores is not None:
            s = scores.set_index("Neuron")
            units["interpscore concept"] = units["unit"].map(s["Concept"]).fillna("")
            for axis in ("S", "C", "R", "H", "InterpScore"):
                units[axis] = units["unit"].map(s[axis])
            sources["interpscore"] = str(layout.interpscore_dir(cfg.model, b, stages.root))
        for k, labels in stages.clusters(b).items():
            units[f"cluster k={k}"] = labels[:n]
        for name, values in stages.statistics(b).items():
            if len(values) == n:
                units[name] = values
        units["mean"], units["max"] = mean[p].mean(0), peak[p].max(0)
        units["agreement"] = [agreement(verdicts(r))[1] for _, r in units.iterrows()]
        feature_dir = stages.features(b)
        out.append(BlockData(b, p, units, mean[p], peak[p], tops[p], top_maps(session, p, pixels, tops[p]), thresholds,
                             explanations, feature_dir, sources))
    correlation = np.corrcoef(np.concatenate([blk.mean for blk in out], 1).T)
    return Atlas(cfg.model, session.loaded.weights, session.images.source.name, pixels, out,
                 np.nan_to_num(correlation), stages.notes)


VERDICTS = {"dissection": "dissection", "clip-dissect": "clip-dissect", "linear explanation": "linear explanation",
            "interpscore concept": "InterpScore concept"}


def verdicts(row: pd.Series) -> dict[str, str]:
    """Each method's label of a unit (those it has)."""
    return {name: str(row[col]) for col, name in VERDICTS.items() if col in row and isinstance(row[col], str)
            and row[col]}


def words(label: str) -> set[str]:
    return {w for w in label.lower().replace("_", " ").replace("-", " ").split() if w}


def agreement(found: dict[str, str]) -> tuple[list[tuple[str, str, bool]], str]:
    """Every pair of verdicts and whether they share a word (``red`` and ``red circle`` agree), and
    ``agreeing/pairs``; ``''`` with fewer than two verdicts."""
    names = list(found)
    pairs = [(a, b, bool(words(found[a]) & words(found[b]))) for i, a in enumerate(names) for b in names[i + 1:]]
    return pairs, f"{sum(p[2] for p in pairs)}/{len(pairs)}" if pairs else ""


def manifest_of(cfg: AtlasConfig, weights: dict) -> dict:
    config = {"model": cfg.model, "weights_sha256": weights["sha256"], "blocks": list(cfg.blocks or []),
              "probe": cfg.probe, "images": cfg.images, "ks": list(cfg.ks), "top_images": cfg.top_images,
              "related": cfg.related, "seed": cfg.seed, "outputs": cfg.outputs, "results": cfg.results,
              "clip_dissect": cfg.clip_dissect, "feature_steps": cfg.feature_steps}
    return artifacts.make_manifest(STAGE, config, {"device": cfg.runtime.device})


def write_atlas(atlas: Atlas, cfg: AtlasConfig, out: str | Path) -> Path:
    """The site of ``atlas`` into ``out`` (``viz.atlas``); returns its index.html."""
    from ..viz.atlas import write_site
    out = Path(out)
    manifest = manifest_of(cfg, atlas.weights)
    artifacts.open_derived(out, manifest)
    index = write_site(atlas, out, cfg.related)
    artifacts.write_json(out / "units.json", json.loads(pd.concat([b.units for b in atlas.blocks]).to_json(
        orient="records")))
    artifacts.write_manifest(out, {**manifest, "complete": True, "notes": atlas.notes})
    return index
