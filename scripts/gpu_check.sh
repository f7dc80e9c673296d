#!/usr/bin/env bash
# On a GPU machine, with the bundle from scripts/gpu_bundle.sh beside the
# working tree: every CUDA test, then the benchmark, each logged under OUT
# ($OUT when the device tool runs it, else ./gpu-check). Nothing is built
# here (the device image cannot fetch packages).
#
#   bash scripts/gpu_check.sh [BUNDLE_DIR]      # default build-gpu/bundle
#
# Writes OUT/summary.txt (the GPU, each step's status and test totals),
# OUT/<step>.log, OUT/perf-<gpu>.md (the table for docs/) and sdpa.csv.
# Exits non-zero when a test fails or a step cannot run.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-gpu/bundle}
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
[ -x "$B/aimc" ] || { echo "gpu_check: $B/aimc not found: run scripts/gpu_bundle.sh here first and carry $B" >&2; exit 2; }
export LD_LIBRARY_PATH="$PWD/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# cuBLASLt 13: the image's toolkit first, else the pip wheel's copy; NCCL
# (opened at run time, multi-GPU runs) likewise from its wheel when the
# system has none.
wheel_lib() { python3 -c "import nvidia.$1, os; print(os.path.join(nvidia.$1.__path__[0], 'lib'))" 2>/dev/null; }
if ! ldd "$B/aimc" | grep -q 'libcublasLt.so.13 => /'; then
  w=$(wheel_lib cublas); [ -n "$w" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$w"
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libnccl.so.2'; then
  w=$(wheel_lib nccl); [ -n "$w" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$w"
fi
status=0
summary="$OUT/summary.txt"
: > "$summary"
step() { # step NAME COMMAND...: runs it, logs it, records its status
  local name=$1; shift
  local t0=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf '%-12s rc=%d  %ds  %s\n' "$name" "$rc" $((SECONDS - t0)) "$(tail -n 1 "$OUT/$name.log")" | tee -a "$summary"
  [ $rc -eq 0 ] || status=1
}
{ date -u '+%Y-%m-%d %H:%M UTC'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "no nvidia-smi"; } | tee -a "$summary"
ldd "$B/aimc" | grep -E 'not found' && { echo "gpu_check: missing libraries (above)" | tee -a "$summary"; exit 2; }
step selfcheck "$B/aimc" selfcheck --device cuda
step test-cuda bash tests/run.sh "$B/tests-cuda"
# The main job (make run) on the GPU: synthetic shards, 40 steps, export.
run_job() {
  local d="$OUT/run"; rm -rf "$d"
  "$B/aimc" shards synth --format mmc4 --shards 4 --docs 64 --image-size 32 --seed 1 --out "$d/shards" &&
  "$B/aimc" train --config configs/tiny-llava.conf --device cuda --data "$d/shards/*.tar" --out "$d/out" --until 40 &&
  "$B/aimc" export "$d/out" --out "$d/projector.safetensors"
}
step train run_job
if python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  python3 scripts/bench_sdpa.py > "$OUT/sdpa.csv" 2> "$OUT/sdpa.log" || rm -f "$OUT/sdpa.csv"
fi
step bench "$B/aimc-bench" "$OUT" $([ -f "$OUT/sdpa.csv" ] && echo "$OUT/sdpa.csv")
exit $status
