#!/bin/bash
# The fencing process, where the agent cannot act. Each part fails without its fix:
#  1. the fence kills postgres with its backends: with the agent and the postmaster frozen (a
#     backend busy in a query keeps running), the backend is dead before the lease expires;
#  2. the agent notices a dead fence and starts a new one, which then does its job;
#  3. an agent killed right after it took the leader key and promoted (a test hook holds it
#     there) leaves a fence that kills the promoted postgres before its lease expires; the
#     history key then records where the timeline forked;
#  4. an agent whose shutdown cannot stop postgres leaves the fence armed behind it;
#  5. `pgvigil fence` alone: an agent that dies with no deadline set leaves no primary
#     running, unless the cluster is paused, and leaves a standby alone;
#  6. a promotion takes a timeline number above every one reserved in etcd;
#  7. an agent killed and started again keeps its primary: the old agent's fence, armed for the
#     old lease, is retired once the new agent's fence guards postgres.
source "$(dirname "$0")/lib.sh"

start_agent() {
    local n="$1"
    PGVIGIL_TEST_PROMOTE_PAUSE="$T_DIR/node$n.promote-pause" "$BIN" agent -c "$T_DIR/node$n.yml" >>"$T_DIR/node$n.log" 2>&1 &
    AGENT_PID[$n]=$!
}
grep -q "test hook: paused after promotion" "$BIN" || fail "$BIN is not a test build (make asan builds one)"

alive() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ]; }
fence_of() {
    local a="$1" c
    for c in $(cat /proc/"$a"/task/*/children 2>/dev/null); do
        [ "$(cat /proc/"$c"/comm 2>/dev/null)" = pgvigil-fence ] && { echo "$c"; return 0; }
    done
    return 1
}
# leader_lease: the lease of the leader key ("" when there is no key); read as text, since jq
# turns a 64-bit lease ID into a double and two leases of one etcd into the same number
leader_lease() { etcdctl_ get "/service/$SCOPE/leader" -w json 2>/dev/null | grep -o '"lease":[0-9]*' | cut -d: -f2; }
other_of() { [ "$1" = 1 ] && echo 2 || echo 1; }
# the timeline a primary writes now (the checkpoint's lags behind a promotion until the next
# checkpoint completes)
current_tl() { psql_n "$1" -c "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"; }

start_cluster 2
l=$(leader); ln=$(node_of "$l"); [ -n "$ln" ] || fail "no leader"

# ---- 1. backends die with the postmaster, before the lease expires ------------------------------
psql_n "$ln" -c "select count(*) from generate_series(1, 100000000000::bigint)" >/dev/null 2>&1 &
EXTRA_PIDS+=($!)
busy_backend() { psql_n "$ln" -c "select pid from pg_stat_activity where query like 'select count(*) from generate_series%' and pid <> pg_backend_pid()"; }
has_busy_backend() { [ -n "$(busy_backend)" ]; }
wait_until 20 "a busy backend on $l" has_busy_backend
backend=$(busy_backend); pm=$(postmaster_pid "$ln"); lease=$(leader_lease)
[ -n "$backend" ] && [ -n "$pm" ] && [ -n "$lease" ] || fail "backend '$backend', postmaster '$pm', lease '$lease'"
kill -STOP "${AGENT_PID[$ln]}" "$pm"
log "froze the agent and the postmaster ($pm) of $l; backend $backend keeps running"
# sample until the leader key leaves that lease; the backend must be dead by then
while [ "$(leader_lease)" = "$lease" ]; do
    alive "$backend" || break
    sleep 0.05
done
alive "$backend" && fail "backend $backend of $l still ran when its lease expired"
lease_moved() { [ "$(leader_lease)" != "$lease" ]; }
wait_until 30 "the lease of $l to expire" lease_moved
alive "$pm" && fail "postmaster $pm of $l survived the fence"
log "part 1: backend and postmaster of $l were killed before the lease expired"
kill -CONT "${AGENT_PID[$ln]}"
wait_until 90 "cluster healthy again" cluster_healthy "1 2"

# ---- 2. a dead fence is replaced, and the new one works ----------------------------------------
l=$(leader); ln=$(node_of "$l")
f=$(fence_of "${AGENT_PID[$ln]}") || fail "no fencing process under the agent of $l"
kill -9 "$f"
log "killed the fence ($f) of $l"
new_fence() { local x; x=$(fence_of "${AGENT_PID[$ln]}") && [ "$x" != "$f" ]; }
wait_until 20 "a new fencing process under the agent of $l" new_fence
grep -q "fence: started a new fencing process" "$T_DIR/$l.log" || fail "the agent of $l did not log the new fence"
lease=$(leader_lease); pm=$(postmaster_pid "$ln")
kill -STOP "${AGENT_PID[$ln]}"
while [ "$(leader_lease)" = "$lease" ]; do alive "$pm" || break; sleep 0.05; done
alive "$pm" && fail "the new fence did not kill postgres of $l before its lease expired"
log "part 2: the replacement fence killed postgres of $l in time"
kill -CONT "${AGENT_PID[$ln]}"
wait_until 90 "cluster healthy again" cluster_healthy "1 2"

# ---- 3. agent killed right after promoting: the fence still guards ----------------------------
l=$(leader); ln=$(node_of "$l"); rn=$(other_of "$ln")
touch "$T_DIR/node$rn.promote-pause"
kill9_node "$ln"
log "killed node$ln (agent and postmaster); node$rn will pause after promoting"
wait_until 60 "node$rn paused after promotion" grep -q "test hook: paused after promotion" "$T_DIR/node$rn.log"
is_primary "$rn" || fail "node$rn is not a primary at the hook"
lease=$(leader_lease); pm=$(postmaster_pid "$rn")
[ "$(leader)" = "node$rn" ] && [ -n "$lease" ] || fail "node$rn does not hold the leader key at the hook"
kill -9 "${AGENT_PID[$rn]}"; AGENT_PID[$rn]=""
rm -f "$T_DIR/node$rn.promote-pause"
log "killed the agent of node$rn while it promoted"
while [ "$(leader_lease)" = "$lease" ]; do alive "$pm" || break; sleep 0.05; done
alive "$pm" && fail "node$rn's promoted postgres (pid $pm) still ran when its lease expired"
log "part 3: node$rn's promoted postgres was killed before its lease expired"
start_agent "$ln"; start_agent "$rn"
wait_until 120 "cluster healthy again" cluster_healthy "1 2"
# the history key: the last entry's LSN is the switch point in the new timeline's history file
l=$(leader); ln=$(node_of "$l")
tl=$(current_tl "$ln")
hist_lsn() { etcdctl_ get --print-value-only "/service/$SCOPE/history" | jq -r '.[-1][1]'; }
hist_tl() { etcdctl_ get --print-value-only "/service/$SCOPE/history" | jq -r '.[-1][0]'; }
history_has_fork() { [ "$(hist_tl)" = $((tl - 1)) ]; }
wait_until 30 "a history entry for timeline $((tl - 1))" history_has_fork
file=$(printf '%s/node%s/data/pg_wal/%08X.history' "$T_DIR" "$ln" "$tl")
sw=$(awk -v t=$((tl - 1)) '$1 == t {print $2}' "$file")
[ -n "$sw" ] || fail "no switch point for timeline $((tl - 1)) in $file"
want=$(psql_n "$ln" -c "select '$sw'::pg_lsn - '0/0'::pg_lsn")
[ "$(hist_lsn)" = "$want" ] || fail "history records $(hist_lsn) for timeline $(hist_tl), the switch point is $sw ($want)"
log "part 3: history records the fork of timeline $((tl - 1)) at $sw"

# ---- 4. a shutdown that cannot stop postgres leaves the fence behind ---------------------------
pm=$(postmaster_pid "$ln"); lease=$(leader_lease)
# pg_ctl (run as the postgres user) cannot read the pid file, so the agent's stop fails at once
chmod 000 "$T_DIR/node$ln/data/postmaster.pid"
kill -TERM "${AGENT_PID[$ln]}"
wait_until 60 "the agent of $l to exit" bash -c "! kill -0 ${AGENT_PID[$ln]} 2>/dev/null"
AGENT_PID[$ln]=""
grep -q "leaving the leader key to expire and the fence to act" "$T_DIR/$l.log" || fail "the agent of $l did stop postgres (the test needs a failing stop)"
while [ "$(leader_lease)" = "$lease" ]; do alive "$pm" || break; sleep 0.05; done
alive "$pm" && fail "postgres of $l (pid $pm) still ran when the lease of its stopped agent expired"
chmod 600 "$T_DIR/node$ln/data/postmaster.pid" 2>/dev/null
log "part 4: the fence outlived the agent and killed postgres of $l"

# ---- 5. pgvigil fence alone: agent gone with no deadline set ----------------------------------
D="$T_DIR/solo"; alloc_port SOLO_PORT
mkdir -p "$D"; chown postgres "$D"
runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$D/data" -A trust >/dev/null || fail "initdb"
solo_start() {
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$D/data" -o "-p $SOLO_PORT -k $D -c listen_addresses=''" \
        -l "$D/pg.log" -w start >/dev/null || fail "solo postgres did not start"
}
solo_pm() { head -1 "$D/data/postmaster.pid" 2>/dev/null; }
solo_start
# a primary (no standby.signal), the agent closes the pipe without a deadline: killed at once
"$BIN" fence --name solo --data-dir "$D/data" --fd 3 3< <(true) >>"$T_DIR/solo.log" 2>&1 || fail "pgvigil fence failed"
pm=$(solo_pm)
[ -n "$pm" ] && alive "$pm" && fail "fence left a primary running after its agent died with no deadline"
grep -q "agent died while postgres runs as a primary" "$T_DIR/solo.log" || fail "the fence did not say why it killed postgres"
# paused cluster: left running (the killed postmaster may stay a zombie where nothing reaps
# orphans, and postgres takes a zombie's pid file for a live server: remove it)
rm -f "$D/data/postmaster.pid" "$D"/.s.PGSQL.*.lock
solo_start; pm=$(solo_pm)
"$BIN" fence --name solo --data-dir "$D/data" --fd 3 3< <(printf '\376\377\377\377\377\377\377\377') >>"$T_DIR/solo.log" 2>&1 ||
    fail "pgvigil fence failed"
alive "$pm" || fail "fence killed postgres although the cluster was paused"
# a standby (standby.signal): left running
touch "$D/data/standby.signal"
"$BIN" fence --name solo --data-dir "$D/data" --fd 3 3< <(true) >>"$T_DIR/solo.log" 2>&1 || fail "pgvigil fence failed"
alive "$pm" || fail "fence killed a standby whose agent died"
rm -f "$D/data/standby.signal"
runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$D/data" -m immediate -w stop >/dev/null
log "part 5: no deadline: a primary is killed, a standby or a paused cluster's primary is left"

# ---- 6. a promotion takes a timeline number above every one reserved --------------------------
# (a promotion elsewhere that nobody recorded took 9, say): PostgreSQL alone would pick its own
# next number and two primaries would share one timeline
start_agent "$ln"
wait_until 120 "cluster healthy again" cluster_healthy "1 2"
l=$(leader); ln=$(node_of "$l"); rn=$(other_of "$ln")
# the candidate's own record must say running (postgres streams before its clone job is collected)
member_running() { [ "$(etcdctl_ get --print-value-only "/service/$SCOPE/members/node$1" | jq -r .state)" = running ]; }
wait_until 60 "node$rn's member record says running" member_running "$rn"
etcdctl_ put "/service/$SCOPE/pgvigil_timeline" '{"timeline": 9, "member": "elsewhere"}' >/dev/null || fail "etcdctl put"
"$BIN" switchover --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE" --candidate "node$rn" --force >"$T_DIR/switchover.out" 2>&1 ||
    fail "switchover: $(cat "$T_DIR/switchover.out")"
wait_until 60 "node$rn leading" leader_is "node$rn"
# the key is taken before the promotion: the timeline is known once it is a primary
wait_until 60 "node$rn promoted" is_primary "$rn"
tl=$(current_tl "$rn")
[ "$tl" = 10 ] || fail "node$rn promoted to timeline $tl, not 10 (above the reserved 9)"
[ "$(etcdctl_ get --print-value-only "/service/$SCOPE/pgvigil_timeline" | jq -r .timeline)" = 10 ] || fail "timeline 10 not reserved"
wait_until 120 "cluster healthy on timeline 10" cluster_healthy "1 2"
log "part 6: node$rn promoted to timeline 10, above the reserved 9, and node$ln follows it"

# ---- 7. an agent restarted after a kill -9 keeps its primary: the old fence goes -------------
l=$(leader); ln=$(node_of "$l")
pm=$(postmaster_pid "$ln"); f=$(fence_of "${AGENT_PID[$ln]}") || fail "no fence under the agent of $l"
kill -9 "${AGENT_PID[$ln]}"
start_agent "$ln"
log "killed the agent of $l alone and started it again; its old fence is $f"
fence_gone() { ! alive "$f"; }
wait_until 60 "the old fence ($f) to go" fence_gone
alive "$pm" || fail "the postmaster of $l (pid $pm) was killed: the old fence outlived the agent that replaced its own"
grep -q "killed the fencing process $f of an earlier agent" "$T_DIR/$l.log" || fail "the new agent of $l did not retire the old fence"
leader_is "$l" || fail "$l lost the leader key"
log "part 7: $l kept its primary; the new agent retired the old fence"
log "PASS"
