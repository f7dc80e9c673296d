#!/usr/bin/env bash
# The AIM paper's ablations in one command: a grid of `aimc eval` runs over
#   tasks x backbones x shots x mode (aim / icl / zero-shot) x projector x layer,
# collected into one CSV (OUT/results.csv), the summary JSON lines
# (OUT/summaries.jsonl), a markdown table (OUT/results.md) and PNG plots
# (OUT/*.png, by scripts/plot_ablations.py when python3 + matplotlib exist).
#
# Every dimension is a space-separated list, from a flag or an environment
# variable (flags win). Every value is checked before any work: a bad one is
# a one-line error and exit status 2. With no arguments it runs on the tiny
# fixtures (tests/fixtures/models/llava, the synthetic benchmarks of
# tests/fixtures/eval) and trains the tiny projectors it needs, in well under
# two minutes on a CPU. docs/eval.md shows a run on the real datasets.
#
#   --aimc BIN          AIMC        aimc binary (default build/aimc)
#   --out DIR           OUT         output folder (default build/ablations)
#   --tasks "..."       TASKS       vqa caption hateful (default: all three)
#   --backbones "..."   BACKBONES   model folders (default tests/fixtures/models/llava)
#   --shots "..."       SHOTS       (default "0 1 2 4"; 0 = the zero-shot run)
#   --modes "..."       MODES       aim icl zero-shot (default: all three)
#   --projectors "..."  PROJECTORS  projector types (linear linear_ln mlp: trained
#                                   here on synthetic shards, fixture backbones only)
#                                   or trained projector files / folders
#                                   (default "linear mlp")
#   --layers "..."      LAYERS      aggregation layers for the projectors trained
#                                   here (default "1 -1"); a projector file keeps
#                                   its own layer
#   --limit N           LIMIT       test items per run (0: all; default 0)
#   --seed N            SEED        demonstration seed (default 42)
#   --device D          DEVICE      cpu or cuda (default cpu)
#   --train-steps N     TRAIN_STEPS steps of the tiny projector training (default 20)
#   -- ARGS...                      passed to every aimc eval (e.g. --retrieval clip
#                                   --clip-model DIR, --beams 1)
# Data per task (defaults: the fixtures), as aimc eval's --train/--test/--images:
#   VQA_TRAIN VQA_TEST VQA_IMAGES VQA_TRAIN_IMAGES   (files: space-separated)
#   CAPTION_FILE CAPTION_IMAGES
#   HATEFUL_TRAIN HATEFUL_TEST HATEFUL_IMAGES
set -euo pipefail

die() { echo "ablations.sh: error: $*" >&2; exit 2; }

AIMC=${AIMC:-build/aimc}
OUT=${OUT:-build/ablations}
TASKS=${TASKS:-"vqa caption hateful"}
BACKBONES=${BACKBONES:-tests/fixtures/models/llava}
SHOTS=${SHOTS:-"0 1 2 4"}
MODES=${MODES:-"aim icl zero-shot"}
PROJECTORS=${PROJECTORS:-"linear mlp"}
LAYERS=${LAYERS:-"1 -1"}
LIMIT=${LIMIT:-0}
SEED=${SEED:-42}
DEVICE=${DEVICE:-cpu}
TRAIN_STEPS=${TRAIN_STEPS:-20}
EXTRA=()

# set_flag VAR FLAG ARGS...: VAR = the value after FLAG, or a one-line error.
set_flag() {
  [ $# -ge 3 ] || die "$2 needs a value (see --help)"
  printf -v "$1" '%s' "$3"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --aimc) set_flag AIMC "$@"; shift 2 ;;
    --out) set_flag OUT "$@"; shift 2 ;;
    --tasks) set_flag TASKS "$@"; shift 2 ;;
    --backbones) set_flag BACKBONES "$@"; shift 2 ;;
    --shots) set_flag SHOTS "$@"; shift 2 ;;
    --modes) set_flag MODES "$@"; shift 2 ;;
    --projectors) set_flag PROJECTORS "$@"; shift 2 ;;
    --layers) set_flag LAYERS "$@"; shift 2 ;;
    --limit) set_flag LIMIT "$@"; shift 2 ;;
    --seed) set_flag SEED "$@"; shift 2 ;;
    --device) set_flag DEVICE "$@"; shift 2 ;;
    --train-steps) set_flag TRAIN_STEPS "$@"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

# ---- flag values: all checked before any work, a bad one is a one-line error --------

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_int() { [[ $1 =~ ^-?[0-9]+$ ]]; }
is_task() { case "$1" in vqa|caption|hateful) return 0 ;; *) return 1 ;; esac; }
is_mode() { case "$1" in aim|icl|zero-shot) return 0 ;; *) return 1 ;; esac; }
is_type() { case "$1" in linear|linear_ln|mlp) return 0 ;; *) return 1 ;; esac; }
is_projector() { is_type "$1" || [ -e "$1" ]; }
is_dir() { [ -d "$1" ]; }
is_positive() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_device() { case "$1" in cpu|cuda) return 0 ;; *) return 1 ;; esac; }

# check_value FLAG VAR VALUE TEST WHAT: VALUE passes TEST.
check_value() { "$4" "$3" || die "$1 ($2): '$3' is not $5"; }

# check_list FLAG VAR "VALUES" TEST WHAT: VALUES holds at least one word, each passing TEST.
check_list() {
  local flag=$1 var=$2 values=$3 test=$4 what=$5 v n=0
  for v in $values; do
    "$test" "$v" || die "$flag ($var): '$v' is not $what"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || die "$flag ($var) is empty: give $what"
}

check_list --tasks TASKS "$TASKS" is_task "a task (vqa, caption, hateful)"
check_list --modes MODES "$MODES" is_mode "a mode (aim, icl, zero-shot)"
check_list --shots SHOTS "$SHOTS" is_uint "a number of shots (0, 1, 2, ...)"
check_list --layers LAYERS "$LAYERS" is_int "a layer (an integer, negative from the end)"
check_list --backbones BACKBONES "$BACKBONES" is_dir "a model folder"
case " $MODES " in
  *" aim "*) check_list --projectors PROJECTORS "$PROJECTORS" is_projector \
               "a projector type (linear, linear_ln, mlp) or an existing projector file" ;;
esac
check_value --limit LIMIT "$LIMIT" is_uint "a number of test items (0: all)"
check_value --seed SEED "$SEED" is_uint "a non-negative integer"
check_value --train-steps TRAIN_STEPS "$TRAIN_STEPS" is_positive "a positive number of steps"
check_value --device DEVICE "$DEVICE" is_device "a device (cpu, cuda)"
[ -x "$AIMC" ] || die "$AIMC not found (make first, or pass --aimc BIN)"
FX=tests/fixtures/eval
VQA_TRAIN=${VQA_TRAIN:-"$FX/okvqa/OpenEnded_mscoco_train2014_questions.json $FX/okvqa/mscoco_train2014_annotations.json"}
VQA_TEST=${VQA_TEST:-"$FX/okvqa/OpenEnded_mscoco_val2014_questions.json $FX/okvqa/mscoco_val2014_annotations.json"}
VQA_IMAGES=${VQA_IMAGES:-$FX/coco/val2014}
VQA_TRAIN_IMAGES=${VQA_TRAIN_IMAGES:-$FX/coco/train2014}
CAPTION_FILE=${CAPTION_FILE:-$FX/flickr30k/dataset_flickr30k.json}
CAPTION_IMAGES=${CAPTION_IMAGES:-$FX/flickr30k/flickr30k-images}
HATEFUL_TRAIN=${HATEFUL_TRAIN:-$FX/hateful_memes/train.jsonl}
HATEFUL_TEST=${HATEFUL_TEST:-$FX/hateful_memes/dev_seen.jsonl}
HATEFUL_IMAGES=${HATEFUL_IMAGES:-$FX/hateful_memes}

mkdir -p "$OUT/runs" "$OUT/projectors"
CSV=$OUT/results.csv SUMMARIES=$OUT/summaries.jsonl LOG=$OUT/log.txt
rm -f "$CSV" "$SUMMARIES" "$OUT"/*.png
: > "$LOG"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# ---- projectors ----------------------------------------------------------------

# A tiny projector of type $2 on layer $3 for backbone $1, trained here once.
train_projector() {
  local bb=$1 type=$2 layer=$3 name conf dir
  name=$(basename "$bb")
  conf=configs/tiny-$name.conf
  [ -f "$conf" ] || die "no $conf: projector types are trained only for the tiny fixtures; give trained projector files for $bb"
  dir=$OUT/projectors/$name-$type-L$layer
  if [ ! -e "$dir/latest" ]; then
    if [ ! -d "$OUT/shards" ]; then
      "$AIMC" shards synth --format mmc4 --shards 1 --docs 32 --image-size 32 --seed 1 --out "$OUT/shards" >> "$LOG" 2>&1
    fi
    "$AIMC" train --config "$conf" --model "$bb" --data "$OUT/shards/*.tar" --out "$dir" --steps "$TRAIN_STEPS" \
      --warmup 1 --save-every 0 --log-every "$TRAIN_STEPS" --projector "$type" --layer "$layer" --device "$DEVICE" \
      >> "$LOG" 2>&1 || die "training $dir failed (see $LOG)"
  fi
  echo "$dir"
}

# ---- one run ---------------------------------------------------------------------------

task_args() {
  case "$1" in
    vqa) echo "--train $VQA_TRAIN --train-images $VQA_TRAIN_IMAGES --test $VQA_TEST --images $VQA_IMAGES" ;;
    caption) echo "--train $CAPTION_FILE --test $CAPTION_FILE --images $CAPTION_IMAGES" ;;
    hateful) echo "--train $HATEFUL_TRAIN --test $HATEFUL_TEST --images $HATEFUL_IMAGES" ;;
    *) die "unknown task '$1' (vqa, caption, hateful)" ;;
  esac
}

RUNS=0 FAILED=0
# eval_run TASK BACKBONE MODE SHOTS LABEL [--projector P]; a failed run (out of
# memory at many shots, a prompt longer than the model takes) is logged and
# the grid goes on.
eval_run() {
  local task=$1 bb=$2 mode=$3 shots=$4 label=$5; shift 5
  local tag
  tag=$(echo "$task-$label" | tr '/ ' '__')
  # shellcheck disable=SC2046  # the task's file lists split into words on purpose
  if ! "$AIMC" eval --model "$bb" --task "$task" --mode "$mode" --shots "$shots" --seed "$SEED" --limit "$LIMIT" \
      --device "$DEVICE" --label "$label" --out "$OUT/runs/$tag.jsonl" --summary "$SUMMARIES" --csv "$CSV" \
      $(task_args "$task") "$@" ${EXTRA[@]+"${EXTRA[@]}"} > /dev/null 2>> "$LOG"; then
    FAILED=$((FAILED + 1))
    printf '  %-8s %-44s FAILED: %s\n' "$task" "$label" "$(tail -n 1 "$LOG")"
    return 0
  fi
  RUNS=$((RUNS + 1))
  printf '  %-8s %-44s done\n' "$task" "$label"
}

has_mode() { case " $MODES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

start=$(date +%s)
for bb in $BACKBONES; do
  name=$(basename "$bb")
  # the projectors of this backbone: "file|label" pairs
  projs=()
  if has_mode aim; then
    for p in $PROJECTORS; do
      if is_type "$p"; then
        for layer in $LAYERS; do projs+=("$(train_projector "$bb" "$p" "$layer")|$p/L$layer"); done
      else
        projs+=("$p|$(basename "$p")")
      fi
    done
  fi
  for task in $TASKS; do
    for k in $SHOTS; do
      if [ "$k" = 0 ]; then
        has_mode zero-shot && eval_run "$task" "$bb" zero-shot 0 "$name/zero-shot"
        continue
      fi
      has_mode icl && eval_run "$task" "$bb" icl "$k" "$name/icl/$k"
      for pl in ${projs[@]+"${projs[@]}"}; do
        eval_run "$task" "$bb" aim "$k" "$name/aim/${pl#*|}/$k" --projector "${pl%%|*}"
      done
    done
  done
done

# ---- the markdown table ------------------------------------------------------------------

[ -s "$CSV" ] || die "no run produced a summary"
awk -F, '
  NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i
            print "| task | backbone | mode | shots | projector | layer | n | metric | score | tokens/prompt | peak MiB | latency p50 ms | latency p90 ms |"
            print "|---|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|"; next }
  { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %.1f | %.2f | %.2f | %.2f |\n",
      $col["task"], $col["backbone"], $col["mode"], $col["shots"], $col["projector_type"], $col["layer"], $col["n"],
      $col["metric"], $col["score"], $col["tokens_per_prompt"], $col["peak_mem_mib"], $col["latency_p50_ms"],
      $col["latency_p90_ms"] }' "$CSV" > "$OUT/results.md"

# The first Python with matplotlib: the one on PATH (a virtualenv, pyenv) or
# Debian's, where third_party/packages.txt's python3-matplotlib goes.
PLOT_PY=
for py in python3 /usr/bin/python3; do
  if "$py" -c 'import matplotlib' 2>/dev/null; then PLOT_PY=$py; break; fi
done
if [ -n "$PLOT_PY" ]; then
  "$PLOT_PY" "$(dirname "$0")/plot_ablations.py" "$CSV" "$OUT" >> "$LOG" 2>&1 || echo "ablations.sh: plotting failed (see $LOG)" >&2
else
  echo "ablations.sh: note: python3 with matplotlib not found; no PNG plots (the CSV and table are written)" >&2
fi
echo "ablations.sh: $RUNS runs ($FAILED failed) in $(( $(date +%s) - start )) s -> $CSV, $OUT/results.md, $(ls "$OUT"/*.png 2>/dev/null | wc -l) plots in $OUT"
[ "$FAILED" -eq 0 ] || exit 1
