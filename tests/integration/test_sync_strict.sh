#!/bin/bash
# synchronous_mode_strict: with its only synchronous standby gone, the primary acknowledges no
# commit (it waits) instead of falling back to asynchronous replication; the commit completes
# once the standby is back. Without strict mode the primary falls back to async but empties the
# sync key first, so no standby may be promoted without the asynchronously acknowledged commits.
source "$(dirname "$0")/lib.sh"

BOOTSTRAP_EXTRA="    synchronous_mode: true
    synchronous_mode_strict: true"
start_cluster 2
sync_ready() {
    etcdctl_ get --print-value-only "/service/$SCOPE/sync" | jq -e '.leader == "node1" and .sync_standby == "node2" and (has("pgvigil_catchup") | not)' >/dev/null
}
wait_until 60 "node2 confirmed as synchronous standby" sync_ready
psql_n 1 -c "create table t(id int)" || fail "create table"

stop_agent 2
log "stopped node2 (agent and postgres)"
wait_until 20 "node2 down" bash -c "! PGPASSWORD=it-super PGCONNECT_TIMEOUT=1 psql -X -h 127.0.0.1 -p ${PG_PORT[2]} -U postgres -Atc 'select 1' >/dev/null 2>&1"
(psql_n 1 -c "insert into t values (1)" && echo acked >"$T_DIR/commit.state") &
COMMITTER=$!
sleep 8
[ -f "$T_DIR/commit.state" ] && fail "strict mode acknowledged a commit with no synchronous standby"
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
