"""Images per second of a sharded stage with 1 and N ranks, in the same run, and their ratio.

Runs baseline_eval.py (IG and Saliency of every image, sparsity and faithfulness) once as one
process and once under ``torchrun --nproc_per_node=N`` on the same images, each into a fresh
folder, and times the attribution part from the stage's own manifest (``seconds``: after the model
is loaded; ``--protocol extended``, so without the original protocol's whole-data-set accuracy). On the CPU every rank gets
``threads / N`` threads (``OMP_NUM_THREADS``), so both runs use the same cores; on CUDA each rank
its own GPU. Checks that both runs wrote the same per_image.csv.

  python bench/scaling.py                                   # tiny_densenet, 2 ranks on the CPU
  python bench/scaling.py --model densenet121 --weights random --device cuda --ranks 8 --images 2000

Prints one line per run and last ``ratio: X`` (N ranks' images/s over one process's).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def run(ranks: int, args: argparse.Namespace, out: Path, threads: int) -> float:
    """Images per second of one baseline run with ``ranks`` processes."""
    stage = [str(ROOT / "baseline_eval.py"), "--model", args.model, "--images", str(args.images), "--ig_steps",
             str(args.ig_steps), "--batch_size", str(args.batch_size), "--device", args.device,
             "--attribution_format", "none", "--protocol", "extended", "--output_dir", str(out)]
    if args.weights:
        stage += ["--weights", args.weights]
    launch = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   f"--nproc_per_node={ranks}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // ranks))}
    done = subprocess.run([*launch, *stage], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the {ranks}-rank run failed:\n{done.stderr[-2000:]}")
    seconds = json.loads((out / "manifest.json").read_text())["seconds"]
    return args.images / seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny_densenet")
    p.add_argument("--weights", default=None, help="weights file or 'random' (default: the model's own)")
    p.add_argument("--images", type=int, default=192)
    p.add_argument("--ig_steps", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--ranks", type=int, default=2, help="ranks of the sharded run")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads shared by the ranks")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        single = run(1, args, Path(tmp) / "one", args.threads)
        print(f"1 process ({args.threads} threads): {single:.1f} images/s")
        sharded = run(args.ranks, args, Path(tmp) / "many", args.threads)
        print(f"{args.ranks} ranks ({max(1, args.threads // args.ranks)} threads each): {sharded:.1f} images/s")
        a, b = (pd.read_csv(Path(tmp) / name / "per_image.csv") for name in ("one", "many"))
        diff = (a.select_dtypes("number") - b.select_dtypes("number")).abs().to_numpy().max()
        print(f"per_image.csv: largest difference {diff:.2e} (0 with the same threads per process; other "
              f"thread counts round floats differently)")
    print(f"ratio: {sharded / single:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
