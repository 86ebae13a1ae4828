#!/bin/bash
# Rolling maintenance of an active-active group through the proxy (`pgvigil aa maintenance`):
# three nodes run by agents, a proxy with a write_leader route and a read route. While a writer
# (a session per transaction, through the write route) and a reader (the same, through the read
# route) run, every node is drained, restarted by its agent and caught up in turn, the write
# leader's lead moved by planned switchover: no transaction of either fails, every node's
# postmaster restarted, and the three converge with no conflict. The check's self-test: a
# failed transaction in the writer's log fails it. Also: a node that does not come back
# (--command that fails) stops the run and stays drained; --undrain gives it back.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_aa_agents.sh"
source "$(dirname "$0")/lib_proxy.sh"

NODES=(a b c)
declare -A NUM=([a]=1 [b]=2 [c]=3) LOC=()
AA_SCHEMA="create table w (id bigint primary key, node text, at timestamptz default clock_timestamp())"
aa_agents_up
has_leader() { [ -n "$(group_leader)" ]; }
wait_until 30 "a node takes the group's write lead" has_leader
running() { [ "$(qn "$1" -c "select count(*) from pgvigil_aa.status() where pid is not null")" = 2 ]; }
for n in "${NODES[@]}"; do wait_until 30 "node $n applies from its peers" running "$n"; done

alloc_port PX_WL; alloc_port PX_RO
aa_proxy_start "    - {name: wl, listen: 127.0.0.1:$PX_WL, role: write_leader}
    - {name: ro, listen: 127.0.0.1:$PX_RO, role: replica, fallback_primary: false}"
via_ok() { psql_px "$PX_WL" -c "select 1" >/dev/null 2>&1; }
wait_until 20 "the write route reaches the leader" via_ok

declare -A START
for n in "${NODES[@]}"; do START[$n]=$(qn "$n" -c "select pg_postmaster_start_time()"); done
stop_file="$T_DIR/clients.stop"
# a client: one session per transaction through a route, each outcome logged (ok / failed: why)
client() {
    local port="$1" sql="$2" log="$3" i=0 out
    while [ ! -f "$stop_file" ]; do
        i=$((i + 1))
        if out=$(PX_CONNECT_TIMEOUT=60 psql_px "$port" -c "${sql//@I@/$i}" 2>&1); then echo "ok $out" >>"$log"
        else echo "failed $i: $(tr '\n' ' ' <<<"$out")" >>"$log"; fi
    done
}
WLOG="$T_DIR/writer.log" RLOG="$T_DIR/reader.log"
: >"$WLOG"; : >"$RLOG"
client "$PX_WL" "insert into w (id, node) values (@I@, (select name from pgvigil_aa.local_node)) returning node" "$WLOG" &
WP=$!
client "$PX_RO" "select name from pgvigil_aa.local_node" "$RLOG" &
RP=$!
EXTRA_PIDS+=("$WP" "$RP")
some() { [ "$(grep -c '^ok' "$1")" -ge 20 ]; }
wait_until 30 "the writer commits" some "$WLOG"
wait_until 30 "the reader reads" some "$RLOG"

out=$(PGUSER=postgres PGPASSWORD=it-super "$BIN" aa maintenance --group shop --dcs-url "http://127.0.0.1:$E_PORT" --drain-timeout 20 2>&1) ||
    fail "maintenance: $out"
log "$out"
touch "$stop_file"
wait "$WP" "$RP"
# the check: no failed transaction in a client's log
no_failure() {
    local f
    for f in "$@"; do
        if grep -q '^failed' "$f"; then echo "$(basename "$f"): $(grep -c '^failed' "$f") failed, e.g. $(grep -m1 '^failed' "$f")"; return 1; fi
    done
}
no_failure "$WLOG" "$RLOG" || fail "$(no_failure "$WLOG" "$RLOG")"
writes=$(grep -c '^ok' "$WLOG") reads=$(grep -c '^ok' "$RLOG")
for n in "${NODES[@]}"; do
    [ "$(qn "$n" -c "select pg_postmaster_start_time()")" != "${START[$n]}" ] || fail "node $n was not restarted"
    grep -q "node $n: done" <<<"$out" || fail "no report for node $n"
done
served=$(grep '^ok' "$WLOG" | awk '{print $2}' | sort -u | tr '\n' ' ')
log "maintenance of a, b and c under a writer and a reader: $writes writes and $reads reads, none failed; writes served by: $served"
echo "MEASURE aa_maintenance_failed_transactions=0 writes=$writes reads=$reads"
# self-test of the check
cp "$WLOG" "$T_DIR/bad.log"; echo "failed 999: server closed the connection unexpectedly" >>"$T_DIR/bad.log"
no_failure "$T_DIR/bad.log" >/dev/null && fail "self-test: the check passed a log with a failed transaction"

# convergence: every write on every node, no conflict
content() { qn "$1" -c "select count(*) || ':' || md5(string_agg(id || node, ',' order by id)) from w"; }
converged() {
    local ca cb cc
    ca=$(content a) && cb=$(content b) && cc=$(content c) || return 2
    [ "$ca" = "$cb" ] && [ "$cb" = "$cc" ] && [ "${ca%%:*}" = "$writes" ] || { echo "a $ca / b $cb / c $cc / $writes writes"; return 1; }
}
wait_until 60 "a, b and c hold every write" converged
for n in "${NODES[@]}"; do
    [ "$(qn "$n" -c "select count(*) from pgvigil_aa.conflicts")" = 0 ] || fail "node $n recorded conflicts"
done
log "a, b and c converge with the $writes writes, no conflict"

# a node that does not come back: the run stops, the node stays drained
out=$(PGUSER=postgres PGPASSWORD=it-super "$BIN" aa maintenance --group shop --dcs-url "http://127.0.0.1:$E_PORT" --nodes b --command "exit 3" 2>&1) &&
    fail "a maintenance whose command failed succeeded: $out"
grep -q "node b: exit 3 exited with status 3" <<<"$out" || fail "unexpected failure: $out"
[ "$(aa_leader_json | jq -r '.nodes[] | select(.name == "b") | .name')" = b ] || fail "b's record is gone"
drained_b() { [ "$(etcdctl_ get --print-value-only /service/shop/aa/drain/b | wc -c)" -gt 0 ]; }
drained_b || fail "b is not drained after its failed maintenance"
"$BIN" aa maintenance --group shop --dcs-url "http://127.0.0.1:$E_PORT" --undrain b >/dev/null || fail "undrain b"
drained_b && fail "b is still drained after --undrain"
log "a failed node stops the run and stays drained: $(head -c 200 <<<"$out" | tr '\n' ' '); --undrain gives it back"
echo "PASS [$T_NAME]"
