"""Behaviour-preservation harness: run the README's commands in two checkouts and compare numbers.

Two subcommands:

``run CHECKOUT``
    Runs every command line of ``CMDS`` (the README's ``bash`` blocks that work on a CPU-only
    machine without external data, in an order where each command's inputs exist) one after the
    other with ``cwd=CHECKOUT``, ``HF_HUB_OFFLINE=1`` and ``PYTHONHASHSEED=0``. A leading
    ``python `` is replaced by ``--python`` (default: this interpreter). Each command's stdout and
    stderr go to ``CHECKOUT/preservation_logs/NN.log``; one line per command is printed (index,
    exit code, wall seconds, command). A failing command is reported and the run goes on; the exit
    status is 1 if any command failed. The artifacts land where the commands put them by default:
    ``CHECKOUT/outputs/`` and a few files in ``CHECKOUT`` itself (``TOP_LEVEL_FILES``).

``compare A B``
    Compares the artifacts of two checkouts after ``run``: every ``.csv``, ``.json`` and ``.npz``
    under ``outputs/`` (except manifests, ``SKIP_NAMES``/``SKIP_SUFFIXES``, and the ``activations``
    cache, ``SKIP_DIRS``) and the ``TOP_LEVEL_FILES``. CSVs by column name and row, JSON by key
    path, NPZ by array name. Two numbers agree when ``|a - b| <= --tol`` (default 1e-6); NaN
    equals NaN and JSON ``null`` equals NaN (the project writes NaN as ``null``). Strings, bools
    and ``null`` must be equal. JSON keys in ``IGNORE_KEYS`` (timings, which differ between two
    runs of the same code) are not compared. The absolute path of each checkout is replaced by
    ``<CHECKOUT>`` in strings before comparing, so the two clones' locations do not count as a
    difference. Exit status 0 when everything agrees, 1 otherwise.

Typical use::

    git clone -q REPO /tmp/pres/before && git -C /tmp/pres/before checkout OLD
    git clone -q REPO /tmp/pres/after  && git -C /tmp/pres/after checkout NEW
    .venv/bin/python bench/preservation.py run /tmp/pres/before --python "$PWD/.venv/bin/python"
    .venv/bin/python bench/preservation.py run /tmp/pres/after  --python "$PWD/.venv/bin/python"
    .venv/bin/python bench/preservation.py compare /tmp/pres/before /tmp/pres/after --json report.json

``run`` and the CSV/JSON comparison use only the standard library; NPZ files need NumPy.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

# The README's command lines (```bash blocks), in an order where every command's inputs exist.
# Multi-line README commands are joined onto one line. Left out or adapted, and why:
#   - the two install lines (python3 -m venv ... pip install ...; the second runs pytest);
#   - torchrun class_analysis (needs --device cuda and 8 GPUs); densenet121/imagenet lines (need
#     ImageNet and CUDA); resnet18 dissections on Broden and with Places365 weights, and
#     compare_dissections.py of those two runs (need Broden / the Places365 checkpoint);
#     CLIP-Dissect (needs ImageNet and CLIP 'openai' weights); bench/throughput.py (a benchmark);
#   - class_analysis / merge_classes: the README's ranges 0..200 and 200..400 are ImageNet classes;
#     the concept world has 12, so 0..6 and 6..12 with the same flags, then merged into 0_12;
#   - added from the README's prose (it documents them outside ```bash blocks): statistic.py,
#     visualize_attribution.py and run_images_attribution.py with the flags given there;
#   - the default grid (run_experiments.py) runs right after the baseline: it reuses the finished
#     baseline, and most later stages read its neuron statistics and filtered runs. The stand-alone
#     stage examples after it (neuron_stats.py, filtered_eval.py, ...) find those runs finished
#     with the same settings and do nothing or add what the grid does not make (zero mode, 10
#     control repeats, 10-batch accuracy).
CMDS: list[str] = [
    "python baseline_eval.py --images 100 --metric patch --methods ig,saliency --ig-steps 50",
    "python run_experiments.py",
    "python run_experiments.py --blocks block_2 --ks 3 --modes detach,zero",
    "python neuron_stats.py --block block_1 --n_clusters 3 --images 1000",
    "python centroid_analysis.py --block block_1 --k 3",
    "python filtered_eval.py --cluster_idx 0 --stats_dir outputs/neuron_stats/block_1_k3"
    " --output_dir outputs/filtered_block_1_cluster_0_k3 --mode detach",
    "python accuracy.py --block block_1 --cluster 0 --k 3 --batches 10",
    "python control_experiment.py --block block_1 --k 3 --cluster_idx 0 --repeats 10",
    "python control_visualization.py --block block_1 --k 3 --cluster_idx 0",
    "python collect_metrics.py",
    "python statistic.py --baseline_dir outputs/baseline --filtered_dir outputs/filtered_block_1_cluster_0_k3",
    "python class_analysis.py --cluster_idx 0 --class_start 0 --class_end 6 --images_per_class 50"
    " --stats_dir outputs/neuron_stats/block_1_k3",
    "python class_analysis.py --cluster_idx 0 --class_start 6 --class_end 12 --images_per_class 50"
    " --stats_dir outputs/neuron_stats/block_1_k3",
    "python merge_classes.py --input_files outputs/class_analysis_metrics_0_6.csv"
    " outputs/class_analysis_metrics_6_12.csv --output outputs/class_analysis_metrics_0_12.csv",
    "python decomposition_analysis.py --img_idx 1050 --num_images 1"
    " --stats_dir outputs/neuron_stats/block_1_k3 --method ig",
    "python decomposition_analysis.py --num_images 100 --stats_dir outputs/neuron_stats/block_1_k3"
    " --method saliency",
    "python visualize_attribution.py --img_idx 1500 --cluster_idx 0 --block block_1 --k 3"
    " --drop_fraction 0.1 --metric patch",
    "python run_images_attribution.py",
    "python dissect_neurons.py",
    "python cam_explain.py",
    "python lime_explain.py",
    "python compare_explanations.py",
    "python cam_explain.py --model efficientnet_lite0 --images samples --batch-size 64"
    " --output_dir outputs/cams_photos",
    "python lime_explain.py --model efficientnet_lite0 --images samples --batch-size 128"
    " --output_dir outputs/lime_photos",
    "python compare_explanations.py --inputs outputs/cams_photos outputs/lime_photos"
    " --output_dir outputs/compare_photos",
    "python interpretability_score.py --extract data.csv --block block_4 --images 120",
    """echo '{"3": "red", "17": "circle"}' > neuron_map.json""",
    "python interpretability_score.py data.csv neuron_map.json results.csv --clean-level 5"
    ' --threshold-percentile 0.95 --recognizable-levels "3 4 5" --min-p-value 0.05'
    ' --human-score-col soft_correct --weights "0.3 0.3 0.2 0.2"',
    "python explain_neurons.py --target_name tiny_densenet --target_layer block_4 --dataset_name concepts"
    " --mode label --pool_mode avg --max_length 10 --tolerance 0.02",
    "python simulate_correlation.py outputs/linear_explanations/tiny_densenet_block_4_label/explanations.csv"
    ' outputs/dissect/tiny_densenet_netdissect_concepts/descriptions.csv --names "LE(label),mask-IoU"',
    "python simulate_ablation.py outputs/linear_explanations/tiny_densenet_block_4_label/explanations.csv",
]

#: Files the commands write in the checkout itself (besides outputs/), compared as well.
TOP_LEVEL_FILES: tuple[str, ...] = ("data.csv", "results.csv", "neuron_map.json")
#: File names never compared: run manifests (command lines, versions, paths, times).
SKIP_NAMES: frozenset[str] = frozenset({"manifest.json"})
SKIP_SUFFIXES: tuple[str, ...] = (".manifest.json",)
#: Folder names never entered: the dissection/explanation activation cache.
SKIP_DIRS: frozenset[str] = frozenset({"activations"})
#: JSON keys not compared (at any depth): values that differ between two runs of the same code.
#: "seconds" (class_analysis CSV manifests: run time) and "created" (the manifest timestamp
#: embedded in accuracy/acc_*.json and beside the class_analysis CSVs) were seen to differ in a
#: self-comparison of commit 903ea85; "seconds_per_image" is the timing key of the CAM/LIME
#: manifests (skipped anyway), listed in case a stage reports it elsewhere. Extend only with
#: values that are not results.
IGNORE_KEYS: frozenset[str] = frozenset({"seconds", "seconds_per_image", "created"})
#: Extensions compared.
EXTENSIONS: tuple[str, ...] = (".csv", ".json", ".npz")
LOG_DIR = "preservation_logs"
CHECKOUT_TOKEN = "<CHECKOUT>"


# --------------------------------------------------------------------------------------------- run

def command_line(cmd: str, python: str) -> str:
    """``cmd`` with a leading ``python `` replaced by the (shell-quoted) interpreter ``python``."""
    return shlex.quote(python) + cmd[len("python"):] if cmd.startswith("python ") else cmd


def run_checkout(checkout: Path, python: str, commands: Sequence[str] = CMDS,
                 reuse: bool = False) -> int:
    """Run ``commands`` in ``checkout``; print one line per command; 0 if all exited 0, else 1."""
    checkout = checkout.resolve()
    if not checkout.is_dir():
        print(f"error: {checkout} is not a folder", file=sys.stderr)
        return 2
    outputs = checkout / "outputs"
    stale = [p.name for p in outputs.iterdir() if p.name != "README.md"] if outputs.is_dir() else []
    if stale and not reuse:
        print(f"error: {outputs} already holds {len(stale)} entries (e.g. {stale[0]}); the commands would "
              "skip finished work. Use a fresh checkout, or pass --reuse.", file=sys.stderr)
        return 2
    logs = checkout / LOG_DIR
    logs.mkdir(exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONHASHSEED="0")
    failed = 0
    start_all = time.perf_counter()
    for i, cmd in enumerate(commands, 1):
        line = command_line(cmd, python)
        start = time.perf_counter()
        with open(logs / f"{i:02d}.log", "wb") as log:
            log.write(f"$ {line}\n".encode())
            log.flush()
            rc = subprocess.run(line, shell=True, cwd=checkout, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        seconds = time.perf_counter() - start
        failed += rc != 0
        print(f"{i:02d}  rc={rc:<3d} {seconds:8.1f}s  {cmd}", flush=True)
    total = time.perf_counter() - start_all
    print(f"{len(commands)} commands, {failed} failed, {total:.1f}s in all; logs in {logs}")
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------- compare

@dataclass
class Diff:
    """One disagreement: where (key path, column, array), both values, and |a - b| when numeric."""
    where: str
    a: Any
    b: Any
    diff: float | None = None


@dataclass
class FileReport:
    """The comparison of one file; ``status`` is same, differ, only_a, only_b or error."""
    path: str
    status: str = "same"
    diffs: list[Diff] = field(default_factory=list)
    max_abs_diff: float = 0.0   # over every compared number pair, agreeing or not
    numbers: int = 0            # number pairs compared
    error: str | None = None


class Comparer:
    """Compares values with an absolute tolerance, collecting ``Diff`` rows into a ``FileReport``."""

    def __init__(self, tol: float, root_a: Path, root_b: Path):
        self.tol = tol
        self.roots = (str(root_a), str(root_b))

    def _norm(self, s: str, side: int) -> str:
        return s.replace(self.roots[side], CHECKOUT_TOKEN)

    def numbers(self, rep: FileReport, where: str, a: float, b: float) -> None:
        """Record ``|a - b|``; a Diff when above the tolerance (NaN equals NaN, inf equals inf)."""
        rep.numbers += 1
        if a == b or (math.isnan(a) and math.isnan(b)):
            return
        d = abs(a - b)
        if math.isnan(d):  # NaN against a number, or inf against -inf / a finite value
            d = math.inf
        rep.max_abs_diff = max(rep.max_abs_diff, d)
        if d > self.tol:
            rep.diffs.append(Diff(where, a, b, d))

    # JSON ----------------------------------------------------------------------------------------
    def json(self, rep: FileReport, where: str, a: Any, b: Any) -> None:
        """Recursive comparison by key path (``a.b[3].c``)."""
        na, nb = _json_number(a), _json_number(b)
        if na is not None and nb is not None:
            self.numbers(rep, where or "$", na, nb)
        elif isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                sub = f"{where}.{k}" if where else str(k)
                if k in IGNORE_KEYS:
                    continue
                if k not in b:
                    rep.diffs.append(Diff(sub, a[k], "<missing>"))
                elif k not in a:
                    rep.diffs.append(Diff(sub, "<missing>", b[k]))
                else:
                    self.json(rep, sub, a[k], b[k])
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                rep.diffs.append(Diff(f"{where}.<length>", len(a), len(b)))
            for i, (x, y) in enumerate(zip(a, b)):
                self.json(rep, f"{where}[{i}]", x, y)
        else:
            sa = self._norm(a, 0) if isinstance(a, str) else a
            sb = self._norm(b, 1) if isinstance(b, str) else b
            if type(sa) is not type(sb) or sa != sb:
                rep.diffs.append(Diff(where or "$", a, b))

    # CSV -----------------------------------------------------------------------------------------
    def csv(self, rep: FileReport, a: Path, b: Path) -> None:
        """Columns by name, rows by position: numeric columns by their largest |a - b|, others by
        equality; columns on one side only and row-count differences are reported."""
        ha, ra = _read_csv(a)
        hb, rb = _read_csv(b)
        for c in ha:
            if c not in hb:
                rep.diffs.append(Diff(f"column {c}", "<present>", "<missing>"))
        for c in hb:
            if c not in ha:
                rep.diffs.append(Diff(f"column {c}", "<missing>", "<present>"))
        if len(ra) != len(rb):
            rep.diffs.append(Diff("<rows>", len(ra), len(rb)))
        n = min(len(ra), len(rb))
        for c in (c for c in ha if c in hb):
            ia, ib = ha.index(c), hb.index(c)
            col_a = [r[ia] if ia < len(r) else "" for r in ra[:n]]
            col_b = [r[ib] if ib < len(r) else "" for r in rb[:n]]
            fa, fb = _floats(col_a), _floats(col_b)
            if fa is not None and fb is not None:
                worst: Diff | None = None
                for row, (x, y) in enumerate(zip(fa, fb)):
                    before = len(rep.diffs)
                    self.numbers(rep, f"column {c} row {row}", x, y)
                    if len(rep.diffs) > before:  # keep only the column's largest difference
                        d = rep.diffs.pop()
                        if worst is None or d.diff > worst.diff:
                            worst = d
                if worst is not None:
                    worst.where = f"column {c} (largest at row {worst.where.rsplit(' ', 1)[1]})"
                    rep.diffs.append(worst)
            else:
                bad = [row for row, (x, y) in enumerate(zip(col_a, col_b))
                       if self._norm(x, 0) != self._norm(y, 1)]
                if bad:
                    r = bad[0]
                    rep.diffs.append(Diff(f"column {c} ({len(bad)} of {n} rows differ, first row {r})",
                                          col_a[r], col_b[r]))

    # NPZ -----------------------------------------------------------------------------------------
    def npz(self, rep: FileReport, a: Path, b: Path) -> None:
        """Per array: shape equality and the largest |a - b| (numbers), or equality (others)."""
        import numpy as np

        with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
            ka, kb = set(za.files), set(zb.files)
            for k in sorted(ka - kb):
                rep.diffs.append(Diff(f"array {k}", "<present>", "<missing>"))
            for k in sorted(kb - ka):
                rep.diffs.append(Diff(f"array {k}", "<missing>", "<present>"))
            for k in sorted(ka & kb):
                x, y = za[k], zb[k]
                if x.shape != y.shape:
                    rep.diffs.append(Diff(f"array {k} shape", list(x.shape), list(y.shape)))
                    continue
                numeric = all(np.issubdtype(v.dtype, np.number) or v.dtype == np.bool_ for v in (x, y))
                if not numeric:
                    if not np.array_equal(x, y):
                        rep.diffs.append(Diff(f"array {k}", f"{x.dtype} values", f"{y.dtype} values"))
                    continue
                rep.numbers += x.size
                if x.size == 0:
                    continue
                xf, yf = x.astype(np.float64), y.astype(np.float64)
                same = (xf == yf) | (np.isnan(xf) & np.isnan(yf))
                with np.errstate(invalid="ignore"):
                    d = np.where(same, 0.0, np.abs(xf - yf))
                d[np.isnan(d)] = np.inf
                j = int(np.argmax(d))
                dmax = float(d.flat[j])
                rep.max_abs_diff = max(rep.max_abs_diff, dmax)
                if dmax > self.tol:
                    idx = np.unravel_index(j, x.shape)
                    rep.diffs.append(Diff(f"array {k} (largest at {list(map(int, idx))}, "
                                          f"{int((d > self.tol).sum())} of {x.size} differ)",
                                          float(xf.flat[j]), float(yf.flat[j]), dmax))


def _json_number(v: Any) -> float | None:
    """A JSON number as float (bools are not numbers); ``None`` (JSON null) counts as NaN."""
    if v is None:
        return math.nan
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return (rows[0], rows[1:]) if rows else ([], [])


def _floats(cells: Iterable[str]) -> list[float] | None:
    """The cells as floats (empty = NaN), or None when any non-empty cell is not a number."""
    out = []
    for c in cells:
        s = c.strip()
        if not s:
            out.append(math.nan)
            continue
        try:
            out.append(float(s))
        except ValueError:
            return None
    return out


def artifact_files(checkout: Path) -> set[str]:
    """Paths (relative to ``checkout``) of the files ``compare`` looks at."""
    found: set[str] = {f for f in TOP_LEVEL_FILES if (checkout / f).is_file()}
    outputs = checkout / "outputs"
    for dirpath, dirnames, filenames in os.walk(outputs):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in filenames:
            if (name.endswith(EXTENSIONS) and name not in SKIP_NAMES
                    and not name.endswith(SKIP_SUFFIXES)):
                found.add(str((Path(dirpath) / name).relative_to(checkout)))
    return found


def compare_checkouts(a: Path, b: Path, tol: float) -> list[FileReport]:
    """One ``FileReport`` per artifact file of either checkout, sorted by path."""
    a, b = a.resolve(), b.resolve()
    fa, fb = artifact_files(a), artifact_files(b)
    cmp = Comparer(tol, a, b)
    reports = []
    for rel in sorted(fa | fb):
        rep = FileReport(rel)
        reports.append(rep)
        if rel not in fb:
            rep.status = "only_a"
            continue
        if rel not in fa:
            rep.status = "only_b"
            continue
        try:
            if rel.endswith(".csv"):
                cmp.csv(rep, a / rel, b / rel)
            elif rel.endswith(".json"):
                cmp.json(rep, "", json.loads((a / rel).read_text()), json.loads((b / rel).read_text()))
            else:
                cmp.npz(rep, a / rel, b / rel)
        except Exception as e:  # an unreadable file is a finding, not a crash
            rep.status, rep.error = "error", f"{type(e).__name__}: {e}"
            continue
        if rep.diffs:
            rep.status = "differ"
    return reports


def _short(v: Any, width: int = 60) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= width else s[:width - 3] + "..."


def print_report(reports: Sequence[FileReport], max_diffs: int) -> None:
    """Human-readable report: one block per file, then a summary line."""
    for rep in reports:
        if rep.status == "same":
            print(f"same    {rep.path}  ({rep.numbers} numbers, max |diff| {rep.max_abs_diff:.3g})")
        elif rep.status in ("only_a", "only_b"):
            print(f"{rep.status}  {rep.path}")
        elif rep.status == "error":
            print(f"error   {rep.path}: {rep.error}")
        else:
            print(f"DIFFER  {rep.path}  ({len(rep.diffs)} differences)")
            for d in rep.diffs[:max_diffs]:
                diff = f"  |diff| {d.diff:.3g}" if d.diff is not None else ""
                print(f"    {d.where}: A={_short(d.a)}  B={_short(d.b)}{diff}")
            if len(rep.diffs) > max_diffs:
                print(f"    ... and {len(rep.diffs) - max_diffs} more")
    counts = {s: sum(r.status == s for r in reports) for s in ("same", "differ", "only_a", "only_b", "error")}
    print(f"summary: {len(reports)} files: {counts['same']} same, {counts['differ']} differ, "
          f"{counts['only_a']} only in A, {counts['only_b']} only in B, {counts['error']} unreadable")


def write_json_report(path: Path, a: Path, b: Path, tol: float, reports: Sequence[FileReport]) -> None:
    def clean(v: Any) -> Any:  # JSON cannot hold NaN/inf: write them as strings
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        return v

    doc = {
        "a": str(a.resolve()), "b": str(b.resolve()), "tol": tol, "ignore_keys": sorted(IGNORE_KEYS),
        "agree": all(r.status == "same" for r in reports),
        "files": [{"path": r.path, "status": r.status, "numbers": r.numbers, "max_abs_diff": r.max_abs_diff,
                   "error": r.error,
                   "diffs": [{"where": d.where, "a": d.a, "b": d.b, "diff": d.diff} for d in r.diffs]}
                  for r in reports],
    }
    path.write_text(json.dumps(clean(doc), indent=1) + "\n")


# ------------------------------------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run CMDS in a checkout", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Run the fixed command list CMDS in CHECKOUT, logging to "
                                   f"CHECKOUT/{LOG_DIR}/NN.log.")
    r.add_argument("checkout", type=Path, metavar="CHECKOUT", help="repository checkout to run the commands in")
    r.add_argument("--python", default=sys.executable,
                   help="interpreter replacing each command's leading 'python'")
    r.add_argument("--reuse", action="store_true",
                   help="run even if CHECKOUT/outputs already holds artifacts (finished stages are then "
                        "skipped by the commands themselves)")
    r.add_argument("--list", action="store_true", help="print the commands and stop")
    c = sub.add_parser("compare", help="compare the artifacts of two checkouts",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Compare every CSV, JSON and NPZ artifact of checkouts A and B "
                                   "(both after 'run'). Exit 0 if everything agrees, else 1.")
    c.add_argument("a", type=Path, metavar="A", help="first checkout (the reference)")
    c.add_argument("b", type=Path, metavar="B", help="second checkout")
    c.add_argument("--tol", type=float, default=1e-6, help="largest absolute difference of two agreeing numbers")
    c.add_argument("--json", type=Path, metavar="REPORT", default=None, help="also write the report as JSON here")
    c.add_argument("--max-diffs", type=int, default=20, help="differences printed per file (all go to --json)")
    args = p.parse_args(argv)

    if args.cmd == "run":
        if args.list:
            for i, cmd in enumerate(CMDS, 1):
                print(f"{i:02d}  {command_line(cmd, args.python)}")
            return 0
        return run_checkout(args.checkout, args.python, reuse=args.reuse)
    for side in (args.a, args.b):
        if not (side / "outputs").is_dir():
            print(f"error: {side}/outputs not found (run 'run' first)", file=sys.stderr)
            return 2
    reports = compare_checkouts(args.a, args.b, args.tol)
    print_report(reports, args.max_diffs)
    if args.json:
        write_json_report(args.json, args.a, args.b, args.tol, reports)
    return 0 if all(r.status == "same" for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
