#!/bin/bash
# Planned switchover, by the CLI (node1 -> node2) and by the REST API (node2 -> node3): the
# candidate becomes the writable leader, the old primary (stopped cleanly) follows it without
# pg_rewind, the history key records a switchover, and nothing is lost. A writer loop measures
# (prints, does not assert) the write unavailability of each switchover.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_probe.sh"

start_cluster 3
[ "$(leader)" = "node1" ] || fail "expected node1 to bootstrap, leader is '$(leader)'"
psql_n 1 -c "create table t(id int primary key); insert into t select generate_series(1, 1000)" || fail "initial write"
probe_table_init 1 "1 2 3"
rows_on() { [ "$(psql_n "$1" -c 'select count(*) from t' 2>/dev/null)" = "$2" ]; }
for n in 2 3; do wait_until 30 "node$n has the 1000 rows" rows_on "$n" 1000; done
# a switchover needs the candidate listed as a running replica in etcd
member_running_replica() { etcdctl_ get --print-value-only "/service/$SCOPE/members/node$1" | jq -e '.state == "running" and .role == "replica"'; }
running_replicas() { local n; for n in "$@"; do member_running_replica "$n" || return 1; done; }
wait_until 30 "node2 and node3 published as running replicas" running_replicas 2 3

# ---- 1. CLI switchover node1 -> node2 ---------------------------------------------------------
W="$T_DIR/writes1"
start_writer "$W" 1 2 3
S="$T_DIR/samples1"
start_sampler "$S" 1 2 3
sleep 2
t0=$(now_ms)
out=$("$BIN" switchover --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE" --candidate node2 --force 2>&1)
rc=$?
t1=$(now_ms)
echo "$out"
[ "$rc" -eq 0 ] || fail "switchover exited $rc: $out"
log "CLI switchover returned after $((t1 - t0)) ms"
[ "$(leader)" = "node2" ] || fail "leader is '$(leader)' after the switchover to node2"
wait_until 30 "node2 accepts writes" probe_write 2
wait_until 60 "node1 streams from node2" streams_from 1 2
wait_until 60 "node3 streams from node2" streams_from 3 2
sleep 2
stop_bg "$W" "$WRITER_PID"
stop_bg "$S" "$SAMPLER_PID"
is_replica 1 || fail "node1 is not a replica after the switchover"
probe_write 1 && fail "node1 accepts writes after the switchover"
grep -q "pg_rewind from" "$T_DIR/node1.log" && fail "node1 needed pg_rewind after a clean switchover"
grep -q "cloning from" "$T_DIR/node1.log" && fail "node1 was re-cloned after a clean switchover"
read -r gap1 gap1_at < <(writer_max_gap "$W")
[ -n "$(sampler_double_primaries "$S")" ] && fail "two nodes accepted writes in one sample round:
$(sampler_double_primaries "$S")"
res1=$(writer_median_interval "$W")
agent1=$(log_span_ms "$T_DIR/node1.log" "release leader key: switchover" "$T_DIR/node2.log" "promote finished")
log "CLI switchover: longest write gap $gap1 ms (starting $((gap1_at - t0)) ms after the request; writer resolution ~$res1 ms, $(wc -l <"$W") writes); agent logs: release decision -> promote finished $agent1 ms"

# the new leader writes the history after its promotion, not when it takes the leader key
history_() { "$BIN" history --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE"; }
switchovers_to() {
    local h
    h=$(history_ 2>&1) || { echo "$h"; return 1; }
    echo "$h"
    [ "$(echo "$h" | grep switchover | grep -c "$1")" -ge "$2" ]
}
wait_until 30 "a switchover entry naming node2 in the history" switchovers_to node2 1
history_
no_failover_key() { [ -z "$(etcdctl_ get --print-value-only "/service/$SCOPE/failover")" ]; }
wait_until 30 "the failover key removed after the switchover" no_failover_key

# ---- 2. REST switchover node2 -> node3 --------------------------------------------------------
wait_until 30 "node1 and node3 published as running replicas" running_replicas 1 3
W="$T_DIR/writes2"
start_writer "$W" 1 2 3
S="$T_DIR/samples2"
start_sampler "$S" 1 2 3
sleep 2
t0=$(now_ms)
code=$(curl -s -o "$T_DIR/rest_switchover.out" -w '%{http_code}' --max-time 60 -X POST \
    -H 'Content-Type: application/json' -d '{"leader":"node2","candidate":"node3"}' \
    "http://127.0.0.1:${API_PORT[2]}/switchover")
t1=$(now_ms)
log "REST switchover: HTTP $code after $((t1 - t0)) ms: $(cat "$T_DIR/rest_switchover.out")"
[ "$code" = 200 ] || fail "POST /switchover answered $code: $(cat "$T_DIR/rest_switchover.out")"
[ "$(leader)" = "node3" ] || fail "leader is '$(leader)' after the switchover to node3"
wait_until 30 "node3 accepts writes" probe_write 3
wait_until 60 "node2 streams from node3" streams_from 2 3
wait_until 60 "node1 streams from node3" streams_from 1 3
sleep 2
stop_bg "$W" "$WRITER_PID"
stop_bg "$S" "$SAMPLER_PID"
probe_write 2 && fail "node2 accepts writes after the switchover"
grep -q "pg_rewind from" "$T_DIR/node2.log" && fail "node2 needed pg_rewind after a clean switchover"
read -r gap2 gap2_at < <(writer_max_gap "$W")
[ -n "$(sampler_double_primaries "$S")" ] && fail "two nodes accepted writes in one sample round:
$(sampler_double_primaries "$S")"
res2=$(writer_median_interval "$W")
agent2=$(log_span_ms "$T_DIR/node2.log" "release leader key: switchover" "$T_DIR/node3.log" "promote finished")
log "REST switchover: longest write gap $gap2 ms (starting $((gap2_at - t0)) ms after the request; writer resolution ~$res2 ms, $(wc -l <"$W") writes); agent logs: release decision -> promote finished $agent2 ms"
wait_until 30 "a second switchover entry, naming node3, in the history" switchovers_to node3 1
n_sw=$(history_ | grep -c switchover)
[ "$n_sw" -ge 2 ] || fail "expected two switchover entries in the history, got $n_sw"

# nothing lost: the initial rows everywhere, and every acknowledged write on the final leader
for n in 1 2 3; do wait_until 30 "node$n has the 1000 rows" rows_on "$n" 1000; done
acked=$(( $(wc -l <"$T_DIR/writes1") + $(wc -l <"$T_DIR/writes2") ))
have=$(psql_n 3 -c "select count(*) from it_probe")
[ "$have" -ge "$acked" ] || fail "acknowledged writes lost: $acked acknowledged by the writers, $have rows on node3"
echo "MEASURE switchover: cli_write_gap_ms=$gap1 (resolution ~$res1) cli_release_to_promoted_ms=$agent1 rest_write_gap_ms=$gap2 (resolution ~$res2) rest_release_to_promoted_ms=$agent2"
echo "PASS [$T_NAME]"
