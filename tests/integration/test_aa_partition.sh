#!/bin/bash
# Active-active partition (pgext/aa, issue 14): two data centers, one pgvigil_aa node each, cut
# from each other for longer than a lease TTL while clients write the same rows on both sides,
# then healed: the nodes converge.
#  1. Nodes a and b (plain PostgreSQL 15 with pgvigil_aa, no agent) each run in a network
#     namespace of their own (lib_netns.sh: a bridge, a veth per node, private addresses); each
#     peer row reaches the other node's address with a connect timeout (AA_PARTITION_PEER_OPTS
#     replaces it); the workers drop a peer silent for pgvigil_aa.receive_timeout (4 s here).
#  2. A same-rows workload on both sides (aa_workload.py, rounds of it one after another: each
#     node's client runs in its node's namespace, to its node's address) that keeps writing
#     before, during and after the partition.
#  3. Partition: every packet between the two namespaces vanishes (lib_netns.sh's netns_cut)
#     for 2 * T_TTL. During it each side still commits (both writable), and each node's apply
#     worker for the other is failing or not running (pgvigil_aa.status()); checked running and
#     without error before the cut, so that check can fail.
#  4. Heal; the workers stream again; the clients write on; the workload stops; once every slot
#     is confirmed up to each node's last write, every table has the same md5 (key order) on
#     both, and every acknowledged value is in the content, replaced by a write that had read it,
#     or recorded as the losing version of a conflict (aa_audit.py: 0 unaccounted). The
#     partition must have made conflicts (MEASURE aa_partition_conflicts).
#  5. Self-test: one row changed on a alone, under a private replication origin (not sent): the
#     md5 comparison sees the nodes differ.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_netns.sh"
source "$(dirname "$0")/lib_aa.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
T_START=$EPOCHSECONDS

# a partition is noticed by the worker itself (pgvigil_aa.receive_timeout, set below: it asks
# the silent peer for a word, then drops the connection); a connect timeout for the retries
AA_PEER_OPTS="${AA_PARTITION_PEER_OPTS:-connect_timeout=2}"
CUT_S=$((2 * T_TTL))
KEYS=20        # the hot set both sides write
ROUND_OPS=100  # operations per run of aa_workload.py

netns_setup 2
AA_NETNS[a]=1
AA_NETNS[b]=2
start_node a
start_node b
for n in a b; do q "$n" -c "alter system set pgvigil_aa.receive_timeout = 4000" -c "select pg_reload_conf()" >/dev/null; done
aa_group a b
start_workers a b
log "nodes a ($(aa_host a):${PORT[a]}, namespace $(netns_name 1)) and b ($(aa_host b):${PORT[b]}, namespace $(netns_name 2)); peers: $AA_PEER_OPTS"

# a client of node N from the host: its unix socket (the partition does not cut it)
dsn_local() { echo "host=$T_DIR/node_$1 port=${PORT[$1]} user=postgres dbname=postgres"; }
# md5 of every table of public in key order, one line per table
content() {
    local n="$1" t keycols
    for t in $(q "$n" -c "select c.oid::regclass from pg_class c where c.relnamespace = 'public'::regnamespace and c.relkind = 'r' order by c.relname"); do
        keycols=$(q "$n" -c "select string_agg(quote_ident(a.attname), ', ' order by array_position(i.indkey::int2[], a.attnum))
                              from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
                             where i.indrelid = '$t'::regclass and i.indisprimary") || return 1
        [ -n "$keycols" ] || { echo "$t: no primary key"; return 1; }
        q "$n" -c "select '$t ' || count(*) || ' ' || coalesce(md5(string_agg(x::text, E'\\n' order by $keycols)), '-') from $t x" || return 1
    done
}
same_content() {
    local ca cb
    ca=$(content a) && cb=$(content b) || return 1
    echo "a: $ca"
    echo "b: $cb"
    [ -n "$ca" ] && [ "$ca" = "$cb" ]
}
# node N's apply worker for PEER: streaming (a pid, no error) / failing or not running
apply_state() { q "$1" -c "select case when pid is not null and last_error is null then 'running' else 'down' end || ' pid=' || coalesce(pid::text, '-') || ' error=' || coalesce(last_error, '-') from pgvigil_aa.status() where peer = '$2'"; }
apply_running() { local s; s=$(apply_state "$1" "$2"); echo "$1 from $2: $s"; [[ "$s" == running* ]]; }
apply_down() { local s; s=$(apply_state "$1" "$2"); echo "$1 from $2: $s"; [[ "$s" == down* ]]; }
both_running() { apply_running a b && apply_running b a; }
both_down() { apply_down a b && apply_down b a; }
# acknowledged writes of node N's clients so far
acked() { cat "$T_DIR"/wl/logs/"$1".*.log 2>/dev/null | wc -l; }
applied_from() { q "$1" -c "select applied_transactions from pgvigil_aa.status() where peer = '$2'"; }
w_on() { [ "$(q "$1" -c "select to_regclass('public.w') is not null")" = t ]; }
conflicts_on() { q "$1" -c "select count(*) from pgvigil_aa.conflicts where relation = 'public.w' ${2:-}"; }

# ---- 1. the table and its content, on both
q a -c "create table w(id int primary key, v text not null, n int not null default 0)" || fail "creating w"
wait_until 30 "w on b" w_on b
q a -c "insert into w select g, 'seed' from generate_series(1, $KEYS) g" || fail "seeding w"
wait_until 30 "w's rows on b" same_content
wait_until 30 "both apply workers streaming" both_running
log "w seeded on a, the same on b: $(content b)"

# ---- 2. the workload: rounds of aa_workload.py until the stop file, one client per node, in its
# node's namespace to its node's address
mkdir -p "$T_DIR/wl/logs"
workload_loop() { # NODE SEED
    local n="$1" r=0 dsn="host=$(aa_host "$1") port=${PORT[$1]} user=postgres dbname=postgres"
    while [ ! -e "$T_DIR/wl/stop" ]; do
        r=$((r + 1))
        # (the client's label names node and round: its tokens, "a.3-17", are unique)
        nsexec "${AA_NETNS[$n]}" /usr/bin/python3 "$HERE/aa_workload.py" $((r * 10 + $2)) "$ROUND_OPS" "$KEYS" \
            "$T_DIR/wl/logs" "$n.$r=$dsn" >>"$T_DIR/wl/$n.out" 2>&1 ||
            echo "round $r of $n failed (exit $?)" >>"$T_DIR/wl/failed"
    done
}
workload_loop a 1 &
WL_A=$!
workload_loop b 2 &
WL_B=$!
EXTRA_PIDS+=("$WL_A" "$WL_B")
wait_until 60 "both sides' clients write" eval '[ "$(acked a)" -ge 50 ] && [ "$(acked b)" -ge 50 ]'
wait_until 30 "the apply workers apply the other's writes" eval '[ "$(applied_from a b)" -gt 0 ] && [ "$(applied_from b a)" -gt 0 ]'
both_running >/dev/null || fail "an apply worker is not streaming before the partition: $(apply_state a b); $(apply_state b a)"
log "workload running: a $(acked a), b $(acked b) acknowledged writes; both apply workers streaming"

# ---- 3. the partition, for 2 * T_TTL
CONFLICTS_BEFORE=$(( $(conflicts_on a) + $(conflicts_on b) ))
CUT_TS=$(q a -c "select clock_timestamp()")
CUT_MS=$(now_ms)
netns_cut 1 2
# (noticed once TCP gives up: wait for that state, the partition still on)
wait_until 30 "both apply workers failing or stopped during the partition" both_down
DOWN_MS=$(( $(now_ms) - CUT_MS ))
log "partition noticed after $DOWN_MS ms: $(apply_state a b | cut -c1-160); $(apply_state b a | cut -c1-160)"
ACK_A=$(acked a)
ACK_B=$(acked b)
# the partition lasts CUT_S at least, and until both sides committed more while each knew the
# other unreachable
sleep_until_ms $((CUT_MS + CUT_S * 1000))
wait_until 30 "both sides commit while cut off" eval '[ "$(acked a)" -gt "$ACK_A" ] && [ "$(acked b)" -gt "$ACK_B" ]'
both_down >/dev/null || fail "an apply worker streams across the partition: $(apply_state a b); $(apply_state b a)"
log "both sides wrote while cut off from each other: a +$(( $(acked a) - ACK_A )), b +$(( $(acked b) - ACK_B )) acknowledged writes after the partition was noticed"
netns_uncut 1 2
HEAL_TS=$(q a -c "select clock_timestamp()")
HEAL_MS=$(now_ms)

# ---- 4. heal: streaming again, writes go on, then quiescence and the checks
wait_until 90 "both apply workers streaming again after the heal" both_running
log "streaming again $(( $(now_ms) - HEAL_MS )) ms after the heal"
ACK_A=$(acked a)
ACK_B=$(acked b)
wait_until 60 "both sides write on after the heal" eval '[ "$(acked a)" -ge $((ACK_A + 50)) ] && [ "$(acked b)" -ge $((ACK_B + 50)) ]'
touch "$T_DIR/wl/stop"
gone() { local st; st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null); [ -z "$st" ] || [ "$st" = Z ]; }
wait_until 60 "the workload's last rounds end" eval 'gone $WL_A && gone $WL_B'
wait "$WL_A" "$WL_B"
[ -e "$T_DIR/wl/failed" ] && fail "workload: $(cat "$T_DIR/wl/failed"); $(tail -5 "$T_DIR"/wl/*.out)"
log "workload stopped: a $(acked a), b $(acked b) acknowledged writes"
mark_quiet a b
wait_until 90 "each node applied the other's writes" slots_caught_up a b
same_content >"$T_DIR/content.out" || fail "the nodes differ after the partition: $(cat "$T_DIR/content.out")"
/usr/bin/python3 "$HERE/aa_audit.py" "$(dsn_local a)" "$T_DIR"/wl/logs/*.log -- "$(dsn_local a)" "$(dsn_local b)" \
    >"$T_DIR/audit.out" 2>&1 || fail "audit: $(tail -20 "$T_DIR/audit.out")"
grep -q ", 0 unaccounted$" "$T_DIR/audit.out" || fail "audit: $(tail -3 "$T_DIR/audit.out")"
CONFLICTS=$(( $(conflicts_on a) + $(conflicts_on b) ))
IN_CUT=$(( $(conflicts_on a "and remote_commit_ts between '$CUT_TS' and '$HEAL_TS'") +
           $(conflicts_on b "and remote_commit_ts between '$CUT_TS' and '$HEAL_TS'") ))
[ "$IN_CUT" -gt 0 ] || fail "no conflict recorded for a write made during the partition (conflicts: $CONFLICTS_BEFORE before, $CONFLICTS after)"
KINDS=$(for n in a b; do q $n -c "select kind || ':' || count(*) from pgvigil_aa.conflicts where relation = 'public.w' group by kind"; done |
        awk -F: '{c[$1] += $2} END {for (k in c) printf "%s=%d ", k, c[k]}')
log "converged: $(head -1 "$T_DIR/content.out" | cut -c4-); $(tail -1 "$T_DIR/audit.out")"
log "conflicts: $CONFLICTS recorded on a and b ($CONFLICTS_BEFORE before the partition, $IN_CUT of writes made during it); kinds: $KINDS"
for n in a b; do
    p=$([ $n = a ] && echo b || echo a)
    log "$n: $(q $n -c "select 'applied ' || applied_transactions || ' transactions from $p, ' || conflicts || ' conflicts since start' from pgvigil_aa.status() where peer = '$p'")"
done
for n in a b; do
    log "$n's log: $(grep -c 'pgvigil_aa: applying from peer' "$T_DIR/node_$n/postgres.log") apply worker starts, $(grep -c ' ERROR: ' "$T_DIR/node_$n/postgres.log") errors in its log (clients' too): $(grep -o ' ERROR: .*' "$T_DIR/node_$n/postgres.log" | sed -E 's/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -5 | tr -s ' ' | tr '\n' ';')"
done
echo "MEASURE aa_partition_conflicts $IN_CUT"
echo "MEASURE aa_partition_conflicts_total $CONFLICTS"
echo "MEASURE aa_partition_detect_ms $DOWN_MS"

# ---- 5. self-test: a change of a alone (a private replication origin: its rows are not sent)
q a -c "select pg_replication_origin_create('it_private')" \
    -c "select pg_replication_origin_session_setup('it_private')" \
    -c "update w set v = 'private', n = n + 1 where id = (select min(id) from w)" >/dev/null ||
    fail "the private change on a"
mark_quiet a b
wait_until 30 "each node's slots confirmed past the private change" slots_caught_up a b
same_content >"$T_DIR/content2.out" &&
    fail "self-test: a row changed on a alone, and the md5 comparison saw no difference: $(cat "$T_DIR/content2.out")"
log "self-test: a row changed on a alone (not replicated): the md5 comparison sees the nodes differ"
log "took $((EPOCHSECONDS - T_START)) s"
echo "PASS [$T_NAME]"
