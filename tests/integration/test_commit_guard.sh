#!/bin/bash
# The commit guard (pgext/guard, loaded by shared_preload_libraries) on a plain PostgreSQL 15,
# with the lease file written here as the agent would (lease_file.py): a write transaction is
# refused once the deadline has passed and nothing of it is kept; reads are not; no deadline and
# a future one let commits through; a commit made while the deadline passes (here: during a
# synchronous-replication wait) is not acknowledged until the lease is renewed; a backend whose mapped file was replaced
# reads the new one; a missing file turns the guard off with a WARNING. A held commit is
# released only by a renewal of the same lease: with a new lease generation, or a terminate
# request, the backend leaves without sending CommandComplete (checked on the wire).
source "$(dirname "$0")/lib.sh"

PGBIN=/usr/lib/postgresql/15/bin
[ -f "$PGBIN/../lib/pgvigil_guard.so" ] || fail "pgvigil_guard.so is not installed (make pgext-install)"
LEASE_PY="$(dirname "$0")/lease_file.py"
S="$T_DIR/solo"
L="$S/lease"
mkdir -p "$S" && chown postgres: "$S"
alloc_port SOLO_PORT
runuser -u postgres -- "$PGBIN/initdb" -D "$S/data" -U postgres -A trust >"$S/initdb.log" 2>&1 || fail "initdb: $(tail -3 "$S/initdb.log")"
cat >>"$S/data/postgresql.conf" <<CONF
port = $SOLO_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$S'
max_connections = 20
max_prepared_transactions = 5
shared_preload_libraries = 'pgvigil_guard'
pgvigil_guard.lease_file = '$L'
CONF
python3 "$LEASE_PY" "$L" none
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$S/data" -l "$S/postgres.log" -w start >/dev/null || fail "postgres did not start: $(tail -5 "$S/postgres.log")"
stop_solo() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$S/data" -m immediate -w stop >/dev/null 2>&1; }
CLEANUP_HOOKS+=(stop_solo)
q() { PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SOLO_PORT" -U postgres -d postgres -At "$@"; }

[ "$(q -c 'show pgvigil_guard.lease_file')" = "$L" ] || fail "the module is not loaded"
q -c "create table t(id text primary key)" || fail "create table with no deadline"

# 1. no deadline, a future one: commits go through
q -c "insert into t values ('none')" || fail "insert refused with no deadline"
python3 "$LEASE_PY" "$L" +60000
q -c "insert into t values ('future')" || fail "insert refused with a deadline a minute away"

# 2. the deadline has passed: a write is refused with the guard's error, a read is not
python3 "$LEASE_PY" "$L" past
out=$(q -c "insert into t values ('late')" 2>&1) && fail "insert accepted after the deadline"
grep -q "leader lease ran out" <<<"$out" || fail "unexpected error for a late insert: $out"
[ "$(q -c 'select count(*) from t')" = 2 ] || fail "a read failed after the deadline"
q -c "begin" -c "select 1" -c "commit" >/dev/null || fail "a read-only transaction could not commit after the deadline"
python3 "$LEASE_PY" "$L" none
[ "$(q -c "select count(*) from t where id = 'late'")" = 0 ] || fail "the refused insert was kept"
log "refused a write past the deadline ($out)"

# 2b. two-phase commit: PREPARE and COMMIT PREPARED are refused past the deadline too
q -c "begin" -c "insert into t values ('prepared')" -c "prepare transaction 'p1'" || fail "prepare with no deadline"
python3 "$LEASE_PY" "$L" past
out=$(q -c "commit prepared 'p1'" 2>&1) && fail "COMMIT PREPARED accepted after the deadline"
grep -q "leader lease ran out" <<<"$out" || fail "unexpected error for a late COMMIT PREPARED: $out"
out=$(q -c "begin" -c "insert into t values ('late-prepare')" -c "prepare transaction 'p2'" 2>&1) && fail "PREPARE TRANSACTION accepted after the deadline"
grep -q "leader lease ran out" <<<"$out" || fail "unexpected error for a late PREPARE TRANSACTION: $out"
python3 "$LEASE_PY" "$L" none
[ "$(q -c "select count(*) from t where id = 'prepared'")" = 0 ] || fail "the refused COMMIT PREPARED committed"
[ "$(q -c "select count(*) from pg_prepared_xacts")" = 1 ] || fail "expected only p1 prepared: $(q -c 'select gid from pg_prepared_xacts')"
q -c "commit prepared 'p1'" || fail "COMMIT PREPARED refused once the lease is back"
[ "$(q -c "select count(*) from t where id = 'prepared'")" = 1 ] || fail "the prepared row is missing after COMMIT PREPARED"

# 3. a backend that mapped the file before it was replaced (new inode, as the agent makes it
#    again after a deletion) reads the new one once the old one says the lease ran out
python3 "$LEASE_PY" "$L" +60000
q -c "insert into t values ('before-replace')" \
  -c "\\! python3 $LEASE_PY $L past" \
  -c "\\! python3 $LEASE_PY $L +60000 --replace" \
  -c "insert into t values ('after-replace')" || fail "a backend kept reading the replaced lease file"

# 4. the acknowledgement is held. A commit waits for a synchronous standby that does not exist;
#    meanwhile the deadline passes; cancelling the wait lets the commit finish locally, and the
#    guard must hold the reply until the lease is renewed. The client speaks the wire protocol
#    itself (extended protocol), so the test sees every message the server sent.
q -c "alter system set synchronous_standby_names = 'nobody'" -c "select pg_reload_conf()" >/dev/null
wait_until 10 "synchronous_standby_names in force" bash -c "[ \"\$(PGCONNECT_TIMEOUT=3 psql -X -h 127.0.0.1 -p $SOLO_PORT -U postgres -d postgres -Atc 'show synchronous_standby_names')\" = nobody ]"
held_commit() {   # $1: row id, also the application_name; $2: simple|extended; messages received in $S/$1.out
    /usr/bin/python3 "$(dirname "$0")/pg_raw_client.py" 127.0.0.1 "$SOLO_PORT" postgres "$1" "$2" \
        "insert into t values ('$1')" >"$S/$1.out" 2>&1 &
}
waits_on() {   # $1: application_name, $2: wait_event
    [ "$(q -c "select wait_event from pg_stat_activity where application_name = '$1'")" = "$2" ]
}
backend_of() { q -c "select pid from pg_stat_activity where application_name = '$1'"; }
got() { grep -qx "$2" "$S/$1.out"; }   # message type $2 received by client $1
# the acknowledgement: CommandComplete in the simple protocol, ReadyForQuery in the extended one
ACK_simple=C
ACK_extended=Z
hold_one() {   # $1: id, $2: protocol; leaves its commit held by the guard
    held_commit "$1" "$2"
    wait_until 20 "$1 waits for the synchronous standby" waits_on "$1" SyncRep
    python3 "$LEASE_PY" "$L" past
    q -c "select pg_cancel_backend($(backend_of "$1"))" >/dev/null
    wait_until 20 "the guard holds the acknowledgement of $1" waits_on "$1" Extension
    local ack="ACK_$2"
    got "$1" "${!ack}" && fail "$1: acknowledged ($2 protocol) while the lease had run out: $(tr '\n' ' ' <"$S/$1.out")"
    got "$1" Z && fail "$1: ReadyForQuery sent while the lease had run out: $(tr '\n' ' ' <"$S/$1.out")"
    return 0
}

hold_one held1 simple
python3 "$LEASE_PY" "$L" +60000
wait_until 20 "held1 gets its reply once the same lease is renewed" got held1 Z
got held1 C || fail "held1: no CommandComplete after the renewal: $(tr '\n' ' ' <"$S/held1.out")"
grep -q "holding the acknowledgement of a commit" "$S/postgres.log" || fail "the guard did not log the held acknowledgement"
log "held the acknowledgement until the lease was renewed ($(tr '\n' ' ' <"$S/held1.out"))"

# 5. the agent holds a new lease instead (its old one expired): the commit held under the old
#    lease is never acknowledged, and the backend leaves
hold_one held2 extended
python3 "$LEASE_PY" "$L" +60000 --gen 2
wait_until 20 "held2's connection closes" got held2 CLOSED
got held2 Z && fail "held2: acknowledged (ReadyForQuery) after the agent took a new lease: $(tr '\n' ' ' <"$S/held2.out")"
grep -q "terminating without acknowledging.*new lease" "$S/postgres.log" || fail "the guard did not log why it dropped held2"
log "a new lease: the held commit was dropped ($(tr '\n' ' ' <"$S/held2.out"))"

# 6. terminated while held: no CommandComplete, no ReadyForQuery, the connection closes
hold_one held3 simple
q -c "select pg_terminate_backend($(backend_of held3))" >/dev/null
wait_until 20 "held3's connection closes" got held3 CLOSED
got held3 C && fail "held3: a commit held past the deadline was acknowledged on termination: $(tr '\n' ' ' <"$S/held3.out")"
got held3 Z && fail "held3: ReadyForQuery sent on termination"
grep -q "terminating without acknowledging a commit.*termination requested" "$S/postgres.log" || fail "the guard did not log the dropped acknowledgement"
python3 "$LEASE_PY" "$L" none
q -c "alter system reset synchronous_standby_names" -c "select pg_reload_conf()" >/dev/null
log "a backend terminated while holding left without acknowledging ($(tr '\n' ' ' <"$S/held3.out"))"

# 7. no file: the guard is off, with a WARNING naming the file
rm -f "$L"
out=$(q -c "insert into t values ('nofile')" 2>&1) || fail "insert refused with the lease file missing: $out"
grep -q "lease file \"$L\".*commits are not guarded" <<<"$out$(cat "$S/postgres.log")" || fail "no WARNING about the missing lease file: $out"

echo "PASS [$T_NAME]"
