#!/bin/bash
# Active-active conflicts (pgext/aa): two plain PostgreSQL 15 nodes, a and b, each applying the
# other's pgvigil_aa slot, with pgvigil_aa preloaded (causality messages). Races are made
# deterministic by holding a transaction open on one node while the other commits, and waiting
# until the apply worker is blocked on it.
#  0. A user without rights on the pgvigil_aa schema creates a table and deletes from it (the
#     event trigger and the tombstone trigger run as the extension's owner).
#  1. Update against delete: the row stays deleted on both (it does not come back), and both
#     nodes record the conflict (update_deleted on the deleter, delete_update on the updater).
#     An insert on a against an insert and a delete of the same key on b: no row on both.
#  2. Delete and insert again on b while a updates the old row: the new row wins on both.
#  3. Two inserts with different keys and the same value of another unique index: one row on
#     both, the other recorded (insert_unique).
#     Two rows updated to one value of another unique index: the later update wins and the
#     losing row goes, on both. An update made after a ROLLBACK TO SAVEPOINT still says what it
#     had seen (no conflict with a row its node had applied).
#  4. Policies per table: first_writer_wins, node_priority and a custom SQL resolver give the
#     expected winner on both nodes; with policy error both workers stop and say why, and
#     resume after the operator's decision (pgvigil_aa.resolve_stopped), one decision for every
#     such conflict of the stopped transaction.
#  5. Forced ties, three nodes (a new node c joins; all under libfaketime, one stopped clock
#     stepped together): a same-rows workload on all three (updates, colliding inserts, update
#     against delete) whose concurrent commits carry equal timestamps converges to identical
#     content (md5 of every row), and every acknowledged value is in the content, replaced by a
#     later write that had read it, or recorded in a conflict (aa_audit.py).
#  6. Self-test: with policy keep_local (each node keeps its own version) the same check sees
#     the nodes differ; the audit fails on a value that vanished without a record.
#  7. A peer with another key for a table: the worker stops, naming the table.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_aa.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"

start_node a
start_node b
aa_group a b
start_workers a b
# (created on a: the DDL reaches b)
q a -c "create table w(id int primary key, v text not null, n int not null default 0)" \
    -c "create table u(id int primary key, email text not null unique, v text)" \
    -c "create table p(id int primary key, v text)" || fail "creating the tables"
wait_until 30 "the tables on b" eval '[ "$(q b -c "select to_regclass('"'"'public.p'"'"') is not null")" = t ]' 
dsn() { echo "host=127.0.0.1 port=${PORT[$1]} user=postgres dbname=postgres"; }
content() { q "$1" -c "select count(*) || ' ' || coalesce(md5(string_agg(id || ':' || v || ':' || n, ',' order by id)), '-') from w"; }
rows_of() { q "$1" -c "select coalesce(string_agg(id || '=' || coalesce(v, 'NULL'), ',' order by id), '-') from $2"; }
same_table() { [ "$(rows_of a "$1")" = "$(rows_of b "$1")" ]; }
quiet() { mark_quiet a b; wait_until 60 "each node applied the other's writes" slots_caught_up a b; }
conflict() { q "$1" -c "select count(*) from pgvigil_aa.conflicts where relation = '$2' and kind = '$3' and winner = '$4'"; }

# a transaction held open on a node (BEGIN and the statements run; COMMIT later)
in_txn() { [ "$(q "$1" -c "select count(*) from pg_stat_activity where state = 'idle in transaction'")" -ge 1 ]; }
open_txn() {
    local n="$1" sql="$2" f="$T_DIR/txn.fifo"
    rm -f "$f" && mkfifo "$f"
    q "$n" <"$f" >"$T_DIR/txn.out" 2>&1 &
    TXN_PID=$!
    exec {TXN_FD}>"$f"
    echo "begin; $sql" >&"$TXN_FD"
    wait_until 10 "the open transaction on $n" in_txn "$n"
}
commit_txn() {
    echo "commit;" >&"$TXN_FD"
    exec {TXN_FD}>&-
    wait "$TXN_PID" || fail "the held transaction failed: $(cat "$T_DIR/txn.out")"
}
# node N's apply worker for PEER waits for a lock (a row the held transaction has)
worker_blocked() { [ "$(q "$1" -c "select wait_event_type from pg_stat_activity where application_name = 'pgvigil_aa apply from $2'")" = Lock ]; }

# ---- 0. a user without rights on the pgvigil_aa schema creates a table: its deletes are recorded
q a -c "create role app login" -c "grant create on schema public to app"
PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[a]}" -U app -d postgres \
    -c "create table app_t(id int primary key)" -c "insert into app_t values (1)" -c "delete from app_t" ||
    fail "a user without rights on the pgvigil_aa schema cannot create a table or delete from it"
[ "$(q a -c "select count(*) from pgvigil_aa.tombstones where relid = 'app_t'::regclass")" = 1 ] ||
    fail "the delete of a user's table left no tombstone"
log "a table of a user without rights on the schema: created, its delete recorded"

# ---- 1. update against delete
q a -c "insert into w values (1, 'first')"
wait_until 30 "row 1 on b" eval '[ "$(rows_of b w)" = "1=first" ]'
open_txn a "delete from w where id = 1;"
q b -c "update w set v = 'b-update' where id = 1"
wait_until 30 "a's worker waits for a's delete" worker_blocked a b
commit_txn
quiet
[ "$(rows_of a w)" = - ] && [ "$(rows_of b w)" = - ] ||
    fail "update against delete: a has $(rows_of a w), b has $(rows_of b w), expected the row deleted on both"
[ "$(conflict a public.w update_deleted local)" = 1 ] || fail "a (the deleter) did not record update_deleted"
[ "$(conflict b public.w delete_update remote)" = 1 ] || fail "b (the updater) did not record delete_update"
log "update against delete: deleted on both, recorded on both"

# ---- 1b. an insert against an insert and delete of the same key: a inserts 30 while b inserts
# and deletes 30; the delete wins on both (found by bench/active-active: a kept no row, b a's)
open_txn a "insert into w values (30, 'a');"
q b -c "insert into w values (30, 'b')"
q b -c "delete from w where id = 30"
wait_until 30 "a's worker waits for a's insert" worker_blocked a b
commit_txn
quiet
[ "$(rows_of a w)" = - ] && [ "$(rows_of b w)" = - ] ||
    fail "insert against insert and delete: a has $(rows_of a w), b has $(rows_of b w), expected no row on both"
[ "$(conflict b public.w insert_deleted local)" = 1 ] || fail "b did not record a's insert as insert_deleted"
log "insert against insert and delete of the key: no row on both, recorded"

# ---- 2. b deletes and inserts again while a updates the old row (a's commit comes last)
q a -c "insert into w values (2, 'old')"
wait_until 30 "row 2 on b" eval '[ "$(rows_of b w)" = "2=old" ]'
open_txn a "update w set v = 'a-update' where id = 2;"
q b -c "delete from w where id = 2"
q b -c "insert into w values (2, 'b-new')"
wait_until 30 "a's worker waits for a's update" worker_blocked a b
commit_txn
quiet
[ "$(rows_of a w)" = "2=b-new" ] && [ "$(rows_of b w)" = "2=b-new" ] ||
    fail "insert again against an update of the old row: a has $(rows_of a w), b has $(rows_of b w), expected 2=b-new"
[ "$(conflict b public.w update_deleted local)" = 1 ] || fail "b did not record a's update of the deleted row"
log "delete and insert again against an update of the old row: the new row on both"

# ---- 3. the same value of another unique index under two keys (a's commit comes last)
open_txn a "insert into u values (1, 'x@example.org', 'a');"
q b -c "insert into u values (2, 'x@example.org', 'b')"
wait_until 30 "a's worker waits for a's insert" worker_blocked a b
commit_txn
quiet
same_table u || fail "unique index: a has $(rows_of a u), b has $(rows_of b u)"
[ "$(rows_of a u)" = "1=a" ] || fail "unique index: the later insert (a's) should win, have $(rows_of a u)"
[ "$(conflict a public.u insert_unique local)" = 1 ] && [ "$(conflict b public.u insert_unique remote)" = 1 ] ||
    fail "insert_unique not recorded on both"
log "insert on another unique index: one row on both ($(rows_of a u)), recorded"

# ---- 3b. two rows updated to the same value of another unique index (a's commit comes last; b's
# worker may stop once on the unique index while a's update is in flight, and retries)
q a -c "insert into u values (10, 'p@example.org', 'a'), (11, 'q@example.org', 'a')"
wait_until 30 "u's rows on b" same_table u
open_txn a "update u set email = 'z@example.org', v = 'a-z' where id = 10;"
q b -c "update u set email = 'z@example.org', v = 'b-z' where id = 11"
commit_txn
quiet
same_table u || fail "update on another unique index: a has $(rows_of a u), b has $(rows_of b u)"
[ "$(q a -c "select string_agg(id || '=' || email, ',' order by id) from u where id >= 10")" = "10=z@example.org" ] ||
    fail "update on another unique index: the later update (a's) should win and the loser's row go, have $(rows_of a u)"
[ "$(conflict a public.u update_unique local)" = 1 ] && [ "$(conflict b public.u update_unique remote)" = 1 ] ||
    fail "update_unique not recorded on both"
log "update on another unique index: the later wins on both, the losing row goes on both, recorded"

# ---- 3c. a write after a rolled-back savepoint still says what it had seen: b updates a row a
# deleted and inserted again, after a failed statement and ROLLBACK TO SAVEPOINT (no conflict)
q a -c "insert into w values (20, 'x')"
q a -c "delete from w where id = 20"
q a -c "insert into w values (20, 'again')"
wait_until 30 "a's new row 20 on b" eval '[ "$(q b -c "select v from w where id = 20")" = again ]'
before=$(q a -c "select count(*) from pgvigil_aa.conflicts where relation = 'public.w'")
q b -c "begin" -c "savepoint s" -c "\set ON_ERROR_STOP 0" -c "update w set n = n / 0 where id = 20" \
    -c "\set ON_ERROR_STOP 1" -c "rollback to savepoint s" -c "update w set v = 'after-savepoint' where id = 20" -c "commit" 2>/dev/null
quiet
[ "$(q a -c "select v from w where id = 20")" = after-savepoint ] ||
    fail "an update after a rolled-back savepoint: a has $(q a -c "select v from w where id = 20"), expected b's update applied"
[ "$(q a -c "select count(*) from pgvigil_aa.conflicts where relation = 'public.w'")" = "$before" ] ||
    fail "an update after a rolled-back savepoint was taken for a conflict"
q a -c "delete from w where id = 20"
quiet
log "a write after ROLLBACK TO SAVEPOINT: applied as made after what it had seen"

# ---- 4. policies: row 1 of p updated on both, b first, a last
q a -c "insert into p values (1, 'start')"
wait_until 30 "p on b" same_table p
race_p() { # A_VALUE B_VALUE
    open_txn a "update p set v = '$1' where id = 1;"
    q b -c "update p set v = '$2' where id = 1"
    wait_until 30 "a's worker waits for a's update" worker_blocked a b
    commit_txn
}
policy() { local n; for n in a b; do q $n -c "insert into pgvigil_aa.table_policies values ('p', '$1', ${2:-null}) on conflict (relation) do update set policy = excluded.policy, resolver = excluded.resolver"; done; }
policy first_writer_wins
race_p a-fww b-fww
quiet
[ "$(rows_of a p)" = "1=b-fww" ] && [ "$(rows_of b p)" = "1=b-fww" ] ||
    fail "first_writer_wins: a has $(rows_of a p), b has $(rows_of b p), expected b's (the first)"
q a -c "update pgvigil_aa.local_node set priority = 10"
q b -c "update pgvigil_aa.peers set priority = 10 where name = 'a'"
policy node_priority
race_p a-prio b-prio
quiet
[ "$(rows_of a p)" = "1=a-prio" ] && [ "$(rows_of b p)" = "1=a-prio" ] ||
    fail "node_priority: a has $(rows_of a p), b has $(rows_of b p), expected a's (priority 10)"
for n in a b; do
    q $n -c "create function public.longer_wins(kind text, rel regclass, l jsonb, r jsonb, ln text, rn text, lt timestamptz, rt timestamptz)
             returns text language sql as \$\$ select case when length(r->>'v') > length(l->>'v') then 'remote' else 'local' end \$\$"
done
policy custom "'public.longer_wins(text,regclass,jsonb,jsonb,text,text,timestamptz,timestamptz)'"
race_p a-x b-longer
quiet
[ "$(rows_of a p)" = "1=b-longer" ] && [ "$(rows_of b p)" = "1=b-longer" ] ||
    fail "custom resolver: a has $(rows_of a p), b has $(rows_of b p), expected the longer value"
policy error
race_p a-err b-err
said_error() { grep -q "conflict update_update on public.p (id=1) from peer \"$2\": the table's policy is error" "$T_DIR/node_$1/postgres.log"; }
wait_until 30 "a's worker stops and says why" said_error a b
wait_until 30 "b's worker stops and says why" said_error b a
[ "$(rows_of a p)" = "1=a-err" ] && [ "$(rows_of b p)" = "1=b-err" ] || fail "policy error: a change was applied"
q a -c "select pgvigil_aa.resolve_stopped('b', 'remote')"
q b -c "select pgvigil_aa.resolve_stopped('a', 'local')"
quiet
[ "$(rows_of a p)" = "1=b-err" ] && [ "$(rows_of b p)" = "1=b-err" ] ||
    fail "after the operator's decision: a has $(rows_of a p), b has $(rows_of b p), expected b's"
[ "$(q a -c "select count(*) from pgvigil_aa.conflicts where relation = 'public.p' and policy = 'error' and winner = 'remote'")" = 1 ] ||
    fail "the decided conflict is not recorded on a"
# two conflicts of policy error in one transaction: one decision settles both
q a -c "insert into p values (2, 'start')"
wait_until 30 "p's row 2 on b" same_table p
open_txn a "update p set v = 'a-1' where id = 1; update p set v = 'a-2' where id = 2;"
q b -c "begin" -c "update p set v = 'b-1' where id = 1" -c "update p set v = 'b-2' where id = 2" -c "commit"
wait_until 30 "a's worker waits for a's updates" worker_blocked a b
commit_txn
wait_until 30 "a's worker stops again" eval '[ "$(grep -c "conflict update_update on public.p (id=1) from peer \"b\"" "$T_DIR/node_a/postgres.log")" -ge 2 ]'
q a -c "select pgvigil_aa.resolve_stopped('b', 'remote')"
q b -c "select pgvigil_aa.resolve_stopped('a', 'local')"
quiet
[ "$(rows_of a p)" = "1=b-1,2=b-2" ] && [ "$(rows_of b p)" = "1=b-1,2=b-2" ] ||
    fail "two error conflicts in one transaction: a has $(rows_of a p), b has $(rows_of b p), expected b's"
[ "$(q a -c "select decision is null from pgvigil_aa.peers where name = 'b'")" = t ] || fail "a's decision was not used up"
log "policies: first_writer_wins, node_priority, custom resolver and error (stopped, resumed on the decision, one decision for two conflicts of a transaction) as expected on both"

# ---- 5. forced ties, three nodes: a, b and a new node c under one stopped clock, stepped
# together, later than every commit so far (a node's clock never goes back)
q a -c "truncate w"
quiet
TICK="$T_DIR/faketime"
echo "2030-01-01 00:00:00" >"$TICK" && chmod 644 "$TICK"
# the stopped clock a second on: each node's own commits must keep distinct, increasing times
# (what a node has seen of another is the commit time of the last it applied)
tick() { date -u -d "$(cat "$TICK") UTC + 1 second" "+%Y-%m-%d %H:%M:%S" >"$TICK.new" && mv "$TICK.new" "$TICK"; }
stop_node a
stop_node b
AA_FAKETIME_FILE="$TICK"
start_node a
start_node b
start_node c
q c -c "create table w(id int primary key, v text not null, n int not null default 0)" || fail "w on c"
aa_join c a b
start_workers a b c
NODES=(a b c)
# (the stopped clock never passes a commit it already stamped: no commit may wait for it; the
# workload keeps each step's writers from seeing each other instead)
for n in "${NODES[@]}"; do q $n -c "alter system set pgvigil_aa.max_clock_skew = 0" -c "select pg_reload_conf()" >/dev/null; done
quiet() { mark_quiet "${NODES[@]}"; wait_until 60 "every node applied the others' writes" slots_caught_up "${NODES[@]}"; }
all_same() { [ "$(content a)" = "$(content b)" ] && [ "$(content a)" = "$(content c)" ]; }
each() { local n; for n in "${NODES[@]}"; do q "$n" "$@" || return 1; done; }
sum_each() { local n t=0; for n in "${NODES[@]}"; do t=$((t + $(q "$n" -c "$1"))); done; echo "$t"; }
tick
q a -c "insert into w select g, 'seed' from generate_series(1, 30) g"
wait_until 30 "w's rows on every node" all_same
mkdir -p "$T_DIR/ties"
workload() { # SEED OPS KEYS
    /usr/bin/python3 "$HERE/aa_workload.py" --tick-file "$TICK" "$1" "$2" "$3" "$T_DIR/ties" "a=$(dsn a)" "b=$(dsn b)" "c=$(dsn c)"
}
audit() { /usr/bin/python3 "$HERE/aa_audit.py" "$(dsn a)" "$T_DIR"/ties/{a,b,c}.log -- "$(dsn a)" "$(dsn b)" "$(dsn c)"; }
workload 7 300 30 || fail "the workload with ties"
quiet
all_same || fail "forced ties: a $(content a), b $(content b), c $(content c)"
ties=$(sum_each "select count(*) from pgvigil_aa.conflicts where relation = 'public.w' and local_commit_ts = remote_commit_ts")
[ "$ties" -gt 0 ] || fail "forced ties: no conflict between equal commit times was met"
audit >"$T_DIR/audit.out" 2>&1 || fail "audit: $(cat "$T_DIR/audit.out")"
kinds=$(for n in "${NODES[@]}"; do q $n -c "select distinct kind from pgvigil_aa.conflicts where relation = 'public.w'"; done | sort -u | tr '\n' ' ')
log "forced ties, three nodes: converged ($(content a)), $ties conflicts between equal commit times; kinds: $kinds; $(tail -1 "$T_DIR/audit.out")"

# ---- 6. self-tests: keep_local under ties makes the nodes differ, and the check sees it; a value
# removed from the conflict tables is seen by the audit
each -c "insert into pgvigil_aa.table_policies values ('w', 'keep_local')"
# (a round makes them differ only when two nodes wrote a key in one step: up to five rounds)
differ=0
for round in 1 2 3 4 5; do
    tick
    workload $((7 + round)) 100 5 || fail "the workload with keep_local"
    quiet
    all_same || { differ=1; break; }
done
[ "$differ" = 1 ] || fail "keep_local under ties: the nodes should differ and the check did not see it (5 rounds)"
log "self-test: keep_local under ties, the check sees the nodes differ"
each -c "delete from pgvigil_aa.table_policies" -c "delete from pgvigil_aa.conflicts"
tick
q a -c "truncate w"
tick
quiet
workload 9 100 5 || fail "the workload for the audit's self-test"
quiet
audit >/dev/null || fail "audit before the self-test's damage"
each -c "delete from pgvigil_aa.conflicts"
audit >"$T_DIR/audit2.out" 2>&1 && fail "the audit did not see values lost without a record: $(tail -1 "$T_DIR/audit2.out")"
log "self-test: the audit sees values gone without a record ($(tail -1 "$T_DIR/audit2.out"))"

# ---- 7. a peer with another key
tick
# (each node's own table: not sent)
q c -c "set session_replication_role = replica" -c "create table k2(id int, x int, primary key (id))"
q a -c "set session_replication_role = replica" -c "create table k2(id int, x int, primary key (id))"
q b -c "set session_replication_role = replica" -c "create table k2(id int, x int, primary key (id, x))"
q a -c "insert into k2 values (1, 1)"
said_key() { grep -q 'table public.k2 has another key here than on peer "a"' "$T_DIR/node_b/postgres.log"; }
wait_until 30 "b's worker stops on k2's key" said_key
[ "$(q b -c 'select count(*) from k2')" = 0 ] || fail "a row of a table with another key was applied"
log "a peer with another key: the worker stops, naming the table"
echo "PASS [$T_NAME]"
