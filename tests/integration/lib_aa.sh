# Active-active test harness: plain PostgreSQL 15 instances on 127.0.0.1 (no agent), each a node
# of a pgvigil_aa group. Source it after lib.sh.
#   start_node N           initdb (first time) and start node N (a, b, c...); with AA_FAKETIME set
#                          (e.g. "@2026-12-05 12:00:00"), under libfaketime with that frozen wall
#                          clock: every commit of every node then carries the same timestamp
#   stop_node N            stop node N (immediately)
#   q N [psql args]        psql on node N as postgres
#   aa_group N...          the extension, each node's name, a slot per reader and peer rows, on
#                          every pair of the nodes named
#   start_workers N...     start each node's apply workers (one per peer)
#   worker_pid N PEER      the pid of N's apply worker for PEER ("" if none)
#   mark_quiet N...        remember each node's WAL position (after its clients' last writes)
#   slots_caught_up N...   every slot on those nodes confirmed by its reader up to that position
PGBIN=/usr/lib/postgresql/15/bin
FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
[ -f "$PGBIN/../lib/pgvigil_aa.so" ] || fail "pgvigil_aa.so is not installed (make pgext-install)"
[ -f /usr/share/postgresql/15/extension/pgvigil_aa.control ] || fail "the pgvigil_aa extension is not installed (make pgext-install)"
declare -A PORT
AA_NODES=()
start_node() {
    local n="$1" d="$T_DIR/node_$1"
    mkdir -p "$d" && chown postgres: "$d"
    [ -n "${PORT[$n]:-}" ] || { alloc_port "PORT[$n]"; AA_NODES+=("$n"); }
    if [ ! -d "$d/data" ]; then
        runuser -u postgres -- "$PGBIN/initdb" -D "$d/data" -U postgres -A trust >"$d/initdb.log" 2>&1 ||
            fail "initdb $n: $(tail -3 "$d/initdb.log")"
        cat >>"$d/data/postgresql.conf" <<CONF
port = ${PORT[$n]}
listen_addresses = '127.0.0.1'
unix_socket_directories = '$d'
max_connections = 30
shared_buffers = 16MB
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_worker_processes = 16
track_commit_timestamp = on
CONF
        if grep -q "^output_plugin_libraries" <<<"$("$PGBIN/postgres" --describe-config 2>/dev/null)"; then
            echo "output_plugin_libraries = 'pgoutput, test_decoding, pgvigil_aa'" >>"$d/data/postgresql.conf"
        fi
    fi
    if [ -n "${AA_FAKETIME:-}" ]; then
        [ -f "$FAKETIME_LIB" ] || fail "libfaketime is not installed (scripts/setup.sh installs it)"
        # (monotonic time stays real: latches and timeouts keep working)
        runuser -u postgres -- env LD_PRELOAD="$FAKETIME_LIB" FAKETIME="$AA_FAKETIME" FAKETIME_DONT_FAKE_MONOTONIC=1 \
            "$PGBIN/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w start >/dev/null ||
            fail "postgres $n did not start under libfaketime: $(tail -5 "$d/postgres.log")"
    else
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w start >/dev/null ||
            fail "postgres $n did not start: $(tail -5 "$d/postgres.log")"
    fi
}
stop_node() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T_DIR/node_$1/data" -m immediate -w stop >/dev/null 2>&1; }
stop_nodes() { local n; for n in "${AA_NODES[@]}"; do stop_node "$n"; done; }
CLEANUP_HOOKS+=(stop_nodes)
q() {
    local n="$1"
    shift
    PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[$n]}" -U postgres -d postgres -At "$@"
}
aa_group() {
    local n o
    for n in "$@"; do
        q "$n" -c "create extension pgvigil_aa" -c "insert into pgvigil_aa.local_node values ('$n')" ||
            fail "setting up node $n"
    done
    for n in "$@"; do
        for o in "$@"; do
            [ "$n" = "$o" ] && continue
            # n's slot for o's worker, and o's peer row for n
            q "$n" -c "select pg_create_logical_replication_slot('aa_for_$o', 'pgvigil_aa')" >/dev/null ||
                fail "slot on $n for $o"
            q "$o" -c "insert into pgvigil_aa.peers (name, conninfo, slot_name) values ('$n', 'host=127.0.0.1 port=${PORT[$n]} user=postgres dbname=postgres', 'aa_for_$o')" ||
                fail "peer $n on $o"
        done
    done
}
start_workers() {
    local n p
    for n in "$@"; do
        for p in $(q "$n" -c "select name from pgvigil_aa.peers order by name"); do
            q "$n" -c "select pgvigil_aa.start_apply('$p')" >/dev/null || fail "start_apply('$p') on $n"
        done
    done
}
worker_pid() { q "$1" -c "select pid from pg_stat_activity where application_name = 'pgvigil_aa apply from $2'"; }
declare -A AA_END
# mark_quiet N...: remember every node's WAL position now (its clients' last writes), then
# slots_caught_up N...: every slot on those nodes confirmed up to it by its reader
mark_quiet() { local n; for n in "$@"; do AA_END[$n]=$(q "$n" -c "select pg_current_wal_lsn()"); done; }
slots_caught_up() {
    local n
    for n in "$@"; do
        [ "$(q "$n" -c "select count(*) from pg_replication_slots where slot_name like 'aa\\_for\\_%' and confirmed_flush_lsn < '${AA_END[$n]}'")" = 0 ] || return 1
    done
}
