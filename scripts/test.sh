#!/bin/bash
# Run every test: unit tests under ASan/UBSan and valgrind, a short run of every fuzz target,
# then the integration tests against real PostgreSQL 15 and etcd on 127.0.0.1 (two at a time;
# INTEGRATION_JOBS=1: one after another), and a short fault run. Prints "N passed, N failed" at
# the end.
#
# Everything is built first, and a failed build fails the run at once: a test binary left by an
# earlier build must never stand in for one that no longer compiles.
set -uo pipefail
cd "$(dirname "$0")/.."

build_failed() {
    echo "BUILD FAILED: $* (see the errors above); no test was run"
    echo "total: 0 passed, 1 failed"
    exit 1
}

# the unit tests, from their sources (not from what build directories happen to hold)
units=()
for f in tests/unit/test_*.c; do units+=("$(basename "$f" .c)"); done
asan_units=("${units[@]/#/build-asan/tests/}")
plain_units=("${units[@]/#/build/tests/}")

echo "== build"
phase_at() { echo "-- $* at $SECONDS s into the run"; }   # where the run's time goes
bash scripts/setup.sh || build_failed "scripts/setup.sh (dependencies, and make of build/pgvigil)"
make -s -j2 asan || build_failed "make asan (build-asan/pgvigil, which the integration tests run)"
# removed first, so that a binary of an earlier build cannot survive a failed link
rm -f "${asan_units[@]}" "${plain_units[@]}"
make -s -j2 BUILD=build-asan SAN=1 "${asan_units[@]}" || build_failed "unit tests under ASan/UBSan (build-asan/tests)"
make -s -j2 "${plain_units[@]}" || build_failed "unit tests for valgrind (build/tests)"
make -s -j2 fuzz || build_failed "fuzz targets (make fuzz, build-fuzz/fuzz)"
for t in build/pgvigil build-asan/pgvigil "${asan_units[@]}" "${plain_units[@]}"; do
    [ -x "$t" ] || build_failed "$t is missing after the build"
done

phase_at "unit tests"
# a unit test that hangs fails (15 min: far beyond the slowest, test_etcd under valgrind, ~30 s)
unit_pass=0; unit_fail=0
failed_list=()   # every failed check by name, repeated at the very end where a log's tail shows it
# Two lanes at once, each test's output to a file of its own: the ASan/UBSan builds (mostly
# waiting on the etcd, BIND and HTTP servers they start) and the valgrind ones (CPU). Each unit
# test takes free ports and temporary directories of its own, so the lanes never meet.
unit_dir=$(mktemp -d /tmp/pgvigil-units.XXXXXX)
run_unit() {   # run_unit asan|valgrind TEST: output in $unit_dir/KIND.NAME.out, exit status in .rc
    local out="$unit_dir/$1.$(basename "$2").out"
    if [ "$1" = asan ]; then
        timeout -k 10 900 "$2" >"$out" 2>&1
    else
        timeout -k 10 900 valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
            --errors-for-leak-kinds=definite,indirect --error-exitcode=9 "$2" >"$out" 2>&1
    fi
    echo $? >"$out.rc"
}
( for t in "${asan_units[@]}"; do run_unit asan "$t"; done ) &
asan_lane=$!
for t in "${plain_units[@]}"; do run_unit valgrind "$t"; done
wait "$asan_lane"
for t in "${asan_units[@]}"; do
    echo "== unit (asan) $t"
    out="$unit_dir/asan.$(basename "$t").out"
    cat "$out"
    if [ "$(cat "$out.rc" 2>/dev/null)" = 0 ]; then unit_pass=$((unit_pass+1)); else unit_fail=$((unit_fail+1)); failed_list+=("$t (asan)"); echo "FAILED: $t"; fi
done
for t in "${plain_units[@]}"; do
    echo "== unit (valgrind) $t"
    out="$unit_dir/valgrind.$(basename "$t").out"
    if [ "$(cat "$out.rc" 2>/dev/null)" = 0 ]; then
        unit_pass=$((unit_pass+1))
    else
        unit_fail=$((unit_fail+1)); failed_list+=("$t (valgrind)"); echo "FAILED under valgrind: $t"; tail -30 "$out"
    fi
done
rm -rf "$unit_dir"
echo "unit: $unit_pass passed, $unit_fail failed"
phase_at "fuzzing"
# every parser of untrusted input, fuzzed for a short while from its seeds (libFuzzer, clang)
bash tests/fuzz/run.sh --seconds "${FUZZ_SECONDS:-10}" | tee /tmp/pgvigil-fuzz.out
read -r fz_pass fz_fail < <(sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' /tmp/pgvigil-fuzz.out | tail -1)
unit_pass=$((unit_pass + ${fz_pass:-0})); unit_fail=$((unit_fail + ${fz_fail:-1}))
[ "${fz_fail:-1}" -eq 0 ] || failed_list+=("fuzz (tests/fuzz/run.sh)")
phase_at "integration tests"
PGVIGIL_BIN="$(pwd)/build-asan/pgvigil" bash tests/integration/run.sh | tee /tmp/pgvigil-integration.out
read -r int_pass int_fail < <(sed -n 's/^integration: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' /tmp/pgvigil-integration.out | tail -1)
int_pass=${int_pass:-0}; int_fail=${int_fail:-1}
if [ "$int_fail" -gt 0 ]; then
    int_names=$(sed -n 's/^failed: //p' /tmp/pgvigil-integration.out | tail -1)
    failed_list+=(${int_names:-"integration (tests/integration/run.sh)"})
    int_out_dir=$(sed -n 's/^output of the failed tests kept in //p' /tmp/pgvigil-integration.out | tail -1)
fi
phase_at "self-tests and the fault suite"
# the fault checker must see each violation it checks for, in hand-made runs (no cluster)
echo "== bench/dr verdicts self-test (no cluster)"
if timeout 120 bash bench/dr --selftest; then unit_pass=$((unit_pass + 1)); else unit_fail=$((unit_fail + 1)); failed_list+=("bench/dr --selftest"); fi
echo "== bench/active-active verdicts self-test (no cluster)"
if timeout 120 bash bench/active-active --selftest; then unit_pass=$((unit_pass + 1)); else unit_fail=$((unit_fail + 1)); failed_list+=("bench/active-active --selftest"); fi
echo "== fault checker self-test (tests/fault/selftest.sh)"
if timeout 300 bash tests/fault/selftest.sh; then unit_pass=$((unit_pass + 1)); else unit_fail=$((unit_fail + 1)); failed_list+=("tests/fault/selftest.sh"); fi
echo "== fault suite (short, tests/fault/run.sh)"; if timeout 900 bash tests/fault/run.sh; then int_pass=$((int_pass + 1)); else int_fail=$((int_fail + 1)); failed_list+=("tests/fault/run.sh"); fi
# the failed integration tests' last lines again, then the names: a log read from its end shows them
if [ -n "${int_out_dir:-}" ]; then
    for f in "$int_out_dir"/*.out; do
        [ -f "$f" ] || continue
        echo "== last lines of $(basename "$f" .out) (whole output above, and in $f)"
        tail -25 "$f"
    done
fi
[ ${#failed_list[@]} -gt 0 ] && echo "failed: ${failed_list[*]}"
phase_at "the end"
echo "total: $((unit_pass + int_pass)) passed, $((unit_fail + int_fail)) failed"
[ $((unit_fail + int_fail)) -eq 0 ]
