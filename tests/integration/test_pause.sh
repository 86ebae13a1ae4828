#!/bin/bash
# Maintenance mode: after `pgvigil pause`, kill -9 of the leader's postmaster (agent left
# running) changes nothing for 3 TTLs: the leader key stays with the old leader (or is absent)
# and no replica becomes writable. After `pgvigil resume` the cluster recovers to one writable
# primary with the others streaming, without losing data.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_probe.sh"

start_cluster 3
l=$(leader); ln=$(node_of "$l")
[ -n "$ln" ] || fail "no leader after start"
psql_n "$ln" -c "create table t(id int primary key); insert into t select generate_series(1, 1000)" || fail "initial write"
probe_table_init "$ln" "1 2 3"
rows_on() { [ "$(psql_n "$1" -c 'select count(*) from t' 2>/dev/null)" = "$2" ]; }
for n in 1 2 3; do wait_until 30 "node$n has the 1000 rows" rows_on "$n" 1000; done

out=$("$BIN" pause --wait --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE" 2>&1) || fail "pause failed: $out"
log "pause: $out"
etcdctl_ get --print-value-only "/service/$SCOPE/config" | jq -e '.pause == true' >/dev/null || fail "config key does not say pause"

pm=$(postmaster_pid "$ln")
[ -n "$pm" ] || fail "no postmaster pid for $l"
kill -9 "$pm" || fail "cannot kill postmaster $pm of $l"
kill_ms=$(now_ms)
log "killed the postmaster of $l (pid $pm); its agent keeps running"

# nothing happens for 3 TTLs: a window in which an unpaused cluster would have acted (its
# leader restarts postgres at its next tick), watched without a break. A slow machine makes it
# see fewer ticks, never fail; the README lists such windows.
S="$T_DIR/samples"
start_sampler "$S" 1 2 3
end_ms=$((kill_ms + 3 * T_TTL * 1000))
checks=0
while [ "$(now_ms)" -lt "$end_ms" ]; do
    cur=$(leader)
    [ -z "$cur" ] || [ "$cur" = "$l" ] || fail "paused cluster changed leader to $cur"
    for n in 1 2 3; do
        [ "$n" = "$ln" ] && continue
        is_primary "$n" && fail "replica node$n became primary while paused"
    done
    checks=$((checks + 1))
    sleep 0.5
done
stop_bg "$S" "$SAMPLER_PID"
# no postmaster accepts a connection from the kill on, so no round may see a write: unless
# something started postgres again, which is what must not happen while paused
ok_any=$(awk -v a="$kill_ms" '$1 > a && NF > 2' "$S")
[ -z "$ok_any" ] || fail "a node accepted writes while paused with the primary down:
$ok_any"
grep -E "INFO: promote:" "$T_DIR/node2.log" "$T_DIR/node3.log" && fail "a replica decided to promote while paused"
log "paused: $checks checks over $((3 * T_TTL)) s, leader key '$(leader)', no replica promoted, $(wc -l <"$S") sample rounds without a writable node"

out=$("$BIN" resume --wait --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE" 2>&1) || fail "resume failed: $out"
resume_ms=$(now_ms)
log "resume: $out"
wait_until 120 "cluster healthy after resume" cluster_healthy "1 2 3"
nl_name=$(leader); nl=$(node_of "$nl_name")
wait_until 30 "leader $nl_name accepts writes" probe_write "$nl"
healthy_ms=$(now_ms)
primaries=0
for n in 1 2 3; do is_primary "$n" && primaries=$((primaries + 1)); done
[ "$primaries" = 1 ] || fail "$primaries primaries after resume"
for n in 1 2 3; do wait_until 30 "node$n has the 1000 rows" rows_on "$n" 1000; done
how="restarted in place"
[ "$nl_name" = "$l" ] || how="failed over to $nl_name"
log "after resume: leader $nl_name ($how), writable $((healthy_ms - resume_ms)) ms after resume"
echo "MEASURE pause: recovered_after_resume_ms=$((healthy_ms - resume_ms)) how=\"$how\""
echo "PASS [$T_NAME]"
