#!/bin/bash
# The write leader of an active-active group, through the proxy: three nodes a, b, c (each its own
# single-node pgvigil cluster, its agent with active_active.group: shop; a and b in location vl,
# c in wa), a proxy on the group with a write_leader route, a write_leader route for location wa
# and a read route.
#  - one node takes the vacant lead; c leads location wa; writes through each route land on its
#    leader; the read route reaches every node;
#  - kill -9 of the leader's postmaster: its agent gives the lead up, another node takes it, and
#    writes through the proxy land there (the time from the kill to the first write that commits
#    through the proxy is printed as a MEASURE line);
#  - a planned switchover under a writer that increments one counter through the proxy: the new
#    leader takes the lead only after applying the old one's writes, so no conflict is recorded
#    anywhere and the counter equals the number of increments that committed (checked on every
#    node; the check's self-test feeds it a recorded conflict and a lost increment);
#  - a switchover to a node that cannot apply the leader's writes (its apply paused) fails with
#    the reason and the lead stays; to a node not in the group is refused.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_proxy.sh"
source "$(dirname "$0")/lib_aa_agents.sh"

NODES=(a b c)
declare -A NUM=([a]=1 [b]=2 [c]=3) LOC=([a]=vl [b]=vl [c]=wa)
AA_SCHEMA="create table counter (id int primary key, n bigint not null);
create table t (id bigint primary key, node text)"
aa_agents_up
DCS="http://127.0.0.1:$E_PORT"
# the counter's row, written once and replicated (rows each node wrote by itself before the group
# existed would be versions the others never saw: their first update would count as a conflict)
qn a -c "insert into counter values (1, 0)"
has_counter() { local n; for n in "${NODES[@]}"; do [ "$(qn "$n" -c "select n from counter where id = 1")" = 0 ] || return 1; done; }
wait_until 60 "the counter's row reaches every node" has_counter
has_leader() { [ -n "$(group_leader)" ]; }
wait_until 30 "a node takes the group's write lead" has_leader
wa_is_c() { [ "$(aa_leader_json | jq -r '.locations.wa.node // ""')" = c ]; }
wait_until 30 "c leads location wa" wa_is_c
L=$(group_leader)
log "write leader: $L; location wa: c"

# the proxy, on the group
alloc_port PX_WL; alloc_port PX_WA; alloc_port PX_RO
aa_proxy_start "    - {name: wl, listen: 127.0.0.1:$PX_WL, role: write_leader}
    - {name: wl-wa, listen: 127.0.0.1:$PX_WA, role: write_leader, location: wa}
    - {name: ro, listen: 127.0.0.1:$PX_RO, role: replica, fallback_primary: false}"
via() { psql_px "$1" -c "select name from pgvigil_aa.local_node" 2>/dev/null; }
via_is() { [ "$(via "$1")" = "$2" ]; }
wait_until 20 "the wl route reaches the leader $L" via_is "$PX_WL" "$L"
wait_until 20 "the wl-wa route reaches c" via_is "$PX_WA" c
seen=""
for _ in $(seq 1 30); do seen="$seen $(via "$PX_RO")"; done
for n in "${NODES[@]}"; do grep -qw "$n" <<<"$seen" || fail "the read route never reached $n (reached:$seen)"; done
log "writes reach $L through wl and c through wl-wa; reads reach a, b and c"

# --- the leader's postmaster killed: another node leads, writes follow through the proxy
pm=$(postmaster_pid "${NUM[$L]}")
[ -n "$pm" ] || fail "no postmaster pid for $L"
t0=$(date +%s%N)
kill -9 "$pm"
# writes through the proxy, one connection each, until one commits on another node
writer_lands() {
    local got
    got=$(PX_CONNECT_TIMEOUT=5 psql_px "$PX_WL" -c "insert into t values ((random() * 1e15)::bigint, (select name from pgvigil_aa.local_node)) returning node" 2>/dev/null) &&
        [ -n "$got" ] && [ "$got" != "$L" ]
}
wait_until 30 "a write through the proxy commits on a node other than $L" writer_lands
t1=$(date +%s%N)
NL=$(group_leader)
[ -n "$NL" ] && [ "$NL" != "$L" ] || fail "the group's write leader is \"$NL\" after $L was killed"
echo "MEASURE aa_write_leader_failover_ms=$(((t1 - t0) / 1000000))"
grep -q "gave up the write lead of group shop" "$T_DIR/node${NUM[$L]}.log" || fail "$L's agent did not say it gave the lead up"
log "the lead went from $L to $NL after kill -9; writes follow in $(((t1 - t0) / 1000000)) ms"
wait_until 60 "$L runs again (its agent restarts it)" is_primary "${NUM[$L]}"
wait_until 60 "the three nodes can take writes again" aa_all_writable
[ "$(group_leader)" = "$NL" ] || fail "the lead moved back to $L by itself"

# --- planned switchover under a writer
peers_caught_up() {
    local n o
    for n in "${NODES[@]}"; do
        for o in "${NODES[@]}"; do
            [ "$n" = "$o" ] && continue
            [ "$(qn "$n" -c "select count(*) from pgvigil_aa.status() where peer = '$o' and pid is not null")" = 1 ] || return 1
        done
    done
}
wait_until 60 "every node's apply workers run" peers_caught_up
# the check: no conflict recorded on any node, and the counter equals the increments committed
counter_checks() {
    local want="$1" n c v
    for n in "${NODES[@]}"; do
        c=$(qn "$n" -c "select count(*) from pgvigil_aa.conflicts") || return 2
        [ "$c" = 0 ] || { echo "$n recorded $c conflict(s): $(qn "$n" -c "select kind, relation, key, peer, local_origin, local_commit_ts, remote_commit_ts, local_row, remote_row, winner from pgvigil_aa.conflicts" | head -3)"; return 1; }
        v=$(qn "$n" -c "select n from counter where id = 1")
        [ "$v" = "$want" ] || { echo "$n has counter $v, $want increments committed"; return 1; }
    done
}
converged_to() { counter_checks "$1" >/dev/null; }
base=$(qn "$NL" -c "select n from counter where id = 1")
wait_until 30 "every node has the counter at $base" counter_checks "$base"
TO=$(for n in "${NODES[@]}"; do [ "$n" != "$NL" ] && echo "$n"; done | head -1)
ok_file="$T_DIR/increments"
: >"$ok_file"
stop_file="$T_DIR/writer.stop"
(
    while [ ! -f "$stop_file" ]; do
        PX_CONNECT_TIMEOUT=10 psql_px "$PX_WL" -c "update counter set n = n + 1 where id = 1" >/dev/null 2>&1 && echo ok >>"$ok_file"
    done
) &
WRITER=$!
EXTRA_PIDS+=("$WRITER")
some_increments() { [ "$(wc -l <"$ok_file")" -ge 20 ]; }
wait_until 30 "the writer commits through the proxy" some_increments
# a statement on the old leader that passed its write check before the handover and writes
# after the drain (the select list sleeps before the row is inserted): its commit is refused
slow_out="$T_DIR/slow.out"
qn "$NL" -c "insert into t select (random() * 1e15)::bigint, pg_sleep(8)::text" >"$slow_out" 2>&1 &
SLOW=$!
EXTRA_PIDS+=("$SLOW")
slow_running() { [ "$(qn "$NL" -c "select count(*) from pg_stat_activity where query like 'insert into t select%pg_sleep(8)%' and state = 'active'")" = 1 ]; }
wait_until 20 "the slow insert runs on $NL" slow_running
# (a drain of 1 s: the slow insert is still running when the refusal begins)
out=$("$BIN" aa switchover --group shop --dcs-url "$DCS" --to "$TO" --drain-timeout 1 2>&1) || fail "switchover to $TO: $out"
log "$out"
grep -q "write leader of group shop: $NL -> $TO" <<<"$out" || fail "unexpected switchover output: $out"
ms=$(sed -n 's/.*(\([0-9]*\) ms)$/\1/p' <<<"$out")
echo "MEASURE aa_write_leader_switchover_ms=$ms"
before=$(wc -l <"$ok_file")
more_increments() { [ "$(wc -l <"$ok_file")" -ge $((before + 20)) ]; }
wait_until 30 "the writer commits after the switchover" more_increments
touch "$stop_file"
wait "$WRITER"
via_is "$PX_WL" "$TO" || fail "the wl route does not reach $TO after the switchover"
wait "$SLOW" && fail "the slow insert on the old leader committed after the handover: $(cat "$slow_out")"
grep -q "a handover of this node's write lead began while this transaction was writing" "$slow_out" ||
    fail "the slow insert failed for another reason: $(cat "$slow_out")"
log "a statement that began writing on $NL before the handover was refused at its commit"
want=$((base + $(wc -l <"$ok_file")))
wait_until 60 "every node converges to counter $want without a conflict" counter_checks "$want"
log "switchover $NL -> $TO under a writer: $((want - base)) increments, counter $want on every node, no conflict"
# the check's self-test: a lost increment, then a recorded conflict, must both fail it
counter_checks $((want + 1)) >/dev/null && fail "self-test: the check passed with a lost increment"
qn a -c "insert into pgvigil_aa.conflicts (peer, kind, relation, key, remote_commit_ts, policy, winner) values ('b', 'update_update', 'public.counter', 'id=1', now(), 'last_writer_wins', 'local')"
counter_checks "$want" >/dev/null && fail "self-test: the check passed with a recorded conflict"
qn a -c "delete from pgvigil_aa.conflicts"
log "self-test: the check fails on a lost increment and on a recorded conflict"

# --- a switchover that cannot complete: the target's apply from the leader is paused
OTHER=$(for n in "${NODES[@]}"; do [ "$n" != "$TO" ] && echo "$n"; done | head -1)
qn "$OTHER" -c "select pgvigil_aa.pause('$TO')" >/dev/null
apply_stopped() { [ "$(qn "$OTHER" -c "select count(*) from pgvigil_aa.status() where peer = '$TO' and pid is null")" = 1 ]; }
wait_until 30 "$OTHER's apply from $TO stops" apply_stopped
qn "$TO" -c "update counter set n = n + 1 where id = 1"    # something for it to apply
if out=$("$BIN" aa switchover --group shop --dcs-url "$DCS" --to "$OTHER" --timeout 30 2>&1); then
    fail "a switchover to a node that does not apply the leader's writes succeeded: $out"
fi
grep -q "did not apply this node's writes" <<<"$out" || fail "the failed switchover does not say why: $out"
[ "$(group_leader)" = "$TO" ] || fail "the lead left $TO after a failed switchover"
wait_until 20 "the wl route reaches $TO again" via_is "$PX_WL" "$TO"
qn "$OTHER" -c "select pgvigil_aa.resume('$TO')" >/dev/null
log "a switchover to a node whose apply is paused fails, saying why; $TO keeps the lead and takes writes"
out=$("$BIN" aa switchover --group shop --dcs-url "$DCS" --to nosuch 2>&1) && fail "a switchover to an unknown node succeeded"
grep -q "nosuch is not a node of group shop" <<<"$out" || fail "unexpected refusal: $out"
log "a switchover to a node not in the group is refused: $out"
echo "PASS [$T_NAME]"
