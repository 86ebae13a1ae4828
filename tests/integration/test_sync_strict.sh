#!/bin/bash
# synchronous_mode_strict: with its only synchronous standby gone, the primary acknowledges no
# commit (it waits) instead of falling back to asynchronous replication; the commit completes
# once the standby is back. Without strict mode the primary falls back to async but empties the
# sync key first, so no standby may be promoted without the asynchronously acknowledged commits.
source "$(dirname "$0")/lib.sh"

BOOTSTRAP_EXTRA="    synchronous_mode: true
    synchronous_mode_strict: true"
# node1's agent logs each of its decisions on synchronous replication ("sync: ...") at debug
# level: they are the events the strict check below waits for
LOG_LEVEL=debug
start_cluster 2
sync_ready() {
    etcdctl_ get --print-value-only "/service/$SCOPE/sync" | jq -e '.leader == "node1" and .sync_standby == "node2" and (has("pgvigil_catchup") | not)' >/dev/null
}
wait_until 60 "node2 confirmed as synchronous standby" sync_ready
psql_n 1 -c "create table t(id int)" || fail "create table"

stop_agent 2
log "stopped node2 (agent and postgres)"
wait_until 20 "node2 down" bash -c "! PGPASSWORD=it-super PGCONNECT_TIMEOUT=1 psql -X -h 127.0.0.1 -p ${PG_PORT[2]} -U postgres -Atc 'select 1' >/dev/null 2>&1"
# node1_count_is WHAT N SQL: the count SQL gives on node1 is N (prints what it saw)
node1_count_is() {
    local c
    c=$(psql_n 1 -c "$3") || return 1
    echo "$1: $c"
    [ "$c" = "$2" ]
}
wait_until 20 "node1 has no walsender for node2" node1_count_is "walsenders for node2" 0 \
    "select count(*) from pg_stat_replication where application_name = 'node2'"
(psql_n 1 -c "insert into t values (1)" && echo acked >"$T_DIR/commit.state") &
COMMITTER=$!
wait_until 30 "the commit waits for a synchronous standby" node1_count_is "backends waiting for a synchronous standby" 1 \
    "select count(*) from pg_stat_activity where wait_event = 'SyncRep'"
# Instead of a number of seconds: three decisions of node1's agent on synchronous replication,
# all made with no synchronous standby streaming. A non-strict primary empties the sync key
# and then synchronous_standby_names at its first such decision, releasing the commit.
mark=$(wc -l <"$T_DIR/node1.log")
sync_decisions() {
    local c
    c=$(tail -n +"$((mark + 1))" "$T_DIR/node1.log" | grep -c " sync: ")
    echo "decisions on synchronous replication since the commit began waiting: $c"
    [ "$c" -ge 3 ]
}
wait_until 60 "three decisions of node1's agent on synchronous replication without node2" sync_decisions
[ -f "$T_DIR/commit.state" ] && fail "strict mode acknowledged a commit with no synchronous standby"
node1_count_is "backends waiting for a synchronous standby" 1 "select count(*) from pg_stat_activity where wait_event = 'SyncRep'" >/dev/null ||
    fail "the commit no longer waits for a synchronous standby, and was not acknowledged"
log "node1's agent, while node2 is down: $(tail -n +"$((mark + 1))" "$T_DIR/node1.log" | grep " sync: " | tail -1 | sed 's/.* sync: /sync: /')"
[ "$(leader)" = node1 ] || fail "leadership moved"
ssn=$(psql_n 1 -c "show synchronous_standby_names")
log "while node2 is down: synchronous_standby_names = $ssn; commit still waiting"
[ -n "$ssn" ] || fail "strict mode cleared synchronous_standby_names"

start_agent 2
wait_until 60 "the waiting commit is acknowledged once node2 is back" test -f "$T_DIR/commit.state"
wait "$COMMITTER"
[ "$(psql_n 2 -c 'select count(*) from t')" = 1 ] || fail "the acknowledged row is not on the synchronous standby"

# non-strict: async fallback only after the sync key no longer lists anyone
"$BIN" edit-config --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE" --set synchronous_mode_strict=false --force >/dev/null \
    || fail "edit-config"
stop_agent 2
async_ok() { psql_n 1 -c "insert into t values (2)" >/dev/null 2>&1; }
wait_until 30 "non-strict mode falls back to asynchronous commits" async_ok
k=$(etcdctl_ get --print-value-only "/service/$SCOPE/sync")
echo "$k" | jq -e '.sync_standby == null' >/dev/null || fail "async fallback while the sync key still lists a standby: $k"
grep -q "emptying the sync key before acknowledging asynchronously" "$T_DIR/node1.log" || fail "no log line for the async fallback order"
echo "PASS [$T_NAME]"
