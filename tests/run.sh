#!/usr/bin/env bash
# Runs every test binary in a folder, sums their "N passed, M failed" lines,
# and ends with the total. A binary that crashes, times out or prints no
# summary counts as one failure.
set -u
dir=${1:?usage: tests/run.sh BUILD_TEST_DIR}
limit=${AIMC_TEST_TIMEOUT:-600}
total_pass=0 total_fail=0
for t in "$dir"/*; do
  [ -x "$t" ] && [ -f "$t" ] || continue
  name=$(basename "$t")
  out=$(timeout "$limit" "$t" 2>&1); rc=$?
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -n 20
    echo "FAIL $name: exit $rc with no summary line"
    total_fail=$((total_fail + 1)); continue
  fi
  p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.*, ([0-9]+) failed.*/\1/')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL $name: exit $rc"; fi
  [ "$f" -gt 0 ] && printf '%s\n' "$out" | grep -E '^FAIL|^aimc|AIMC_TEST_SEED' | head -n 40  # the seed repeats the run
  printf '%-28s %s\n' "$name" "$line"
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
done
echo "${total_pass} passed, ${total_fail} failed"
[ "$total_fail" -eq 0 ]
