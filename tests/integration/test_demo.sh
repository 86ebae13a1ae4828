#!/bin/bash
# `pgvigil demo up` brings up etcd and 3 nodes (one primary, two streaming replicas) and prints
# the table; the README's failover walkthrough works on it; `demo down --purge` stops
# everything it started and removes its directory.
source "$(dirname "$0")/lib.sh"

D="$T_DIR/demo"
"$BIN" demo up --dir "$D" --ttl 5 >"$T_DIR/demo.out" 2>&1 || { cat "$T_DIR/demo.out"; fail "demo up failed"; }
grep -q "| Leader " "$T_DIR/demo.out" || fail "demo up printed no leader: $(cat "$T_DIR/demo.out")"
[ "$(grep -c "| Replica .*streaming" "$T_DIR/demo.out")" = 2 ] || fail "demo up did not show two streaming replicas: $(cat "$T_DIR/demo.out")"
url=$(cat "$D/etcd.url")
# the demo's own processes, so that cleanup can stop them if the test fails midway
for n in 1 2 3; do AGENT_PID[$((10 + n))]=$(cat "$D/node$n.pid"); done
ETCD_PID=$(cat "$D/etcd.pid")
dl() { ETCDCTL_API=3 etcdctl --endpoints "$url" get --print-value-only /service/demo/leader 2>/dev/null; }
l=$(dl); [ -n "$l" ] || fail "no leader key"
log "demo leader: $l"
# the README walkthrough: kill -9 the leader's agent and postmaster
kill -9 "$(cat "$D/$l.pid")" "$(head -1 "$D/$l/data/postmaster.pid")"
moved() { n=$(dl); [ -n "$n" ] && [ "$n" != "$l" ]; }
wait_until 60 "another demo node takes over" moved
log "new demo leader: $(dl)"
"$BIN" list --dcs-url "$url" --scope demo | grep -q "| $(dl) .*| Leader" || fail "list does not show the new leader"
"$BIN" demo status --dir "$D" >/dev/null || fail "demo status failed"
pids=""
for n in 1 2 3; do p=$(cat "$D/node$n.pid" 2>/dev/null); [ -n "$p" ] && pids="$pids $p"; done
etcd_pid=$(cat "$D/etcd.pid")
"$BIN" demo down --dir "$D" --purge >"$T_DIR/down.out" 2>&1 || fail "demo down failed: $(cat "$T_DIR/down.out")"
for p in $pids $etcd_pid; do kill -0 "$p" 2>/dev/null && fail "process $p still runs after demo down"; done
[ -e "$D" ] && fail "demo down --purge left $D"
for n in 1 2 3; do AGENT_PID[$((10 + n))]=""; done
ETCD_PID=
echo "PASS [$T_NAME]"
