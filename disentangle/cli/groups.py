"""The flag groups the scripts share, and the library configs they build: one declaration per flag."""
from __future__ import annotations

import argparse
import os

from ..attribution.evaluation import ATTRIBUTION_FORMATS, PRECISIONS, EvalConfig
from ..attribution.engine import METHODS
from ..attribution.metrics import METRICS, PROTOCOLS
from ..core.errors import UserError
from ..core.models import MODELS
from ..core.runtime import AUTO_START, Runtime
from ..data.images import IMAGENET_ROOT
from ..io import layout
from .flags import add
from .parser import batch_size, count, finite, images as images_type, positive, target

WORKERS = min(4, os.cpu_count() or 1)


ORIGINAL_ORDER = {"strided": "images i * (len // N) of the data set in ImageFolder order, as the original",
                  "first": "the first N images of the data set in ImageFolder order, as the original",
                  "grid": "the baseline's images i * (len // N) and the first --stats_images for the neuron "
                          "statistics, of the data set in ImageFolder order, as the original"}


def model_args(p: argparse.ArgumentParser, images: int | None = 100, photos: bool = False,
               order: str | None = None) -> None:
    """``--model``, ``--weights``, ``--data``, ``--data_root``, ``--images`` (``images`` None: no
    data flags; ``photos``: ``--images`` also takes ``samples`` or a folder), ``--seed``, and with
    ``order`` (a key of ``ORIGINAL_ORDER``: how the seed's stage chose its images)
    ``--image_order``."""
    g = p.add_argument_group("model and data")
    add(g, "model", default="tiny_densenet", help=f"registered model: {', '.join(MODELS)}")
    add(g, "weights", default=None,
        help="weights file; default: the model's own source (torch hub cache, a package, or for tiny_densenet "
             "the weights shipped with the code); 'random' for untrained weights")
    if images is not None:
        add(g, "data", default=None,
            help="'concepts' (built-in concept world), 'imagenet' (class folders under --data_root) or any "
                 "ImageFolder path; default: concepts for tiny_densenet, imagenet otherwise")
        add(g, "data_root", default=None, help=f"ImageNet validation folder (default {IMAGENET_ROOT})")
        if photos:
            add(g, "images", type=images_type, default=images,
                help="N: that many images of --data, spread evenly over its classes; 'samples': the photos shipped "
                     "with scikit-image and scikit-learn; or a folder whose files are all images")
        elif order:
            add(g, "images", type=positive, default=images, help="number of images (see --image_order)")
            image_order_args(g, f"which N images: original ({ORIGINAL_ORDER[order]}) or spread (evenly over the "
                                f"classes and within each class over its images)")
        else:
            add(g, "images", type=positive, default=images,
                help="number of images, chosen deterministically and spread evenly over classes")
    add(p, "seed", type=int, default=0, help="seed for every random number generator")


def runtime_args(p: argparse.ArgumentParser, engine: bool = False, batch: int = 32, workers: int = WORKERS) -> None:
    """Flags that change how fast a stage runs, never its results (beyond float rounding).

    ``engine``: the stage runs the attribution engine, which also takes ``--batch_size auto``,
    ``--ig_batch``, ``--channels_last`` and ``--plain``.
    """
    r = p.add_argument_group("runtime")
    if engine:
        add(r, "batch_size", type=batch_size, default=batch,
            help=f"images per batch, or 'auto': start at {AUTO_START['cuda']} images on CUDA ({AUTO_START['cpu']} "
                 f"on the CPU) and, on out-of-memory, compute each batch in halves (and IG in half as many rows) "
                 f"and retry, as often as needed")
        add(r, "ig_batch", type=positive, default=256,
            help="rows (image x step) per IG forward/backward: the images x steps of a batch are chunked to this")
    else:
        add(r, "batch_size", type=positive, default=batch, help="images per batch")
    add(r, "device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1' ...")
    add(r, "workers", type=count, default=workers,
        help="data-loading processes for image folders (the concept world renders in-process)")
    if engine:
        add(r, "channels_last", action="store_true",
            help="keep the model's weights and activations in channels-last (NHWC) memory format: faster "
                 "convolutions on CPUs and tensor cores; results agree with the default to float rounding")
        add(r, "plain", action="store_true",
            help="the attribution engine without its speed tricks (one pass per batch instead of one per CPU "
                 "thread, no batch-norm folding, the stem run per IG step, glibc's default malloc): for debugging; "
                 "results agree with the default to float rounding")


def attribution_args(p: argparse.ArgumentParser, recorded: bool = False, target_flag: bool = True,
                     metrics: bool = True, metric: str = "patch") -> None:
    """``--methods``, ``--metric`` (default ``metric``), ``--ig_steps``, ``--target``, ``--precision``
    and with ``metrics`` ``--protocol``, ``--mass``, ``--drop_fraction``, ``--mask_value``.
    ``recorded``: a stage that must use an earlier run's settings: every default is None (the
    earlier run's)."""
    a = p.add_argument_group("attributions and metrics")
    default = (lambda v: None) if recorded else (lambda v: v)
    add(a, "methods", default=default(",".join(METHODS)), help=f"comma-separated, from {', '.join(METHODS)}")
    add(a, "metric", default=default(metric),
        help=f"{' or '.join(METRICS)}: score single pixels or a 14x14 grid of patches")
    add(a, "ig_steps", type=positive, default=default(50), help="Integrated Gradients steps (Gauss-Legendre)")
    if target_flag:
        add(a, "target", type=target, default=default("label"),
            help="class to explain: 'label' (each image's true class, as the original), 'pred' (its prediction; "
                 "also 'top1') or a class index")
    add(a, "precision", default=default("fp32"),
        help=f"{', '.join(PRECISIONS)}: the model's forward passes in fp32, or under bf16/fp16 autocast "
             f"(faster on GPUs; attributions are close to fp32's, not equal: see docs/benchmarks.md)")
    if metrics:
        add(a, "protocol", choices=PROTOCOLS, default=default("original"),
            help="metric definitions: original (the seed's utils.py: pixel sparsity over every value, patch "
                 "remainder ignored, faithfulness of the predicted class, std ddof 0) or extended "
                 "(see docs/attributions.md)")
        add(a, "mass", type=finite, default=default(0.9), help="sparsity: share of attribution mass to cover")
        add(a, "drop_fraction", type=finite, default=default(0.1),
            help="faithfulness: share of pixels/patches masked, the most important first")
        add(a, "mask_value", type=finite, default=default(0.0),
            help="faithfulness: value written into masked pixels, in normalised input space (0 = the data set's "
                 "mean colour)")


def output_args(p: argparse.ArgumentParser, default: str | None, what: str = "artifact folder",
                overwrite: bool = True) -> None:
    """``--output_dir`` and ``--overwrite``."""
    o = p.add_argument_group("output")
    add(o, "output_dir", default=default, help=what)
    if overwrite:
        add(o, "overwrite", action="store_true",
            help="replace a folder holding a run with other settings (only ever a folder of this project's runs)")


def image_order_args(g: argparse._ActionsContainer, help: str) -> None:
    """``--image_order original|spread``: the seed stage's own choice of images, or this project's."""
    add(g, "image_order", choices=("original", "spread"), default="original", help=help)


def image_order(args: argparse.Namespace, original: str) -> str:
    """The ``data.images.ORDERS`` key of ``--image_order`` (``original``: the seed stage's own)."""
    return original if getattr(args, "image_order", "spread") == "original" else "spread"


def runtime(args: argparse.Namespace) -> Runtime:
    """The ``Runtime`` of a script's runtime flags (those it lacks take their defaults)."""
    return Runtime(device=getattr(args, "device", "auto"), workers=getattr(args, "workers", WORKERS),
                   batch_size=getattr(args, "batch_size", 32), ig_batch=getattr(args, "ig_batch", 256),
                   channels_last=getattr(args, "channels_last", False), plain=getattr(args, "plain", False))


def eval_config(args: argparse.Namespace) -> EvalConfig:
    """The ``EvalConfig`` of a script's attribution flags (those it lacks take their defaults)."""
    given = {k: getattr(args, k) for k in ("metric", "ig_steps", "mass", "drop_fraction", "mask_value", "target",
                                           "precision", "protocol") if getattr(args, k, None) is not None}
    if getattr(args, "methods", None):
        given["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    return EvalConfig(**given)


def attribution_format_args(p: argparse.ArgumentParser, default: str) -> None:
    """``--attribution_format``: how (and whether) a stage keeps its attribution maps."""
    add(p, "attribution_format", choices=(*ATTRIBUTION_FORMATS, "none"), default=default,
        help="attribution maps kept: npy (attributions/<method>_<i>.npy per image, as the original), npz "
             "(attributions/<method>/batch_<b>.npz per batch, compact) or none (also --save_attributions: npy)")
    # The spelling used before --attribution_format existed: keep the maps, as the original's files.
    p.add_argument("--save_attributions", "--save-attributions", dest="attribution_format", action="store_const",
                   const="npy", help=argparse.SUPPRESS)


def attribution_format(args: argparse.Namespace) -> str | None:
    """The ``evaluation.ATTRIBUTION_FORMATS`` entry of ``--attribution_format`` (None: keep none)."""
    value = getattr(args, "attribution_format", "none")
    return None if value == "none" else value


def blocked_args(p: argparse.ArgumentParser, stage: str = "filtered_eval") -> None:
    """Flags of stages that rerun the baseline's evaluation with neurons blocked (``stage``: the
    script, whose attribution maps are kept by default only for filtered_eval, as the original)."""
    add(p, "baseline_dir", default=str(layout.baseline_dir()), help="output of baseline_eval.py")
    add(p, "mode", default="detach", help="detach (stop the gradient, forward unchanged) or zero (ablate)")
    add(p, "images", type=positive, default=None,
        help="number of images; must equal the baseline's (the default), since deltas are per image")
    add(p, "metric", default=None, help="pixel or patch; must equal the baseline's (the default)")
    runtime_args(p, engine=True)
    attribution_format_args(p, "npy" if stage == "filtered_eval" else "none")


def blocked_settings(args: argparse.Namespace):
    """The ``experiment.Settings`` of a script's blocked-run flags."""
    from ..pipeline.experiment import Settings
    return Settings(runtime(args), attribution_format(args), getattr(args, "overwrite", False))


def clustering_args(p: argparse.ArgumentParser, stats_dir: str | None = None) -> None:
    """``--block``, ``--k`` and ``--stats_dir``: a neuron_stats run, by its folder or by block and k."""
    add(p, "block", default=None, help="named block (default block_1, or the --stats_dir's)")
    add(p, "k", type=int, default=None, help="number of clusters (default 3, or the --stats_dir's)")
    add(p, "stats_dir", default=stats_dir,
        help="output of neuron_stats.py" + ("" if stats_dir else "; default: outputs/neuron_stats/<block>_k<k>"))


def clustering_method_args(p: argparse.ArgumentParser) -> None:
    """``--features``, ``--kmeans``, ``--n_init``: what neurons are clustered on, and how."""
    from ..neurons.clustering import KMEANS
    from ..neurons.statistics import FEATURES
    add(p, "features", choices=tuple(FEATURES), default="original",
        help="neuron statistics clustered: original (activation rate, mean and variance of each image's "
             "spatial-mean activation, as the seed) or extended (eight statistics over every value)")
    add(p, "kmeans", choices=KMEANS, default="original",
        help="original: KMeans(k, random_state=42) once, as the seed; stable: --n_init seeded starts, "
             "best inertia, clusters numbered by size")
    add(p, "n_init", type=positive, default=10, help="k-means starts of --kmeans stable")


def clusters(args: argparse.Namespace):
    """The clusters of ``--stats_dir`` (or of ``--block`` and ``--k``), checked to be of the
    ``--block`` and ``--k`` given."""
    from ..pipeline.clusters import check_clustering
    folder = args.stats_dir or layout.stats_dir(args.block or "block_1", 3 if args.k is None else args.k)
    return check_clustering(folder, args.block, args.k)


def figure_args(p: argparse.ArgumentParser) -> None:
    """The flags of the attribution figures (visualize_attribution.py, run_images_attribution.py)."""
    add(p, "cluster_idx", type=int, default=0, help="cluster whose gradient path is blocked")
    clustering_args(p)
    add(p, "drop_fraction", type=finite, default=0.1, help="faithfulness: share of pixels or patches masked")
    add(p, "metric", default="patch", help=" or ".join(METRICS))
    add(p, "mask_value", type=finite, default=0.0, help="value of masked inputs (normalised space)")
    add(p, "ig_steps", type=positive, default=50, help="Integrated Gradients steps")
    output_args(p, str(layout.visualizations_dir()), "where the figures go", overwrite=False)
    runtime_args(p, engine=True)
    add(p, "seed", type=int, default=0, help="seed for every random number generator")


def figure_config(args: argparse.Namespace) -> EvalConfig:
    """The ``EvalConfig`` of the figure flags (``figure_args``): each image's prediction explained,
    as the original's figures."""
    return EvalConfig(metric=args.metric, ig_steps=args.ig_steps, drop_fraction=args.drop_fraction,
                      mask_value=args.mask_value, target="pred")


def neuron_data_args(p: argparse.ArgumentParser, images: int = 1200, concept_flag: str = "mode") -> None:
    """The model, layer, images and concepts of the linear-explanation stages (explain_neurons.py,
    simulate_*.py), their runtime flags, ``--activation_dir`` and ``--seed``. ``concept_flag``: the
    name of the concept-source flag (simulate_ablation.py's ``--mode`` is the original's ablation
    mode, so its concepts come from ``--simulator``)."""
    from ..core.clip import DEFAULT_MODEL
    from ..neurons.activations import EXPLAINER, MODES, POOL_MODES, SIMULATOR
    g = p.add_argument_group("model, layer and data")
    add(g, "model", default="tiny_densenet", help=f"registered model: {', '.join(MODELS)}")
    add(g, "weights", default=None, help="weights file, or 'random'; default: the model's own source")
    add(g, "block", default="block_4", help="block name (block_4, layer4 ...) or module path")
    add(g, "data", default="concepts",
        help="'concepts' (concept world), 'imagenet_val' (class folders under --data_root), or an image folder "
             "with one subfolder per class")
    add(g, "data_root", default=None, help=f"ImageNet validation folder (default {IMAGENET_ROOT})")
    add(g, "images", type=positive, default=images,
        help="images, spread evenly over classes, then split 70/10/20 into train/val/test by --seed (the original's fractions)")
    add(g, "pool_mode", choices=POOL_MODES, default="avg",
        help="a neuron's activation per image: spatial (or token) mean or max; first: a token layer's class token")
    c = p.add_argument_group("concepts")
    add(c, concept_flag, choices=MODES, default="label",
        help="label: concept probabilities from labels; siglip: sigmoid(a (cos + b)) of a SigLIP model's "
             "image-concept similarities (the original's); clip: an open_clip model's softmax over the concepts (ours)")
    add(c, "superclasses", default=None,
        help="label mode on an image folder: JSON {superclass: [class folder or class index, ...]} added as "
             "concepts (default for imagenet_val and cifar100_val: the original's "
             "data/concept_sets/<dataset>_superclass_to_ids.json where it is placed; 'none': no superclasses)")
    add(c, "concept_set", default=None,
        help="siglip / clip mode: concept list, one per line (default: the concept world's concepts and classes; "
             "for the original's data sets its data/concept_sets/combined_concepts_<dataset>.txt where it is "
             "placed); label mode on an image folder: the class names, one per line in class order (default: the "
             "original's data/concept_sets/<dataset>_labels_clean.txt where it is placed, else the folder names)")
    add(c, "clip_model", default=None,
        help=f"siglip / clip mode: open_clip model name or local-dir:FOLDER (default: siglip {EXPLAINER} to "
             f"explain, {SIMULATOR} to simulate, as the original; clip {DEFAULT_MODEL})")
    add(c, "clip_weights", default=None,
        help="siglip / clip mode: pretrained tag in the local cache (default: the model's, e.g. webli), a "
             "checkpoint file, or 'random' (testing only)")
    add(c, "sigmoid_a", type=float, default=None, help="siglip mode: a of sigmoid(a (cos + b)) (default: the model's)")
    add(c, "sigmoid_b", type=float, default=None, help="siglip mode: b (default: the model's)")
    runtime_args(p, batch=64, workers=4)
    add(p, "activation_dir", default=str(layout.activations_dir()),
        help="cache of activations and concept matrices; 'none' to disable")
    add(p, "seed", type=int, default=0, help="seed of the train/val/test split")
    add(p, "split_dir", default=None,
        help="the original's split files (train_ids.pt, val_ids.pt, test_ids.pt, as its data/data_splits/<dataset>/) "
             "instead of the seeded 70/10/20 split; they index the whole data set")


def explanation_args(p: argparse.ArgumentParser, several: bool) -> None:
    """The explanation files of simulate_*.py: positional, or the original's --explanation_path /
    --explanation_method."""
    from ..pipeline.linear import EXPLANATION_METHODS
    p.add_argument("explanations", nargs="*" if several else "?",
                   help="explanation files (default: --explanation_path, else --explanation_method's file)")
    add(p, "explanation_path", default=None, help="an explanation file (the original's flag)")
    add(p, "explanation_method", choices=EXPLANATION_METHODS, default="le_label",
        help="without a file: le_label / le_siglip read results/le_<mode>_<target>_<layer>.csv, else the "
             "release's results/ours/LE_label/<target>_<layer>.csv (and results/baselines/NetDissect, MILAN, "
             "CLIP_Dissect for the others)")


def explanation_paths(args: argparse.Namespace) -> tuple[list[str], list[str] | None]:
    """The files of ``explanation_args`` and their names (the method's, for --explanation_method)."""
    from ..pipeline.linear import method_file
    given = args.explanations if isinstance(args.explanations, list) else \
        ([args.explanations] if args.explanations else [])
    if given:
        return given, None
    if args.explanation_path:
        return [args.explanation_path], None
    return [str(method_file(args.explanation_method, args.model, args.block))], [args.explanation_method]


def concept_mode(args: argparse.Namespace) -> str:
    """The concept source of ``neuron_data_args``: ``--mode``, or ``--simulator`` where ``--mode`` is taken."""
    return getattr(args, "simulator", None) or args.mode


def neuron_data(args: argparse.Namespace, role: str = "explainer", concepts_list: list[str] | None = None):
    """The ``NeuronDataConfig`` of the ``neuron_data_args`` flags; ``role`` (explainer or simulator)
    picks the original's default SigLIP model."""
    from ..core.clip import DEFAULT_MODEL, DEFAULT_WEIGHTS
    from ..neurons.activations import (CHECKPOINTS, EXPLAINER, SIMULATOR, ConceptConfig, NeuronDataConfig,
                                       original_concept_files)
    mode = concept_mode(args)
    model = args.clip_model or (DEFAULT_MODEL if mode != "siglip" else EXPLAINER if role == "explainer"
                                else SIMULATOR)
    weights = args.clip_weights or CHECKPOINTS.get(model, DEFAULT_WEIGHTS)
    found = original_concept_files(args.data, mode)
    concept_set = args.concept_set or found.get("concept_set")
    superclasses = None if args.superclasses == "none" else args.superclasses or found.get("superclasses")
    for what, path in found.items():
        if getattr(args, what) is None:
            print(f"{what}: the original's {path}")
    given = (args.sigmoid_a, args.sigmoid_b)
    if (given[0] is None) != (given[1] is None):
        raise UserError("--sigmoid_a and --sigmoid_b go together")
    concepts = ConceptConfig(mode, superclasses, concept_set, model, weights,
                             None if given[0] is None else given, tuple(concepts_list) if concepts_list else None)
    return NeuronDataConfig(args.block, args.pool_mode, concepts,
                            None if args.activation_dir == "none" else args.activation_dir, args.split_dir)


def explain_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The flags explain_neurons.py and explain_neurons_no_gs.py share (data, neuron range, the
    candidate model, the fits, the result folder); returns the fit group for the script's own."""
    from ..pipeline.linear import FITS
    neuron_data_args(p)
    f = p.add_argument_group("fit (the defaults are the original's protocol)")
    add(f, "start_neuron", type=int, default=0, help="first neuron to explain")
    add(f, "end_neuron", type=int, default=None, help="one past the last neuron (default: all)")
    add(f, "glm_lambda", type=float, default=0.05, help="the candidate elastic net's penalty")
    add(f, "glm_neuron_batch", type=positive, default=128, help="neurons per elastic-net solve")
    add(f, "neuron_batch", type=positive, default=256,
        help="neurons searched together, with one generator for their Adam fits (under torchrun each rank "
             "takes every N-th batch)")
    add(f, "fit", choices=FITS, default="adam",
        help="adam (100 full-batch Adam steps, lr 0.3, the original's) or exact least squares")
    output_args(p, "results", "folder of le_<mode>_<target>_<layer>.csv")
    return f


def explain_and_report(args: argparse.Namespace, fit) -> int:
    """explain_neurons.py's and explain_neurons_no_gs.py's run: explain, then print a summary and
    the best five explanations. Returns the exit status."""
    from ..io.schema import BIAS, EXPLANATION_LEAD, concept_column, weight_column
    from ..pipeline.linear import explain
    from ..pipeline.session import setup
    data = neuron_data(args)
    session = setup(args.model, args.weights, args.data, args.images, args.data_root, runtime(args), args.seed)
    outcome = explain(session, data, fit, args.output_dir, args.overwrite)
    if outcome.skipped:
        print(f"{outcome.path} already holds these explanations; nothing to do")
        return 0
    frame = outcome.table
    _, unit, val_corr = EXPLANATION_LEAD
    corr = frame[val_corr]
    named = frame[[concept_column(i) for i in range(fit.max_length)]].map(lambda c: isinstance(c, str))
    print(f"{len(frame)} neurons of {args.block}: validation correlation mean {corr.mean():.3f}, "
          f"median {corr.median():.3f}; {named.sum(axis=1).mean():.1f} concepts per explanation")
    for _, row in frame.sort_values(val_corr, ascending=False).head(5).iterrows():
        terms = " + ".join(f"{row[weight_column(i)]:.2f}·{row[concept_column(i)]}"
                           for i in range(fit.max_length) if isinstance(row[concept_column(i)], str))
        print(f"  unit {row[unit]:>4}: r = {row[val_corr]:.3f}  {terms} {row[BIAS]:+.2f}")
    print(f"-> {outcome.path}")
    return 0
