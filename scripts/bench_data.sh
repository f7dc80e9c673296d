#!/usr/bin/env bash
# Data benchmark (issue 6): images/s per core for decode + preprocess of
# photo-like 640-1024 px JPEG and WebP images, by aimc (`aimc shards bench`,
# 1 thread and THREADS threads) and, when python3 with Pillow and numpy is
# present, by Pillow doing CLIPImageProcessor's work on the SAME files in the
# same run: decode, convert("RGB"), resize the short side bicubic, centre
# crop, rescale by 1/255, normalise with CLIP's mean/std (one process = one core).
# Each side times ROUNDS passes over the images; the ratios compare the best
# pass of each (on a shared machine the pass least disturbed by other jobs).
# usage: scripts/bench_data.sh [AIMC_BINARY]   env: IMAGES=64 SIZE=640..1024 PRESET=llava THREADS=2 ROUNDS=3
set -euo pipefail
aimc=${1:-build/aimc}
images=${IMAGES:-64} size=${SIZE:-640..1024} preset=${PRESET:-llava} threads=${THREADS:-2} rounds=${ROUNDS:-3}
[ -x "$aimc" ] || { echo "bench_data.sh: no aimc binary at $aimc (build it first: make)" >&2; exit 1; }
case "$preset" in
  llava) edge=336 crop_h=336 crop_w=336 ;;
  clip) edge=224 crop_h=224 crop_w=224 ;;
  blip2) edge=0 crop_h=224 crop_w=224 ;;  # exact 224x224 resize, no crop
  *) echo "bench_data.sh: PRESET must be llava, clip or blip2, got '$preset'" >&2; exit 1 ;;
esac
dir=$(mktemp -d /tmp/aimc_bench_data_XXXXXX)
ldir=$dir.loader  # the loader's shards and model (not in $dir: Pillow reads every file there)
trap 'rm -rf "$dir" "$ldir"' EXIT

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
out=$("$aimc" shards bench --images "$images" --size "$size" --preset "$preset" --threads "$threads" \
      --rounds "$rounds" --write-dir "$dir")
echo "$out"
best_rate() { awk -v f="$1" '$1 == f && $2 == 1 {print $(NF-2)}'; }  # "(best of R rounds: X per core)"
if [ "$edge" -gt 0 ]; then
  echo "-- the same with JPEG DCT scaling (--jpeg-min-side $edge; pixels differ slightly from Pillow's):"
  "$aimc" shards bench --images "$images" --size "$size" --preset "$preset" --threads 1 --rounds "$rounds" \
    --jpeg-min-side "$edge" | grep -E '^  (jpeg|all) '
fi

# The training loader on the same images packed as LAION-style tar shards
# ({key}.jpg|webp + {key}.txt, 4 shards), preprocessed at the preset's size
# with the tiny LLaVA fixture's tokenizer: episodes/s for 1..nproc workers
# (LOADER_WORKERS), and how near each count comes to linear scaling.
if [ "$edge" -gt 0 ] && command -v tar >/dev/null; then
  shards=$ldir/shards model=$ldir/model
  mkdir -p "$shards"
  cp -r tests/fixtures/models/llava "$model"
  sed -i -E "s/\"(height|width)\": 28/\"\1\": $crop_h/; s/\"shortest_edge\": 28/\"shortest_edge\": $edge/" \
    "$model/preprocessor_config.json"
  i=0
  for f in "$dir"/*.jpg "$dir"/*.webp; do
    key=$(basename "${f%.*}")
    cp "$f" "$ldir/"
    echo "a photo-like test image number $key" > "$ldir/$key.txt"
    tar rf "$shards/$((i % 4)).tar" -C "$ldir" "$(basename "$f")" "$key.txt"
    i=$((i + 1))
  done
  workers=${LOADER_WORKERS:-$(seq -s, 1 "$(nproc)")}
  echo "-- the training loader (aimc shards bench --loader, k = 2, workers $workers):"
  "$aimc" shards bench --loader "$shards/*.tar" --model "$model" --workers "$workers" --episodes "$images" --k 2 |
    grep -E 'worker|skipped'
fi

if ! python3 -c 'import PIL, numpy' 2>/dev/null; then
  echo "== Pillow: python3 with Pillow and numpy not found, skipped"
  exit 0
fi
pil_out=$(python3 - "$dir" "$edge" "$crop_h" "$crop_w" "$rounds" <<'PY'
import io, os, sys, time
import numpy as np
import PIL
from PIL import Image

folder, edge, crop_h, crop_w, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
mean = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32).reshape(3, 1, 1)
std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32).reshape(3, 1, 1)
files = sorted(os.listdir(folder))
blobs = {n: open(os.path.join(folder, n), "rb").read() for n in files}  # in memory, as aimc's

def preprocess(blob):
    im = Image.open(io.BytesIO(blob)).convert("RGB")
    w, h = im.size
    if edge:  # CLIPImageProcessor: short side to edge, then centre crop
        s = min(w, h)
        size = (edge, int(edge * h / w)) if w <= h else (int(edge * w / h), edge)
        im = im.resize(size, Image.BICUBIC)
        w, h = im.size
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        im = im.crop((left, top, left + crop_w, top + crop_h))
    else:
        im = im.resize((crop_w, crop_h), Image.BICUBIC)
    x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) * np.float32(1 / 255)
    return (x - mean) / std

def timed(names):
    """Seconds for all rounds and for the fastest one."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for n in names:
            preprocess(blobs[n])
        times.append(time.perf_counter() - t0)
    return sum(times), min(times)

for n in files[:2]:
    preprocess(blobs[n])  # warm-up
print("Pillow %s, numpy %s, 1 process:" % (PIL.__version__, np.__version__))
for label, names in (("jpeg", [n for n in files if n.endswith(".jpg")]),
                     ("webp", [n for n in files if n.endswith(".webp")]), ("all", files)):
    s, best = timed(names)
    count = len(names) * rounds
    print("  %-6s 1 thread : %6d images in %7.3f s = %8.1f images/s, %7.1f images/s per core"
          " (best of %d rounds: %7.1f per core)" % (label, count, s, count / s, count / s, rounds, len(names) / best))
PY
)
echo "$pil_out"
ratio() { awk -v a="$(echo "$out" | best_rate "$1")" -v p="$(echo "$pil_out" | best_rate "$1")" 'BEGIN {printf "%.2fx", a / p}'; }
echo "== ratio aimc / Pillow (1 core, best rounds): all images $(ratio all), jpeg $(ratio jpeg), webp $(ratio webp)"
