#!/bin/bash
# Joining a node with an initial copy, and removing one (`pgvigil aa join`, `pgvigil aa remove`).
#  - a and b form a group and write (inserts, updates, deletes); c joins from a while a writer on
#    each of a and b keeps writing its own keys, so the copy is taken in the middle of b's stream
#    as a has applied it: after quiescence a, b and c hold the same content (md5 of every row of
#    both tables, one with its columns in another order on c) and c recorded no conflict (its
#    copied rows are the versions their writers made, so the first change of each that arrives
#    later is no conflict); c's own writes reach a and b;
#  - the content check's self-test: a row changed on c alone must fail it;
#  - bad input: a new node whose table is not empty, and one that lacks a table, are refused
#    naming the table, and leave nothing behind on the group's nodes;
#  - c removed: no node applies from it or keeps a slot for it; a and b still replicate.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_aa.sh"

SCHEMA="create table t (id bigint primary key, v text, n int not null default 0);
create table t2 (k text primary key, a int, b text)"
start_node a
start_node b
for n in a b; do q "$n" -c "$SCHEMA" || fail "schema on $n"; done
aa_group a b
start_workers a b
ci() { echo "host=127.0.0.1 port=${PORT[$1]} user=postgres dbname=postgres"; }

# history before the join: rows written, updated, deleted on both nodes
q a -c "insert into t select g * 2, 'a' || g, 0 from generate_series(1, 300) g" \
    -c "insert into t2 select 'a' || g, g, 'x' from generate_series(1, 50) g"
q b -c "insert into t select g * 2 + 1, 'b' || g, 0 from generate_series(1, 300) g"
q a -c "update t set n = n + 1 where id % 4 = 0" -c "delete from t where id % 10 = 0"
q b -c "update t set n = n + 5 where id % 3 = 0 and id % 2 = 1"

# a writer on each of a and b, on its own keys, during the join
stop_file="$T_DIR/writers.stop"
writer() {
    local n="$1" par="$2" i=0
    while [ ! -f "$stop_file" ]; do
        i=$((i + 1))
        q "$n" -c "update t set n = n + 1, v = v || '.' where id = (select id from t where id % 2 = $par order by random() limit 1)" \
            -c "insert into t values (100000 + $i * 2 + $par, '$n$i', $i)" >/dev/null 2>&1
    done
}
writer a 0 &
WA=$!
writer b 1 &
WB=$!
EXTRA_PIDS+=("$WA" "$WB")

# bad input first: c with a row in t, then c without t2
start_node c
q c -c "create table t (v text, n int not null default 0, id bigint primary key)" -c "insert into t values ('stray', 0, 1)"
out=$("$BIN" aa join --new "c=$(ci c)" --node "a=$(ci a)" --node "b=$(ci b)" 2>&1) && fail "a join into a node whose table is not empty succeeded"
grep -q "table public.t is not empty" <<<"$out" || fail "unexpected refusal: $out"
q c -c "delete from t"
out=$("$BIN" aa join --new "c=$(ci c)" --node "a=$(ci a)" --node "b=$(ci b)" 2>&1) && fail "a join into a node without t2 succeeded"
grep -q "table public.t2 is missing" <<<"$out" || fail "unexpected refusal: $out"
for n in a b; do
    [ "$(q "$n" -c "select count(*) from pg_replication_slots where slot_name = 'aa_for_c'")" = 0 ] || fail "a refused join left a slot on $n"
done
log "refused: a node whose table is not empty, one without a table (nothing left behind)"

# c's tables: t with its columns in another order
q c -c "create table t2 (b text, k text primary key, a int)"
out=$("$BIN" aa join --new "c=$(ci c)" --node "a=$(ci a)" --node "b=$(ci b)" --source a 2>&1) || fail "join: $out"
log "$out"
grep -q "node c joined the group (sequence offset 3)" <<<"$out" || fail "unexpected join output: $out"
running() { [ "$(q "$1" -c "select count(*) from pgvigil_aa.status() where pid is not null")" = "$2" ]; }
wait_until 30 "c applies from a and b" running c 2
wait_until 30 "a and b apply from c" bash -c "$(declare -f q running); $(declare -p PORT); running a 2 && running b 2"
more_writes() { [ "$(q c -c "select count(*) from t where id > 100000")" -gt 40 ]; }
wait_until 60 "writes of a and b made after the join reach c" more_writes
touch "$stop_file"
wait "$WA" "$WB"
# c's own writes, and a change of a copied row (no conflict: c's copy is the version a wrote)
q c -c "insert into t (id, v, n) values (3000003, 'c', 0)" -c "update t set n = n + 100 where id = 4" || fail "writing on c"
content() {
    q "$1" -c "select md5(string_agg(id || ':' || v || ':' || n, ',' order by id)) from t" \
        -c "select md5(string_agg(k || ':' || a || ':' || b, ',' order by k)) from t2"
}
same_content() {
    local ca cb cc
    ca=$(content a) && cb=$(content b) && cc=$(content c) || return 2
    [ "$ca" = "$cb" ] && [ "$cb" = "$cc" ] || { echo "a: $ca / b: $cb / c: $cc"; return 1; }
}
mark_quiet a b c
wait_until 60 "every node's slots confirmed to its last write" slots_caught_up a b c
wait_until 30 "a, b and c hold the same content" same_content
[ "$(q c -c "select count(*) from pgvigil_aa.conflicts")" = 0 ] ||
    fail "c recorded conflicts: $(q c -c "select kind, relation, key, peer from pgvigil_aa.conflicts" | head -5)"
for n in a b; do
    [ "$(q "$n" -c "select count(*) from pgvigil_aa.conflicts")" = 0 ] || fail "$n recorded conflicts"
done
rows=$(q c -c "select count(*) from t")
log "a, b and c converge ($rows rows in t), no conflict anywhere; c's writes reached a and b"

# the check's self-test: a row changed on c alone (under an origin of its own: not sent on)
q c -c "select pg_replication_origin_create('it_selftest')" \
    -c "select pg_replication_origin_session_setup('it_selftest')" -c "update t set v = 'diverged' where id = 2" >/dev/null
same_content >/dev/null && fail "self-test: the content check passed with a row that differs on c"
log "self-test: the content check fails on a row that differs"

# c leaves
out=$("$BIN" aa remove --drop c --node "a=$(ci a)" --node "b=$(ci b)" --node "c=$(ci c)" 2>&1) || fail "remove: $out"
log "$out"
for n in a b; do
    [ "$(q "$n" -c "select count(*) from pg_replication_slots where slot_name = 'aa_for_c'")" = 0 ] || fail "$n keeps c's slot"
    [ "$(q "$n" -c "select count(*) from pgvigil_aa.peers where name = 'c'")" = 0 ] || fail "$n still applies from c"
    [ "$(q "$n" -c "select count(*) from pg_replication_origin where roname = 'pgvigil_aa_c'")" = 0 ] || fail "$n keeps c's origin"
done
[ "$(q c -c "select count(*) from pg_replication_slots")" = 0 ] || fail "c keeps slots"
[ "$(q c -c "select count(*) from pgvigil_aa.peers")" = 0 ] || fail "c still applies from a peer"
q a -c "insert into t values (4000000, 'after', 0)"
on_b() { [ "$(q b -c "select count(*) from t where id = 4000000")" = 1 ]; }
wait_until 30 "a's write reaches b after c left" on_b
log "c removed: no slot, peer or origin of it left on a and b, none on c; a and b still replicate"
echo "PASS [$T_NAME]"
