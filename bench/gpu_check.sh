#!/usr/bin/env bash
# Device check, run on a GPU machine: the CUDA paths agree with the CPU results, and how long the
# baseline and the grid take. Usage (repo root): bash bench/gpu_check.sh ; CPU reference results
# are read from outputs/baseline.
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

timed() {  # timed LABEL CMD... : run, print wall seconds
  local label=$1; shift
  local s; s=$(date +%s%N)
  "$@" > "$out/$label.log" 2>&1; local rc=$?
  echo "$label: rc=$rc wall=$(( ($(date +%s%N) - s) / 1000000 )) ms"; tail -n 4 "$out/$label.log"
}

compare() {  # compare A.csv B.csv : largest per-image metric difference between two runs
  $py - "$1" "$2" <<'PY'
import sys, pandas as pd
a, b = (pd.read_csv(p) for p in sys.argv[1:3])
assert a["index"].tolist() == b["index"].tolist()
cols = [c for c in a.columns if c.endswith(("sparsity", "faithfulness", "_delta", "confidence"))]
print("same predictions:", bool((a["pred"] == b["pred"]).all()),
      "| max |difference|:", {c: float((a[c] - b[c]).abs().max()) for c in cols})
PY
}

timed tiny_baseline_cuda $py baseline_eval.py --device cuda --output_dir /tmp/tb
[ -f outputs/baseline/per_image.csv ] && compare outputs/baseline/per_image.csv /tmp/tb/per_image.csv
timed tiny_grid_cuda $py run_experiments.py --device cuda --outputs /tmp/grid
timed tiny_hooked_cuda $py filtered_eval.py --device cuda --baseline_dir /tmp/grid/baseline \
  --stats_dir /tmp/grid/neuron_stats/block_3_k3 --cluster_idx 0 --output_dir /tmp/hook
compare /tmp/grid/filtered_block_3_cluster_0_k3/per_image.csv /tmp/hook/per_image.csv
cp /tmp/grid/mask_grid_summary.csv "$out/tiny_grid_summary.csv"
dn=(--model densenet121 --weights random --data concepts --device cuda --batch-size 32 --ig-batch 512)
timed densenet121_baseline $py baseline_eval.py "${dn[@]}" --images 200 --output_dir /tmp/dn/baseline
grep -h '"seconds"' /tmp/dn/baseline/manifest.json
timed densenet121_grid $py run_experiments.py "${dn[@]}" --images 200 --blocks block_1,block_4 --ks 3 \
  --repeats 2 --stats_images 256 --outputs /tmp/dn
grep -h '"seconds"' /tmp/dn/filtered_block_1_cluster_0_k3/manifest.json /tmp/dn/filtered_block_4_cluster_0_k3/manifest.json
nvidia-smi --query-gpu=memory.used --format=csv,noheader
