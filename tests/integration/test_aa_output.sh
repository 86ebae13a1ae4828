#!/bin/bash
# Active-active, first piece: the pgvigil_aa output plugin (pgext/aa) on two plain PostgreSQL 15
# instances, A and B, on 127.0.0.1.
#  1. Through the SQL interface on A: a transaction written by a client is sent (BEGIN,
#     RELATION naming the table, INSERT, COMMIT); one applied "from a peer" (in a session with a
#     replication origin) is not sent at all; an unknown option is refused by name.
#  2. Bi-directional, loop-free: A and B each subscribe to the other (built-in subscriptions
#     reading slots made with pgvigil_aa). Inserts, updates and deletes of distinct rows on both
#     sides converge to identical tables (md5 in key order), with no apply error on either side
#     and every change applied exactly once.
#  3. The same with PostgreSQL's own pgoutput in a second database (the control): a row written
#     on A comes back to A from B, and A's apply fails on it (duplicate key): the loop the
#     plugin prevents, and proof that the checks of 2 can fail.
source "$(dirname "$0")/lib.sh"

PGBIN=/usr/lib/postgresql/15/bin
[ -f "$PGBIN/../lib/pgvigil_aa.so" ] || fail "pgvigil_aa.so is not installed (make pgext-install)"
declare -A PORT
start_solo() {
    local n="$1" d="$T_DIR/solo$1"
    mkdir -p "$d" && chown postgres: "$d"
    alloc_port "PORT[$n]"
    runuser -u postgres -- "$PGBIN/initdb" -D "$d/data" -U postgres -A trust >"$d/initdb.log" 2>&1 ||
        fail "initdb $n: $(tail -3 "$d/initdb.log")"
    cat >>"$d/data/postgresql.conf" <<CONF
port = ${PORT[$n]}
listen_addresses = '127.0.0.1'
unix_socket_directories = '$d'
max_connections = 30
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_logical_replication_workers = 6
track_commit_timestamp = on
wal_retrieve_retry_interval = 200ms
CONF
    # (a minor release that lists the libraries a slot may name as its output plugin)
    if grep -q "^output_plugin_libraries" <<<"$("$PGBIN/postgres" --describe-config 2>/dev/null)"; then
        echo "output_plugin_libraries = 'pgoutput, test_decoding, pgvigil_aa'" >>"$d/data/postgresql.conf"
    fi
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w start >/dev/null ||
        fail "postgres $n did not start: $(tail -5 "$d/postgres.log")"
    eval "stop_solo_$n() { runuser -u postgres -- '$PGBIN/pg_ctl' -D '$d/data' -m immediate -w stop >/dev/null 2>&1; }"
    CLEANUP_HOOKS+=("stop_solo_$n")
}
q() {
    local n="$1" db="$2"
    shift 2
    PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[$n]}" -U postgres -d "$db" -At "$@"
}
start_solo a
start_solo b
for n in a b; do
    q $n postgres -c "create table t(id int primary key, v text, n int default 0)"
done

# ---- 1. the plugin alone, through the SQL interface
q a postgres -c "select pg_create_logical_replication_slot('peek', 'pgvigil_aa')" >/dev/null
q a postgres -c "select pg_replication_origin_create('peer_b')" >/dev/null
q a postgres -c "insert into t values (1, 'written here')"
q a postgres -c "select pg_replication_origin_session_setup('peer_b')" -c "insert into t values (2, 'applied from b')"
# one row per message: its type (first byte), and for RELATION the table it names
msgs=$(q a postgres -c "select chr(get_byte(data, 0)) || case when get_byte(data, 0) = ascii('R')
    then ':' || convert_from(substring(data from 6 for position('\x00'::bytea in substring(data from 6)) - 1), 'UTF8') ||
         '.' || convert_from(substring(data from 6 + position('\x00'::bytea in substring(data from 6))
                for position('\x00'::bytea in substring(data from 6 + position('\x00'::bytea in substring(data from 6)))) - 1), 'UTF8')
    else '' end
    from pg_logical_slot_get_binary_changes('peek', NULL, NULL, 'proto_version', '1', 'publication_names', 'aa')" | tr '\n' ' ')
log "messages: $msgs"
[ "$msgs" = "B R:public.t I C " ] || fail "expected one transaction (BEGIN, RELATION public.t, INSERT, COMMIT), got: $msgs"
out=$(q a postgres -c "select count(*) from pg_logical_slot_get_binary_changes('peek', NULL, NULL, 'frobnicate', '1')" 2>&1) &&
    fail "an unknown option was accepted"
grep -q 'pgvigil_aa: unknown option "frobnicate"' <<<"$out" || fail "unexpected answer: $out"
q a postgres -c "select pg_drop_replication_slot('peek')" -c "truncate t" >/dev/null

# ---- 2. bi-directional through pgvigil_aa slots: no loop
subscribe() {   # subscribe DB FROM TO SLOT_PLUGIN: TO subscribes to FROM's publication
    local db="$1" from="$2" to="$3" plugin="$4" slot="aa_${1}_${2}_to_${3}"
    q "$from" "$db" -c "create publication aa for all tables" 2>/dev/null || true
    local create="create_slot = true"
    if [ "$plugin" = pgvigil_aa ]; then
        q "$from" "$db" -c "select pg_create_logical_replication_slot('$slot', 'pgvigil_aa')" >/dev/null
        create="create_slot = false"
    fi
    q "$to" "$db" -c "create subscription from_$from connection 'host=127.0.0.1 port=${PORT[$from]} user=postgres dbname=$db'
        publication aa with ($create, slot_name = '$slot', copy_data = false)" >/dev/null
}
subscribe postgres a b pgvigil_aa
subscribe postgres b a pgvigil_aa
q a postgres -c "insert into t select g, 'a' from generate_series(1, 100) g"
q b postgres -c "insert into t select g, 'b' from generate_series(101, 200) g"
table_md5() { q "$1" "$2" -c "select md5(string_agg(id || ':' || v || ':' || n, ',' order by id)) from t"; }
same_tables() { [ "$(table_md5 a "$1")" = "$(table_md5 b "$1")" ] && [ "$(q a "$1" -c 'select count(*) from t')" = "$2" ]; }
wait_until 30 "A and B both have the 200 rows" same_tables postgres 200
q b postgres -c "update t set v = 'b was here', n = n + 1 where id <= 10"
q a postgres -c "update t set n = n + 1 where id > 190" -c "delete from t where id in (150, 151)"
wait_until 30 "A and B converge after updates and deletes" same_tables postgres 198
# (an update that looped would be counted twice)
[ "$(q a postgres -c "select sum(n) from t")" = 20 ] || fail "updates applied more than once: sum(n) = $(q a postgres -c 'select sum(n) from t')"
q b postgres -c "truncate t" -c "insert into t values (7, 'after truncate on b', 0)" 2>/dev/null ||
    fail "truncate on b"
q a postgres -c "insert into t values (8, 'after truncate on a', 0)"
wait_until 30 "A and B converge after a truncate on each" same_tables postgres 2
# every change once: a looping change would be applied again on its origin (a duplicate key
# there, or an update counted twice)
[ "$(q a postgres -c "select string_agg(id || ':' || v || ':' || n, ',' order by id) from t")" = "7:after truncate on b:0,8:after truncate on a:0" ] ||
    fail "unexpected content: $(q a postgres -c 'select * from t')"
for n in a b; do
    errs=$(q $n postgres -c "select coalesce(sum(apply_error_count), 0) from pg_stat_subscription_stats")
    [ "$errs" = 0 ] || fail "node $n: $errs apply error(s): $(grep ERROR "$T_DIR/solo$n/postgres.log" | tail -3)"
    ! grep -q "duplicate key value" "$T_DIR/solo$n/postgres.log" || fail "node $n: a change came back to it"
done

# ---- 3. the control: PostgreSQL's pgoutput loops
for n in a b; do
    q $n postgres -c "create database loopdb" >/dev/null
    q $n loopdb -c "create table t(id int primary key, v text, n int default 0)"
done
subscribe loopdb a b pgoutput
subscribe loopdb b a pgoutput
q a loopdb -c "insert into t values (1, 'from a')"
loop_seen() { [ "$(q a loopdb -c "select coalesce(sum(apply_error_count), 0) from pg_stat_subscription_stats s join pg_subscription p on p.oid = s.subid where p.subdbid = (select oid from pg_database where datname = 'loopdb')")" -gt 0 ]; }
wait_until 30 "with pgoutput, a's row comes back to a and its apply fails" loop_seen
grep -q "duplicate key value" "$T_DIR/solo/a/postgres.log" "$T_DIR/soloa/postgres.log" 2>/dev/null ||
    fail "the control did not loop as expected"
for n in a b; do q $n loopdb -c "alter subscription from_$([ $n = a ] && echo b || echo a) disable" >/dev/null; done
echo "PASS [$T_NAME]"
