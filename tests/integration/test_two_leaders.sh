#!/bin/bash
# A primary that finds another member in the leader key demotes at once, and that member
# promotes: at no sampled moment do two nodes accept writes.
source "$(dirname "$0")/lib.sh"

start_cluster 3
psql_n 1 -c "create table t(id int); insert into t values (1)" || fail "initial write"
wait_until 20 "node2 has the row" bash -c "[ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[2]} -U postgres -Atc 'select count(*) from t' 2>/dev/null)\" = 1 ]"
# sample every node's writability while the leader key is overwritten
touch "$T_DIR/sampling"
# ends with the test's shell too: a failed test keeps $T_DIR, and the flag file with it
(
    while [ -f "$T_DIR/sampling" ] && kill -0 $$ 2>/dev/null; do
        w=""
        for n in 1 2 3; do
            PGPASSWORD=it-super PGCONNECT_TIMEOUT=1 psql -X -q -h 127.0.0.1 -p "${PG_PORT[$n]}" -U postgres -d postgres \
                -c "set statement_timeout = 1000; insert into t values ($n)" >/dev/null 2>&1 && w="$w $n"
        done
        echo "$(date +%s%N)$w" >>"$T_DIR/samples"
        sleep 0.05
    done
) &
SAMPLER=$!
sleep 1
etcdctl_ put "/service/$SCOPE/leader" node2 >/dev/null || fail "etcdctl put"
log "leader key overwritten with node2 while node1 runs as primary"
wait_until 30 "node2 promoted" is_primary 2
wait_until 30 "node1 no longer writable" bash -c "! PGPASSWORD=it-super PGCONNECT_TIMEOUT=1 psql -X -h 127.0.0.1 -p ${PG_PORT[1]} -U postgres -c 'insert into t values (9)' >/dev/null 2>&1"
sleep 2
rm -f "$T_DIR/sampling"
wait "$SAMPLER"
both=$(awk 'NF > 2' "$T_DIR/samples")
[ -z "$both" ] || fail "two nodes accepted writes in one sample: $both"
grep -q "demote: node2 holds the leader key but I am running as primary" "$T_DIR/node1.log" || fail "node1 did not log the demotion with its reason"
wait_until 60 "node1 rejoins node2 as a streaming replica" is_streaming 1
echo "PASS [$T_NAME] ($(wc -l <"$T_DIR/samples") samples)"
