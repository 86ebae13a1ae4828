#!/bin/bash
# An active-active node run by the pgvigil agent: the agent reports the node's pgvigil_aa apply
# in /metrics (one sample per peer of each pgvigil_aa_* family) and in its REST status
# (active_active): a peer whose worker cannot connect shows as not running and failed, a paused
# one as paused, and the conflicts of the last minute are counted.
source "$(dirname "$0")/lib.sh"
[ -f /usr/lib/postgresql/15/lib/pgvigil_aa.so ] || fail "pgvigil_aa.so is not installed (make pgext-install)"

api() { echo "http://127.0.0.1:${API_PORT[$1]}"; }
PG_EXTRA="  parameters:
    shared_preload_libraries: pgvigil_aa
    track_commit_timestamp: 'on'
    wal_level: logical
    max_worker_processes: 16" start_cluster 1
alloc_port GONE   # nothing listens there: the peer's worker cannot connect
psql_n 1 -c "create extension pgvigil_aa" -c "insert into pgvigil_aa.local_node (name, sequence_offset) values ('a', 1)" \
    -c "insert into pgvigil_aa.peers (name, conninfo, slot_name) values ('x', 'host=127.0.0.1 port=$GONE user=postgres dbname=postgres connect_timeout=2', 'aa_for_a')" ||
    fail "setting up the node"
metrics() { curl -sf "$(api 1)/metrics"; }
failed_shown() {
    local m
    m=$(metrics) || return 1
    grep -Eq '^pgvigil_aa_apply_failed\{[^}]*peer="x"\} 1$' <<<"$m" &&
        grep -Eq '^pgvigil_aa_apply_running\{[^}]*peer="x"\} 0$' <<<"$m" &&
        grep -Eq '^pgvigil_aa_conflicts_last_minute\{[^}]*\} 0$' <<<"$m"
}
wait_until 60 "/metrics shows the apply from x failed and not running" failed_shown
# each family's HELP and TYPE once (a Prometheus parser refuses a family declared twice)
[ "$(metrics | grep -c '^# TYPE pgvigil_aa_lag_bytes ')" = 1 ] || fail "pgvigil_aa_lag_bytes is declared more than once"
rest_failed() { curl -sf "$(api 1)/patroni" | jq -e '.active_active.peers[0] | .peer == "x" and .failed and (.running | not)' >/dev/null; }
wait_until 30 "the REST status shows the apply from x failed" rest_failed
log "a peer that cannot be reached: failed and not running in /metrics and the REST status"

psql_n 1 -c "select pgvigil_aa.pause('x')" >/dev/null
paused_shown() { metrics | grep -Eq '^pgvigil_aa_apply_paused\{[^}]*peer="x"\} 1$'; }
wait_until 30 "/metrics shows the apply from x paused" paused_shown
# a conflict recorded a moment ago counts in the last minute
psql_n 1 -c "insert into pgvigil_aa.conflicts (peer, kind, relation, key, remote_commit_ts, policy, winner) values ('x', 'update_update', 'public.t', 'id=1', now(), 'last_writer_wins', 'local')"
counted() { metrics | grep -Eq '^pgvigil_aa_conflicts_last_minute\{[^}]*\} 1$'; }
wait_until 30 "/metrics counts the conflict of the last minute" counted
log "paused shown; the conflict of the last minute counted"
echo "PASS [$T_NAME]"
