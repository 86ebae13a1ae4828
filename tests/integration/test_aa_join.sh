#!/bin/bash
# Joining a node with an initial copy, and removing one (`pgvigil aa join`, `pgvigil aa remove`).
#  - a and b form a group and write (inserts, updates, deletes); c joins from a while a writer on
#    each of a and b keeps writing its own keys, so the copy is taken in the middle of b's stream
#    as a has applied it: after quiescence a, b and c hold the same content (md5 of every row of
#    the tables, one with its columns in another order on c); c's own writes reach a and b;
#  - c's copied rows are the versions their writers made: the first change of each that arrives
#    later is no conflict; c records only the conflicts below;
#  - tombstones: c holds a's (the same keys, deleted at the same times). Keys deleted on a while
#    b did not apply from a (paused), updated on b after the join: c must not resurrect them
#    (update_deleted, as on a; without the copied tombstones c would insert them: update_missing);
#  - the conflict policies and the peers' priorities as on the source; sequences: c's next value
#    is above the source's, its own modulo the step (offset 3);
#  - the content check's self-test: a row changed on c alone must fail it;
#  - bad input: a new node whose table is not empty, one that lacks a table, and a node name
#    that cannot name a slot are refused, and leave nothing behind; a join that fails in the
#    middle of the copy (a row c's table refuses) is undone by remove (c's name too), and the
#    join then succeeds;
#  - c removed: no node applies from it or keeps a slot for it, c has no name left; a and b
#    still replicate.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_aa.sh"

SCHEMA="create table t (id bigint primary key, v text, n int not null default 0);
create table t2 (k text primary key, a int, b text);
create table s (id bigserial primary key, v text)"
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
q a -c "insert into s (v) select 'a' || g from generate_series(1, 10) g"
q b -c "insert into s (v) select 'b' || g from generate_series(1, 10) g"
# the policies and priorities c must take over (the same on a and b)
for n in a b; do q "$n" -c "insert into pgvigil_aa.table_policies values ('t2', 'last_writer_wins')"; done
q a -c "update pgvigil_aa.local_node set priority = 5"
q b -c "update pgvigil_aa.peers set priority = 5 where name = 'a'"
# keys deleted on a while b does not apply from a: b updates them after the join (below)
DEL_KEYS="5000, 5002, 5004, 5006, 5008"
q a -c "insert into t select id, 'del', 0 from unnest(array[$DEL_KEYS]) id"
on_b_keys() { [ "$(q b -c "select count(*) from t where id in ($DEL_KEYS)")" = 5 ]; }
wait_until 30 "a's rows reach b" on_b_keys
q b -c "select pgvigil_aa.pause('a')" >/dev/null
b_paused() { [ -z "$(worker_pid b a)" ]; }
wait_until 10 "b's apply from a stops" b_paused
q a -c "delete from t where id in ($DEL_KEYS)"

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

# bad input first: c with a row in t, then c without t2, then names that cannot name a slot
start_node c
q c -c "create table t (v text, n int not null default 0, id bigint primary key)" -c "insert into t values ('stray', 0, 1)" \
    -c "create table s (id bigserial primary key, v text)"
out=$("$BIN" aa join --new "c=$(ci c)" --node "a=$(ci a)" --node "b=$(ci b)" 2>&1) && fail "a join into a node whose table is not empty succeeded"
grep -q "table public.t is not empty" <<<"$out" || fail "unexpected refusal: $out"
q c -c "delete from t"
out=$("$BIN" aa join --new "c=$(ci c)" --node "a=$(ci a)" --node "b=$(ci b)" 2>&1) && fail "a join into a node without t2 succeeded"
grep -q "table public.t2 is missing" <<<"$out" || fail "unexpected refusal: $out"
q c -c "create table t2 (b text, k text primary key, a int check (a < 10))"
for bad in "c-1" "C"; do
    out=$("$BIN" aa join --new "$bad=$(ci c)" --node "a=$(ci a)" --node "b=$(ci b)" 2>&1)
    [ $? = 2 ] || fail "a join of a node named $bad was not refused as bad input: $out"
    grep -q "\"$bad\" is not a node name" <<<"$out" || fail "unexpected refusal of $bad: $out"
done
for n in a b; do
    [ "$(q "$n" -c "select count(*) from pg_replication_slots where slot_name like 'aa\\_for\\_c%'")" = 0 ] || fail "a refused join left a slot on $n"
done
[ "$(q c -c "select count(*) from pg_extension where extname = 'pgvigil_aa'")" = 0 ] || fail "a refused join made the extension on c"
log "refused: a node whose table is not empty, one without a table, names c-1 and C (nothing left behind)"

# a join that fails in the middle of the copy: a row of t2 c refuses (t is copied before)
out=$("$BIN" aa join --new "c=$(ci c)" --node "a=$(ci a)" --node "b=$(ci b)" --source a 2>&1) && fail "a join whose copy fails succeeded"
grep -q "violates check constraint" <<<"$out" && grep -q "remove what it made with pgvigil aa remove --drop c" <<<"$out" ||
    fail "unexpected failure: $out"
[ "$(q c -c "select count(*) from t2")" = 0 ] || fail "the failed copy of t2 left rows on c"
[ "$(q b -c "select count(*) from pg_replication_slots where slot_name = 'aa_for_c'")" = 1 ] || fail "the failed join made no slot on b"
out=$("$BIN" aa remove --drop c --node "a=$(ci a)" --node "b=$(ci b)" --node "c=$(ci c)" 2>&1) || fail "remove after a failed join: $out"
[ "$(q c -c "select count(*) from pgvigil_aa.local_node")" = 0 ] || fail "remove left c's name"
q c -c "alter table t2 drop constraint t2_a_check" -c "delete from t" -c "delete from s"
log "a join that failed in its copy undone by remove; c's tables emptied"

# the join again (c's t has its columns in another order)
out=$("$BIN" aa join --new "c=$(ci c)" --node "a=$(ci a)" --node "b=$(ci b)" --source a 2>&1) || fail "join: $out"
log "$out"
grep -q "node c joined the group (sequence offset 3)" <<<"$out" || fail "unexpected join output: $out"
# tombstones: c holds a's, deleted at the same times, under a's origin
tombs() {
    q "$1" -c "select count(*), md5(string_agg(format('%s:%s:%s', c.relname, tb.key, pg_xact_commit_timestamp(tb.xmin)),
                 ',' order by c.relname, tb.key::text)) from pgvigil_aa.tombstones tb join pg_class c on c.oid = tb.relid"
}
ta=$(tombs a) tc=$(tombs c)
[ "$ta" = "$tc" ] || fail "c's tombstones differ from a's: a $ta, c $tc"
[ "${ta%%|*}" -ge 65 ] || fail "a has too few tombstones: $ta"
[ "$(q c -c "select count(*) from pgvigil_aa.tombstones tb, pg_xact_commit_timestamp_origin(tb.xmin) x
             join pg_replication_origin o on o.roident = x.roident where o.roname = 'pgvigil_aa_a'")" = "${ta%%|*}" ] ||
    fail "c's tombstones are not under a's origin"
# policies, priorities
[ "$(q c -c "select policy from pgvigil_aa.table_policies where relation = 't2'::regclass")" = last_writer_wins ] ||
    fail "c has not t2's policy"
[ "$(q c -c "select string_agg(name || '=' || priority, ',' order by name) from pgvigil_aa.peers")" = "a=5,b=0" ] ||
    fail "c's peers' priorities: $(q c -c "select name, priority from pgvigil_aa.peers")"
# sequences: above a's, c's own modulo 64
seq_a=$(q a -c "select last_value from pg_sequences where sequencename = 's_id_seq'")
seq_c=$(q c -c "select nextval('s_id_seq')")
[ "$seq_c" -gt "$seq_a" ] && [ $((seq_c % 64)) = 3 ] || fail "c's sequence gives $seq_c (a's is at $seq_a)"
log "c has a's ${ta%%|*} tombstones (same keys and times, a's origin), t2's policy, the priorities; its sequence gives $seq_c (a's at $seq_a)"

running() { [ "$(q "$1" -c "select count(*) from pgvigil_aa.status() where pid is not null")" = "$2" ]; }
wait_until 30 "c applies from a and b" running c 2
# b, which has not seen a's deletes, updates those keys: c must keep them deleted
q b -c "update t set n = n + 1000 where id in ($DEL_KEYS)"
c_met() { [ "$(q c -c "select count(*) from pgvigil_aa.conflicts where kind like 'update\\_%'")" -ge 5 ]; }
wait_until 30 "c meets b's updates of keys a deleted" c_met
[ "$(q c -c "select count(*) from t where id in ($DEL_KEYS)")" = 0 ] ||
    fail "c resurrected keys a had deleted: $(q c -c "select kind, key from pgvigil_aa.conflicts")"
q b -c "select pgvigil_aa.resume('a')" >/dev/null
log "b's late updates of keys a deleted before the join: update_deleted on c, no row"
wait_until 30 "a and b apply from c" bash -c "$(declare -f q running); $(declare -p PORT); running a 2 && running b 2"
more_writes() { [ "$(q c -c "select count(*) from t where id > 100000")" -gt 40 ]; }
wait_until 60 "writes of a and b made after the join reach c" more_writes
touch "$stop_file"
wait "$WA" "$WB"
# c's own writes, and a change of a copied row (no conflict: c's copy is the version a wrote)
q c -c "insert into t (id, v, n) values (3000003, 'c', 0)" -c "update t set n = n + 100 where id = 4" \
    -c "insert into s (v) values ('c1'), ('c2')" || fail "writing on c"
content() {
    q "$1" -c "select md5(string_agg(id || ':' || v || ':' || n, ',' order by id)) from t" \
        -c "select md5(string_agg(k || ':' || a || ':' || b, ',' order by k)) from t2" \
        -c "select md5(string_agg(id || ':' || v, ',' order by id)) from s"
}
same_content() {
    local ca cb cc
    ca=$(content a) && cb=$(content b) && cc=$(content c) || return 2
    [ "$ca" = "$cb" ] && [ "$cb" = "$cc" ] || { echo "a: $ca / b: $cb / c: $cc"; return 1; }
}
mark_quiet a b c
wait_until 60 "every node's slots confirmed to its last write" slots_caught_up a b c
wait_until 30 "a, b and c hold the same content" same_content
# the only conflicts: b's updates of the keys a deleted (update_deleted on a and c, a's delete
# against b's update on b)
kinds() { q "$1" -c "select coalesce(string_agg(kind || '=' || n, ',' order by kind), '') from (select kind, count(*) n from pgvigil_aa.conflicts group by kind) k"; }
for n in a c; do
    [ "$(kinds "$n")" = "update_deleted=5" ] ||
        fail "$n recorded other conflicts: $(q "$n" -c "select kind, relation, key, peer from pgvigil_aa.conflicts" | head -8)"
done
[ "$(kinds b)" = "delete_update=5" ] ||
    fail "b recorded other conflicts: $(q b -c "select kind, relation, key, peer from pgvigil_aa.conflicts" | head -8)"
rows=$(q c -c "select count(*) from t")
log "a, b and c converge ($rows rows in t), no other conflict; c's writes reached a and b"

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
[ "$(q c -c "select count(*) from pgvigil_aa.local_node")" = 0 ] || fail "c keeps its name"
[ "$(q c -c "select count(*) from pg_replication_origin where roname like 'pgvigil\\_aa\\_%'")" = 0 ] || fail "c keeps origins"
q a -c "insert into t values (4000000, 'after', 0)"
on_b() { [ "$(q b -c "select count(*) from t where id = 4000000")" = 1 ]; }
wait_until 30 "a's write reaches b after c left" on_b
log "c removed: no slot, peer or origin of it left on a and b, none on c, nor its name; a and b still replicate"
# the first node of a new group: its extension and name only
start_node d
out=$("$BIN" aa join --new "d=$(ci d)" 2>&1) || fail "join of a first node: $out"
grep -q "node d starts the group (sequence offset 1)" <<<"$out" || fail "unexpected output: $out"
[ "$(q d -c "select name || ' ' || sequence_offset from pgvigil_aa.local_node")" = "d 1" ] || fail "d's name and offset"
"$BIN" aa join --new "d=$(ci d)" >/dev/null 2>&1 && fail "a second start of the same node succeeded"
log "a first node: $out"
echo "PASS [$T_NAME]"
