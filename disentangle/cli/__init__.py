"""The command-line layer, the only part of the package that knows argparse: the parser and entry
point (one-line errors), one declaration per flag with the spellings used before as aliases, the
shared flag groups, and the library configs they build. Scripts parse, build a config, call the
library and print a summary.
"""
from __future__ import annotations

from ..core.errors import UserError
from .flags import SPELLINGS, add, spellings
from .groups import (attribution_args, attribution_format, attribution_format_args, blocked_args, blocked_settings,
                     clustering_args, clustering_method_args, clusters, concept_mode, eval_config, explain_and_report, explain_args,
                     explanation_args,
                     explanation_paths, figure_args, figure_config,
                     image_order, image_order_args, model_args, neuron_data, neuron_data_args, output_args, runtime,
                     runtime_args)
from .parser import Parser, artifacts_in, batch_size, count, entrypoint, finite, images, names, positive, target

__all__ = ["UserError", "SPELLINGS", "add", "spellings", "attribution_args", "attribution_format",
           "attribution_format_args", "blocked_args", "blocked_settings", "clustering_args",
           "clustering_method_args", "clusters", "concept_mode", "eval_config", "explain_and_report", "explain_args", "explanation_args", "explanation_paths", "figure_args", "figure_config", "image_order",
           "image_order_args", "model_args", "neuron_data", "neuron_data_args", "output_args", "runtime", "runtime_args", "Parser",
           "artifacts_in", "batch_size", "count", "entrypoint", "finite", "images", "names", "positive", "target"]
