#!/bin/bash
# pgvigil rewind (pgvigil's own block-level rewind) on plain PostgreSQL 15 instances on
# 127.0.0.1, without agents: A is a primary archiving into a directory, B its streaming replica.
# B is promoted; A goes its own way (updates, a new table, a dropped table, deleted rows and a
# VACUUM that cuts the table, a new database) while B writes too; A is stopped cleanly, and B
# checkpoints so that A's WAL before the fork is gone from A (it comes from the archive).
#  1. --dry-run plans and changes nothing outside pg_wal; a running target, another system and a
#     target without wal_log_hints are refused with exit 5 and nothing changed.
#  2. The rewind, on a copy of A (its replication slot goes, as with pg_rewind; its configuration
#     stays its own): A then starts as B's standby, reaches consistency and has
#     exactly B's content (md5 of every row in key order, the tables and databases B has and not
#     the ones only A had), and amcheck finds nothing wrong in its table, index and catalog.
#  3. It copied less than pg_rewind on another copy of the same A (both tools' own counts);
#     the ratio is printed.
#  4. The check can fail: a rewind that leaves A's changed blocks as they are (a test hook)
#     gives a standby whose content is not B's, and the test sees it.
#  5. A rewind that fails part way exits 1 and leaves the directory marked
#     (pgvigil.rewind_failed).
source "$(dirname "$0")/lib.sh"

PGBIN=/usr/lib/postgresql/15/bin
ARCH="$T_DIR/archive"
mkdir -p "$ARCH" && chown postgres: "$ARCH" "$T_DIR"
alloc_port PA
alloc_port PB
alloc_port PC
q() {
    local port="$1"
    shift
    PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -At "$@"
}
pgctl() { runuser -u postgres -- "$PGBIN/pg_ctl" "$@"; }
stop_dir() { pgctl -D "$1" -m immediate -w stop >/dev/null 2>&1 || true; }
stop_all() { local d; for d in a nohints b a1 a3; do stop_dir "$T_DIR/$d"; done; }
CLEANUP_HOOKS+=(stop_all)
set_port() { sed -i "s/^port = .*/port = $2/" "$1/postgresql.conf"; }

runuser -u postgres -- "$PGBIN/initdb" -D "$T_DIR/a" -U postgres -A trust >"$T_DIR/initdb.log" 2>&1 ||
    fail "initdb: $(tail -3 "$T_DIR/initdb.log")"
cat >>"$T_DIR/a/postgresql.conf" <<CONF
port = $PA
listen_addresses = '127.0.0.1'
unix_socket_directories = '$T_DIR'
max_connections = 20
shared_buffers = 16MB
wal_log_hints = on
archive_mode = on
archive_command = 'test ! -f $ARCH/%f && cp %p $ARCH/%f'
restore_command = 'cp $ARCH/%f %p'
CONF
pgctl -D "$T_DIR/a" -l "$T_DIR/a.log" -w start >/dev/null || fail "A did not start: $(tail -5 "$T_DIR/a.log")"
# room in every page (fillfactor 50) and nothing left to hint (frozen before B exists): after
# the fork, the pages of A's updates are written by A alone, so B's WAL carries no image of
# them, and a rewind that does not copy them back leaves A's rows there (the self-test in 4)
q "$PA" -c "create table t(id int primary key, v text) with (fillfactor = 50)" \
    -c "insert into t select g, 'first' from generate_series(1, 100000) g" \
    -c "create table keep(x int); insert into keep values (1)" -c "vacuum freeze" || fail "initial data"
runuser -u postgres -- "$PGBIN/pg_basebackup" -D "$T_DIR/b" -h 127.0.0.1 -p "$PA" -U postgres -R -X stream -c fast \
    >"$T_DIR/basebackup.log" 2>&1 || fail "pg_basebackup: $(tail -3 "$T_DIR/basebackup.log")"
set_port "$T_DIR/b" "$PB"
pgctl -D "$T_DIR/b" -l "$T_DIR/b.log" -w start >/dev/null || fail "B did not start: $(tail -5 "$T_DIR/b.log")"
q "$PA" -c "update t set v = 'both' where id < 100"
a_lsn=$(q "$PA" -c "select pg_current_wal_lsn()")
caught_up() { [ "$(q "$PB" -c "select pg_last_wal_replay_lsn() >= '$a_lsn'")" = t ]; }
wait_until 30 "B replayed A's writes" caught_up
pgctl -D "$T_DIR/b" -w promote >/dev/null || fail "promote B"

# A goes its own way; B writes too
q "$PA" -c "update t set v = 'A only' where id between 1000 and 2000" \
    -c "create table a_only(x int); insert into a_only select generate_series(1, 10000)" \
    -c "drop table keep" -c "delete from t where id > 90000" -c "vacuum t" -c "create database a_db" \
    -c "select pg_create_physical_replication_slot('a_slot', true)" >/dev/null || fail "A's own writes"
q "$PB" -c "update t set v = 'B' where id between 5000 and 5100" \
    -c "create table b_only(x int); insert into b_only values (42)" \
    -c "insert into t select g, 'new on B' from generate_series(100001, 100500) g" || fail "B's writes"
pgctl -D "$T_DIR/a" -w stop >/dev/null || fail "stop A"
q "$PB" -c "checkpoint" >/dev/null
SRC="host=127.0.0.1 port=$PB user=postgres dbname=postgres"
rewind() { runuser -u postgres -- "$BIN" rewind --source-server "$SRC" --restore-target-wal "$@"; }
tree_sum() { (cd "$1" && find . -type f ! -name postmaster.pid -printf "%p %s %T@\n" | sort | md5sum); }

# ---- 1. dry run and refusals: nothing changed (a dry run may fetch archived WAL the target
# lacks into its pg_wal, as the rewind will need it; nothing else)
tree_nowal() { (cd "$1" && find . -path ./pg_wal -prune -o -type f ! -name postmaster.pid -printf "%p %s %T@\n" | sort | md5sum); }
before=$(tree_nowal "$T_DIR/a")
rewind -D "$T_DIR/a" --dry-run >"$T_DIR/dry.out" 2>&1 || fail "dry run: $(cat "$T_DIR/dry.out")"
grep -q "would copy [0-9]* bytes" "$T_DIR/dry.out" || fail "dry run output: $(cat "$T_DIR/dry.out")"
[ "$(tree_nowal "$T_DIR/a")" = "$before" ] || fail "the dry run changed A"
refused() {
    local why="$1" dir="$2"
    shift 2
    rewind -D "$dir" "$@" >"$T_DIR/refused.out" 2>&1
    local rc=$?
    [ "$rc" = 5 ] || fail "$why: exit $rc, not 5: $(cat "$T_DIR/refused.out")"
    grep -q "nothing changed" "$T_DIR/refused.out" || fail "$why: $(cat "$T_DIR/refused.out")"
}
set_port "$T_DIR/a" "$PC"
pgctl -D "$T_DIR/a" -l "$T_DIR/a-run.log" -w start -o "-c archive_mode=off" >/dev/null || fail "start A to refuse"
refused "a running target" "$T_DIR/a"
grep -q "not shut down cleanly\|postmaster.pid" "$T_DIR/refused.out" || fail "running target: $(cat "$T_DIR/refused.out")"
pgctl -D "$T_DIR/a" -w stop >/dev/null
runuser -u postgres -- "$PGBIN/initdb" -D "$T_DIR/other" -U postgres -A trust >/dev/null 2>&1 || fail "initdb other"
printf "restore_command = 'cp $ARCH/%%f %%p'\nwal_log_hints = on\nport = $PC\nunix_socket_directories = '$T_DIR'\n" >>"$T_DIR/other/postgresql.conf"
pgctl -D "$T_DIR/other" -l "$T_DIR/other.log" -w start >/dev/null && pgctl -D "$T_DIR/other" -w stop >/dev/null ||
    fail "other system: $(tail -3 "$T_DIR/other.log")"
before=$(tree_sum "$T_DIR/other")
refused "another system" "$T_DIR/other"
grep -q "system identifier" "$T_DIR/refused.out" || fail "other system: $(cat "$T_DIR/refused.out")"
[ "$(tree_sum "$T_DIR/other")" = "$before" ] || fail "a refused rewind changed the other system's directory"
cp -a "$T_DIR/a" "$T_DIR/nohints"
sed -i 's/^wal_log_hints = on/wal_log_hints = off/' "$T_DIR/nohints/postgresql.conf"
pgctl -D "$T_DIR/nohints" -l "$T_DIR/nohints.log" -w start -o "-c archive_mode=off" >/dev/null || fail "start nohints"
pgctl -D "$T_DIR/nohints" -w stop >/dev/null
before=$(tree_sum "$T_DIR/nohints")
refused "a target without wal_log_hints" "$T_DIR/nohints"
grep -q "wal_log_hints" "$T_DIR/refused.out" || fail "no wal_log_hints: $(cat "$T_DIR/refused.out")"
[ "$(tree_sum "$T_DIR/nohints")" = "$before" ] || fail "a refused rewind changed the directory"
log "dry run and refusals: ok ($(sed 's/^pgvigil rewind: //' "$T_DIR/dry.out" | cut -c1-60)...)"

# ---- copies of A for each run
for c in a1 a2 a3 a4; do cp -a "$T_DIR/a" "$T_DIR/$c"; done

# ---- 2. the rewind, then A follows B
rewind -D "$T_DIR/a1" >"$T_DIR/rewind.out" 2>&1 || fail "pgvigil rewind: $(cat "$T_DIR/rewind.out")"
cat "$T_DIR/rewind.out"
[ ! -e "$T_DIR/a1/pgvigil.rewind_failed" ] || fail "the mark of a failed rewind is left"
[ ! -e "$T_DIR/a1/pg_replslot/a_slot" ] || fail "A's replication slot is still there (pg_rewind removes slots)"
grep -q "^port = $PC" "$T_DIR/a1/postgresql.conf" || fail "A's postgresql.conf was replaced (its port line: $(grep "^port" "$T_DIR/a1/postgresql.conf"))"
start_standby() {
    local dir="$1" port="$2"
    set_port "$dir" "$port"
    echo "primary_conninfo = 'host=127.0.0.1 port=$PB user=postgres'" >>"$dir/postgresql.conf"
    echo "archive_mode = off" >>"$dir/postgresql.conf"
    runuser -u postgres -- touch "$dir/standby.signal"
    pgctl -D "$dir" -l "$dir.log" -w start >/dev/null || fail "$dir did not start: $(tail -5 "$dir.log")"
}
start_standby "$T_DIR/a1" "$PA"
b_lsn=$(q "$PB" -c "select pg_current_wal_lsn()")
replayed() { [ "$(q "$1" -c "select pg_last_wal_replay_lsn() >= '$b_lsn'" 2>/dev/null)" = t ]; }
wait_until 60 "the rewound A replayed B's WAL" replayed "$PA"
content() {
    q "$1" -c "select md5(string_agg(id || ':' || v, ',' order by id)) || ' ' || count(*) from t" \
        -c "select coalesce(to_regclass('a_only')::text, '-'), coalesce(to_regclass('keep')::text, '-'), coalesce(to_regclass('b_only')::text, '-')" \
        -c "select string_agg(datname, ',' order by datname) from pg_database" -c "select count(*) from keep"
}
want=$(content "$PB")
got=$(content "$PA")
[ "$got" = "$want" ] || fail "the rewound A differs from B: $(echo "$got" | tr '\n' ' ') / B: $(echo "$want" | tr '\n' ' ')"
q "$PB" -c "create extension if not exists amcheck" >/dev/null
wait_until 30 "amcheck reaches A" bash -c "[ \"\$(PGCONNECT_TIMEOUT=3 psql -X -h 127.0.0.1 -p $PA -U postgres -Atc \"select count(*) from pg_extension where extname = 'amcheck'\" 2>/dev/null)\" = 1 ]"
q "$PA" -c "select bt_index_check('t_pkey', true)" >/dev/null || fail "amcheck: t_pkey"
bad=$(q "$PA" -c "select (select count(*) from verify_heapam('t')) + (select count(*) from verify_heapam('pg_class')) + (select count(*) from verify_heapam('pg_attribute'))")
[ "$bad" = 0 ] || fail "amcheck: $bad corrupt tuple(s)"
log "rewound A follows B with B's content: ok"

# ---- 3. against pg_rewind on an identical copy
runuser -u postgres -- "$PGBIN/pg_rewind" -D "$T_DIR/a2" --source-server "$SRC" --restore-target-wal --progress \
    >"$T_DIR/pg_rewind.out" 2>&1 || fail "pg_rewind: $(tail -3 "$T_DIR/pg_rewind.out")"
ours=$(sed -n 's/^pgvigil rewind: copied \([0-9]*\) bytes.*/\1/p' "$T_DIR/rewind.out")
theirs_kb=$(tr '\r' '\n' <"$T_DIR/pg_rewind.out" | sed -n 's|^ *[0-9]*/\([0-9]*\) kB.*|\1|p' | tail -1)
[ -n "$ours" ] && [ -n "$theirs_kb" ] || fail "no byte counts: ours '$ours', pg_rewind '$theirs_kb'"
[ "$ours" -lt $((theirs_kb * 1024)) ] || fail "pgvigil rewind copied $ours bytes, pg_rewind $((theirs_kb * 1024))"
log "bytes copied: pgvigil rewind $ours, pg_rewind $((theirs_kb * 1024)) (ratio $(awk "BEGIN{printf \"%.3f\", $ours / ($theirs_kb * 1024)}"))"

# ---- 4. the check can fail: changed blocks left as they are
PGVIGIL_TEST_REWIND_SKIP_BLOCKS=1 rewind -D "$T_DIR/a3" >"$T_DIR/skip.out" 2>&1 || fail "hooked rewind: $(cat "$T_DIR/skip.out")"
start_standby "$T_DIR/a3" "$PC"
b_lsn=$(q "$PB" -c "select pg_current_wal_lsn()")
wait_until 60 "the badly rewound copy replayed B's WAL" replayed "$PC"
got=$(content "$PC" 2>&1)
[ "$got" != "$want" ] || fail "a rewind without the changed blocks gave B's content: the check cannot fail"
stop_dir "$T_DIR/a3"
log "self-test: a rewind that skips changed blocks is caught"

# ---- 5. failing part way: exit 1 and the mark
PGVIGIL_TEST_REWIND_FAIL_AFTER_REMOVE=1 rewind -D "$T_DIR/a4" >"$T_DIR/fail.out" 2>&1
rc=$?
[ "$rc" = 1 ] || fail "a rewind failing part way exited $rc: $(cat "$T_DIR/fail.out")"
[ -e "$T_DIR/a4/pgvigil.rewind_failed" ] || fail "no mark after a rewind that failed part way"
log "a rewind failing part way: exit 1, directory marked"
echo "PASS [$T_NAME]"
