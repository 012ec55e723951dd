"""The significance stage: every image's filtered value paired with its baseline value, per
method and measure, with paired tests, effect sizes, bootstrap intervals and corrected p-values."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.errors import UserError
from ..io import artifacts, readers
from ..io.schema import MEASURES, measure_column
from ..neurons import significance


@dataclass(frozen=True)
class TestConfig:
    num_images: int | None = None     # the first N paired images in index order; None: all
    bootstrap: int = 10000
    seed: int = 42                    # the original's
    alpha: float = 0.05

    def __post_init__(self):
        if self.bootstrap < 1:
            raise UserError(f"--bootstrap must be at least 1, got {self.bootstrap}")
        if not 0 < self.alpha < 1:
            raise UserError(f"--alpha must lie strictly between 0 and 1, got {self.alpha}")
        if self.num_images is not None and self.num_images < 2:
            raise UserError(f"--num_images must be at least 2 (a paired test needs two pairs), got {self.num_images}")


def load_filtered(folder: Path, baseline: readers.Baseline) -> tuple[dict, pd.DataFrame]:
    """A finished filtered run made against ``baseline``: its manifest and per-image table."""
    manifest = readers.finished(folder, "filtered run")
    if manifest.get("stage") != "filtered_eval":
        raise UserError(f"{folder} holds a {manifest.get('stage')} run, not a filtered run")
    baseline.check_made_against(manifest, folder)
    return manifest, artifacts.read_csv(folder / "per_image.csv", ("index",), "the filtered run's per-image table")


def check_stats_dir(stats_dir: str | Path, folder: Path, manifest: dict) -> dict:
    """The block and k of ``stats_dir``, which must be the neuron statistics the run was made from."""
    used = manifest.get("inputs", {}).get("neuron_stats")
    if used is None or Path(used).resolve() != Path(stats_dir).resolve():
        raise UserError(f"--stats_dir {stats_dir} is not the neuron statistics of the filtered run in {folder} "
                        f"(it was made from {used})")
    cfg = readers.finished(Path(stats_dir), "neuron statistics")["config"]
    return {"folder": str(stats_dir), "block": cfg.get("block"), "k": cfg.get("k")}


def run_folder(folder: str | Path) -> Path:
    """A run's folder, also when given as its ``attributions`` folder (the original's arguments)."""
    folder = Path(folder)
    return folder.parent if folder.name == "attributions" else folder


def paired_tests(baseline_dir: str | Path, filtered_dirs: list[str | Path], out: str | Path,
                 cfg: TestConfig, stats_dir: str | Path | None = None) -> tuple[dict, dict, dict | None]:
    """Test every filtered run against the baseline, corrected across all of them; writes
    ``statistical_results.json`` and ``manifest.json`` to ``out``. Returns ``(original, tests,
    neuron_stats)``: for a single filtered run, the original's numbers per method
    (``significance.original_summary`` of faithfulness, the file's leading keys; else empty), every
    test, and the ``stats_dir`` check's block and k (or None). Everything is read and checked first."""
    baseline = readers.load_baseline(run_folder(baseline_dir))
    folders = [run_folder(f) for f in filtered_dirs]
    original = {}
    neuron_stats = None
    pairs, about = {}, {}
    for folder in folders:
        manifest, frame = load_filtered(folder, baseline)
        if stats_dir:
            neuron_stats = check_stats_dir(stats_dir, folder, manifest)
        c = manifest["config"]
        columns = [measure_column(m, measure) for m in c["methods"] for measure in MEASURES]
        base, filt = significance.pair_images(baseline.per_image, frame, columns, cfg.num_images)
        for m in c["methods"]:
            for measure in MEASURES:
                key = f"{c['block']}/k{c['k']}/cluster{c['cluster']}/{c['mode']}/{m}/{measure}"
                if key in pairs:
                    raise UserError(f"{about[key]['filtered_dir']} and {folder} are runs of the same cluster "
                                    f"({key.rsplit('/', 2)[0]}); test one of them")
                col = measure_column(m, measure)
                pairs[key] = (filt[col].to_numpy(), base[col].to_numpy())
                if len(folders) == 1 and measure == "faithfulness":
                    original[m] = significance.original_summary(*pairs[key], cfg.bootstrap, cfg.seed)
                about[key] = {"block": c["block"], "k": c["k"], "cluster": c["cluster"], "mode": c["mode"],
                              "method": m, "measure": measure, "metric": c["metric"], "filtered_dir": str(folder)}
    results = significance.compare_all(pairs, cfg.bootstrap, cfg.seed, cfg.alpha)
    tests = {}
    for key, r in results.items():
        flags = {f"significant_{t}_{c}": r[f"p_{t}_{c}"] <= cfg.alpha
                 for t in ("ttest", "wilcoxon") for c in ("holm", "bh")}
        r = {"n": r.pop("n"), "mean_baseline": r.pop("mean_b"), "mean_filtered": r.pop("mean_a"), **r}
        tests[key] = {**about[key], **r, **flags}

    config = {**{k: baseline.manifest["config"][k] for k in readers.MODEL_KEYS},
              "filtered": [f.name for f in folders], "num_images": cfg.num_images, "bootstrap": cfg.bootstrap,
              "seed": cfg.seed, "alpha": cfg.alpha}
    inputs = {"baseline": str(baseline.folder), "filtered": [str(f) for f in folders]}
    if neuron_stats:
        inputs["neuron_stats"] = neuron_stats["folder"]
    out = Path(out)
    manifest = artifacts.make_manifest("statistic", config, {}, inputs)
    artifacts.open_derived(out, manifest)
    artifacts.write_json(out / "statistical_results.json", {
        **original,
        "settings": {"baseline_dir": str(baseline.folder), "filtered_dirs": [str(f) for f in folders],
                     "num_images": cfg.num_images, "bootstrap": cfg.bootstrap, "seed": cfg.seed,
                     "alpha": cfg.alpha, "ci_level": 1 - cfg.alpha, "neuron_stats": neuron_stats,
                     "difference": "filtered - baseline, paired by image index", "n_tests": len(tests),
                     "leading_entries": "per method, the original statistic.py's numbers of faithfulness "
                                        "(one filtered run only)"},
        "corrections": {
            "family": f"all {len(tests)} tests of this file; the t-test and the Wilcoxon p-values are adjusted "
                      f"separately",
            "holm": significance.HOLM_NOTE, "benjamini_hochberg": significance.BH_NOTE,
            "ties": "when every difference is zero both tests give statistic 0 and p = 1; when every difference "
                    "is the same non-zero value t is infinite (written as null) with p = 0; d_z is 0 in both "
                    "cases. Wilcoxon drops zero differences (scipy's default).",
            "bootstrap": f"percentile interval of the mean difference from {cfg.bootstrap} resamples of the "
                         f"images, seed {cfg.seed} for every test"},
        "tests": tests})
    manifest["complete"] = True
    artifacts.write_json(out / artifacts.MANIFEST, manifest)
    return original, tests, neuron_stats
