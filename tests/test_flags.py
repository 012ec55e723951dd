"""One spelling per flag across every script, and every spelling the scripts accepted before
still parses (as an alias) to the same setting."""
import argparse
import importlib

import pytest

from disentangle.cli import SPELLINGS

# Every option each script accepted before the flags were unified (from their parsers then).
BEFORE = {
    "accuracy": "--batch-size --batches --block --cluster --device --k --output --stats_dir --workers",
    "baseline_eval": "--batch-size --channels-last --data --data-root --device --drop-fraction --ig-batch --ig-steps --images --mask-value --mass --methods --metric --model --output_dir --overwrite --precision --seed --target --weights --workers",
    "bench/throughput": "--batch-size --block --blocked-share --channels-last --data --data-root --device --ig-batch --ig-steps --images --memory-images --metric --model --peak-tflops --precision --profile --repeats --role --seed --threads --weights --workdir --workers",
    "cam_explain": "--batch-size --data --data-root --device --images --layer --methods --model --output-dir --output_dir --overwrite --seed --target --weights --workers",
    "centroid_analysis": "--axes --block --k --n_clusters --seed --stats_dir",
    "class_analysis": "--batch-size --channels-last --class_end --class_start --cluster_idx --device --ig-batch --ig-steps --images_per_class --methods --metric --mode --output --overwrite --precision --stats_dir --workers",
    "collect_metrics": "--output --outputs",
    "compare_dissections": "--names --output_dir",
    "compare_explanations": "--binarize --figure_images --inputs --output-dir --output_dir --overwrite --top",
    "control_experiment": "--baseline_dir --batch-size --block --channels-last --cluster_idx --device --ig-batch --images --k --metric --mode --n_random --output_dir --overwrite --repeats --save-attributions --seed --stats_dir --workers",
    "control_visualization": "--baseline_dir --block --cluster_idx --control_dir --filtered_dir --k --mode",
    "decomposition_analysis": "--batch-size --device --ig-batch --ig-steps --img_idx --method --num_images --output_dir --stats_dir --workers",
    "dissect_neurons": "--activation_dir --batch-size --batch_size --broden_root --clip_model --clip_weights --concept_set --d_probe --device --iou_threshold --method --min_units --overwrite --pool --probe_images --quantile --result_dir --seed --similarity --target_layers --target_model --top_images --top_units --weights --workers",
    "explain_neurons": "--activation_dir --alpha --batch-size --batch_size --candidates --clip_model --clip_weights --concept_set --data-root --dataset_name --device --end_neuron --images --max_length --mode --overwrite --pool_mode --result_dir --seed --start_neuron --superclasses --target_layer --target_name --tolerance --weights --workers",
    "filtered_eval": "--baseline_dir --batch-size --channels-last --cluster_idx --device --ig-batch --images --metric --mode --output_dir --overwrite --save-attributions --stats_dir --workers",
    "interpretability_score": "--batch-size --block --clean-level --data --data-root --device --extract --human-score-col --images --levels --min-p-value --model --model-weights --neurons --quiet --recognizable-levels --seed --threshold-percentile --weights --workers",
    "lime_explain": "--batch-size --batch_size --compactness --data --data-root --device --hide_color --images --kernel_size --max_dist --model --n_segments --num_features --num_samples --output-dir --output_dir --overwrite --ratio --seed --segmentation --sigma --target --top_labels --weights --workers",
    "merge_classes": "--allow_gaps --input_files --output",
    "neuron_stats": "--batch-size --block --data --data-root --device --images --k --model --n_clusters --n_init --output_dir --overwrite --seed --weights --workers",
    "run_experiments": "--batch-size --blocks --channels-last --control_ks --data --data-root --device --dry-run --ig-batch --ig-steps --images --ks --methods --metric --model --modes --n_init --outputs --overwrite --precision --repeats --seed --stats_images --weights --workers",
    "run_images_attribution": "--batch-size --block --cluster_idx --device --drop_fraction --ig-batch --ig-steps --k --mask-value --metric --num_images --output_dir --seed --stats_dir --workers",
    "simulate_ablation": "--target_layer --target_name --weights",
}


def parser_of(name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(name.replace("/", "."))
    return module.parser()


@pytest.mark.parametrize("script", sorted(BEFORE))
def test_every_earlier_spelling_still_parses(script):
    known = parser_of(script)._option_string_actions
    missing = [o for o in BEFORE[script].split() if o not in known]
    assert not missing, missing


def test_one_canonical_spelling_per_setting():
    canonical: dict[str, set[str]] = {}
    for script in BEFORE:
        for action in parser_of(script)._actions:
            if action.option_strings and action.help != argparse.SUPPRESS and action.dest != "help":
                canonical.setdefault(action.dest, set()).add(action.option_strings[0])
    several = {dest: spellings for dest, spellings in canonical.items() if len(spellings) > 1}
    assert not several, several
    for dest, (spelling,) in canonical.items():
        assert spelling == SPELLINGS.get(dest, (f"--{dest}",))[0], (dest, spelling)
        assert "-" not in spelling[2:], spelling            # canonical spellings use underscores


def test_the_flags_page_lists_every_alias():
    from tests.conftest import ROOT
    page = (ROOT / "docs" / "flags.md").read_text().split("\n## ")[0]      # the table of spellings
    rows = {line.split("|")[1].split()[0].strip("`"): line for line in page.splitlines() if line.startswith("| `--")}
    for canonical, *aliases in SPELLINGS.values():
        if aliases:
            assert canonical in rows and all(f"`{a}`" in rows[canonical] for a in aliases), canonical
