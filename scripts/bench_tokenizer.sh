#!/usr/bin/env bash
# Tokenizer throughput: aimc's C tokenizer and, when Python's `tokenizers` is
# importable, Hugging Face's on the same file and the same tokenizer.json.
# Both encode the whole text in one call and then line by line, single thread,
# no special tokens; both keep their word caches warm across passes.
#
# usage: scripts/bench_tokenizer.sh [MODEL_DIR] [TEXT_FILE] [SECONDS]
#   MODEL_DIR  folder with tokenizer.json (default: tests/fixtures/tokenizers/opt)
#   TEXT_FILE  UTF-8 text (default: ~4 MB of English prose gathered from the
#              Debian copyright files under /usr/share/doc)
#   AIMC       the aimc binary (default: build/aimc)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-tests/fixtures/tokenizers/opt}
file=${2:-}
secs=${3:-3}
aimc=${AIMC:-build/aimc}

if [ -z "$file" ]; then
  file=$(mktemp /tmp/aimc_bench_text.XXXXXX)
  trap 'rm -f "$file"' EXIT
  if ls /usr/share/doc/*/copyright >/dev/null 2>&1; then
    (cat /usr/share/doc/*/copyright || true) 2>/dev/null | head -c 4000000 > "$file" || true
  elif [ -d /usr/share/common-licenses ]; then
    for _ in 1 2 3 4 5 6 7 8; do cat /usr/share/common-licenses/*; done > "$file"
  else
    echo "bench_tokenizer.sh: no default text on this machine; pass TEXT_FILE" >&2; exit 2
  fi
fi
[ -x "$aimc" ] || { echo "bench_tokenizer.sh: $aimc not built (make, or set AIMC=path)" >&2; exit 2; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$aimc" tokenize --model "$model" --bench "$file" --seconds "$secs"

if python3 -c 'import tokenizers' 2>/dev/null; then
  python3 - "$model" "$file" "$secs" <<'EOF'
import os, sys, time
from tokenizers import Tokenizer, __version__
model, path, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json") if os.path.isdir(model) else model)
text = open(path, encoding="utf-8", errors="replace").read()
nbytes = len(text.encode("utf-8"))
lines = text.split("\n")

def whole():
    return len(tok.encode(text, add_special_tokens=False).ids)

def per_line():
    return sum(len(tok.encode(l, add_special_tokens=False).ids) for l in lines)

for name, fn in (("whole-text", whole), ("per-line", per_line)):
    t0 = time.perf_counter(); ntok = fn(); cold = time.perf_counter() - t0
    passes, t0 = 0, time.perf_counter()
    while True:
        fn(); passes += 1
        if time.perf_counter() - t0 >= secs: break
    warm = (time.perf_counter() - t0) / passes
    print("HF   %-10s %d tokens/pass  cold %.3f s  warm %.4f s/pass  %.3f Mtok/s  %.2f MB/s  (%d passes, tokenizers %s)"
          % (name, ntok, cold, warm, ntok / warm / 1e6, nbytes / warm / 1e6, passes, __version__))
EOF
else
  echo "HF tokenizers: not importable here (pip install tokenizers), skipped"
fi
