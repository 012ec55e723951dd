"""disentangle: neuron-level interpretability of PyTorch vision models.

``import disentangle as dt`` gives the library's curated API (loaded on first use, so importing the
package is quick):

>>> import disentangle as dt
>>> session = dt.setup("tiny_densenet", images=24)               # model, images, device
>>> x, labels, _ = next(iter(session.loader(8)))
>>> maps = dt.blocked_attributions(session.loaded, x, "block_2", [[], [0, 3, 5]])
>>> maps["ig"].shape                                             # (masks, images, 3, 56, 56)

See docs/walkthrough.md for a tour, and the stage scripts at the repository's root for the
command line.
"""
from __future__ import annotations

import importlib

# public name -> "module" (the same name there) or "module:name"
_API = {
    # models, layers, hooks, runtime
    "MODELS": "core.models", "get_spec": "core.models", "load_model": "core.models", "LoadedModel": "core.models",
    "resolve_layer": "core.layers", "layer_width": "core.layers",
    "capture": "core.hooks", "hooks": "core.hooks", "block_hook": "core.hooks", "channel_mask": "core.hooks",
    "Runtime": "core.runtime", "UserError": "core.errors", "set_seeds": "core.seeding", "load_clip": "core.clip",
    # images and the one set-up path
    "Images": "data.images", "dataset_images": "data.images", "photo_images": "data.images",
    "probe_images": "data.images", "ConceptWorld": "data.concepts",
    "setup": "pipeline.session", "setup_like": "pipeline.session", "Session": "pipeline.session",
    # attributions with channels blocked, and their metrics
    "blocked_attributions": "attribution.engine", "masked_attributions": "attribution.engine",
    "EvalConfig": "attribution.evaluation", "evaluate_masks": "attribution.evaluation",
    "sparsity": "attribution.metrics", "faithfulness": "attribution.metrics",
    # neuron statistics, clusters, decomposition
    "collect_stats": "neurons.statistics", "stats_matrix": "neurons.statistics", "STATS": "neurons.statistics",
    "standardize": "neurons.clustering", "kmeans": "neurons.clustering", "cluster_maps": "neurons.decomposition",
    # the Grad-CAM family, LIME and their agreement
    "CamConfig": "explanations.cams", "cam_maps": "explanations.cams:explain_images",
    "LimeConfig": "explanations.lime", "lime_maps": "explanations.lime:explain_images",
    "BinarizeConfig": "explanations.agreement", "binarize": "explanations.agreement", "iou": "explanations.agreement",
    # dissection, linear explanations, scores
    "DissectConfig": "pipeline.dissect", "run_dissection": "pipeline.dissect",
    "compare_dissections": "pipeline.dissect",
    "soft_wpmi": "dissection.clip_dissect", "describe_units": "dissection.clip_dissect:describe",
    "NeuronDataConfig": "neurons.activations", "ConceptConfig": "neurons.activations",
    "load_activations": "neurons.activations", "FitConfig": "pipeline.linear",
    "explain_neurons": "pipeline.linear:explain", "simulate_correlation": "pipeline.linear",
    "simulate_ablation": "pipeline.linear",
    "ScoreConfig": "neurons.scores", "score_neurons": "neurons.scores", "extract_trials": "neurons.trials",
    "calculate_selectivity_score": "neurons.scores", "calculate_causality_score": "neurons.scores",
    "calculate_robustness_score": "neurons.scores", "calculate_human_consistency_score": "neurons.scores",
    "calculate_interpretability_score": "neurons.scores", "extract_activations": "pipeline.scores",
    # the stages as library calls
    "run_baseline": "pipeline.baseline", "run_neuron_stats": "pipeline.clusters",
    "describe_clusters": "pipeline.clusters", "GridConfig": "pipeline.grid", "plan": "pipeline.grid",
    "execute": "pipeline.grid", "run_cams": "pipeline.explanations", "run_lime": "pipeline.explanations",
    "compare_explanations": "pipeline.explanations:compare",
    # readers of the stages' artifacts
    "load_baseline": "io.readers", "load_clusters": "io.readers", "read_dissection": "pipeline.dissect:read_run",
    "load_explanations": "explanations.agreement", "load_trials": "neurons.scores",
    "read_explanations": "neurons.simulation", "read_manifest": "io.artifacts", "read_csv": "io.artifacts",
    "read_json": "io.artifacts", "read_npz": "io.artifacts",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'disentangle' has no attribute {name!r}")
    module, _, attr = _API[name].partition(":")
    value = getattr(importlib.import_module(f".{module}", __name__), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
