#!/bin/bash
# `pgvigil demo up` brings up etcd and 3 nodes (one primary, two streaming replicas) and prints
# the table; the README's failover walkthrough works on it, the old primary restarted by hand
# included; `demo down --purge` stops everything, that agent too, and removes its directory.
source "$(dirname "$0")/lib.sh"

D="$T_DIR/demo"
# The demo's daemons (etcd, agents, proxy, postmasters) run in sessions of their own, outside
# this test's process tree, where lib.sh's cleanup does not look for its own processes: on
# every way out (a failed check, demo up failing halfway, run.sh's timeout) `demo down` stops
# them by the PIDs the demo recorded. Without --purge, so that a failed run keeps the logs;
# lib.sh's last sweep stops anything still naming $T_DIR after that.
demo_down_at_exit() {
    [ -d "$D" ] || return 0
    timeout 120 "$BIN" demo down --dir "$D" >>"$T_DIR/down-at-exit.out" 2>&1 ||
        echo "demo down at exit failed: $(tail -3 "$T_DIR/down-at-exit.out")"
}
CLEANUP_HOOKS+=(demo_down_at_exit)
"$BIN" demo up --dir "$D" --ttl 5 >"$T_DIR/demo.out" 2>&1 || { cat "$T_DIR/demo.out"; fail "demo up failed"; }
grep -q "| Leader " "$T_DIR/demo.out" || fail "demo up printed no leader: $(cat "$T_DIR/demo.out")"
[ "$(grep -c "| Replica .*streaming" "$T_DIR/demo.out")" = 2 ] || fail "demo up did not show two streaming replicas: $(cat "$T_DIR/demo.out")"
url=$(cat "$D/etcd.url")
PX=$(cat "$D/proxy.pid")
rw=$(sed -n 's/.*read-write 127.0.0.1:\([0-9]*\),.*/\1/p' "$T_DIR/demo.out")
[ -n "$rw" ] || fail "demo up printed no proxy address"
px_sql() { PGPASSWORD=demo-super PGCONNECT_TIMEOUT=60 psql -X -qAt -h 127.0.0.1 -p "$rw" -U postgres -d postgres "$@"; }
[ "$(px_sql -c 'create table demo_t(x int); insert into demo_t values (1); select count(*) from demo_t')" = 1 ] ||
    fail "cannot write through the demo proxy on port $rw"
dl() { ETCDCTL_API=3 etcdctl --endpoints "$url" get --print-value-only /service/demo/leader 2>/dev/null; }
l=$(dl); [ -n "$l" ] || fail "no leader key"
log "demo leader: $l"
# the README walkthrough: kill -9 the leader's agent and postmaster
kill -9 "$(cat "$D/$l.pid")" "$(head -1 "$D/$l/data/postmaster.pid")"
moved() { n=$(dl); [ -n "$n" ] && [ "$n" != "$l" ]; }
wait_until 60 "another demo node takes over" moved
log "new demo leader: $(dl)"
[ "$(px_sql -c 'insert into demo_t values (2); select count(*) from demo_t')" = 2 ] ||
    fail "cannot write through the demo proxy after the failover"
grep -q "| $(dl) .*| Leader" <<<"$("$BIN" list --dcs-url "$url" --scope demo)" || fail "list does not show the new leader"
"$BIN" demo status --dir "$D" >/dev/null || fail "demo status failed"
# the README: bring the old primary back by hand; its agent writes its own pid file, so demo
# down stops it too (an agent that survived demo down once moved the leader key back and forth
# with the next demo's agent of the same name)
"$BIN" agent -c "$D/$l.yml" >>"$D/$l.log" 2>&1 &
HAND=$!
EXTRA_PIDS+=("$HAND")
hand_pidfile() { [ "$(cat "$D/$l.pid" 2>/dev/null)" = "$HAND" ]; }
wait_until 30 "the hand-started agent of $l writing $D/$l.pid" hand_pidfile
rejoined() { grep -q "| $l .*| Replica .*streaming" <<<"$("$BIN" list --dcs-url "$url" --scope demo)"; }
wait_until 90 "$l back as a streaming replica" rejoined
pids=""
for n in 1 2 3; do p=$(cat "$D/node$n.pid" 2>/dev/null); [ -n "$p" ] && pids="$pids $p"; done
etcd_pid=$(cat "$D/etcd.pid")
"$BIN" demo down --dir "$D" --purge >"$T_DIR/down.out" 2>&1 || fail "demo down failed: $(cat "$T_DIR/down.out")"
for p in $pids $etcd_pid $PX; do kill -0 "$p" 2>/dev/null && fail "process $p still runs after demo down"; done
# our child: a zombie until reaped, so look at its state
st=$(awk '{print $3}' "/proc/$HAND/stat" 2>/dev/null)
[ -n "$st" ] && [ "$st" != Z ] && fail "the agent of $l started by hand (pid $HAND) still runs after demo down"
# nothing the demo started survives it (postmasters included): no process names its directory
left=$(pids_naming "$D/")
[ -z "$left" ] || fail "processes of the demo still run after demo down: $(ps -o pid=,args= -p "${left// /,}")"
[ -e "$D" ] && fail "demo down --purge left $D"
echo "PASS [$T_NAME]"
