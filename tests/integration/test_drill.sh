#!/bin/bash
# DR drills between two sites in network namespaces (site a primary, site b its standby cluster).
#  - `drill observe` passes on healthy sites and writes a JSON report and a runbook naming the
#    exact commands for these sites; it fails (exit 1, source_and_credentials and
#    promotable_now) while site b's standby leader is cut off from site a, and (repository_wal)
#    while a WAL segment after the newest backup is missing from the repository both sites use.
#  - `drill failover` takes site a down through its stop hook (every namespace of site a killed),
#    promotes b, brings a back through its start hook, waits for a to rejoin by rewind, and
#    switches back: the report has the RTO, the acknowledged writes lost, the failback time, and
#    the switch back loses nothing.
#  - `drill restore` restores the newest backup into a scratch instance, which recovers from the
#    repository and opens, times it and removes it; without the backup's first WAL segment it
#    fails and leaves nothing running.
#  - `drill switchover` runs a site switchover and back while a writer commits through the proxy
#    that knows both sites: both switches succeed, no acknowledged write is lost (RPO 0), and
#    the report has each switch's write-unavailability (RTO) and steps.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_sites.sh"

[ -f /usr/lib/postgresql/15/lib/pgvigil_archive.so ] || fail "pgvigil_archive.so is not installed (make pgext-install)"
# one repository for both sites (site a archives into it; site b restores from it when the
# stream breaks)
export SITE_EXTRA="backup:
  repository:
    path: $T_DIR/repo"
sites_setup
sites_start
start_site_proxy
nsexec 0 "$BIN" backup take -c "$T_DIR/node1.yml" >"$T_DIR/backup.out" 2>&1 || fail "backup take: $(cat "$T_DIR/backup.out")"
psql_n 1 -c "create table drill_t(x int)"
# the segment name comes from pg_switch_wal itself: the site heartbeat may write into the next
# segment before a later pg_current_wal_lsn(), which would name a segment not yet complete
for i in 1 2 3; do
    psql_n 1 -c "insert into drill_t values ($i)"
    last_wal=$(psql_n 1 -c "select pg_walfile_name(pg_switch_wal())")
done
archived() { [ -n "$(find "$T_DIR/repo" -path "*/wal/*" -name "$last_wal*" | head -1)" ]; }
wait_until 60 "segment $last_wal is in the repository" archived
drill() { nsexec 0 "$BIN" drill "$@" -c "$T_DIR/node1.yml" --peer-dcs-url "$(site_url b)" --peer-scope site-b; }
standby_ready() { [ "$(nsexec 0 curl -s "$(api_url 3)/patroni" | jq -r .standby_cluster.source_reachable)" = true ]; }
wait_until 30 "node3 reaches site a" standby_ready

# ---- observe: healthy
drill observe --min-wal-free-mb 10 --report "$T_DIR/observe.json" --runbook "$T_DIR/runbook.md" >"$T_DIR/observe.out" 2>&1 ||
    fail "drill observe failed on healthy sites: $(cat "$T_DIR/observe.out")"
cat "$T_DIR/observe.out"
jq -e '.ok == true and (.checks | length) >= 9 and all(.checks[]; .ok)' "$T_DIR/observe.json" >/dev/null ||
    fail "observe report: $(cat "$T_DIR/observe.json")"
jq -e '.primary_site == "site-a" and .standby_site == "site-b"' "$T_DIR/observe.json" >/dev/null || fail "observe report sites"
grep -q "pgvigil site switchover -c $T_DIR/node1.yml --peer-dcs-url $(site_url b) --peer-scope site-b" "$T_DIR/runbook.md" ||
    fail "the runbook does not give the switchover command for these sites: $(head -40 "$T_DIR/runbook.md")"
grep -q "pgvigil site promote --old-site-fenced" "$T_DIR/runbook.md" || fail "the runbook has no unplanned step"

grep -q "^ok   repository_wal         WAL contiguous from backup" "$T_DIR/observe.out" || fail "no repository check"

# ---- observe: a WAL segment after the newest backup missing from the repository
gap_seg=$(find "$T_DIR/repo" -path "*/wal/*" -name "0000000100000000000000*" ! -name "*.*.*" -printf "%f\n" | sort | tail -2 | head -1)
gap_file=$(find "$T_DIR/repo" -path "*/wal/*" -name "$gap_seg" | head -1)
[ -n "$gap_file" ] || fail "no WAL segment to take out of the repository"
mv "$gap_file" "$T_DIR/gap-segment"
drill observe --min-wal-free-mb 10 >"$T_DIR/observe-gap.out" 2>&1 &&
    fail "drill observe passed with a WAL segment missing from the repository: $(cat "$T_DIR/observe-gap.out")"
grep -q "^FAIL repository_wal         a gap in the WAL after" "$T_DIR/observe-gap.out" ||
    fail "repository_wal did not report the gap: $(cat "$T_DIR/observe-gap.out")"
mv "$T_DIR/gap-segment" "$gap_file"

# ---- restore the newest backup into a scratch instance (recovered from the repository, opened)
nsexec 0 "$BIN" drill restore -c "$T_DIR/node1.yml" --report "$T_DIR/restore.json" >"$T_DIR/restore.out" 2>&1 ||
    fail "drill restore: $(cat "$T_DIR/restore.out")"
cat "$T_DIR/restore.out"
jq -e '.ok == true and .total_seconds > 0 and .recovery_seconds >= 0 and .last_replayed_commit != "" and .database_bytes > 0' \
    "$T_DIR/restore.json" >/dev/null || fail "drill restore report: $(cat "$T_DIR/restore.json")"
[ ! -e "$(jq -r .scratch_dir "$T_DIR/restore.json")" ] || fail "drill restore left its scratch directory"
echo "MEASURE drill_restore total_seconds=$(jq .total_seconds "$T_DIR/restore.json") recovery_seconds=$(jq .recovery_seconds "$T_DIR/restore.json")"
# ... and fails when the backup's first WAL segment is gone (nothing left running)
start_lsn=$(nsexec 0 "$BIN" backup list -c "$T_DIR/node1.yml" --json | jq -r '.[-1].start_lsn')
first_name=$(printf '00000001%08X%08X' $((0x${start_lsn%/*})) $((0x${start_lsn#*/} >> 24)))
first_file=$(find "$T_DIR/repo" -path "*/wal/*" -name "$first_name*" | head -1)
[ -n "$first_file" ] || fail "the backup's first WAL segment $first_name is not in the repository"
mv "$first_file" "$T_DIR/first-segment"
nsexec 0 "$BIN" drill restore -c "$T_DIR/node1.yml" --timeout 20 --target-dir "$T_DIR/scratch-bad" >"$T_DIR/restore-bad.out" 2>&1 &&
    fail "drill restore succeeded without the backup's first WAL segment: $(cat "$T_DIR/restore-bad.out")"
cat "$T_DIR/restore-bad.out"
[ ! -e "$T_DIR/scratch-bad/data/postmaster.pid" ] || fail "the failed drill restore left its server running"
mv "$T_DIR/first-segment" "$first_file"

# ---- observe: the standby leader cut off from its source (the check must be able to fail)
netns_cut 3 1
netns_cut 3 2
source_lost() { [ "$(nsexec 0 curl -s "$(api_url 3)/patroni" | jq -r .standby_cluster.source_reachable)" = false ]; }
wait_until 30 "node3 finds site a unreachable" source_lost
drill observe --min-wal-free-mb 10 --report "$T_DIR/observe-cut.json" >"$T_DIR/observe-cut.out" 2>&1 &&
    fail "drill observe passed while the standby leader cannot reach its source: $(cat "$T_DIR/observe-cut.out")"
cat "$T_DIR/observe-cut.out"
grep -q "^FAIL source_and_credentials" "$T_DIR/observe-cut.out" || fail "no failed source check"
grep -q "^FAIL promotable_now" "$T_DIR/observe-cut.out" || fail "promotable_now did not fail"
jq -e '.ok == false' "$T_DIR/observe-cut.json" >/dev/null || fail "the report says ok"
netns_heal_all
wait_until 60 "node3 reaches site a again" standby_ready
wait_until 60 "node3 streams again" streams_from 3 1

# ---- a real drill: switchover and back, writes through the proxy
dsn="host=$BR_IP port=5000 dbname=postgres user=postgres password=it-super sslmode=disable connect_timeout=3"
drill switchover --writer-dsn "$dsn" --min-wal-free-mb 10 --report "$T_DIR/drill.json" --runbook "$T_DIR/runbook2.md" \
    >"$T_DIR/drill.out" 2>&1 || fail "drill switchover: $(cat "$T_DIR/drill.out")"
cat "$T_DIR/drill.out"
jq . "$T_DIR/drill.json" | tail -40
jq -e '.ok == true and .lost_acknowledged_writes == 0 and .rpo == "0" and .acknowledged_writes > 20' "$T_DIR/drill.json" >/dev/null ||
    fail "drill report: $(cat "$T_DIR/drill.json")"
jq -e '(.switchovers | length) == 2 and all(.switchovers[]; .ok and .rto_seconds > 0 and .total_seconds > 0 and .writes_after > 0)' \
    "$T_DIR/drill.json" >/dev/null || fail "drill report switchovers: $(jq .switchovers "$T_DIR/drill.json")"
jq -e '.switchovers[0].from == "site-a" and .switchovers[0].to == "site-b" and .switchovers[1].to == "site-a"' \
    "$T_DIR/drill.json" >/dev/null || fail "the drill did not switch a -> b -> a"
echo "MEASURE drill_switchover rto_seconds=$(jq -c '[.switchovers[].rto_seconds]' "$T_DIR/drill.json") total_seconds=$(jq -c '[.switchovers[].total_seconds]' "$T_DIR/drill.json")"

# ---- a real unplanned failover drill: site a lost (all its namespaces killed, etcd included),
# b promoted, a brought back and rejoined by rewind, then a switchover back. The drill's hooks
# hand the killing and the restarting to this shell (which tracks what it starts).
# the drill checks the sites first: wait until they are ready again after the switch back
drill_ready() { drill observe --min-wal-free-mb 10 >"$T_DIR/observe-before-failover.out" 2>&1; }
wait_until 90 "the sites are ready for the failover drill" drill_ready
declare -A log_at=([1]=$(wc -c <"$T_DIR/node1.log") [2]=$(wc -c <"$T_DIR/node2.log"))
stop_hook="touch $T_DIR/stop-a; while [ ! -e $T_DIR/stopped-a ]; do sleep 0.1; done"
start_hook="touch $T_DIR/start-a; while [ ! -e $T_DIR/started-a ]; do sleep 0.1; done"
drill failover --writer-dsn "$dsn" --stop-command "$stop_hook" --start-command "$start_hook" --switch-back \
    --min-wal-free-mb 10 --timeout 120 --report "$T_DIR/failover.json" >"$T_DIR/failover.out" 2>&1 &
drill_pid=$!
BG_PIDS+=("$drill_pid")
drill_at() { [ -e "$T_DIR/$1" ] || ! kill -0 "$drill_pid" 2>/dev/null; }
wait_until 60 "the drill takes site a down" drill_at stop-a
[ -e "$T_DIR/stop-a" ] || fail "drill failover ended before taking site a down: $(cat "$T_DIR/failover.out")"
netns_kill_all 1 2 11
touch "$T_DIR/stopped-a"
wait_until 120 "the drill brings site a back" drill_at start-a
start_site_etcd a
start_agent 1
start_agent 2
touch "$T_DIR/started-a"
wait "$drill_pid" || fail "drill failover: $(cat "$T_DIR/failover.out")"
cat "$T_DIR/failover.out"
jq -e '.ok == true and .lost_site == "site-a" and .promoted_site == "site-b" and .rto_seconds > 0 and
       .steps.failback_seconds > 0 and .lost_by_switch_back == 0 and .lost_acknowledged_writes >= 0' \
    "$T_DIR/failover.json" >/dev/null || fail "drill failover report: $(cat "$T_DIR/failover.json")"
cfg_a=$(site_config a)
[ -n "$cfg_a" ] && [ "$(jq -r '.standby_cluster.host // empty' <<<"$cfg_a")" = "" ] ||
    fail "site a is not the primary site after the switch back: $cfg_a"
# the old site rejoined by rewind: no clone of either of its data directories
since_drill() { tail -c +"$((log_at[$1] + 1))" "$T_DIR/node$1.log"; }
! { since_drill 1; since_drill 2; } | grep "cloning from\|restoring backup" ||
    fail "site a was cloned or restored to rejoin, not rewound"
# (a rewind, unless site a had nothing b lacked and could follow b's new timeline as it was)
{ since_drill 1; since_drill 2; } | grep -q "rewind finished" || log "note: site a followed b without a rewind"
echo "MEASURE drill_failover rto_seconds=$(jq .rto_seconds "$T_DIR/failover.json") lost=$(jq .lost_acknowledged_writes "$T_DIR/failover.json") failback_seconds=$(jq .steps.failback_seconds "$T_DIR/failover.json") switch_back_rto=$(jq .switch_back_rto_seconds "$T_DIR/failover.json")"
echo "PASS [$T_NAME]"
