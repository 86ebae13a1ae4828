#!/bin/bash
# Bad input to the agent and the CLI: configuration files that must be refused at once (exit 3,
# one "error:" line naming the file and the line/key), an etcd that is not there yet (the agent
# waits without starting postgres, then bootstraps when etcd appears on that port), the CLI
# against a closed etcd port (exit 4), and a half-written data directory on a new member of a
# running cluster (it is cloned over; the other members are untouched).
source "$(dirname "$0")/lib.sh"

# etcd's ports are chosen now, but etcd starts only later: until then they are closed
alloc_port E_PORT
alloc_port E_PEER
port_in_use "$E_PORT" && fail "port $E_PORT is not closed"

node_config 1
mkdir -p "$T_DIR/bad"
good="$T_DIR/node1.yml"
line_of() { grep -n -m1 -- "$1" "$2" | cut -d: -f1; }

# expect_config_error FILE PATTERN...: `agent -c FILE` exits 3 by itself; stderr has one
# "error:" line that names FILE and matches every PATTERN (extended regexps). The timeout only
# tells an agent that refused its file from one that went on running (it is not a speed limit).
expect_config_error() {
    local f="$1" rc start el errline
    shift
    start=$(date +%s%N)
    timeout 60 "$BIN" agent -c "$f" >"$T_DIR/bad/out" 2>"$T_DIR/bad/err"
    rc=$?
    el=$(( ($(date +%s%N) - start) / 1000000 ))
    [ "$rc" = 124 ] && fail "agent -c $f still running after 60 s"
    [ "$rc" = 3 ] || fail "agent -c $f exited $rc, expected 3; stderr: $(cat "$T_DIR/bad/err")"
    [ "$(grep -c '^error: ' "$T_DIR/bad/err")" = 1 ] || fail "agent -c $f: expected one 'error:' line, got: $(cat "$T_DIR/bad/err")"
    grep -qi "sanitizer\|runtime error" "$T_DIR/bad/err" && fail "agent -c $f: sanitizer report: $(cat "$T_DIR/bad/err")"
    errline=$(grep '^error: ' "$T_DIR/bad/err")
    [[ "$errline" == *"$f"* ]] || fail "agent -c $f: the error does not name the file: $errline"
    local p
    for p in "$@"; do
        grep -Eq -- "$p" <<<"$errline" || fail "agent -c $f: error '$errline' does not match /$p/"
    done
    [ -s "$T_DIR/bad/out" ] && fail "agent -c $f wrote to stdout: $(cat "$T_DIR/bad/out")"
    log "refused in ${el} ms: $errline"
}

log "configuration files that must be refused"
expect_config_error "$T_DIR/bad/missing.yml" "cannot open" "No such file"

printf 'scope: it\nname: [node1\npostgresql:\n  data_dir: /x\n' >"$T_DIR/bad/syntax.yml"
expect_config_error "$T_DIR/bad/syntax.yml" "syntax\.yml:[0-9]+:[0-9]+: YAML syntax error"

sed 's/^  listen: 127/\tlisten: 127/' "$good" >"$T_DIR/bad/tab.yml"
expect_config_error "$T_DIR/bad/tab.yml" "tab\.yml:[0-9]+:[0-9]+: YAML syntax error"

sed 's/^    ttl: .*/    ttl: abc/' "$good" >"$T_DIR/bad/ttl.yml"
l=$(line_of "ttl: abc" "$T_DIR/bad/ttl.yml")
expect_config_error "$T_DIR/bad/ttl.yml" "ttl\.yml:$l: bootstrap\.dcs\.ttl: expected an integer, got \"abc\""

sed 's/^    loop_wait: .*/    loop_wait: [1]/' "$good" >"$T_DIR/bad/loop_wait.yml"
l=$(line_of "loop_wait:" "$T_DIR/bad/loop_wait.yml")
expect_config_error "$T_DIR/bad/loop_wait.yml" ":$l: bootstrap\.dcs\.loop_wait: expected a number of seconds, got a list"

sed '/^scope:/d' "$good" >"$T_DIR/bad/noscope.yml"
expect_config_error "$T_DIR/bad/noscope.yml" "missing required key: scope"

sed '/^  data_dir:/d' "$good" >"$T_DIR/bad/nodatadir.yml"
expect_config_error "$T_DIR/bad/nodatadir.yml" "missing required key: postgresql\.data_dir"

sed 's|^  data_dir: .*|  data_dir: relative/data|' "$good" >"$T_DIR/bad/reldatadir.yml"
l=$(line_of "data_dir:" "$T_DIR/bad/reldatadir.yml")
expect_config_error "$T_DIR/bad/reldatadir.yml" ":$l: postgresql\.data_dir: must be an absolute path"

sed "s|^  hosts: .*|  hosts: http://127.0.0.1:$E_PORT|" "$good" >"$T_DIR/bad/etcdurl.yml"
l=$(line_of "hosts:" "$T_DIR/bad/etcdurl.yml")
expect_config_error "$T_DIR/bad/etcdurl.yml" ":$l: etcd3\.hosts: expected host:port, got the URL"

sed 's/^  level: .*/  level: loud/' "$good" >"$T_DIR/bad/loglevel.yml"
expect_config_error "$T_DIR/bad/loglevel.yml" "log\.level: expected debug, info, warning or error"

sed "s/^  listen: 127.0.0.1:${API_PORT[1]}/  listen: 127.0.0.1:99999/" "$good" >"$T_DIR/bad/apiport.yml"
l=$(line_of "99999" "$T_DIR/bad/apiport.yml")
expect_config_error "$T_DIR/bad/apiport.yml" ":$l: restapi\.listen: invalid port"

printf -- '- scope\n- name\n' >"$T_DIR/bad/list.yml"
expect_config_error "$T_DIR/bad/list.yml" "expected a mapping"

: >"$T_DIR/bad/empty.yml"
expect_config_error "$T_DIR/bad/empty.yml" "empty"

[ -e "$T_DIR/node1/data" ] && fail "a refused configuration created the data directory"

log "agent with etcd3.hosts on a closed port"
start_agent 1
# the agent has tried etcd once it logs the failure, naming the peer; its REST API is up once
# /liveness answers. It must then keep waiting (until etcd appears below, after the CLI checks).
etcd_failure_logged() {
    kill -0 "${AGENT_PID[1]}" 2>/dev/null || fail "the agent exited while etcd is unreachable: $(tail -5 "$T_DIR/node1.log")"
    grep "127.0.0.1:$E_PORT" "$T_DIR/node1.log" | grep -i "refused\|unreachable\|connect" >/dev/null
}
wait_until 30 "the agent's log names the etcd peer 127.0.0.1:$E_PORT and its failure" etcd_failure_logged
api1="http://127.0.0.1:${API_PORT[1]}"
liveness_ok() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$api1/liveness")" = 200 ]; }
wait_until 30 "/liveness 200 while etcd is down" liveness_ok
kill -0 "${AGENT_PID[1]}" 2>/dev/null || fail "the agent exited while etcd is unreachable"
[ -e "$T_DIR/node1/data/postmaster.pid" ] && fail "postgres started while etcd is unreachable"
is_primary 1 && fail "node1 runs a primary without etcd"
log "agent log: $(grep "127.0.0.1:$E_PORT" "$T_DIR/node1.log" | grep -v ' DEBUG: ' | head -1)"
# its REST API tells the truth
for p in /health /primary /replica /readiness; do
    c=$(curl -s -o /dev/null -w '%{http_code}' "$api1$p")
    [ "$c" = 503 ] || fail "GET $p answered $c while etcd is down and postgres is not running"
done

log "the CLI against the closed etcd port"
"$BIN" list --dcs-url "http://127.0.0.1:$E_PORT" --scope x >"$T_DIR/bad/out" 2>"$T_DIR/bad/err"
rc=$?
[ "$rc" = 4 ] || fail "list against a closed etcd port exited $rc, expected 4: $(cat "$T_DIR/bad/err")"
grep -q "^error: .*127\.0\.0\.1:$E_PORT" "$T_DIR/bad/err" || fail "list: the error does not name 127.0.0.1:$E_PORT: $(cat "$T_DIR/bad/err")"
grep -q "^hint: .*--dcs-url" "$T_DIR/bad/err" || fail "list: the hint does not point at --dcs-url: $(cat "$T_DIR/bad/err")"
grep -q "FILE" "$T_DIR/bad/err" && fail "list --dcs-url: the hint talks about a FILE that was not given: $(cat "$T_DIR/bad/err")"
log "list: $(head -1 "$T_DIR/bad/err")"
"$BIN" list -c "$good" >/dev/null 2>"$T_DIR/bad/err"
rc=$?
[ "$rc" = 4 ] || fail "list -c (etcd down) exited $rc, expected 4"
grep -q "^hint: .*node1\.yml" "$T_DIR/bad/err" || fail "list -c: the hint does not name the file: $(cat "$T_DIR/bad/err")"
"$BIN" list -c "$T_DIR/bad/ttl.yml" >/dev/null 2>"$T_DIR/bad/err"
rc=$?
[ "$rc" = 3 ] || fail "list -c with a bad file exited $rc, expected 3"
for c in "switchover --force" "failover --candidate node2 --force" pause resume history show-config \
         "edit-config --set ttl=9 --force" "restart node1" "reinit node1 --force"; do
    # shellcheck disable=SC2086
    timeout 20 "$BIN" $c --dcs-url "http://127.0.0.1:$E_PORT" --scope x >/dev/null 2>"$T_DIR/bad/err" </dev/null
    rc=$?
    [ "$rc" = 4 ] || fail "'$c' against a closed etcd port exited $rc, expected 4: $(cat "$T_DIR/bad/err")"
done

log "etcd appears on that port: the waiting agent bootstraps"
# all this while (the CLI checks above) the agent kept waiting, without postgres
kill -0 "${AGENT_PID[1]}" 2>/dev/null || fail "the agent exited while etcd is unreachable: $(tail -5 "$T_DIR/node1.log")"
[ -e "$T_DIR/node1/data/postmaster.pid" ] && fail "postgres started while etcd is unreachable"
start_etcd
wait_until 60 "node1 bootstraps once etcd is up" is_primary 1
wait_until 30 "node1 holds the leader key" bash -c '[ "$(ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:'"$E_PORT"' get --print-value-only /service/'"$SCOPE"'/leader)" = node1 ]'
kill -0 "${AGENT_PID[1]}" || fail "node1's agent died"
node_config 2
start_agent 2
wait_until 90 "node2 streaming" is_streaming 2
psql_n 1 -c "create table t(x int); insert into t select generate_series(1, 100)" || fail "write on node1"
sysid=$(etcdctl_ get --print-value-only "/service/$SCOPE/initialize")
pm1=$(postmaster_pid 1)
pm2=$(postmaster_pid 2)

log "a half-written data directory on a new member"
node_config 3
mkdir -p "$T_DIR/node3/data"
echo 15 >"$T_DIR/node3/data/PG_VERSION"
echo "left over" >"$T_DIR/node3/data/it_marker"
chmod 700 "$T_DIR/node3/data"
start_agent 3
wait_until 120 "node3 streaming" is_streaming 3
kill -0 "${AGENT_PID[3]}" 2>/dev/null || fail "node3's agent died"
[ -e "$T_DIR/node3/data/it_marker" ] && fail "node3 started without rebuilding its half-written data directory"
[ "$(psql_n 3 -c 'select system_identifier from pg_control_system()')" = "$sysid" ] || fail "node3 is not a copy of the cluster"
wait_until 20 "node3 has the rows" bash -c "[ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[3]} -U postgres -Atc 'select count(*) from t' 2>/dev/null)\" = 100 ]"
what=$(grep -v ' DEBUG: ' "$T_DIR/node3.log" | grep -i "clon\|basebackup\|invalid\|data dir" | head -3)
log "node3 did: $(echo "$what" | tr '\n' '|')"
grep -qi "clon" <<<"$what" || fail "node3's log does not say it cloned"
# the others were not touched
[ "$(leader)" = node1 ] || fail "the leader changed to '$(leader)'"
[ "$(postmaster_pid 1)" = "$pm1" ] || fail "node1's postmaster was restarted"
[ "$(postmaster_pid 2)" = "$pm2" ] || fail "node2's postmaster was restarted"
cluster_healthy "1 2 3" || fail "cluster unhealthy after node3 joined"
[ "$(psql_n 1 -c 'select count(*) from t')" = 100 ] || fail "node1 lost data"
for n in 1 2 3; do kill -0 "${AGENT_PID[$n]}" 2>/dev/null || fail "agent of node$n died"; done
echo "PASS [$T_NAME]"
