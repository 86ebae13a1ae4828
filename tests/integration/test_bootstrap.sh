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
# the primary's agent creates the slots on its own ticks, and a replica may stream before its
# slot is in use: wait for both slots active (printed, so that a timeout shows what there was)
slots_active() {
    local s
    s=$(psql_n 1 -c "select string_agg(slot_name || ':' || active, ',' order by slot_name) from pg_replication_slots")
    echo "slots: $s"
    [ "$s" = "node2:true,node3:true" ]
}
wait_until 30 "active slots node2,node3 on the primary" slots_active

# member records carry Patroni's fields. A record is published once per tick, after postgres
# changes: node2 streaming does not mean its record says so yet.
member_record_ok() {
    local r
    r=$(etcdctl_ get --print-value-only "/service/$SCOPE/members/node2")
    echo "$r"
    echo "$r" | jq -e '.role == "replica" and .state == "running" and (.xlog_location > 0) and .timeline == 1 and .conn_url and .api_url' >/dev/null
}
wait_until 30 "node2's member record with Patroni's fields, running on timeline 1" member_record_ok

# restarting an agent (replica and primary) never re-initializes its data directory
stop_agent 2
is_replica 2 && fail "postgres on node2 still running after its agent stopped"
start_agent 2
wait_until 30 "node2 streaming again" is_streaming 2
[ "$(psql_n 2 -c 'select count(*) from t')" = 1000 ] || fail "node2 lost data over an agent restart"
[ "$(psql_n 2 -c 'select system_identifier from pg_control_system()')" = "$sysid" ] || fail "node2 was re-initialized"
grep -q "initdb" "$T_DIR/node2.log" && fail "node2 ran initdb"
echo "PASS [$T_NAME]"
