#!/bin/bash
# Run every integration test (or those named on the command line); print a summary line.
cd "$(dirname "$0")"
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=(test_*.sh)
pass=0; failed=0; failed_names=()
for t in "${tests[@]}"; do
    echo "== integration $t"
    start=$(date +%s)
    if timeout 600 bash "$t"; then
        pass=$((pass+1)); echo "ok   $t ($(( $(date +%s) - start )) s)"
    else
        failed=$((failed+1)); failed_names+=("$t"); echo "FAIL $t ($(( $(date +%s) - start )) s)"
    fi
done
[ $failed -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "integration: $pass passed, $failed failed"
[ $failed -eq 0 ]
