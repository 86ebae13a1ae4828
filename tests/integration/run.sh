#!/bin/bash
# Run every integration test (or those named on the command line); print a summary line.
#
# INTEGRATION_JOBS (default 2) tests run at once, in lanes (each test takes a range of ports no
# other running test uses: lib.sh's port slots). The longest tests start first, so that the
# lanes end together. Each test's output goes to a file of its own, printed whole when the test
# ends (the files of failed tests are kept). The tests in SERIAL run at the end, one at a time,
# with every other lane idle. INTEGRATION_JOBS=1: every test in turn, in the order given, its
# output as it comes.
#
# (The whole script is one { } group, read by bash completely before it runs: editing this file
# during a run cannot change that run.)
{
cd "$(dirname "$0")"
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=(test_*.sh)
jobs="${INTEGRATION_JOBS:-2}"
# (at most 8: a running test holds one of lib.sh's 8 port slots)
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] && [ "$jobs" -le 8 ] || { echo "run.sh: INTEGRATION_JOBS must be 1 to 8, not '$jobs'"; exit 2; }
[ "$jobs" -gt ${#tests[@]} ] && [ ${#tests[@]} -gt 0 ] && jobs=${#tests[@]}
pass=0; failed=0; failed_names=()

if [ "$jobs" -eq 1 ]; then
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
    exit
fi

# Tests that run alone, after the others (in the order of the test list), each for its reason.
# They time leases, fences and promotions against each other and failed when the machine ran
# other tests besides this run's two lanes (another CI run's two: four on two cores); all three
# use a core and more alone, so running them alone costs little:
#   test_site_witness    the agent of site a's primary missed its fence's heartbeat deadline, a
#                        failover inside site a and its undoing followed, and the demoted node
#                        could then not be rewound (pg_rewind --dry-run read its WAL on the
#                        wrong timeline) within the test's 120 s
#   test_site_failover   node4's clone from node3 took longer than 120 s
#   test_fence           no history entry for timeline 3 within 30 s
SERIAL=(
    test_site_witness.sh test_site_failover.sh test_fence.sh
)

# Seconds each test took run alone (a serial run on a 2-core machine): only the order they
# start in comes from here. A test not listed counts as 30 s.
declare -A EXPECTED_S=(
    [test_site_witness.sh]=112 [test_pitr_timelines.sh]=82 [test_drill.sh]=79 [test_proxy.sh]=64
    [test_site_switchover.sh]=57 [test_site_rescue.sh]=55 [test_site_failover.sh]=55
    [test_s3_repo.sh]=53 [test_etcd_outage.sh]=50 [test_fence.sh]=46 [test_dr_site.sh]=43
    [test_backup_encrypted.sh]=43 [test_backup_schedule.sh]=32 [test_frozen_primary.sh]=31
    [test_dns_webhook.sh]=29 [test_pause.sh]=28 [test_vip.sh]=26 [test_backup_restore.sh]=26
    [test_backup_incremental.sh]=26 [test_demo.sh]=25 [test_rest.sh]=24 [test_cli.sh]=24
    [test_rewind_failure.sh]=23 [test_repo_clone.sh]=23 [test_sigstop.sh]=22 [test_switchover.sh]=21
    [test_failover_kill9.sh]=20 [test_archive.sh]=18 [test_pg_crash.sh]=17 [test_backup_faults.sh]=17
    [test_backup_checksums.sh]=17 [test_sync.sh]=16 [test_rewind_blocks.sh]=16
    [test_slow_postgres.sh]=15 [test_aa_apply.sh]=15 [test_wal_summary.sh]=14 [test_bad_config.sh]=13
    [test_two_leaders.sh]=10 [test_sync_strict.sh]=10 [test_commit_guard.sh]=10 [test_bootstrap.sh]=10
    [test_aa_output.sh]=10 [test_identity.sh]=6 [test_aa_conflicts.sh]=40 [test_aa_ddl.sh]=9
    [test_aa_agent.sh]=7
)

# the queue: tests not in SERIAL, longest first; then those in SERIAL, in the order given
queue=() serial=()
for t in "${tests[@]}"; do
    s=""
    for x in "${SERIAL[@]}"; do [ "$x" = "$t" ] && s=1; done
    if [ -n "$s" ]; then serial+=("$t"); else queue+=("$t"); fi
done
if [ ${#queue[@]} -gt 0 ]; then
    mapfile -t queue < <(for t in "${queue[@]}"; do echo "${EXPECTED_S[$t]:-30} $t"; done | sort -s -k1,1nr | cut -d' ' -f2-)
fi

# Network namespaces: the first `ip netns add` on a machine makes /run/netns a shared mount;
# two tests doing that at the same moment could each mount it. Done once here, before any lane.
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && ! mountpoint -q /run/netns 2>/dev/null; then
    ip netns add "pgv-run$$" 2>/dev/null && ip netns del "pgv-run$$" 2>/dev/null
fi

out_dir=$(mktemp -d /tmp/pgvigil-it-run.XXXXXX)
echo "== integration: ${#tests[@]} tests, $jobs at a time${serial[*]:+, then alone: ${serial[*]}} (output of each in $out_dir until it ends)"

declare -A pid_test=() pid_start=()

# start TEST: the test in the background, under the 600 s timeout
start() {
    local t="$1" p
    timeout 600 bash "$t" >"$out_dir/${t%.sh}.out" 2>&1 </dev/null &
    p=$!
    pid_test[$p]="$t"; pid_start[$p]=$(date +%s)
}

# reap PID STATUS: the test's output, whole, then its line
reap() {
    local p="$1" rc="$2" t="${pid_test[$1]}" s
    s=$(( $(date +%s) - pid_start[$p] ))
    unset "pid_test[$p]" "pid_start[$p]"
    echo "== integration $t"
    cat "$out_dir/${t%.sh}.out"
    if [ "$rc" -eq 0 ]; then
        pass=$((pass+1)); echo "ok   $t ($s s)"
        rm -f "$out_dir/${t%.sh}.out"
    else
        failed=$((failed+1)); failed_names+=("$t"); echo "FAIL $t ($s s)"
    fi
}

# wait_one: wait for any running test to end, and report it
wait_one() {
    local p rc
    while :; do
        p=""
        wait -n -p p
        rc=$?
        [ -n "$p" ] && [ -n "${pid_test[$p]:-}" ] && { reap "$p" "$rc"; return; }
    done
}

# ^C or a TERM: every running test gets a TERM (timeout passes it on; the test cleans up)
stop_all() {
    local p
    echo "run.sh: stopping the running tests: ${pid_test[*]}"
    for p in "${!pid_test[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${!pid_test[@]}"; do wait "$p"; reap "$p" "$?"; done
}
# (a test that did not run counts as failed)
interrupted() {
    stop_all
    echo "run.sh: interrupted; output of the failed tests kept in $out_dir"
    [ $failed -gt 0 ] && echo "failed: ${failed_names[*]}"
    echo "integration: $pass passed, $(( ${#tests[@]} - pass )) failed"
    exit "$1"
}
trap 'interrupted 130' INT
trap 'interrupted 143' TERM HUP

for t in "${queue[@]}"; do
    while [ ${#pid_test[@]} -ge "$jobs" ]; do wait_one; done
    start "$t"
done
while [ ${#pid_test[@]} -gt 0 ]; do wait_one; done
for t in "${serial[@]}"; do
    start "$t"
    wait_one
done

if [ $failed -gt 0 ]; then
    echo "output of the failed tests kept in $out_dir"
    echo "failed: ${failed_names[*]}"
else
    rmdir "$out_dir" 2>/dev/null
fi
echo "integration: $pass passed, $failed failed"
[ $failed -eq 0 ]
exit
}
