#!/usr/bin/env bash
# make fuzz: for each target, (1) write its seed corpus (the target makes it
# from the committed fixtures: AIMC_FUZZ_MAKE_SEEDS), (2) replay every saved
# reproducer in tests/fuzz/crashes/TARGET/, (3) fuzz for SECONDS with new
# findings saved there. Prints one line per target (executions, coverage,
# corpus) and fails when any target found something.
#   usage: tests/fuzz/run.sh BIN_DIR SECONDS TARGET...
# FUZZ_KEEP_GOING=1 (make fuzz FUZZ_KEEP_GOING=1): a failing saved reproducer
# does not stop the target from being fuzzed, and fuzzing goes on after a
# finding (libFuzzer -fork=1 -ignore_crashes=1 ...), saving every one: for
# long runs while known findings are still open. The run still fails.
set -u
bin=${1:?usage: tests/fuzz/run.sh BIN_DIR SECONDS TARGET...}
secs=${2:?seconds}
shift 2
work=$bin/work
mkdir -p "$work"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Scratch files of the targets (fuzz.h), in RAM when possible; removed after
# each target, since a crashing process cannot remove its own.
shm=/dev/shm; [ -d "$shm" ] && [ -w "$shm" ] || shm=${TMPDIR:-/tmp}
export AIMC_FUZZ_TMP=$shm/aimc-fuzz-run-$$
trap 'rm -rf "$AIMC_FUZZ_TMP"' EXIT
common=(-timeout=10 -print_final_stats=1)
failed=()

# cpu_now sets CPU_NOW to the CPU seconds (user + system) used so far by this
# shell's finished children, from bash's `times` (second line: "XmY.YYYs
# XmZ.ZZZs"); it must run in this shell, not in a $(...) subshell, whose
# children differ. The difference around a fuzz run is that run's CPU time,
# the record issue 9 asks for (-max_total_time is wall-clock time).
cpu_now() {
  times >"$work/.times"
  CPU_NOW=$(tail -n 1 "$work/.times" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] } printf "%.0f", s }')
}

# A libFuzzer dictionary when the target has one, and the RSS limit: 2 GB.
# fuzz_model_dir's harness keeps what a model load that ended in aimc_die had
# allocated (the die is caught with longjmp; the real program exits there):
# about 14 MB more per CPU-second, so it runs in libFuzzer's fork mode, whose
# jobs (at most 300 s each) start afresh, with 8 GB per job. Fork mode still
# stops at the first crash, leak or timeout.
target_flags() {
  if [ -f "tests/fuzz/dict/$1.dict" ]; then echo "-dict=tests/fuzz/dict/$1.dict"; fi
  if [ "$1" = fuzz_model_dir ]; then echo -rss_limit_mb=8192 -fork=1; else echo -rss_limit_mb=2048; fi
}

for t in "$@"; do
  exe=$bin/$t
  crashes=tests/fuzz/crashes/$t
  seeds=$work/$t.seeds corpus=$work/$t.corpus log=$work/$t.log
  rm -rf "$seeds" "$AIMC_FUZZ_TMP"
  mkdir -p "$corpus" "$crashes" "$AIMC_FUZZ_TMP"
  if ! AIMC_FUZZ_MAKE_SEEDS=$seeds "$exe" >"$log" 2>&1; then
    cat "$log"; echo "FAIL $t: writing the seed corpus failed"; failed+=("$t"); continue
  fi
  # shellcheck disable=SC2046
  flags=("${common[@]}" $(target_flags "$t"))
  repro=("$crashes"/*)
  if [ -e "${repro[0]}" ]; then
    for r in "${repro[@]}"; do
      if ! "$exe" "${flags[@]}" "$r" >>"$log" 2>&1; then
        grep -aE 'ERROR|SUMMARY|runtime error|fuzz:|aimc:' "$log" | tail -n 8
        echo "FAIL $t: saved reproducer $r still fails"
        [[ " ${failed[*]} " == *" $t "* ]] || failed+=("$t")
      fi
    done
    if [[ " ${failed[*]} " == *" $t "* && "${FUZZ_KEEP_GOING:-0}" != 1 ]]; then continue; fi
  fi
  run=(-max_total_time="$secs" -artifact_prefix="$crashes/")
  [ "${FUZZ_KEEP_GOING:-0}" = 1 ] && run+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  before=$(ls "$crashes" | wc -l)
  flog=$work/$t.fuzz.log
  cpu_now; cpu0=$CPU_NOW
  "$exe" "${flags[@]}" "${run[@]}" "$corpus" "$seeds" >"$flog" 2>&1
  rc=$?
  cpu_now; cpu=$((CPU_NOW - cpu0))
  if [ "$rc" -eq 0 ] && [ "$(ls "$crashes" | wc -l)" -gt "$before" ]; then rc=1; fi  # fork mode saved findings
  # Executions: the final stats (plain mode) or the last status line (fork mode).
  execs=$(grep -ao 'stat::number_of_executed_units: [0-9]*' "$flog" | tail -n 1 | grep -o '[0-9]*$')
  [ -n "$execs" ] || execs=$(grep -aoE '^#[0-9]+: cov' "$flog" | tail -n 1 | grep -oE '[0-9]+')
  last=$(grep -aE '^#[0-9]+' "$flog" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+(/[0-9a-zA-Z]+)?' || true)
  if [ "$rc" -ne 0 ]; then
    grep -aE 'ERROR|SUMMARY|runtime error|fuzz:|aimc:' "$flog" | sed -E 's/==[0-9]+==/==/' | sort | uniq -c | sort -rn | head -n 20
    echo "FAIL $t: exit $rc after ${execs:-?} runs, $cpu CPU s; reproducer(s) in $crashes/ (log: $flog)"
    [[ " ${failed[*]} " == *" $t "* ]] || failed+=("$t")
  else
    printf '%-26s ok  %s s  %s CPU s  %s runs  %s\n' "$t" "$secs" "$cpu" "${execs:-?}" "$last"
  fi
  rmdir "$crashes" 2>/dev/null || true
  rm -rf "$AIMC_FUZZ_TMP"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
  exit 1
fi
echo "fuzz: all $# target(s) passed"
