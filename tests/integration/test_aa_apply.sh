#!/bin/bash
# Active-active, second piece: pgvigil_aa's own apply workers (pgext/aa/pgvigil_aa_apply.c) between
# two plain PostgreSQL 15 instances, A and B, on 127.0.0.1, each applying the other's
# pgvigil_aa slot (no built-in subscription).
#  1. Inserts, updates, deletes and a truncate of distinct rows on both converge: identical
#     tables (md5 of every row in key order), each change applied once.
#  2. Concurrent writers on both nodes updating the same rows and inserting the same keys:
#     after quiescence both nodes have identical content, and the conflicts are recorded in
#     pgvigil_aa.conflicts on the node that threw a write away (kinds insert_exists and
#     update_update, winner by last-writer-wins).
#  3. Progress is crash-safe: B killed with -9 in the middle of A's 200 transactions and
#     restarted (its worker started again) ends with each row once, each of A's transactions
#     applied in exactly one local transaction.
#     The launcher starts B's worker again after the crash (no start_apply).
#  4. pgvigil_aa.status() and `pgvigil aa status` (text and --json) show the apply (worker,
#     transactions applied, no lag; an unreachable node fails the command) and
#     pgvigil_aa.slots the slots; pause stops B's worker (A's slot keeps A's new write, B does not
#     have it), resume applies it. Synchronous mode: with synchronous_standby_names naming b's
#     worker (pgvigil_aa_b), a's commit waits while b is paused and returns once b has the row.
#     Sequences: a serial key written on both nodes at once never collides.
#  5. A table without a primary key: B's worker stops on its first change, saying so in the log
#     and in `pgvigil aa status`, which then fails (never a silent divergence).
#     A node away too long (its peer's slot invalidated past max_slot_wal_keep_size): its
#     worker stops and says, in the log and the status, that it must be rebuilt.
#  6. The convergence check can fail: a row written on B under a replication origin (as if it
#     came from a peer) is never sent to A, and the check sees the difference.
source "$(dirname "$0")/lib.sh"

source "$(dirname "$0")/lib_aa.sh"
start_node a
start_node b
aa_group a b
start_workers a b
# (created on a: the DDL reaches b)
q a -c "create table t(id int primary key, v text, n int not null default 0, c char(6) not null default 'abcdef')" ||
    fail "creating t"
has_table() { [ "$(q "$1" -c "select to_regclass('$2') is not null")" = t ]; }
wait_until 30 "t on b" has_table b public.t
content() { q "$1" -c "select count(*) || ' ' || coalesce(sum(n), 0) || ' ' || coalesce(md5(string_agg(id || ':' || v || ':' || n || ':' || c, ',' order by id)), '-') from t"; }
same() { [ "$(content a)" = "$(content b)" ]; }

# ---- 1. distinct rows both ways
q a -c "insert into t select g, 'a' from generate_series(1, 100) g"
q b -c "insert into t select g, 'b' from generate_series(101, 200) g"
wait_until 30 "the inserts reach both" same
q a -c "update t set n = n + 1 where id % 10 = 0"
q b -c "update t set n = n + 1 where id % 7 = 0"
q a -c "delete from t where id between 190 and 195"
q a -c "create table t2(id int primary key)" -c "insert into t2 select generate_series(1, 10)"
t2_empty() { [ "$(q b -c 'select count(*) from t2')" = 10 ]; }
wait_until 30 "t2 reaches b" t2_empty
q b -c "truncate t2"
t2_gone() { [ "$(q a -c 'select count(*) from t2')" = 0 ]; }
wait_until 30 "b's truncate reaches a" t2_gone
wait_until 30 "a and b converge on distinct rows" same
[ "$(content a | cut -d' ' -f1,2)" = "194 47" ] || fail "each change once: $(content a), expected 194 rows with sum(n) 47"
[ "$(q b -c "select count(*) from t where c = 'abcdef'")" = 194 ] || fail "a char(6) column was not copied whole"
log "distinct rows both ways: ok ($(content a))"

# ---- 2. the same rows written on both at once
workload() { # NODE SEED
    local n="$1" i k
    RANDOM="$2"
    for i in $(seq 1 300); do
        k=$((RANDOM % 40 + 1))
        case $((RANDOM % 3)) in
            0) echo "update t set v = '$n-$i', n = n + 1 where id = $k;" ;;
            1) echo "insert into t values ($((RANDOM % 40 + 1001)), '$n-$i') on conflict (id) do update set v = excluded.v;" ;;
            2) echo "update t set n = n + 2 where id = $((RANDOM % 40 + 1001));" ;;
        esac
    done | q "$n" >/dev/null
}
workload a 11 &
wa=$!
workload b 22 &
wb=$!
wait "$wa" || fail "workload on a"
wait "$wb" || fail "workload on b"
# quiescence: each node's slot confirmed by the other up to where its clients' writes end; only
# then is the content compared, once (equal content in passing would prove nothing)
mark_quiet a b
wait_until 60 "each node applied the other's writes" slots_caught_up a b
same || fail "a and b differ after concurrent writes to the same rows: a $(content a), b $(content b)"
conflicts=$(( $(q a -c "select count(*) from pgvigil_aa.conflicts") + $(q b -c "select count(*) from pgvigil_aa.conflicts") ))
[ "$conflicts" -gt 0 ] || fail "no conflict recorded after concurrent writes to the same rows"
kinds=$( (q a -c "select distinct kind || '/' || winner from pgvigil_aa.conflicts"; q b -c "select distinct kind || '/' || winner from pgvigil_aa.conflicts") | sort -u | tr '\n' ' ')
log "same rows on both: converged ($(content a)); $conflicts conflict(s) recorded: $kinds"

# ---- 3. B killed -9 in the middle of A's stream (200 transactions of 100 rows), restarted with
# its worker: every row once, each of A's transactions applied in one local transaction (an
# insert applied twice would have become an update: a transaction id of its own)
q a -c "create table big(id int primary key, pad text)"
for i in $(seq 0 199); do echo "insert into big select g, repeat('x', 200) from generate_series($((i * 100 + 1)), $((i * 100 + 100))) g;"; done | q a >/dev/null &
wbig=$!
some_applied() { [ "$(q b -c 'select count(*) > 0 from big')" = t ]; }
wait_until 30 "b applies some of a's transactions" some_applied
# crash_b: kill -9 b's postmaster; once it and its children are gone, start b again
crash_b() {
    local pm kids
    pm=$(head -1 "$T_DIR/node_b/data/postmaster.pid")
    kids=$(ps -o pid= --ppid "$pm" | tr -d ' ' | tr '\n' ' ')
    kill -9 "$pm"
    # (its children notice the postmaster's death and exit; then it can start again)
    gone() { local p; for p in $pm $kids; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
    wait_until 30 "b's postmaster and its children are gone" gone
    rm -f "$T_DIR/node_b/data/postmaster.pid"
    start_node b
}
crash_b
before=$(q a -c "select count(*) from big")
wait "$wbig" || fail "the inserts on a"
# (no start_apply: the launcher starts b's worker again by itself)
big_done() { [ "$(q b -c 'select count(*) from big')" = 20000 ]; }
wait_until 60 "b has a's 20000 rows after its crash" big_done
[ "$(q b -c 'select count(distinct xmin::text) from big')" = 200 ] ||
    fail "a's 200 transactions became $(q b -c 'select count(distinct xmin::text) from big') on b"
wait_until 30 "a and b converge after b's crash" same
log "crash of b in the middle of a's 200 transactions (a had $before rows then): 20000 rows, 200 transactions, once each"
wait_until 30 "b applies from a again" bash -c "$(declare -f q); $(declare -p PORT); [ \"\$(q b -c \"select count(*) from pgvigil_aa.status() where peer = 'a' and pid is not null\")\" = 1 ]"

# ---- 3b. B killed -9 while it applies one large transaction of A (300000 rows, spilled to disk
# by A's decoder): after the restart, every row once, in one local transaction
q a -c "create table huge(id int primary key, pad text)"
q a -c "insert into huge select g, repeat('y', 100) from generate_series(1, 300000) g" || fail "the large insert on a"
applying() { [ "$(q b -c "select count(*) from pg_stat_activity where application_name = 'pgvigil_aa apply from a' and backend_xid is not null")" = 1 ]; }
wait_until 60 "b's worker applies a's large transaction" applying
crash_b
huge_done() { [ "$(q b -c 'select count(*) from huge')" = 300000 ]; }
wait_until 120 "b has a's 300000 rows after its crash" huge_done
[ "$(q b -c 'select count(distinct xmin::text) from huge')" = 1 ] ||
    fail "a's large transaction became $(q b -c 'select count(distinct xmin::text) from huge') transactions on b"
[ "$(q b -c 'select count(distinct id) from huge')" = 300000 ] || fail "b's copy of huge has duplicates or gaps"
log "crash of b in the middle of a's 300000-row transaction: every row once, in one transaction"

# ---- 4. status, pause and resume
st() { q "$1" -c "select $3 from pgvigil_aa.status() where peer = '$2'"; }
# (a's worker lost b while b was down: the launcher starts it again within 5 s)
status_ok() { [ "$(st a b 'pid is not null and applied_transactions > 0 and lag_bytes = 0 and last_error is null')" = t ]; }
wait_until 30 "a's status of the apply from b: running, applied, no lag, no error" status_ok
[ "$(q a -c "select count(*) from pgvigil_aa.slots where slot_name = 'aa_for_b' and retained_bytes >= 0")" = 1 ] ||
    fail "a's slot for b is not in pgvigil_aa.slots"
# the same through `pgvigil aa status`
aa_nodes=(--node "a=host=127.0.0.1 port=${PORT[a]} user=postgres dbname=postgres" --node "b=host=127.0.0.1 port=${PORT[b]} user=postgres dbname=postgres")
"$BIN" aa status "${aa_nodes[@]}" --json >"$T_DIR/aa_status.json" 2>"$T_DIR/aa_status.err" ||
    fail "pgvigil aa status: $(cat "$T_DIR/aa_status.err")"
[ "$(jq -r '[.nodes[] | .name + ">" + (.peers[0].peer) + ":" + (.peers[0].pid != null | tostring) + ":" + (.peers[0].lag_bytes | tostring) + ":" + (.slots | length | tostring)] | join(" ")' "$T_DIR/aa_status.json")" = "a>b:true:0:1 b>a:true:0:1" ] ||
    fail "pgvigil aa status --json: $(cat "$T_DIR/aa_status.json")"
# (b restarted since the crash: its worker may have applied nothing since, a's has)
jq -e '([.nodes[].peers[0] | (.applied_transactions | type) == "number" and (.clock_difference_ms | type) == "number" and (.last_message_at | type) == "string"] | all) and .nodes[0].peers[0].applied_transactions > 0' "$T_DIR/aa_status.json" >/dev/null ||
    fail "pgvigil aa status --json has wrong types: $(cat "$T_DIR/aa_status.json")"
"$BIN" aa status "${aa_nodes[@]}" >"$T_DIR/aa_status.txt" 2>&1 && grep -q "from b            applying" "$T_DIR/aa_status.txt" ||
    fail "pgvigil aa status (text): $(cat "$T_DIR/aa_status.txt")"
"$BIN" aa status --node "x=host=127.0.0.1 port=1 user=postgres dbname=postgres" >/dev/null 2>"$T_DIR/aa_status.err" &&
    fail "pgvigil aa status of an unreachable node exited 0"
grep -q "error: node x: " "$T_DIR/aa_status.err" || fail "pgvigil aa status of an unreachable node: $(cat "$T_DIR/aa_status.err")"
q b -c "select pgvigil_aa.pause('a')" >/dev/null
paused() { [ -z "$(worker_pid b a)" ]; }
wait_until 30 "b's worker for a stops when paused" paused
[ "$(st b a 'last_error is null')" = t ] || fail "a paused apply shows an error: $(st b a last_error)"
q a -c "insert into t values (5000, 'while b pauses')"
held=$(q a -c "select pg_current_wal_lsn()")
[ "$(q a -c "select confirmed_flush_lsn < '$held' from pg_replication_slots where slot_name = 'aa_for_b'")" = t ] ||
    fail "a's slot for b was confirmed while b paused"
[ "$(q b -c "select count(*) from t where id = 5000")" = 0 ] || fail "a row reached b while it paused"
q b -c "select pgvigil_aa.resume('a')" >/dev/null
resumed() { [ "$(q b -c "select count(*) from t where id = 5000")" = 1 ]; }
wait_until 30 "the row reaches b once it resumes" resumed
log "status (applied, no lag), the slots' view, pause and resume: ok"

# synchronous mode: a's commits wait for b's apply (b's worker is named pgvigil_aa_b on a)
q a -c "alter system set synchronous_standby_names = 'pgvigil_aa_b'" -c "select pg_reload_conf()" >/dev/null
sync_seen() { [ "$(q a -c "select sync_state from pg_stat_replication where application_name = 'pgvigil_aa_b'")" = sync ]; }
wait_until 30 "b's worker is a's synchronous standby" sync_seen
q b -c "select pgvigil_aa.pause('a')" >/dev/null
wait_until 30 "b's worker for a stops when paused" paused
q a -c "insert into t values (5001, 'synchronous')" >"$T_DIR/sync_commit.out" 2>&1 &
sync_client=$!
waits() { [ "$(q a -c "select count(*) from pg_stat_activity where wait_event = 'SyncRep'")" = 1 ]; }
wait_until 30 "a's commit waits for b" waits
q b -c "select pgvigil_aa.resume('a')" >/dev/null
wait "$sync_client" || fail "a's synchronous commit: $(cat "$T_DIR/sync_commit.out")"
[ "$(q b -c "select count(*) from t where id = 5001")" = 1 ] || fail "a's synchronous commit returned before b had the row"
q a -c "alter system reset synchronous_standby_names" -c "select pg_reload_conf()" >/dev/null
log "synchronous mode: a's commit waited while b paused, and returned with the row on b"

# sequences: a serial key written on both nodes at once never collides (each node's values equal
# its offset modulo 64)
q a -c "create table s(id serial primary key, v text)"
wait_until 30 "s on b" has_table b public.s
for n in a b; do
    (for i in $(seq 1 50); do echo "insert into s (v) values ('$n');"; done | q $n >/dev/null) &
    eval "ins_$n=\$!"
done
wait "$ins_a" && wait "$ins_b" || fail "the inserts into s"
s_done() { [ "$(q a -c 'select count(*) from s')" = 100 ] && [ "$(q b -c 'select count(*) from s')" = 100 ]; }
wait_until 30 "both nodes' 50 rows of s on both" s_done
[ "$(q a -c "select count(*) from pgvigil_aa.conflicts where relation = 'public.s'")" = 0 ] ||
    fail "generated keys collided: $(q a -c "select count(*) from pgvigil_aa.conflicts where relation = 'public.s'") conflicts on s"
[ "$(q a -c "select count(*) from s where v = 'a' and id % 64 = 1")" = 50 ] && [ "$(q a -c "select count(*) from s where v = 'b' and id % 64 = 2")" = 50 ] ||
    fail "the nodes' keys are not node-distinct: $(q a -c "select v, min(id), max(id) from s group by v")"
q a -c "truncate s restart identity" -c "insert into s (v) values ('after restart')"
[ "$(q a -c "select id % 64 from s")" = 1 ] || fail "after RESTART IDENTITY a's key is not 1 mod 64: $(q a -c 'select id from s')"
log "sequences: 50 serial keys on each node at once, 100 rows, no conflict, a's keys 1 mod 64, b's 2 mod 64 (also after RESTART IDENTITY)"

# ---- 5. a table without a primary key
q a -c "create table nokey(x int)"
q a -c "insert into nokey values (1)"
said() { grep -q 'table "public.nokey" has no primary key or replica identity index' "$T_DIR/node_b/postgres.log"; }
wait_until 30 "b's worker says why it stops" said
[ "$(q b -c 'select count(*) from nokey')" = 0 ] || fail "a change of a table without a key was applied"
# `pgvigil aa status` says so too, and fails
stopped_shown() { ! "$BIN" aa status "${aa_nodes[@]}" --json >"$T_DIR/aa_status.json" 2>/dev/null &&
    jq -e '.nodes[1].peers[0].last_error | test("no primary key")' "$T_DIR/aa_status.json" >/dev/null; }
wait_until 30 "pgvigil aa status shows b's stopped apply and fails" stopped_shown
log "a table without a primary key: the apply stops and says so"

# ---- 5b. a node away too long: a keeps at most 1MB of WAL for a slot; while b's apply pauses, a
# writes on past it and its slot for b is invalidated. b's worker then says b must be rebuilt.
q a -c "alter system set max_slot_wal_keep_size = '1MB'" -c "select pg_reload_conf()" >/dev/null
q b -c "select pgvigil_aa.pause('a')" >/dev/null
wait_until 30 "b's worker for a stops when paused" paused
for i in 1 2 3 4; do q a -c "insert into t values ($((6000 + i)), 'past the slot')" -c "select pg_switch_wal()" >/dev/null; done
q a -c "checkpoint"
lost() { [ "$(q a -c "select wal_status from pg_replication_slots where slot_name = 'aa_for_b'")" = lost ]; }
wait_until 30 "a invalidates its slot for b" lost
q b -c "select pgvigil_aa.resume('a')" >/dev/null
rebuild_said() { [ "$(st b a "last_error like '%invalidated slot \"aa_for_b\"%must be rebuilt%'")" = t ]; }
wait_until 30 "b's status says b must be rebuilt" rebuild_said
grep -q 'peer "a" invalidated slot "aa_for_b"' "$T_DIR/node_b/postgres.log" || fail "b's log does not say why it stops"
log "a node away too long: a's slot for b invalidated, b's apply stops and says b must be rebuilt"

# ---- 6. the check can fail
# (an origin of its own: a's is held by b's worker; any origin keeps the row from being sent)
q b -c "select pg_replication_origin_create('not_a_peer')" \
    -c "select pg_replication_origin_session_setup('not_a_peer')" -c "insert into t values (99999, 'only on b')" >/dev/null ||
    fail "writing on b under another origin"
same && fail "a row only on b was not seen by the convergence check"
log "self-test: a row written on b only is seen"
echo "PASS [$T_NAME]"
