#!/bin/bash
# PostgreSQL crash under a live agent: the leader's agent restarts its postmaster in place and
# keeps the leader key (no failover). When postgres cannot start again, the agent releases the
# leader key and a replica takes over; once postgres can start, the old leader rejoins as a
# replica.
source "$(dirname "$0")/lib.sh"

start_cluster 3
psql_n 1 -c "create table t(id int); insert into t values (1)" || fail "initial write"
tl_before=$(psql_n 1 -c "select timeline_id from pg_control_checkpoint()")
pm=$(postmaster_pid 1)
kill -9 "$pm"
log "killed node1's postmaster ($pm) only"
wait_until 60 "node1 primary again" is_primary 1
[ "$(postmaster_pid 1)" != "$pm" ] || fail "postmaster was not restarted"
[ "$(leader)" = "node1" ] || fail "leadership moved although postgres could restart in place"
psql_n 1 -c "insert into t values (2)" || fail "restarted primary refuses writes"
[ "$(psql_n 1 -c 'select count(*) from t')" = 2 ] || fail "rows lost over the crash"
grep -q "start as primary: I hold the leader key but postgres is down" "$T_DIR/node1.log" || fail "no restart-in-place decision logged"
for n in 2 3; do wait_until 60 "node$n streaming after the restart" is_streaming "$n"; done

# now postgres cannot start: a broken base configuration
cp "$T_DIR/node1/data/postgresql.base.conf" "$T_DIR/base.conf.saved"
echo "this is not a setting" >>"$T_DIR/node1/data/postgresql.base.conf"
kill -9 "$(postmaster_pid 1)"
log "broke node1's configuration and killed its postmaster"
other_leads() { l=$(leader); [ -n "$l" ] && [ "$l" != "node1" ] && is_primary "$(node_of "$l")"; }
wait_until 120 "another node takes over after node1 gives up the key" other_leads
grep -q "releasing the leader key" "$T_DIR/node1.log" || fail "node1 did not log giving up the leader key"
accepts_writes 1 && fail "node1 accepts writes"
nl=$(node_of "$(leader)")
psql_n "$nl" -c "insert into t values (3)" || fail "new primary refuses writes"

cp "$T_DIR/base.conf.saved" "$T_DIR/node1/data/postgresql.base.conf"
chown postgres: "$T_DIR/node1/data/postgresql.base.conf" 2>/dev/null
log "repaired node1's configuration"
wait_until 120 "node1 rejoins as a streaming replica" is_streaming 1
accepts_writes 1 && fail "rejoined node1 accepts writes"
wait_until 30 "row 3 on node1" bash -c "[ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[1]} -U postgres -Atc 'select count(*) from t')\" = 3 ]"
echo "PASS [$T_NAME] (timeline before $tl_before)"
