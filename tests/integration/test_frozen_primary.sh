#!/bin/bash
# A primary frozen as a whole (agent, fencing process, postmaster and backends all SIGSTOPped,
# as a suspended machine) while a client's COMMIT waits in its backend's socket. The lease runs
# out and another node is promoted; then the node resumes. Without the commit guard a backend
# that runs first acknowledges the COMMIT before the fencing process kills it: two writable
# primaries, as the fault suite found (seeds 7001 and 7004, async mode).
#   round 1: the backend resumes first. With the guard the client gets an error, the row exists
#            nowhere, and the old primary rejoins.
#   round 2: every process resumes at once (the agent renews, finds its lease expired and a new
#            one granted: that must extend neither the fence nor the guard). No acknowledgement.
#   control: round 1 with the guard turned off on the primary must see the acknowledgement: it
#            proves the test reaches the window.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_probe.sh"

[ -f /usr/lib/postgresql/15/lib/pgvigil_guard.so ] || fail "pgvigil_guard.so is not installed (make pgext-install)"
LEASE_PY="$(dirname "$0")/lease_file.py"
start_cluster 3
l=$(leader); ln=$(node_of "$l")
[ -n "$ln" ] || fail "no leader after start"

# the agent loads the guard and feeds it: a deadline ahead on the leader, none on a replica
lease_of() { echo "/tmp/.pgvigil_lease.${PG_PORT[$1]}"; }
[ "$(psql_n "$ln" -c 'show pgvigil_guard.lease_file')" = "$(lease_of "$ln")" ] ||
    fail "the leader's postgres does not load the guard with its lease file"
left=$(python3 "$LEASE_PY" show "$(lease_of "$ln")") || fail "no lease file for $l"
[ "$left" != none ] && [ "$left" -gt 0 ] || fail "the lease file of leader $l holds no future deadline: $left"
for n in 1 2 3; do
    [ "$n" = "$ln" ] && continue
    wait_until 30 "no deadline published on replica node$n" bash -c "[ \"\$(python3 $LEASE_PY show $(lease_of "$n"))\" = none ]"
done
guard_reported() { [ "$(curl -s "http://127.0.0.1:${API_PORT[$1]}/patroni" | jq -r .commit_guard)" = true ] &&
    curl -s "http://127.0.0.1:${API_PORT[$1]}/metrics" | grep -q '^pgvigil_commit_guard{.*} 1$'; }
wait_until 20 "the leader's REST API reports the commit guard" guard_reported "$ln"
psql_n "$ln" -c "create table f(id text primary key)" || fail "create table"
log "leader $l publishes its deadline ($left ms ahead); replicas publish none"

# the fencing processes of node N
fence_pids() { local p; for p in $(ps -o pid= --ppid "${AGENT_PID[$1]}"); do [ "$(cat /proc/$p/comm 2>/dev/null)" = pgvigil-fence ] && echo "$p"; done; }

# freeze_round N ID: the client inserts ID on node N in an open transaction; the node freezes;
# the client sends COMMIT; once another node leads and accepts writes, the backend resumes
# first (or, with ALL=1, every process of the node at once). The client's outcome goes to
# ROUND_RESULT: ACK or ERR <message>. Leaves the rest of the node frozen (its PIDs in FROZEN).
freeze_round() {
    local n="$1" id="$2" dir="$T_DIR/round-$2" all="${3:-}"
    mkdir -p "$dir"
    cat >"$dir/client.py" <<PY
import os, time, psycopg2
c = psycopg2.connect(host="127.0.0.1", port=${PG_PORT[$n]}, user="postgres", password="it-super", dbname="postgres", connect_timeout=3)
cur = c.cursor()
cur.execute("select pg_backend_pid()")
pid = cur.fetchone()[0]
import socket
port = socket.socket(fileno=os.dup(c.fileno())).getsockname()[1]
open("$dir/client_port", "w").write(str(port))
cur.execute("insert into f values ('$id')")
open("$dir/backend.tmp", "w").write(str(pid))
os.rename("$dir/backend.tmp", "$dir/backend")
while not os.path.exists("$dir/go"):
    time.sleep(0.01)
try:
    c.commit()
    r = "ACK"
except Exception as e:
    r = "ERR " + " ".join(str(e).split())
open("$dir/result.tmp", "w").write(r)
os.rename("$dir/result.tmp", "$dir/result")
PY
    /usr/bin/python3 "$dir/client.py" >"$dir/client.log" 2>&1 &
    wait_until 20 "the client's transaction is open on node$n" test -f "$dir/backend"
    local backend; backend=$(cat "$dir/backend")
    FROZEN="${AGENT_PID[$n]} $(fence_pids "$n" | tr '\n' ' ') $(postmaster_pid "$n") $(ps -o pid= --ppid "$(postmaster_pid "$n")" | tr '\n' ' ')"
    kill -STOP $FROZEN || fail "cannot freeze node$n"
    log "froze node$n: $FROZEN"
    touch "$dir/go"
    # the COMMIT is in the frozen backend's socket (the server end of the client's connection)
    local cport; cport=$(cat "$dir/client_port")
    commit_queued() { ss -Htn state established "( sport = :${PG_PORT[$n]} and dport = :$cport )" | awk '$1 > 0 {f = 1} END {exit !f}'; }
    wait_until 20 "the COMMIT waits in the frozen backend's socket" commit_queued
    other_leads() { local x; x=$(leader); [ -n "$x" ] && [ "$x" != "node$n" ] && probe_write "$(node_of "$x")"; }
    wait_until $((T_TTL * 4 + 40)) "another node leads and accepts writes" other_leads
    if [ -n "$all" ]; then
        log "$(leader) leads; resuming every process of node$n at once"
        kill -CONT $FROZEN
    else
        log "$(leader) leads; resuming node$n's backend $backend first"
        kill -CONT "$backend"
    fi
    wait_until 30 "the client's outcome" test -f "$dir/result"
    ROUND_RESULT=$(cat "$dir/result")
}
thaw() { kill -CONT $FROZEN 2>/dev/null; FROZEN=""; }

# 1. with the guard: the COMMIT is refused
probe_table_init "$ln" "1 2 3"
freeze_round "$ln" guarded
res="$ROUND_RESULT"
grep -q '^ERR .*leader lease ran out' <<<"$res" || { thaw; fail "the frozen primary answered the COMMIT with: $res"; }
nl_name=$(leader); nl=$(node_of "$nl_name")
thaw
log "guard: the resumed backend refused the COMMIT (${res:0:120})"
wait_until 120 "$l rejoins streaming from $nl_name" streams_from "$ln" "$nl"
[ "$(psql_n "$nl" -c "select count(*) from f where id = 'guarded'")" = 0 ] || fail "the refused row is on the new leader"
[ "$(psql_n "$ln" -c "select count(*) from f where id = 'guarded'")" = 0 ] || fail "the refused row survived on $l"

# 2. every process resumes at once: still no acknowledgement (an error, or the connection lost
#    to the fence)
freeze_round "$nl" all_at_once all
res="$ROUND_RESULT"
thaw
[ "$res" != ACK ] || fail "round 2: the node resumed as a whole acknowledged the COMMIT while $(leader) led"
ln=$nl; l=$nl_name
nl_name=$(leader); nl=$(node_of "$nl_name")
log "all at once: no acknowledgement (${res:0:120})"
wait_until 120 "$l rejoins streaming from $nl_name" streams_from "$ln" "$nl"
[ "$(psql_n "$nl" -c "select count(*) from f where id = 'all_at_once'")" = 0 ] || fail "the unacknowledged row of round 2 is on the new leader"

# 3. control: the same as round 1 with the guard off on the primary; the acknowledgement must
#    come, or this test no longer reaches the window it guards
psql_n "$nl" -c "alter system set pgvigil_guard.lease_file = ''" -c "select pg_reload_conf()" >/dev/null
wait_until 10 "the guard is off on $nl_name" bash -c "[ -z \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[$nl]} -U postgres -d postgres -Atc 'show pgvigil_guard.lease_file')\" ]"
probe_table_init "$nl" "1 2 3"
freeze_round "$nl" unguarded
res="$ROUND_RESULT"
thaw
[ "$res" = ACK ] || fail "control round: without the guard the resumed backend did not acknowledge (the test no longer reaches the window): $res"
log "control: without the guard the resumed backend acknowledged the COMMIT while $(leader) led"
echo "PASS [$T_NAME]"
