#!/bin/bash
# Active-active: the changes an apply worker makes through the table and index access methods
# (pgext/aa/pgvigil_aa_direct.c) mean what the statements would, and the tables that do not
# qualify for that path still get theirs through statements. Two nodes A and B on 127.0.0.1;
# every write on A, applied on B:
#  1. a plain table (the direct path): inserts, updates (a key changed, a NULL, a large value
#     stored out of line left out of an update as unchanged), deletes, columns added and dropped:
#     the same rows on both (md5 of every row in key order); each delete left its tombstone on B
#     under A's origin (the AFTER trigger fired for the direct delete).
#  2. a table with a BEFORE ROW trigger enabled ALWAYS on B only (statements): it fired for each
#     applied insert and each applied update.
#  3. a table with a column on B only, with a default (statements): B's rows have A's values and
#     the default.
#  4. a table with a domain column, one of each path: a NULL from A that B's domain refuses stops
#     the apply, naming the domain, until the domain allows it.
#  Which path each table takes is checked too: B's log names each table that takes the
#  statements, and why, and no other.
#  5. GENERATED ALWAYS identity keys, on a table of each path: inserts and updates reach B.
#  6. The check can fail: a row changed on B alone (under an origin: not sent) is seen.
source "$(dirname "$0")/lib.sh"

source "$(dirname "$0")/lib_aa.sh"
start_node a
start_node b
aa_group a b
start_workers a b

# (created on a: the DDL reaches b)
q a -c "create table plain(id int primary key, v text, n int)" \
    -c "create table trig(id int primary key, v text, n int not null default 0)" \
    -c "create table extra(id int primary key, v text)" || fail "creating the tables on a"
has_table() { [ "$(q "$1" -c "select to_regclass('$2') is not null")" = t ]; }
for t in plain trig extra; do wait_until 30 "$t on b" has_table b "public.$t"; done
# on b alone (as a replica: not replicated): a trigger that fires for the apply, a column of its own
q b -c "set session_replication_role = replica" \
    -c "create function bump() returns trigger language plpgsql as \$\$begin new.n := new.n + 100; return new; end\$\$" \
    -c "create trigger bump before insert or update on trig for each row execute function bump()" \
    -c "alter table trig enable always trigger bump" \
    -c "alter table extra add column local_only text not null default 'here'" >/dev/null || fail "b's own trigger and column"

content() { q "$1" -c "select count(*) || ' ' || coalesce(md5(string_agg(id || ':' || coalesce(v, '~') || ':' || coalesce(n::text, '~'), ',' order by id)), '-') from plain"; }
same() { [ "$(content a)" = "$(content b)" ] || { echo "a: $(content a) / b: $(content b)"; return 1; }; }

# 1. the plain table
q a -c "insert into plain select g, 'p' || g, g from generate_series(1, 200) g" \
    -c "update plain set n = n + 1 where id % 3 = 0" \
    -c "update plain set n = null where id % 7 = 0" \
    -c "update plain set id = id + 1000 where id between 1 and 5" \
    -c "delete from plain where id % 10 = 0" || fail "writes on a"
# a value stored out of line, then an update that leaves it out (unchanged)
q a -c "insert into plain values (500, (select string_agg(md5(g::text), '') from generate_series(1, 4000) g), 0)" \
    -c "update plain set n = 1 where id = 500" || fail "the large value on a"
q a -c "alter table plain add column w int default 7" -c "update plain set w = 8 where id = 11" \
    -c "alter table plain drop column w" -c "update plain set v = 'after' where id = 12" -c "delete from plain where id = 13" ||
    fail "columns added and dropped on a"
wait_until 60 "b applies a's writes of plain" same
[ "$(q b -c "select length(v) from plain where id = 500")" = 128000 ] || fail "the out-of-line value is not whole on b"
tomb_from_a() {
    q b -c "select count(*) from pgvigil_aa.tombstones t
            where t.relid = 'plain'::regclass and (pg_xact_commit_timestamp_origin(t.xmin)).roident =
                  (select roident from pg_replication_origin where roname = 'pgvigil_aa_a')"
}
# 20 deleted by id % 10, and 13 (a key changed by an update leaves none)
want_tombs=$(q a -c "select count(*) from pgvigil_aa.tombstones where relid = 'plain'::regclass")
[ "$(tomb_from_a)" = "$want_tombs" ] && [ "$want_tombs" -ge 21 ] ||
    fail "b has $(tomb_from_a) of plain's tombstones under a's origin, a has $want_tombs"
log "a plain table: b has a's $(content b | cut -d' ' -f1) rows (a key changed, NULLs, an unchanged out-of-line value, a column added and dropped), and its $want_tombs tombstones under a's origin"

# 2. the table with b's trigger: statements, the trigger fired for each applied row
q a -c "insert into trig select g, 't' from generate_series(1, 20) g" -c "update trig set v = 'u' where id <= 10" ||
    fail "writes of trig on a"
trig_done() { [ "$(q b -c "select count(*) from trig where v = 'u'")" = 10 ] && [ "$(q b -c "select count(*) from trig")" = 20 ]; }
wait_until 60 "b applies a's writes of trig" trig_done
got=$(q b -c "select string_agg(distinct n::text, ',' order by n::text) from trig where id <= 10")/$(q b -c "select string_agg(distinct n::text, ',' order by n::text) from trig where id > 10")
# (a's update sends n = 0 along: 100 again only if the trigger fired for it too)
[ "$got" = "100/100" ] || fail "b's trigger did not fire for each applied insert and update: n is $got (want 100/100)"
log "a table with a trigger enabled ALWAYS on b: it fired for each applied insert and update (n $got)"

# 3. the table with a column of b's own
q a -c "insert into extra select g, 'e' from generate_series(1, 20) g" -c "update extra set v = 'f' where id <= 5" \
    -c "delete from extra where id = 20" || fail "writes of extra on a"
extra_done() { [ "$(q b -c "select count(*) || ' ' || count(*) filter (where v = 'f') || ' ' || count(*) filter (where local_only = 'here') from extra")" = "19 5 19" ]; }
wait_until 60 "b applies a's writes of extra, its own column at its default" extra_done
log "a table with a column of b's own: a's rows, and b's default in its column"

# 4. a domain that refuses a NULL on b (a's column is a plain int)
q b -c "set session_replication_role = replica" -c "create domain posint as int not null check (value > 0)" \
    -c "create table dom(id int primary key, p posint)" >/dev/null || fail "b's domain"
q a -c "set session_replication_role = replica" -c "create table dom(id int primary key, p int)" >/dev/null || fail "a's dom"
q a -c "insert into dom values (1, 5)" -c "insert into dom values (2, null)" || fail "writes of dom on a"
refused() { grep -q 'domain public.posint does not allow null values' "$T_DIR/node_b/postgres.log"; }
wait_until 60 "b's apply stops on the NULL its domain refuses" refused
[ "$(q b -c "select count(*) from dom where id = 2")" = 0 ] || fail "b took a NULL its domain refuses"
q b -c "set session_replication_role = replica" -c "alter domain posint drop not null" >/dev/null
dom_done() { [ "$(q b -c "select count(*) from dom")" = 2 ]; }
wait_until 60 "b applies dom once its domain allows the NULL" dom_done
# the same through statements (a unique index besides the key)
q b -c "set session_replication_role = replica" -c "create domain posint2 as int not null check (value > 0)" \
    -c "create table dom2(id int primary key, u int unique, p posint2)" >/dev/null || fail "b's second domain"
q a -c "set session_replication_role = replica" -c "create table dom2(id int primary key, u int unique, p int)" >/dev/null ||
    fail "a's dom2"
q a -c "insert into dom2 values (1, 1, 5)" -c "insert into dom2 values (2, 2, null)" || fail "writes of dom2 on a"
refused2() { grep -A2 'domain public.posint2 does not allow null values' "$T_DIR/node_b/postgres.log" | grep -q 'public.dom2'; }
wait_until 60 "b's apply stops on the NULL its domain refuses, through statements" refused2
q b -c "set session_replication_role = replica" -c "alter domain posint2 drop not null" >/dev/null
dom2_done() { [ "$(q b -c "select count(*) from dom2")" = 2 ]; }
wait_until 60 "b applies dom2 once its domain allows the NULL" dom2_done
log "a NULL that b's domain refuses: the apply stops, naming the domain, on either path, until the domain allows it"


# 5. identity keys: ident (the direct path), ident2 (statements: a second unique index)
q a -c "create table ident(id int generated always as identity primary key, v text)" \
    -c "create table ident2(id int generated always as identity primary key, code text unique, v text)" ||
    fail "creating the identity tables on a"
for t in ident ident2; do wait_until 30 "$t on b" has_table b "public.$t"; done
q a -c "insert into ident (v) select 'i' from generate_series(1, 10)" -c "update ident set v = 'j' where id <= 3" \
    -c "insert into ident2 (code, v) select 'c' || g, 'i' from generate_series(1, 10) g" -c "update ident2 set v = 'j' where id <= 3" ||
    fail "writes of the identity tables on a"
ident_rows() { q "$1" -c "select string_agg(id || v, ',' order by id) from $2"; }
ident_done() { [ "$(ident_rows b ident)" = "$(ident_rows a ident)" ] && [ "$(ident_rows b ident2)" = "$(ident_rows a ident2)" ]; }
wait_until 60 "b applies a's writes of the identity tables" ident_done
log "GENERATED ALWAYS identity keys: a's inserts and updates on b, on both paths"

# which tables took the statements, by b's log (and why); the others took the direct path
said_statements() { grep -q "the changes of table \"public.$1\" from peer \"a\" go through statements: $2" "$T_DIR/node_b/postgres.log"; }
said_statements trig "a trigger that fires for the apply" || fail "b's log does not say trig takes the statements"
said_statements extra "a column here that the peer does not send" || fail "b's log does not say extra takes the statements"
said_statements ident2 "a unique index besides the key" || fail "b's log does not say ident2 takes the statements"
said_statements dom2 "a unique index besides the key" || fail "b's log does not say dom2 takes the statements"
for t in plain ident dom; do
    ! grep -q "the changes of table \"public.$t\" from peer" "$T_DIR/node_b/postgres.log" ||
        fail "$t, which qualifies, took the statements: $(grep "the changes of table \"public.$t\"" "$T_DIR/node_b/postgres.log" | head -1)"
done
log "b's log names trig, extra, ident2 and dom2 as taking the statements, with why, and no other table"

# 6. self-test: a change on b alone is seen
# (under an origin of its own: a change made under any origin is not sent)
q b -c "select pg_replication_origin_create('not_a_peer')" -c "select pg_replication_origin_session_setup('not_a_peer')" \
    -c "update plain set n = -1 where id = 11" >/dev/null || fail "writing on b under another origin"
same >/dev/null && fail "self-test: the check did not see a row changed on b alone"
log "self-test: a row changed on b alone is seen"
echo "PASS [$T_NAME]"
