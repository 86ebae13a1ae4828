#!/bin/bash
# Bootstrap of 3 nodes: one primary, two streaming replicas with slots; data written on the
# primary reaches both replicas; restarting an agent on an existing data dir keeps its data.
source "$(dirname "$0")/lib.sh"

start_cluster 3
l=$(leader)
[ "$l" = "node1" ] || fail "expected node1 to bootstrap, leader is '$l'"
sysid=$(etcdctl_ get --print-value-only "/service/$SCOPE/initialize")
[ -n "$sysid" ] || fail "initialize key holds no system identifier"
[ "$(psql_n 1 -c 'select system_identifier from pg_control_system()')" = "$sysid" ] || fail "initialize key does not match node1's system identifier"

psql_n 1 -c "create table t(id int primary key, v text); insert into t select g, 'v' || g from generate_series(1, 1000) g" || fail "write on primary"
for n in 2 3; do
    wait_until 20 "row count on node$n" bash -c "[ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[$n]} -U postgres -Atc 'select count(*) from t' 2>/dev/null)\" = 1000 ]"
    psql_n "$n" -c "insert into t values (5000, 'x')" 2>/dev/null && fail "replica node$n accepted a write"
done
slots=$(psql_n 1 -c "select string_agg(slot_name || ':' || active, ',' order by slot_name) from pg_replication_slots")
[ "$slots" = "node2:true,node3:true" ] || fail "expected active slots node2,node3 on the primary, got '$slots'"

# member records carry Patroni's fields
etcdctl_ get --print-value-only "/service/$SCOPE/members/node2" | jq -e '.role == "replica" and .state == "running" and (.xlog_location > 0) and .timeline == 1 and .conn_url and .api_url' >/dev/null \
    || fail "member record of node2 lacks Patroni fields"

# restarting an agent (replica and primary) never re-initializes its data directory
stop_agent 2
is_replica 2 && fail "postgres on node2 still running after its agent stopped"
start_agent 2
wait_until 30 "node2 streaming again" is_streaming 2
[ "$(psql_n 2 -c 'select count(*) from t')" = 1000 ] || fail "node2 lost data over an agent restart"
[ "$(psql_n 2 -c 'select system_identifier from pg_control_system()')" = "$sysid" ] || fail "node2 was re-initialized"
grep -q "initdb" "$T_DIR/node2.log" && fail "node2 ran initdb"
echo "PASS [$T_NAME]"
