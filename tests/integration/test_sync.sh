#!/bin/bash
# Synchronous mode: the leader keeps a synchronous standby listed in the sync key; a writer
# records every id whose COMMIT was acknowledged; after kill -9 of the primary node only the
# synchronous standby may be promoted and every acknowledged id is on the new primary.
source "$(dirname "$0")/lib.sh"

BOOTSTRAP_EXTRA="    synchronous_mode: true
    synchronous_node_count: 1"
start_cluster 3

sync_ready() {
    local k; k=$(etcdctl_ get --print-value-only "/service/$SCOPE/sync")
    echo "$k" | jq -e '.leader == "node1" and (.sync_standby | type == "string") and (has("pgvigil_catchup") | not)' >/dev/null || return 1
    local s; s=$(echo "$k" | jq -r .sync_standby)
    [ "$(psql_n 1 -c "select string_agg(application_name, ',') from pg_stat_replication where sync_state = 'sync'")" = "$s" ]
}
wait_until 60 "a confirmed synchronous standby in the sync key and in pg_stat_replication" sync_ready
sync_standby=$(etcdctl_ get --print-value-only "/service/$SCOPE/sync" | jq -r .sync_standby)
ssn=$(psql_n 1 -c "show synchronous_standby_names")
log "sync standby: $sync_standby; synchronous_standby_names = $ssn"
grep -q "$sync_standby" <<<"$ssn" || fail "synchronous_standby_names ($ssn) does not name $sync_standby"

psql_n 1 -c "create table acked(id int primary key)" || fail "create table"
touch "$T_DIR/writing"
(
    i=0
    while [ -f "$T_DIR/writing" ] && kill -0 $$ 2>/dev/null; do
        i=$((i + 1))
        if PGPASSWORD=it-super PGCONNECT_TIMEOUT=2 psql -X -q -h 127.0.0.1 -p "${PG_PORT[1]}" -U postgres -d postgres \
            -c "insert into acked values ($i)" >/dev/null 2>&1; then
            echo "$i" >>"$T_DIR/acked.txt"
        fi
    done
) &
WRITER=$!
# commits acknowledged before the crash are the point: wait for some rather than for a time
acked_at_least() { local c; c=$(wc -l <"$T_DIR/acked.txt" 2>/dev/null); echo "acknowledged: ${c:-0}"; [ "${c:-0}" -ge "$1" ]; }
wait_until 60 "20 commits acknowledged by node1" acked_at_least 20
kill9_node 1
log "killed node1 while writing"
sleep 1
rm -f "$T_DIR/writing"
wait "$WRITER"
n_acked=$(wc -l <"$T_DIR/acked.txt")
[ "$n_acked" -gt 10 ] || fail "writer got only $n_acked acknowledged commits"
new_leader() { l=$(leader); [ -n "$l" ] && [ "$l" != "node1" ] && is_primary "$(node_of "$l")"; }
wait_until $((T_TTL * 4 + 30)) "a new writable leader" new_leader
l=$(leader)
log "new leader: $l (acknowledged commits: $n_acked)"
[ "$l" = "$sync_standby" ] || fail "the new leader $l is not the synchronous standby $sync_standby"
nl=$(node_of "$l")
missing=0
psql_n "$nl" -c "select id from acked order by id" >"$T_DIR/present.txt" || fail "cannot read the new primary"
while read -r id; do
    grep -qx "$id" "$T_DIR/present.txt" || { missing=$((missing + 1)); echo "lost acknowledged id $id"; }
done <"$T_DIR/acked.txt"
[ "$missing" -eq 0 ] || fail "$missing acknowledged commits lost in synchronous mode"
# the new leader establishes its own synchronous standby again
new_sync() { etcdctl_ get --print-value-only "/service/$SCOPE/sync" | jq -e --arg l "$l" '.leader == $l and (.sync_standby | type == "string") and (has("pgvigil_catchup") | not)' >/dev/null; }
wait_until 60 "the new leader's sync key with a confirmed standby" new_sync
psql_n "$nl" -c "insert into acked values (1000000)" || fail "new primary does not commit with its synchronous standby"
echo "PASS [$T_NAME] ($n_acked acknowledged commits, all present)"
