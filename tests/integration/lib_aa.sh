# Active-active test harness: plain PostgreSQL 15 instances on 127.0.0.1 (no agent), each a node
# of a pgvigil_aa group. Source it after lib.sh.
#   start_node N           initdb (first time) and start node N (a, b, c...); with AA_FAKETIME_FILE
#                          set, under libfaketime: the wall clock stands still at the time written
#                          in that file ("YYYY-MM-DD hh:mm:ss"), for every node alike, until the
#                          file changes; commits on two nodes at one time carry equal timestamps
#   stop_node N            stop node N (immediately)
#   q N [psql args]        psql on node N as postgres
#   aa_group N...          the extension, each node's name, a slot per reader and peer rows, on
#                          every pair of the nodes named
#   aa_join NEW N...       NEW joins the group of N... (same, from now on: no initial copy yet)
#   start_workers N...     start each node's apply workers (one per peer)
#   worker_pid N PEER      the pid of N's apply worker for PEER ("" if none)
#   mark_quiet N...        remember each node's WAL position (after its clients' last writes)
#   slots_caught_up N...   every slot on those nodes confirmed by its reader up to that position
# With lib_netns.sh sourced before: AA_NETNS[N]=K (set before start_node N) runs node N in
# namespace member K, listening on that member's address only (aa_host N) and trusting its
# subnet; q N then goes through the node's unix socket (it works while N is cut off), and aa_link
# gives each peer row that address. AA_PEER_OPTS: more conninfo options for the peer rows
# aa_link makes (keepalives, timeouts).
PGBIN=/usr/lib/postgresql/15/bin
FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
[ -f "$PGBIN/../lib/pgvigil_aa.so" ] || fail "pgvigil_aa.so is not installed (make pgext-install)"
[ -f /usr/share/postgresql/15/extension/pgvigil_aa.control ] || fail "the pgvigil_aa extension is not installed (make pgext-install)"
declare -A PORT AA_NETNS
AA_NODES=()
AA_PEER_OPTS="${AA_PEER_OPTS:-}"
# the address node N listens on (its namespace's, or 127.0.0.1)
aa_host() { if [ -n "${AA_NETNS[$1]:-}" ]; then netns_ip "${AA_NETNS[$1]}"; else echo 127.0.0.1; fi; }
# the command prefix that runs a program in node N's namespace (nothing when it has none)
_aa_in_ns() { [ -n "${AA_NETNS[$1]:-}" ] && echo "nsenter -F --net=/run/netns/$(netns_name "${AA_NETNS[$1]}")"; }
start_node() {
    local n="$1" d="$T_DIR/node_$1"
    mkdir -p "$d" && chown postgres: "$d"
    [ -n "${PORT[$n]:-}" ] || { alloc_port "PORT[$n]"; AA_NODES+=("$n"); }
    if [ ! -d "$d/data" ]; then
        runuser -u postgres -- "$PGBIN/initdb" -D "$d/data" -U postgres -A trust >"$d/initdb.log" 2>&1 ||
            fail "initdb $n: $(tail -3 "$d/initdb.log")"
        cat >>"$d/data/postgresql.conf" <<CONF
port = ${PORT[$n]}
listen_addresses = '$(aa_host "$n")'
unix_socket_directories = '$d'
max_connections = 30
shared_buffers = 16MB
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_worker_processes = 16
track_commit_timestamp = on
shared_preload_libraries = 'pgvigil_aa'
CONF
        if grep -q "^output_plugin_libraries" <<<"$("$PGBIN/postgres" --describe-config 2>/dev/null)"; then
            echo "output_plugin_libraries = 'pgoutput, test_decoding, pgvigil_aa'" >>"$d/data/postgresql.conf"
        fi
        [ -n "${AA_NETNS[$n]:-}" ] && echo "host all all $NETNS_SUBNET.0/24 trust" >>"$d/data/pg_hba.conf"
    fi
    if [ -n "${AA_FAKETIME_FILE:-}" ]; then
        [ -f "$FAKETIME_LIB" ] || fail "libfaketime is not installed (scripts/setup.sh installs it)"
        # the wall clock stands still at the time in the file, read at every call; monotonic time
        # stays real, so latches and timeouts keep working
        $(_aa_in_ns "$n") runuser -u postgres -- env LD_PRELOAD="$FAKETIME_LIB" FAKETIME_TIMESTAMP_FILE="$AA_FAKETIME_FILE" \
            FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1 \
            "$PGBIN/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w start >/dev/null ||
            fail "postgres $n did not start under libfaketime: $(tail -5 "$d/postgres.log")"
    else
        $(_aa_in_ns "$n") runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w start >/dev/null ||
            fail "postgres $n did not start: $(tail -5 "$d/postgres.log")"
    fi
}
stop_node() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T_DIR/node_$1/data" -m immediate -w stop >/dev/null 2>&1; }
stop_nodes() { local n; for n in "${AA_NODES[@]}"; do stop_node "$n"; done; }
CLEANUP_HOOKS+=(stop_nodes)
q() {
    local n="$1" h=127.0.0.1
    shift
    [ -n "${AA_NETNS[$n]:-}" ] && h="$T_DIR/node_$n"
    PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h "$h" -p "${PORT[$n]}" -U postgres -d postgres -At "$@"
}
# the extension and the node's name; its sequence offset is its rank among the nodes started
aa_node_init() {
    local i off=0
    for i in "${!AA_NODES[@]}"; do [ "${AA_NODES[$i]}" = "$1" ] && off=$((i + 1)); done
    q "$1" -c "create extension pgvigil_aa" \
        -c "insert into pgvigil_aa.local_node (name, sequence_offset) values ('$1', $off)" ||
        fail "setting up node $1"
}
# aa_link N O: each of the two reads the other's slot (made here, from now on)
aa_link() {
    local n="$1" o="$2" x y
    for x in "$n" "$o"; do
        y=$([ "$x" = "$n" ] && echo "$o" || echo "$n")
        q "$x" -c "select pg_create_logical_replication_slot('aa_for_$y', 'pgvigil_aa')" >/dev/null ||
            fail "slot on $x for $y"
        q "$y" -c "insert into pgvigil_aa.peers (name, conninfo, slot_name) values ('$x', 'host=$(aa_host "$x") port=${PORT[$x]} user=postgres dbname=postgres${AA_PEER_OPTS:+ $AA_PEER_OPTS}', 'aa_for_$y')" ||
            fail "peer $x on $y"
    done
}
aa_group() {
    local n o i j
    for n in "$@"; do aa_node_init "$n"; done
    for ((i = 1; i <= $#; i++)); do
        for ((j = i + 1; j <= $#; j++)); do aa_link "${!i}" "${!j}"; done
    done
}
# aa_join NEW EXISTING...: NEW joins the group (its tables must already hold what the others hold)
aa_join() {
    local n="$1" o
    shift
    aa_node_init "$n"
    for o in "$@"; do aa_link "$n" "$o"; done
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
