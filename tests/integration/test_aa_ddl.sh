#!/bin/bash
# Active-active DDL replication (pgext/aa/pgvigil_aa_ddl.c): two plain PostgreSQL 15 nodes a and
# b of a pgvigil_aa group, with no table yet.
#  1. CREATE TABLE on a appears on b with its tombstone triggers; rows flow both ways in it.
#  2. ALTER TABLE ADD COLUMN on a while both nodes insert: b has the column, and both nodes end
#     with the same rows (the DDL applied in its place among a's rows).
#  3. One query string of three statements (table, index, view) runs each once on b; a serial
#     column's sequence on b is node-distinct (b's own offset).
#  4. DROP VIEW and DROP TABLE on a drop them on b.
#  5. A DDL statement that fails on b (the table exists there already) stops b's worker, saying
#     which statement and why; the operator's decision 'local' skips it (recorded as ddl_failed)
#     and the rows after it flow again.
#  6. A temporary table is not sent, nor an index, ALTER or DROP of it (b's worker goes on).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_aa.sh"

start_node a
start_node b
aa_group a b
start_workers a b
quiet() { mark_quiet a b; wait_until 60 "each node applied the other's writes" slots_caught_up a b; }
exists() { [ "$(q "$1" -c "select to_regclass('$2') is not null")" = t ]; }
rows() { q "$1" -c "select count(*) || ' ' || coalesce(md5(string_agg(d1::text, ',' order by id)), '-') from d1"; }

# ---- 1. create table
q a -c "create table d1(id int primary key, v text)"
wait_until 30 "d1 on b" exists b public.d1
[ "$(q b -c "select count(*) from pg_trigger where tgrelid = 'd1'::regclass and tgname like 'pgvigil_aa_tombstone%'")" = 2 ] ||
    fail "b's d1 has no tombstone triggers"
q b -c "insert into d1 values (1, 'b')"
q a -c "insert into d1 values (2, 'a')"
quiet
[ "$(rows a)" = "$(rows b)" ] && [ "$(rows a | cut -d' ' -f1)" = 2 ] || fail "rows of d1: a $(rows a), b $(rows b)"
log "create table: on b with its triggers, rows both ways"

# ---- 2. add a column while both write
writer() { # NODE FIRST
    local i
    for i in $(seq "$2" $(($2 + 199))); do echo "insert into d1 (id, v) values ($i, '$1');"; done | q "$1" >/dev/null
}
writer a 1000 &
wa=$!
writer b 2000 &
wb=$!
q a -c "alter table d1 add column w int not null default 7"
wait "$wa" && wait "$wb" || fail "the writers"
q a -c "insert into d1 values (3000, 'a', 1)"
quiet
[ "$(q b -c "select count(*) from information_schema.columns where table_name = 'd1' and column_name = 'w'")" = 1 ] ||
    fail "b's d1 has no column w"
[ "$(rows a)" = "$(rows b)" ] && [ "$(rows a | cut -d' ' -f1)" = 403 ] || fail "after add column while writing: a $(rows a), b $(rows b)"
log "add column while both write: same 403 rows on both ($(rows a))"

# ---- 3. three statements in one query string; a serial column
q a -c "create table m1(id int primary key); create index m1_v on m1((id + 1)); create view m1v as select id from m1"
wait_until 30 "m1v on b" exists b public.m1v
exists b public.m1_v || fail "index m1_v is not on b"
q a -c "create table sq(id serial primary key, v text)"
wait_until 30 "sq on b" exists b public.sq
q b -c "insert into sq (v) values ('b')"
q a -c "insert into sq (v) values ('a')"
quiet
[ "$(q a -c "select string_agg(v || ':' || (id % 64), ',' order by v) from sq")" = "a:1,b:2" ] ||
    fail "sq's keys are not node-distinct: $(q a -c 'select * from sq')"
log "three statements in one string, once each; a serial column's sequence node-distinct on b"

# ---- 4. drop
q a -c "drop view m1v" -c "drop table m1"
gone() { ! exists b public.m1 && ! exists b public.m1v; }
wait_until 30 "m1 and m1v dropped on b" gone
log "drop view, drop table: gone on b"

# ---- 5. a statement that fails on b
q b -c "set session_replication_role = replica" -c "create table x1(id int primary key)"
exists a public.x1 && fail "a table created with session_replication_role = replica was sent"
q a -c "create table x1(id int primary key)" -c "insert into x1 values (1)"
said() { grep -q 'DDL from peer "a" failed here: relation "x1" already exists' "$T_DIR/node_b/postgres.log"; }
wait_until 30 "b's worker stops on a's CREATE TABLE x1, saying why" said
q b -c "select pgvigil_aa.resolve_stopped('a', 'local')"
x1_row() { [ "$(q b -c 'select count(*) from x1')" = 1 ]; }
wait_until 30 "a's row of x1 reaches b once the statement is skipped" x1_row
[ "$(q b -c "select count(*) from pgvigil_aa.conflicts where kind = 'ddl_failed' and remote_row like 'create table x1%'")" = 1 ] ||
    fail "the skipped statement is not recorded"
log "a statement that fails on b: the worker stops and says why, skipped on the decision, recorded"

# ---- 6. temporary tables stay local
q a -c "create temp table tmp1(id int primary key)" -c "create index tmp1_i on tmp1 (id)" \
    -c "alter table tmp1 add column v text" -c "drop table tmp1" -c "insert into d1 values (3001, 'after temp', 0)"
quiet
[ "$(rows a)" = "$(rows b)" ] || fail "after a temporary table: a $(rows a), b $(rows b)"
log "a temporary table, its index, ALTER and DROP are not sent"
echo "PASS [$T_NAME]"
