#!/bin/bash
# kill -9 of the leader's agent and postmaster: a replica becomes primary and accepts writes;
# nothing committed before the crash and replicated is lost; the old node rejoins as a
# replica (pg_rewind) when its agent is restarted.
source "$(dirname "$0")/lib.sh"

# callbacks: each node records "<action> <role> <scope>" (Patroni's calling convention)
cat >"$T_DIR/cb.sh" <<'CB'
#!/bin/sh
echo "$1 $2 $3" >>"$(dirname "$0")/callbacks.$(id -un).log"
CB
chmod 755 "$T_DIR/cb.sh"
NODE_EXTRA="  callbacks:
    on_role_change: $T_DIR/cb.sh
    on_start: $T_DIR/cb.sh"
start_cluster 3
psql_n 1 -c "create table t(id int primary key); insert into t select generate_series(1, 100)" || fail "initial write"
wait_until 20 "replicas caught up" bash -c "for p in ${PG_PORT[2]} ${PG_PORT[3]}; do [ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p \$p -U postgres -Atc 'select count(*) from t' 2>/dev/null)\" = 100 ] || exit 1; done"

kill9_node 1
log "killed node1 (agent and postmaster)"
new_leader() { l=$(leader); [ -n "$l" ] && [ "$l" != "node1" ] && is_primary "$(node_of "$l")"; }
wait_until $((T_TTL * 4 + 20)) "a new leader that is a writable primary" new_leader
l=$(leader); nl=$(node_of "$l")
log "new leader: $l"
psql_n "$nl" -c "insert into t values (101)" || fail "new primary $l refused a write"
[ "$(psql_n "$nl" -c 'select count(*) from t')" = 101 ] || fail "rows lost after failover"
other=2; [ "$nl" = 2 ] && other=3
wait_until 40 "node$other follows the new leader" is_streaming "$other"
grep -q "promote: leader key is gone, I am the most advanced" "$T_DIR/$l.log" || fail "no promote decision logged with its reason"
wait_until 10 "on_role_change primary callback" grep -q "on_role_change primary $SCOPE" "$T_DIR"/callbacks.*.log
[ "$(psql_n "$nl" -c "select timeline_id from pg_control_checkpoint()")" -ge 2 ] 2>/dev/null || \
    wait_until 20 "new timeline" bash -c "[ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[$nl]} -U postgres -Atc 'select timeline_id from pg_control_checkpoint()')\" -ge 2 ]"

# the old primary comes back: rewinds, follows, never accepts writes
start_agent 1
wait_until 60 "node1 streaming from the new leader" is_streaming 1
is_replica 1 || fail "node1 is not a replica after rejoining"
accepts_writes 1 && fail "rejoined node1 accepted a write"
psql_n "$nl" -c "insert into t values (102)"
wait_until 20 "row 102 on node1" bash -c "[ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[1]} -U postgres -Atc 'select count(*) from t')\" = 102 ]"
[ "$(leader)" = "$l" ] || fail "leadership moved again when node1 rejoined"
echo "PASS [$T_NAME]"
