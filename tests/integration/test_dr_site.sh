#!/bin/bash
# A disaster-recovery site: site b is a standby cluster of site a, each site its own pgvigil
# cluster with its own etcd, in network namespaces of their own.
#  - b's first member copies a (pg_basebackup through standby_cluster.host, a list of a's
#    nodes) and becomes b's standby leader, streaming from a's primary through slot site_b
#    (kept by a's leader from its `slots` config); b's other member cascades from it. list says
#    "Standby Leader" and names the source; /standby-leader and /leader answer 200 on it,
#    its permanent slot for site a follows its restartpoints (no WAL kept from before),
#    /primary 503; /metrics has the site lag. Rows written on a reach both of b's members.
#  - the standby leader fails over inside site b: node3 killed, node4 takes the key without
#    promoting and streams from a; node3 comes back as node4's replica.
#  - a fails over inside site a (node1 killed): b's standby leader finds a's new primary in the
#    host list and follows it onto the new timeline.
#  - bad input: standby_cluster pointed at a PostgreSQL of another cluster is refused (the
#    standby leader says so and keeps following a), and a standby_cluster without host or
#    restore_command is refused by edit-config.
#  - the site lag guard (site_lag_guard_bytes on site a): with site b's walreceiver frozen and
#    a's slot for it lagging past the bound, a commit on a does not return; once b catches up,
#    commits go through again and the guard is released.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_sites.sh"

sites_setup
sites_start
psql_n 1 -c "create table dr(id int primary key, at text)" -c "insert into dr values (1, 'a')"

# ---- site b: a standby cluster of site a
[ "$(psql_n 1 -c "select active from pg_replication_slots where slot_name = 'site_b'")" = t ] ||
    fail "site b does not use slot site_b on node1"
# b's standby leader keeps slot site_a for the day b is the primary site, moved up to what it has
# replayed: it holds no WAL from before (a DR site's disk would fill with it)
psql_n 1 -c "insert into dr select g, 'a' from generate_series(2, 5000) g" -c "select pg_switch_wal()" >/dev/null
a_lsn=$(psql_n 1 -c "select pg_current_wal_lsn()")
psql_n 1 -c "checkpoint" >/dev/null
slot_follows() {
    psql_n 3 -c "checkpoint" >/dev/null 2>&1   # a restartpoint, once a's checkpoint is replayed
    [ "$(psql_n 3 -c "select restart_lsn >= '$a_lsn' from pg_replication_slots where slot_name = 'site_a'")" = t ]
}
wait_until 30 "node3's slot site_a follows its restartpoints past $a_lsn" slot_follows
psql_n 1 -c "delete from dr where id > 1" >/dev/null
site_role_is 4 Replica || fail "node4: role $(site_role 4), want Replica"
[ "$(site_etcdctl b get --print-value-only /service/site-b/initialize)" = "$(site_etcdctl a get --print-value-only /service/site-a/initialize)" ] ||
    fail "site b's initialize key differs from site a's system identifier"
table=$(sitectl b list)
echo "$table"
grep -q "Standby cluster: following $A_HOSTS:5432 through slot site_b" <<<"$table" || fail "list does not name the source"

code() { nsexec 0 curl -s -o /dev/null -w '%{http_code}' "$(api_url "$1")$2"; }
[ "$(code 3 /standby-leader)" = 200 ] || fail "/standby-leader on node3: $(code 3 /standby-leader)"
[ "$(code 3 /leader)" = 200 ] || fail "/leader on node3: $(code 3 /leader)"
[ "$(code 3 /primary)" = 503 ] || fail "/primary on node3: $(code 3 /primary)"
[ "$(code 4 /standby-leader)" = 503 ] || fail "/standby-leader on node4: $(code 4 /standby-leader)"
[ "$(code 1 /standby-leader)" = 503 ] || fail "/standby-leader on node1 (site a's primary): $(code 1 /standby-leader)"
metrics=$(nsexec 0 curl -s "$(api_url 3)/metrics")
grep -q '^pgvigil_standby_cluster{[^}]*} 1$' <<<"$metrics" || fail "/metrics: no pgvigil_standby_cluster 1 on node3"
grep -q '^pgvigil_site_lag_bytes{' <<<"$metrics" || fail "/metrics: no pgvigil_site_lag_bytes on node3"
st=$(nsexec 0 curl -s "$(api_url 3)/patroni")
[ "$(jq -r .role <<<"$st")" = standby_leader ] || fail "/patroni role on node3: $st"
[ "$(jq -r .standby_cluster.source <<<"$st")" = "$A_HOSTS:5432" ] || fail "/patroni standby_cluster on node3: $st"
# site a's leader commits a heartbeat every second while another site streams from it: the
# standby leader's lag in seconds stays small even with no writes
lag_seconds_small() { nsexec 0 curl -s "$(api_url 3)/patroni" | jq -e '.standby_cluster.lag_seconds < 3' >/dev/null; }
sleep 4   # (no writes for a while: without heartbeats the age of the last commit would grow)
wait_until 30 "node3 measures a lag under 3 s" lag_seconds_small
nsexec 0 curl -s "$(api_url 3)/metrics" | grep -q '^pgvigil_site_lag_milliseconds{' || fail "/metrics: no pgvigil_site_lag_milliseconds"
site_cli status | tee "$T_DIR/status.out"
grep -q "^site-b: standby site, leader node3 .*, lag [0-9]* bytes / [0-9.]* s" "$T_DIR/status.out" || fail "site status shows no lag"

row_on() { [ "$(psql_n "$1" -c "select at from dr where id = $2" 2>/dev/null)" = "$3" ]; }
psql_n 1 -c "insert into dr values (2, 'b')"
wait_until 30 "row 2 reaches node4 through node3" row_on 4 2 b

# ---- the standby leader fails over inside site b
kill9_node 3
wait_until 60 "node4 takes site b's standby leader key" site_leader_is b node4
wait_until 60 "node4 streams from node1" streams_from 4 1
is_replica 4 || fail "node4 left recovery: a standby cluster never promotes by itself"
psql_n 1 -c "insert into dr values (3, 'c')"
wait_until 30 "row 3 reaches node4" row_on 4 3 c
start_agent 3
wait_until 120 "node3 rejoins as node4's replica" streams_from 3 4
wait_until 30 "row 3 reaches node3" row_on 3 3 c

# ---- site a fails over; site b follows its new primary onto the new timeline
kill9_node 1
wait_until 60 "node2 becomes site a's primary" is_primary 2
wait_until 90 "site b's standby leader streams from node2" streams_from 4 2
psql_n 2 -c "insert into dr values (4, 'd')"
wait_until 30 "row 4 reaches node3 (cascaded)" row_on 3 4 d
tl2=$(psql_n 2 -c "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
tl3=$(psql_n 3 -c "select received_tli from pg_stat_wal_receiver")
[ -n "$tl2" ] && [ "$tl2" = "$tl3" ] || fail "site a is on timeline $tl2 but node3 receives timeline $tl3"

# ---- bad input
# a PostgreSQL of another cluster (its own initdb), reachable from site b
FOREIGN="$T_DIR/foreign"
mkdir -p "$FOREIGN" && chown postgres: "$FOREIGN" && chmod 700 "$FOREIGN"
runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$FOREIGN" -U postgres >/dev/null || fail "initdb of the foreign server"
echo "host replication all $NETNS_SUBNET.0/24 trust" >>"$FOREIGN/pg_hba.conf"
mkdir -p "$T_DIR/foreign.sock" && chown postgres: "$T_DIR/foreign.sock"
nsexec 13 runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$FOREIGN" -l "$T_DIR/foreign.sock/postgres.log" -w \
    -o "-c listen_addresses=${NODE_IP[13]} -c unix_socket_directories=$T_DIR/foreign.sock" start >/dev/null ||
    fail "foreign server did not start"
nsexec 13 runuser -u postgres -- psql -X -q -h "$T_DIR/foreign.sock" -U postgres -d postgres \
    -c "create role replicator login replication" || fail "replicator role on the foreign server"
sitectl b edit-config --force --set "standby_cluster.host=${NODE_IP[13]}" >/dev/null || fail "edit-config standby_cluster.host"
wait_until 30 "node4 refuses the foreign source" grep -q "has system identifier .* but this cluster has .*: refusing to follow it" "$T_DIR/node4.log"
streams_from 4 2 || fail "node4 stopped following site a after being pointed at another cluster"
psql_n 2 -c "insert into dr values (5, 'e')"
wait_until 30 "row 5 still reaches node4" row_on 4 5 e
sitectl b edit-config --force --set "standby_cluster.host=$A_HOSTS" >/dev/null || fail "edit-config back"
nsexec 13 runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$FOREIGN" -m immediate -w stop >/dev/null

out=$(sitectl b edit-config --force --set "standby_cluster.host=null" 2>&1) && fail "edit-config accepted a standby_cluster without host: $out"
grep -q "standby_cluster: needs a host to replicate from, or a restore_command" <<<"$out" || fail "edit-config: $out"
# ---- the site lag guard: while site b's slot lags more than the bound, commits on site a wait
# for site b; they go through again once it caught up
sitectl a edit-config --force --set site_lag_guard_bytes=1048576 >/dev/null || fail "edit-config site_lag_guard_bytes"
sl=$(site_leader b)
wr=$(pgrep -f "walreceiver" | while read -r p; do
    [ "$(readlink "/proc/$p/cwd")" = "$T_DIR/${sl}/data" ] && echo "$p"; done | head -1)
[ -n "$wr" ] || fail "no walreceiver found for $sl"
kill -STOP "$wr"
psql_n 2 -c "create table guard_fill(x text)" -c "insert into guard_fill select repeat('x', 1000) from generate_series(1, 3000)"
guard_engaged() { nsexec 0 curl -s "$(api_url 2)/metrics" | grep -q '^pgvigil_site_lag_guard_engaged{[^}]*} 1$'; }
wait_until 30 "the guard makes commits wait for site b" guard_engaged
ssn_names_b() { psql_n 2 -c "show synchronous_standby_names" | grep -q "ANY 1 ("; }
wait_until 30 "synchronous_standby_names names site b on node2" ssn_names_b
if timeout 3 env PGPASSWORD=it-super nsenter -F --net="/run/netns/$(netns_name 2)" psql -X -q -h "${NODE_IP[2]}" \
    -U postgres -d postgres -c "insert into dr values (6, 'guarded')" 2>/dev/null; then
    kill -CONT "$wr"
    fail "a commit returned while site b lagged more than site_lag_guard_bytes"
fi
kill -CONT "$wr"
guard_released() { timeout 3 env PGPASSWORD=it-super nsenter -F --net="/run/netns/$(netns_name 2)" psql -X -q \
    -h "${NODE_IP[2]}" -U postgres -d postgres -c "insert into dr values (7, 'after')" 2>/dev/null; }
wait_until 60 "commits go through again once site b caught up" guard_released
guard_off() { ! guard_engaged; }
wait_until 30 "the guard is released" guard_off
grep -q "site lag guard released: the other site caught up" "$T_DIR/node2.log" || fail "node2 did not log the release"
sitectl a edit-config --force --set site_lag_guard_bytes=null >/dev/null || fail "edit-config"
log "standby cluster, standby leader failover in both sites, refusals and the lag guard: ok"
echo "PASS [$T_NAME]"
