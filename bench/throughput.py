"""Images per second of the attribution engine against the straightforward implementation.

Both sides do the same work on the same model and images: Integrated Gradients (--ig_steps,
Gauss-Legendre) and Saliency for the baseline and with one cluster's channels of --block detached,
each map's sparsity and faithfulness (--metric), and the predictions. The reference
(bench/reference.py) goes one image at a time: captum, metrics in NumPy, one masked forward pass per
image and map. The engine is the library's shared pass, evaluation.run, as the stages
run it: whole batches on --device, artifacts written per batch. Each side runs in a process of its
own, so its peak memory is its own.

  python bench/throughput.py                                   # tiny_densenet, 200 images, CPU or GPU
  python bench/throughput.py --model densenet121 --weights random --device cuda --images 200

Prints both sides' images/s, the largest differences between their results against the tolerance
(fp32) or their rank correlation (bf16/fp16), peak memory, FLOPs per image with a roofline estimate,
and last a line ``ratio: X`` (engine images/s over reference images/s). Exits 1 if fp32 results
disagree beyond the tolerance.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bench import reference  # noqa: E402
from disentangle import cli  # noqa: E402
from disentangle.attribution import evaluation  # noqa: E402
from disentangle.core import runtime  # noqa: E402
from disentangle.core.hooks import channel_mask  # noqa: E402
from disentangle.core.layers import layer_width, resolve_layer  # noqa: E402
from disentangle.pipeline.experiment import random_channels  # noqa: E402
from disentangle.pipeline.session import Session, setup  # noqa: E402

# Peak dense FLOP/s of one NVIDIA H100 SXM (datasheet): fp32 without tensor cores, bf16/fp16 tensor cores.
H100_PEAK_TFLOPS = {"fp32": 67.0, "bf16": 989.4, "fp16": 989.4}
# fp32 agreement: each map's L1 difference within MAP_TOL of its L1 mass (IG's delta too: it is the map's
# sum less f(x) - f(0)), the other scalars within SCALAR_TOL. Not a pointwise bound: where a ReLU input
# sits at 0 within rounding, the two sides' (equally valid) float orders can switch the ReLU and so the
# gradient of a few pixels (seen once in 200 Saliency maps: 134 of 9408 values off by 1.4e-3 of the
# map's largest, L1 1.5e-4); the pointwise maximum is printed too. Max-pools do the same on flat
# images: equal values within rounding make the pool's argmax depend on float order. In an IG map
# such a switch moves one of the 50 steps' gradients, by up to a few 1e-3 of the map's mass (seen:
# 1.1e-3 and 3.4e-3, every other step within 1e-7 of float64). Images outside the tolerance are
# therefore recomputed in float64, where such near-ties vanish: by the reference, and the engine
# agrees if it is within tolerance of that answer; failing that, by the engine too, and the two
# agree if their exact answers do (EXACT_*_TOL): then only rounding separated them.
MAP_TOL, SCALAR_TOL = 1e-3, 1e-4
# The two sides' float64 answers: maps (as above) and scalars, which the engine stores in float32.
EXACT_MAP_TOL, EXACT_SCALAR_TOL = 1e-9, 1e-6
SCALARS = ("confidence", "ig_delta", "ig_sparsity", "ig_faithfulness", "saliency_sparsity", "saliency_faithfulness")
ROLES = ("reference", "engine")
IG_ROWS = {"cuda": 256, "cpu": 128}      # default --ig_batch per device type


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    cli.model_args(p, images=200)
    cli.runtime_args(p, engine=True)
    p.set_defaults(data="concepts", ig_batch=None)
    next(a for a in p._actions if a.dest == "data").help = (
        "'concepts' (the built-in concept world at the model's input size), 'imagenet' (class folders under "
        "--data_root) or any ImageFolder path")
    next(a for a in p._actions if a.dest == "ig_batch").help = (
        f"engine: rows (image x step) in flight per IG forward/backward; default {IG_ROWS['cuda']} on CUDA, "
        f"{IG_ROWS['cpu']} on the CPU, shared there by the passes that run side by side, one per thread (2 cores: 64 "
        f"to 256 rows all took 22-24 ms per image). The reference gives captum one image's steps at a time")
    w = p.add_argument_group("work")
    cli.add(w, "ig_steps", type=cli.positive, default=50, help="Integrated Gradients steps (Gauss-Legendre)")
    cli.add(w, "metric", default="patch", help="pixel or patch")
    cli.add(w, "block", default="block_1", help="named block whose channels the filtered cluster blocks")
    cli.add(w, "blocked_share", type=cli.finite, default=1 / 3,
            help="share of the block's channels in the blocked cluster (a seeded random set, the size of one "
                 "cluster of k=3)")
    cli.add(w, "precision", default="fp32",
            help="engine: fp32, or bf16/fp16 autocast (then compared with the fp32 reference by rank correlation "
                 "instead of the tolerance)")
    m = p.add_argument_group("measurement")
    cli.add(m, "repeats", type=cli.positive, default=1,
            help="runs of each side, alternating; images/s of each side from its fastest run")
    cli.add(m, "threads", type=cli.positive, default=None, help="torch intra-op threads (default: torch's choice)")
    cli.add(m, "memory_images", type=cli.positive, nargs="*", default=[],
            help="also run the engine alone on these numbers of images (e.g. 2000) and print its peak memory for "
                 "each: streaming keeps it flat")
    cli.add(m, "peak_tflops", type=cli.finite, default=None,
            help="peak FLOP/s of the device for the roofline, in TFLOP/s; default on CUDA: H100 SXM "
                 f"({H100_PEAK_TFLOPS['fp32']:g} fp32, {H100_PEAK_TFLOPS['bf16']:g} bf16/fp16 dense); on the CPU no "
                 "roofline unless given")
    cli.add(m, "profile", action="store_true",
            help="also profile one engine batch (torch.profiler; on the CPU with one thread, so one pass): time per "
                 "phase (forward of the IG rows, backward to the block, VJPs below it, metrics) and the costliest "
                 "operators")
    cli.add(m, "role", choices=ROLES, default=None,
            help="internal: run one side in this process and write its result to --workdir")
    cli.add(m, "workdir", default=None, help="internal: the folder a --role run writes to")
    return p


def rss_mib() -> float:
    """Current resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def peak_memory(device: torch.device) -> dict[str, float | None]:
    """This process's peak resident memory so far and, on CUDA, the peak memory allocated by torch."""
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cuda_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of ``fn()``. With one thread the CPU time does not count
    time lost to other processes on a shared machine, so it is the steadier figure there."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu


class _Global:
    """FlopCounterMode's per-module tracking puts autograd hooks on module inputs, which
    ``autograd.grad`` with leaf inputs (captum's and the engine's) rejects; only the total is needed."""
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread for the ``with`` block: FlopCounterMode and the profiler see only their own
    thread's operators, and on the CPU the engine runs one pass per thread (so here one pass, in this
    thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def flops_per_image(work: Callable[[int], object], steps: int) -> float:
    """FLOPs of ``work(ig_steps)`` (one image) at ``steps`` IG steps: counted at 1 and 2 steps, linear in steps."""
    counts = []
    with one_thread():
        for s in (1, 2):
            counter = FlopCounterMode(display=False)
            counter.mod_tracker = _Global()
            with counter:
                work(s)
            counts.append(counter.get_total_flops())
    return counts[0] + (steps - 1) * (counts[1] - counts[0])


def profile_batch(work: Callable[[], object], device: torch.device) -> str:
    """torch.profiler over ``work``: the engine's phases (its ``record_function`` ranges) and top operators.
    On the CPU with one thread (one pass; see ``one_thread``), so its time is that thread's."""
    cuda = device.type == "cuda"
    with nullcontext() if cuda else one_thread():
        seconds = timed(work, device)[0]
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
            work()
    events = prof.key_averages()
    phases = "\n".join(f"  {e.key:32s} {e.cpu_time_total / 1e6:7.3f} s  {e.cpu_time_total / 1e6 / seconds:6.1%}"
                        for e in sorted(events, key=lambda e: e.key) if e.key.startswith("engine: "))
    top = events.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=12)
    where = "" if cuda else " with one thread (one pass)"
    return f"one batch took {seconds:.3f} s{where}; CPU time in its phases (share of the batch):\n{phases}\n{top}"


def session(args) -> Session:
    return setup(args.model, args.weights, args.data, args.images, args.data_root, cli.runtime(args), args.seed)


def blocked_mask(run: Session, block: str, share: float, seed: int) -> torch.Tensor:
    """``(Cb,)`` bool: a seeded random ``share`` of the block's channels."""
    size = run.spec.input_size
    n = layer_width(run.model, block, torch.zeros(1, 3, size, size, device=run.device))
    return channel_mask(random_channels(n, max(1, round(share * n)), seed), n)


def role(args) -> dict:
    """One side's run in this process: time it, save its results, count its FLOPs per image."""
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    is_engine = args.role == "engine"
    args.channels_last = args.channels_last and is_engine      # the reference is the plain NCHW model
    run = session(args)
    ig_rows = args.ig_batch or IG_ROWS["cuda" if run.device.type == "cuda" else "cpu"]
    model, device = run.model, run.device
    cfg = evaluation.EvalConfig(metric=args.metric, ig_steps=args.ig_steps,
                                precision=args.precision if is_engine else "fp32")
    block = resolve_layer(run.spec, args.block)
    blocked = blocked_mask(run, block, args.blocked_share, args.seed)
    rss_start = rss_mib()
    first = next(iter(run.loader(1)))
    if is_engine:
        auto = runtime.AutoBatch(args.batch_size, device)
        stem = run.spec.stem

        def engine(out: Path, loader) -> None:
            cells = [(out / "baseline", torch.zeros_like(blocked)), (out / "filtered", blocked)]
            evaluation.run(model, loader, cfg, block, cells, device, None, ig_rows, desc="engine",
                           attribution_format="npz", auto=auto, stem=stem, plain=args.plain)
            for cell, _ in cells:
                evaluation.finalize(cell, cfg)

        engine(work / "warmup", [next(iter(run.loader(auto.start)))])                 # same shapes as the run
        seconds, cpu = timed(lambda: engine(work, run.loader(auto.start)), device)
        peak = peak_memory(device)                      # before profiling and FLOP counting add their own
        x, labels = first[0].to(device), first[1].to(device)
        if args.profile:
            xb, lb, _ = next(iter(run.loader(auto.start)))
            xb, lb = xb.to(device), lb.to(device)
            batch = lambda: evaluation.evaluate_masks(model, xb, lb, None, cfg, block,  # noqa: E731
                                                      torch.stack([torch.zeros_like(blocked), blocked]), ig_rows,
                                                      stem=stem)
            profiled = profile_batch(batch, device)
        flops = flops_per_image(lambda s: evaluation.evaluate_masks(
            model, x, labels, None, evaluation.EvalConfig(metric=args.metric, ig_steps=s, precision=cfg.precision),
            block, torch.stack([torch.zeros_like(blocked), blocked]), stem=stem), args.ig_steps)
    else:
        reference.run(model, [first], cfg, block, blocked, device)                     # warm-up
        results: dict = {}   # images are loaded inside the timed region, as the engine's loader does
        seconds, cpu = timed(lambda: results.update(reference.run(model, run.loader(1), cfg, block, blocked, device)),
                             device)
        peak = peak_memory(device)
        np.savez(work / "reference.npz",
                 **{f"{cell}/{k}": v for cell, values in results.items() for k, v in values.items()})
        flops = flops_per_image(lambda s: reference.evaluate_image(
            model, first[0].to(device), int(first[1]), evaluation.EvalConfig(metric=args.metric, ig_steps=s),
            block, blocked), args.ig_steps)
    result = {"role": args.role, "images": len(run.images), "seconds": seconds, "cpu_seconds": cpu,
              "flops_per_image": flops,
              "rss_start_mib": rss_start, **peak,
              "threads": torch.get_num_threads(), "device": str(device), "ig_rows": ig_rows,
              "blocked": int(blocked.sum()), "channels": len(blocked),
              "profile": profiled if is_engine and args.profile else None}
    (work / "result.json").write_text(json.dumps(result))
    return result


def launch(argv: list[str], which: str, workdir: Path, images: int | None = None) -> dict:
    """Run one side in a fresh process (so that its peak memory is its own)."""
    extra = ["--images", str(images)] if images else []
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, *extra, "--role", which,
                          "--workdir", str(workdir)], cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"},
                         capture_output=True, text=True)
    if res.returncode:
        sys.stderr.write(res.stderr)
        raise cli.UserError(f"the {which} run failed (exit status {res.returncode}; its output is above)")
    return json.loads((workdir / "result.json").read_text())


def reference_results(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    with np.load(folder / "reference.npz") as z:
        out: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            cell, name = key.split("/")
            out.setdefault(cell, {})[name] = z[key]
    return out


def engine_results(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """The engine's artifacts per cell: per-image scalars and maps, in index order."""
    out = {}
    for cell in reference.CELLS:
        frame = pd.read_csv(folder / cell / "per_image.csv")
        values = {c: frame[c].to_numpy() for c in frame.columns}
        for m in ("ig", "saliency"):
            parts = sorted((folder / cell / "attributions" / m).glob("batch_*.npz"))
            values[f"{m}_attr"] = np.concatenate([np.load(p)["attributions"] for p in parts])
        out[cell] = values
    return out


def spearman_per_image(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """``(N,)`` Spearman correlation of the per-pixel (or per-patch) importance of two ``(N, C, H, W)`` maps."""
    return np.array([spearmanr(reference.importance(x, metric), reference.importance(y, metric))[0]
                     for x, y in zip(a, b)])


def take(values: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in values.items()}


def differences(r: dict, e: dict) -> dict[str, np.ndarray]:
    """Per image: each map's L1 difference relative to ``r``'s L1 mass and its largest pointwise
    difference relative to ``r``'s largest value (``{m}_attr``, ``{m}_point``), and each scalar's
    absolute difference."""
    out = {}
    for m in ("ig", "saliency"):
        a, b = r[f"{m}_attr"], e[f"{m}_attr"]                                   # (n, C, H, W)
        diff, size = np.abs(a - b).reshape(len(a), -1), np.abs(a).reshape(len(a), -1).clip(1e-30)
        out[f"{m}_attr"], out[f"{m}_point"] = diff.sum(1) / size.sum(1), diff.max(1) / size.max(1)
        out[f"{m}_mass"] = size.sum(1)
    return {**out, **{k: np.abs(r[k] - e[k]) for k in SCALARS}}


def outside(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per measure of ``differences``, ``(n,)`` bool: outside the fp32 tolerance. IG's delta is
    ``sum(map) - (f(x) - f(0))``, so its tolerance is the map's: MAP_TOL of the map's L1 mass."""
    return {"ig_attr": d["ig_attr"] > MAP_TOL, "saliency_attr": d["saliency_attr"] > MAP_TOL,
            "ig_delta": d["ig_delta"] > MAP_TOL * d["ig_mass"],
            **{k: d[k] > SCALAR_TOL for k in SCALARS if k != "ig_delta"}}


def largest_map(d: dict[str, np.ndarray]) -> float:
    return float(max(d["ig_attr"].max(), d["saliency_attr"].max()))


def within(d: dict[str, np.ndarray]) -> np.ndarray:
    """``(n,)`` bool: every map and scalar of ``differences`` within the fp32 tolerance."""
    return ~np.any(list(outside(d).values()), axis=0)


def compare(ref: dict, eng: dict, precision: str, metric: str,
            float64: Callable[[str, np.ndarray], dict] | None = None) -> tuple[list[str], bool]:
    """Lines describing how the two sides' results differ, and whether they agree within tolerance.

    fp32 images outside the tolerance go to ``float64(side, positions)``, that side recomputed in
    float64 for them: the engine still agrees if it is within tolerance of the reference's exact
    answer (the difference was the fp32 reference's own rounding), or if both sides' exact answers
    agree to EXACT_MAP_TOL and EXACT_SCALAR_TOL (the difference was rounding on both sides, such as a
    ReLU switched at a near-tie in one IG step)."""
    lines, ok = [], True
    for cell in reference.CELLS:
        r, e = ref[cell], eng[cell]
        assert (r["index"] == e["index"]).all(), "the two sides evaluated different images"
        same = r["target"] == e["target"]
        rows = np.flatnonzero(same)
        d = differences(take(r, rows), take(e, rows))
        parts = [f"{cell:8s} targets equal {same.sum()}/{len(same)}"]
        for m in ("ig", "saliency"):
            parts.append(f"{m} map L1 {d[f'{m}_attr'].max():.1e} (pointwise {d[f'{m}_point'].max():.1e})")
            if precision != "fp32":
                rho = spearman_per_image(r[f"{m}_attr"][rows], e[f"{m}_attr"][rows], metric)
                parts.append(f"{m} Spearman median {np.median(rho):.4f} min {rho.min():.4f}")
        lines.append(", ".join(parts))
        lines.append("           " + ", ".join(f"{k} max {d[k].max():.1e} mean {d[k].mean():.1e}" for k in SCALARS))
        ok &= bool(same.all())
        if precision != "fp32":
            continue
        rest = rows[~within(d)]
        if len(rest) and float64 is not None:
            exact = float64("reference", rest)[cell]
            to_engine, to_reference = differences(exact, take(e, rest)), differences(exact, take(r, rest))
            settled = within(to_engine)
            lines.append(f"           {len(rest)} image(s) outside the tolerance, recomputed by the reference in "
                         f"float64: the engine is within tolerance of it for {settled.sum()}; largest map L1 to "
                         f"float64: engine {largest_map(to_engine):.1e}, fp32 reference {largest_map(to_reference):.1e}")
            if not settled.all():
                both = differences(take(exact, ~settled), float64("engine", rest[~settled])[cell])
                maps = np.max([both[f"{m}_{k}"] for m in ("ig", "saliency") for k in ("attr", "point")], axis=0)
                scalars = np.max([both[k] for k in SCALARS], axis=0)
                same = (maps <= EXACT_MAP_TOL) & (scalars <= EXACT_SCALAR_TOL)
                lines.append(f"           the other {len(same)} recomputed by the engine in float64 too: the two exact "
                             f"answers differ by {maps.max():.1e} in maps and {scalars.max():.1e} in scalars at most "
                             f"(tolerance {EXACT_MAP_TOL:g} and {EXACT_SCALAR_TOL:g}): "
                             + ("their fp32 results differ only by rounding" if same.all() else
                                f"the two computations differ for {(~same).sum()}"))
                settled[~settled] = same
            rest = rest[~settled]
        ok &= not len(rest)
    return lines, ok


def float64_run(args, side: str, positions: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """One side's results computed in float64 (model and images, NCHW), for the images at ``positions``
    of the run's image list, in that order."""
    args = argparse.Namespace(**{**vars(args), "channels_last": False})
    run = session(args)
    model = copy.deepcopy(run.model).double()
    block = resolve_layer(run.spec, args.block)
    blocked = blocked_mask(run, block, args.blocked_share, args.seed)
    cfg = evaluation.EvalConfig(metric=args.metric, ig_steps=args.ig_steps)
    loader = run.loader(len(positions) if side == "engine" else 1, indices=run.images.indices[positions])
    images = ((x.double(), label, index) for x, label, index in loader)
    if side == "reference":
        return reference.run(model, images, cfg, block, blocked, run.device)
    x, labels, index = next(images)
    masks = evaluation.evaluate_masks(model, x.to(run.device), labels.to(run.device), None, cfg, block,
                                      torch.stack([torch.zeros_like(blocked), blocked]), keep_maps=True,
                                      stem=run.spec.stem)
    return {cell: {"index": index.numpy(), **{k: v.cpu().numpy() for k, v in res.items()}}
            for cell, res in zip(reference.CELLS, masks)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu} ({os.cpu_count()} cores){gpu}; torch {torch.__version__}; load average {load}"


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.precision not in evaluation.PRECISIONS:
        raise cli.UserError(f"unknown precision {args.precision!r}; choose from {', '.join(evaluation.PRECISIONS)}")
    if args.role:
        role(args)
        return 0
    device = runtime.resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        runs: dict[str, list[dict]] = {r: [] for r in ROLES}
        print(f"machine: {machine()}", flush=True)
        for k in range(args.repeats):
            for which in ROLES:
                runs[which].append(launch(argv, which, Path(tmp) / f"{which}_{k}"))
                print(f"  {which} run {k + 1}: {runs[which][-1]['seconds']:.1f} s", flush=True)
        best = {r: min(v, key=lambda res: res["seconds"]) for r, v in runs.items()}
        ref, eng = best["reference"], best["engine"]
        n = ref["images"]
        speed = {r: n / best[r]["seconds"] for r in ROLES}
        print(f"work: {args.model}, {n} images, {args.block} with {eng['blocked']} of {eng['channels']} channels "
              f"blocked; IG-{args.ig_steps} + Saliency, {args.metric} sparsity and faithfulness, baseline + filtered; "
              f"{eng['device']}, {eng['threads']} threads")
        print(f"reference (captum one image at a time, NumPy metrics, fp32): {ref['seconds']:.2f} s "
              f"(CPU {ref['cpu_seconds']:.1f} s), "
              f"{speed['reference']:.2f} images/s, peak RSS {ref['peak_rss_mib']:.0f} MiB")
        print(f"engine (shared pass: batch {args.batch_size}, IG rows {eng['ig_rows']}, {args.precision}"
              f"{', channels-last' if args.channels_last else ''}): {eng['seconds']:.2f} s "
              f"(CPU {eng['cpu_seconds']:.1f} s), "
              f"{speed['engine']:.2f} images/s, peak RSS {eng['peak_rss_mib']:.0f} MiB "
              f"({eng['rss_start_mib']:.0f} MiB before the work)"
              + (f", CUDA peak {eng['cuda_peak_mib']:.0f} MiB" if eng["cuda_peak_mib"] is not None else ""))
        lines, ok = compare(reference_results(Path(tmp) / f"reference_{runs['reference'].index(ref)}"),
                            engine_results(Path(tmp) / f"engine_{runs['engine'].index(eng)}"), args.precision,
                            args.metric, lambda side, positions: float64_run(args, side, positions))
        print(f"agreement, {args.precision} engine vs fp32 reference " + (
            f"(tolerance: each map's L1 difference and IG's delta {MAP_TOL:g} of the map's L1 mass, other scalars "
            f"{SCALAR_TOL:g}): "
            f"{'within' if ok else 'NOT within'} tolerance" if args.precision == "fp32" else
            "(no tolerance: rank correlation of the importance and metric differences)"))
        print("\n".join(f"  {line}" for line in lines))
        if eng["profile"]:
            print(f"profile of the engine: {eng['profile']}")
        print(f"FLOPs per image (FlopCounterMode): reference {ref['flops_per_image'] / 1e9:.3f} GFLOP, "
              f"engine {eng['flops_per_image'] / 1e9:.3f} GFLOP; engine achieved "
              f"{eng['flops_per_image'] * n / eng['seconds'] / 1e12:.4f} TFLOP/s")
        peak = args.peak_tflops or (H100_PEAK_TFLOPS[args.precision] if device.type == "cuda" else None)
        if peak:
            floor = eng["flops_per_image"] * n / (peak * 1e12)
            print(f"roofline at {peak:g} TFLOP/s: the engine's FLOPs take at least {floor:.3f} s "
                  f"(at most {n / floor:.0f} images/s); achieved {floor / eng['seconds']:.1%} of peak")
        if args.memory_images:
            mem = [eng] + [launch(argv, "engine", Path(tmp) / f"memory_{k}", k) for k in args.memory_images]
            print("engine peak memory by images: " + ", ".join(
                f"{r['images']}: RSS {r['peak_rss_mib']:.0f} MiB"
                + (f" / CUDA {r['cuda_peak_mib']:.0f} MiB" if r["cuda_peak_mib"] is not None else "") for r in mem))
    # Runs k of the two sides are back to back, so their ratio shares the machine's state at the time.
    per_run = [r["seconds"] / e["seconds"] for r, e in zip(runs["reference"], runs["engine"])]
    print(f"ratio per run (reference run k / engine run k): {', '.join(f'{v:.2f}' for v in per_run)}")
    print(f"ratio by CPU time: {ref['cpu_seconds'] / eng['cpu_seconds']:.2f}")
    print(f"ratio: {speed['engine'] / speed['reference']:.2f}")
    return 0 if ok or args.precision != "fp32" else 1


if __name__ == "__main__":
    raise SystemExit(main())
