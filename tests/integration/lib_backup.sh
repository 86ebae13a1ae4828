# Helpers for the backup tests, sourced after lib.sh: a server started from a restored (or
# delta-restored) data directory, as its own postmaster on its own port, run by the postgres
# user, with its socket and log in $T_DIR/NAME.sock.

PGBIN=/usr/lib/postgresql/15/bin

# restored_start NAME DIR: start the server in DIR and wait until recovery has ended and it was
# promoted; RESTORED_PORT is its port
restored_start() {
    local name="$1" dir="$2"
    alloc_port RESTORED_PORT
    mkdir -p "$T_DIR/$name.sock" && chown postgres: "$T_DIR/$name.sock"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir" -l "$T_DIR/$name.sock/postgres.log" -w -t 120 \
        -o "-p $RESTORED_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$T_DIR/$name.sock" start >/dev/null ||
        fail "restored server $name did not start: $(tail -5 "$T_DIR/$name.sock/postgres.log")"
    wait_until 120 "restored server $name promoted" restored_promoted
}
restored_q() { PGPASSWORD=it-super psql -X -h 127.0.0.1 -p "$RESTORED_PORT" -U postgres -d postgres -Atc "$1"; }
restored_promoted() { [ "$(restored_q 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; }
restored_stop() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null; }

# restore_to NAME CONFIG RESTORE-ARGS...: pgvigil restore into $T_DIR/NAME, then restored_start
restore_to() {
    local name="$1" cfg="$2"; shift 2
    "$BIN" restore -c "$cfg" --target-dir "$T_DIR/$name" "$@" >"$T_DIR/$name.restore.out" 2>&1 ||
        fail "restore $name: $(cat "$T_DIR/$name.restore.out")"
    restored_start "$name" "$T_DIR/$name"
}

# backup_cluster N [MORE]: a cluster of N nodes whose backup section has a POSIX repository in
# $REPO ($T_DIR/repo), MORE (YAML lines) added under `backup:`; CFG is node1's configuration
backup_cluster() {
    [ -f /usr/lib/postgresql/15/lib/pgvigil_archive.so ] || fail "pgvigil_archive.so is not installed (make pgext-install)"
    REPO="$T_DIR/repo"
    NODE_EXTRA="backup:
  repository:
    path: $REPO${2:+
$2}"
    start_cluster "$1"
    CFG="$T_DIR/node1.yml"
}
