#!/bin/bash
# Run every test: unit tests under ASan/UBSan and valgrind, a short run of every fuzz target,
# then the integration tests against real PostgreSQL 15 and etcd on 127.0.0.1, and a short
# fault run. Prints "N passed, N failed" at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
set -e
make -s -j2 asan
make -s -j2 BUILD=build-asan SAN=1 $(ls tests/unit/test_*.c | sed 's#tests/unit/\(.*\)\.c#build-asan/tests/\1#')
set +e
unit_pass=0; unit_fail=0
for t in build-asan/tests/test_*; do
    echo "== unit (asan) $t"
    if "$t"; then unit_pass=$((unit_pass+1)); else unit_fail=$((unit_fail+1)); echo "FAILED: $t"; fi
done
make -s -j2 $(ls tests/unit/test_*.c | sed 's#tests/unit/\(.*\)\.c#build/tests/\1#')
for t in build/tests/test_*; do
    echo "== unit (valgrind) $t"
    if valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
        --error-exitcode=9 "$t" >/tmp/pgvigil-valgrind.out 2>&1; then
        unit_pass=$((unit_pass+1))
    else
        unit_fail=$((unit_fail+1)); echo "FAILED under valgrind: $t"; tail -30 /tmp/pgvigil-valgrind.out
    fi
done
echo "unit: $unit_pass passed, $unit_fail failed"
# every parser of untrusted input, fuzzed for a short while from its seeds (libFuzzer, clang)
bash tests/fuzz/run.sh --seconds "${FUZZ_SECONDS:-20}" | tee /tmp/pgvigil-fuzz.out
read -r fz_pass fz_fail < <(sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' /tmp/pgvigil-fuzz.out | tail -1)
unit_pass=$((unit_pass + ${fz_pass:-0})); unit_fail=$((unit_fail + ${fz_fail:-1}))
PGVIGIL_BIN="$(pwd)/build-asan/pgvigil" bash tests/integration/run.sh | tee /tmp/pgvigil-integration.out
read -r int_pass int_fail < <(sed -n 's/^integration: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' /tmp/pgvigil-integration.out | tail -1)
int_pass=${int_pass:-0}; int_fail=${int_fail:-1}
echo "== fault suite (short, tests/fault/run.sh)"; if timeout 900 bash tests/fault/run.sh; then int_pass=$((int_pass + 1)); else int_fail=$((int_fail + 1)); fi
echo "total: $((unit_pass + int_pass)) passed, $((unit_fail + int_fail)) failed"
[ $((unit_fail + int_fail)) -eq 0 ]
