#!/bin/bash
# An agent refuses to run, with one clear error and without touching anything, when:
#  - its member name is held by another live agent (it would move that agent's leader key
#    onto its own lease, and back, every tick);
#  - its data directory belongs to another cluster (system identifier);
#  - its pid_file is locked by another agent.
# The running leader keeps its key, its lease and its primary throughout.
source "$(dirname "$0")/lib.sh"

NODE_EXTRA="pid_file: $T_DIR/node1.pid" start_cluster 1
leader_is node1 || fail "node1 does not lead"
lease_of_leader() { etcdctl_ get "/service/$SCOPE/leader" -w json 2>/dev/null | grep -o '"lease":[0-9]*' | cut -d: -f2; }
lease=$(lease_of_leader)
[ -n "$lease" ] || fail "no lease on the leader key"
[ "$(cat "$T_DIR/node1.pid")" = "${AGENT_PID[1]}" ] || fail "pid_file holds '$(cat "$T_DIR/node1.pid")', agent pid is ${AGENT_PID[1]}"

# run_refused N WHAT PATTERN: the agent of nodeN.yml must exit with 5 and say PATTERN
run_refused() {
    local n="$1" what="$2" pattern="$3" rc
    timeout 60 "$BIN" agent -c "$T_DIR/node$n.yml" >"$T_DIR/refused$n.log" 2>&1
    rc=$?
    [ "$rc" = 5 ] || fail "$what: agent exited with $rc, expected 5; its output: $(tail -5 "$T_DIR/refused$n.log")"
    grep -q -- "$pattern" "$T_DIR/refused$n.log" || fail "$what: no error saying \"$pattern\"; its output: $(tail -5 "$T_DIR/refused$n.log")"
    log "$what: refused: $(grep -m1 'error:' "$T_DIR/refused$n.log")"
}
leader_untouched() {
    leader_is node1 || fail "$1: the leader key moved to $(leader)"
    [ "$(lease_of_leader)" = "$lease" ] || fail "$1: the leader key moved from lease $lease to $(lease_of_leader)"
    is_primary 1 || fail "$1: node1 is no longer a primary"
}

# 1. a second agent named node1 (its own ports and data directory)
node_config 2
sed -i 's/^name: node2$/name: node1/' "$T_DIR/node2.yml"
run_refused 2 "second agent named node1" "member name \"node1\" is held by another live agent"
leader_untouched "second agent named node1"
[ -e "$T_DIR/node2/data/PG_VERSION" ] && fail "the refused agent created a data directory"

# 2. a data directory of another cluster
node_config 3
mkdir -p "$T_DIR/node3"; chown postgres "$T_DIR/node3"
runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$T_DIR/node3/data" -A trust >/dev/null || fail "initdb"
before=$(/usr/lib/postgresql/15/bin/pg_controldata "$T_DIR/node3/data" | awk -F': *' '/system identifier/ {print $2}')
run_refused 3 "data directory of another cluster" "belongs to another cluster (system identifier $before)"
after=$(/usr/lib/postgresql/15/bin/pg_controldata "$T_DIR/node3/data" | awk -F': *' '/system identifier/ {print $2}')
[ "$before" = "$after" ] || fail "the foreign data directory was changed ($before -> $after)"
[ -f "$T_DIR/node3/data/postmaster.pid" ] && fail "the refused agent started the foreign data directory"
leader_untouched "data directory of another cluster"

# 3. the pid file of a running agent
node_config 4 "pid_file: $T_DIR/node1.pid"
run_refused 4 "pid_file of a running agent" "another agent (pid ${AGENT_PID[1]}) runs with pid_file"
[ "$(cat "$T_DIR/node1.pid")" = "${AGENT_PID[1]}" ] || fail "the refused agent changed the pid file"
leader_untouched "pid_file of a running agent"

# a clean stop removes the pid file
stop_agent 1
[ -e "$T_DIR/node1.pid" ] && fail "the pid file is left after a clean stop"
log "PASS"
