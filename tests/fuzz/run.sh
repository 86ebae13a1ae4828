#!/bin/bash
# Run every libFuzzer target (tests/fuzz/fuzz_*.c) for a while, starting from its seeds in
# tests/fuzz/seeds/<target>/. New corpus entries go to a scratch directory, never into the
# tree. A crash, a leak, a sanitizer report or a broken property fails the run and leaves the
# input under the scratch directory, printed at the end. --jobs N targets run at once (default
# 2, a core each: libFuzzer runs one process per target here).
#   bash tests/fuzz/run.sh [--seconds N] [--jobs N] [--keep DIR] [target ...]
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=20
jobs=2
keep=""
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
make -s -j2 fuzz >/dev/null || { echo "fuzz: build failed (make fuzz)"; exit 1; }
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi
work="${keep:-$(mktemp -d /tmp/pgvigil-fuzz.XXXXXX)}"
mkdir -p "$work"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: --jobs must be a positive number, not '$jobs'"; exit 2; }
# fuzz_one TARGET: runs it; its line of the summary in $work/TARGET/result, "ok" or "FAILED" first
fuzz_one() {
    local t="$1" bin="build-fuzz/fuzz/$1" log="$work/$1/log" rc runs cov
    mkdir -p "$work/$t/corpus" "$work/$t/crash"
    if [ ! -x "$bin" ]; then echo "FAILED fuzz: no such target: $t" >"$work/$t/result"; return; fi
    "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/$t/crash/" "$work/$t/corpus" "tests/fuzz/seeds/$t" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "ok fuzz $t: ok, ${runs:-?} inputs in ${seconds} s, ${cov:-cov ?}" >"$work/$t/result"
    else
        { echo "FAILED fuzz $t: FAILED (exit $rc) after ${runs:-?} inputs; input and log in $work/$t"
          grep -E 'ERROR|property broken|SUMMARY' "$log" | head -5
          ls "$work/$t/crash" | head -3; } >"$work/$t/result"
    fi
}
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    mkdir -p "$work/$t"
    fuzz_one "$t" &
    running=$((running + 1))
done
wait
pass=0; fail=0
for t in "${targets[@]}"; do
    r="$work/$t/result"
    if [ "$(head -c 3 "$r" 2>/dev/null)" = "ok " ]; then
        pass=$((pass + 1)); sed '1s/^ok //' "$r"
    else
        fail=$((fail + 1)); sed '1s/^FAILED //' "$r" 2>/dev/null || echo "fuzz $t: FAILED (no result)"
    fi
done
echo "fuzz: $pass passed, $fail failed"
[ -z "$keep" ] && [ $fail -eq 0 ] && rm -rf "$work"
[ $fail -eq 0 ]
