"""One spelling per flag across every script, with every spelling used before kept as an alias.

``SPELLINGS`` maps a flag's destination to its canonical spelling first, then its aliases (the
seeds' spellings among them). Scripts add flags with ``add``: ``--help`` shows the canonical
spelling and names the aliases; the aliases parse to the same destination.
"""
from __future__ import annotations

import argparse

SPELLINGS: dict[str, tuple[str, ...]] = {
    # model, data, images
    "model": ("--model", "--target_model", "--target_name"),
    "model_weights": ("--model_weights", "--model-weights"),
    "data": ("--data", "--dataset_name", "--d_probe"),
    "data_root": ("--data_root", "--data-root"),
    "images": ("--images", "--num_images", "--probe_images"),
    "block": ("--block", "--target_layer", "--layer"),
    "blocks": ("--blocks", "--target_layers"),
    # runtime
    "batch_size": ("--batch_size", "--batch-size"),
    "ig_batch": ("--ig_batch", "--ig-batch"),
    "channels_last": ("--channels_last", "--channels-last"),
    # attributions and metrics
    "ig_steps": ("--ig_steps", "--ig-steps"),
    "drop_fraction": ("--drop_fraction", "--drop-fraction"),
    "mask_value": ("--mask_value", "--mask-value"),
    "attribution_format": ("--attribution_format", "--attribution-format"),
    # clusters and runs
    "k": ("--k", "--n_clusters"),
    "cluster_idx": ("--cluster_idx", "--cluster"),
    # outputs
    "output_dir": ("--output_dir", "--output-dir", "--result_dir"),
    "dry_run": ("--dry_run", "--dry-run"),
    # bench/throughput.py
    "blocked_share": ("--blocked_share", "--blocked-share"),
    "memory_images": ("--memory_images", "--memory-images"),
    "peak_tflops": ("--peak_tflops", "--peak-tflops"),
    # dissection
    "pool_mode": ("--pool_mode", "--pool"),
    "similarity_fn": ("--similarity_fn", "--similarity"),
    "clip_model": ("--clip_model", "--clip_name"),
    "activation_dir": ("--activation_dir", "--activations_dir"),
    # interpretability score
    "clean_level": ("--clean_level", "--clean-level"),
    "threshold_percentile": ("--threshold_percentile", "--threshold-percentile"),
    "recognizable_levels": ("--recognizable_levels", "--recognizable-levels"),
    "min_p_value": ("--min_p_value", "--min-p-value"),
    "human_score_col": ("--human_score_col", "--human-score-col"),
    "axis_weights": ("--axis_weights", "--weights"),     # the seed's --weights: of S C R H, not a model's
}


def spellings(dest: str) -> tuple[str, ...]:
    return SPELLINGS.get(dest, (f"--{dest}",))


def add(group: argparse._ActionsContainer, dest: str, **kwargs) -> argparse.Action:
    """Add the flag ``dest`` in its canonical spelling, and its aliases (hidden from ``--help``,
    named in the flag's help)."""
    canonical, *aliases = spellings(dest)
    if aliases and kwargs.get("help") not in (None, argparse.SUPPRESS):
        kwargs["help"] += f" (also {', '.join(aliases)})"
    action = group.add_argument(canonical, dest=dest, **kwargs)
    if aliases:
        hidden = {k: v for k, v in kwargs.items() if k not in ("help", "default", "required")}
        group.add_argument(*aliases, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **hidden)
    return action
