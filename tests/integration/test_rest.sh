#!/bin/bash
# REST API against a real cluster: health checks on the primary and on a replica (GET, HEAD,
# OPTIONS), the JSON documents, metrics, 404s, malformed requests and raw garbage over TCP
# (the agent must survive them all), and Basic auth on a node with restapi.authentication.
source "$(dirname "$0")/lib.sh"

api() { echo "http://127.0.0.1:${API_PORT[$1]}"; }
# http_code METHOD URL [curl args...]: the status code only
http_code() {
    local m="$1" u="$2"; shift 2
    if [ "$m" = HEAD ]; then
        curl -s -o /dev/null -m 10 --head -w '%{http_code}' "$@" "$u"
    else
        curl -s -o /dev/null -m 10 -X "$m" -w '%{http_code}' "$@" "$u"
    fi
}
# expect_code N METHOD PATH CODE: fail unless node N answers METHOD PATH with CODE
expect_code() {
    local n="$1" m="$2" p="$3" want="$4" got
    got=$(http_code "$m" "$(api "$n")$p")
    [ "$got" = "$want" ] || fail "node$n: $m $p answered $got, expected $want"
}
# raw_request N TEXT: send TEXT (printf format) over a plain TCP socket, print the answer
raw_request() {
    local n="$1" fmt="$2"
    timeout 4 bash -c '
        exec 5<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "$2" >&5
        cat <&5' _ "${API_PORT[$n]}" "$fmt" 2>/dev/null
}
# the body of a HEAD/OPTIONS answer read off the wire (curl --head never reads one)
raw_body() {
    raw_request "$1" "$2" | tr -d '\r' | awk 'body { print } /^$/ { body = 1 }'
}
health_is() { [ "$(http_code GET "$(api "$1")$2")" = "$3" ]; }
agent_alive() {
    kill -0 "${AGENT_PID[$1]}" 2>/dev/null || fail "agent of node$1 (pid ${AGENT_PID[$1]}) died: $2"
    [ "$(http_code GET "$(api "$1")/liveness")" = 200 ] || fail "agent of node$1 stopped answering after $2"
}

start_cluster 2
[ "$(leader)" = node1 ] || fail "expected node1 to lead, leader is '$(leader)'"
# the REST snapshot is published once per tick: wait until both agents saw the settled cluster
wait_until 30 "node1 /primary 200" health_is 1 /primary 200
wait_until 30 "node2 /replica 200" health_is 2 /replica 200
wait_until 30 "node2 /readiness 200" health_is 2 /readiness 200

log "health checks on the primary"
for p in /primary /read-write /leader / /master /read-only /health /liveness /readiness; do
    for m in GET HEAD OPTIONS; do expect_code 1 "$m" "$p" 200; done
done
for p in /replica /async /sync /standby-leader /read-only-sync; do
    want=503; [ "$p" = /read-only-sync ] && want=200   # the primary passes read-only-sync
    for m in GET HEAD OPTIONS; do expect_code 1 "$m" "$p" "$want"; done
done

log "health checks on the replica"
for p in /primary /read-write /leader / /sync /standby-leader; do
    for m in GET HEAD OPTIONS; do expect_code 2 "$m" "$p" 503; done
done
for p in /replica "/replica?lag=1MB" /read-only /async /health /liveness /readiness; do
    for m in GET HEAD OPTIONS; do expect_code 2 "$m" "$p" 200; done
done
expect_code 2 GET "/replica?lag=1MB&tag_nofailover=false" 200
expect_code 2 GET "/replica?tag_nofailover=true" 503
expect_code 2 GET "/replica?tag_unknown=x" 503

log "HEAD and OPTIONS answer without a body"
for n in 1 2; do
    for p in /primary /replica /patroni /cluster /metrics /health; do
        for m in HEAD OPTIONS; do
            b=$(raw_body "$n" "$m $p HTTP/1.0\r\nHost: x\r\n\r\n")
            [ -z "$b" ] || fail "node$n: $m $p has a body: '$(echo "$b" | head -c 200)'"
        done
    done
done
# GET health checks do carry Patroni's status body
curl -s "$(api 2)/replica" | jq -e '.role == "replica"' >/dev/null || fail "GET /replica body is not the status JSON"

log "GET /patroni"
for n in 1 2; do
    j=$(curl -sf "$(api "$n")/patroni") || fail "GET /patroni on node$n"
    echo "$j" | jq -e --arg n "node$n" '(.role|type) == "string" and .state == "running" and (.xlog|type) == "object"
        and .timeline == 1 and .patroni.name == $n and .patroni.scope == "it"
        and (.database_system_identifier|test("^[0-9]+$"))' >/dev/null \
        || fail "node$n /patroni lacks Patroni fields: $j"
done
curl -s "$(api 1)/patroni" | jq -e '.role == "primary" and (.xlog.location > 0)' >/dev/null || fail "node1 /patroni: not a primary with xlog.location"
curl -s "$(api 2)/patroni" | jq -e '.role == "replica" and (.xlog.replayed_location > 0) and (.xlog.received_location > 0)' >/dev/null \
    || fail "node2 /patroni: not a replica with received/replayed locations"
sysid=$(etcdctl_ get --print-value-only "/service/$SCOPE/initialize")
[ "$(curl -s "$(api 2)/patroni" | jq -r .database_system_identifier)" = "$sysid" ] || fail "database_system_identifier differs from the initialize key"

log "GET /cluster /history /config /metrics"
cl=$(curl -sf "$(api 2)/cluster") || fail "GET /cluster"
echo "$cl" | jq -e '(.members | length) == 2 and ([.members[].name] | sort) == ["node1","node2"]
    and ([.members[] | select(.role == "leader") | .name] == ["node1"])
    and ([.members[] | select(.name == "node2") | .role] == ["replica"])' >/dev/null || fail "/cluster: $cl"
for n in 1 2; do
    curl -sf "$(api "$n")/history" | jq -e 'type == "array"' >/dev/null || fail "node$n /history is not a JSON array"
    curl -sf "$(api "$n")/config" | jq -e 'type == "object" and .ttl == '"$T_TTL"' and .loop_wait == 1' >/dev/null \
        || fail "node$n /config is not the cluster config: $(curl -s "$(api "$n")/config")"
done
m1=$(curl -sf "$(api 1)/metrics") || fail "GET /metrics on node1"
m2=$(curl -sf "$(api 2)/metrics") || fail "GET /metrics on node2"
[ "$(echo "$m1" | grep -c '^pgvigil_')" -ge 10 ] || fail "/metrics has few pgvigil_ lines: $m1"
grep -Eq '^pgvigil_primary\{[^}]*name="node1"[^}]*\} 1$' <<<"$m1" || fail "node1 /metrics lacks 'pgvigil_primary 1'"
grep -Eq '^pgvigil_is_leader\{[^}]*\} 1$' <<<"$m1" || fail "node1 /metrics lacks 'pgvigil_is_leader 1'"
grep -Eq '^pgvigil_primary\{[^}]*\} 0$' <<<"$m2" || fail "node2 /metrics: pgvigil_primary is not 0"
grep -Eq '^pgvigil_replica\{[^}]*\} 1$' <<<"$m2" || fail "node2 /metrics: pgvigil_replica is not 1"
ctype=$(curl -s -o /dev/null -w '%{content_type}' "$(api 1)/metrics")
case "$ctype" in text/plain*) ;; *) fail "/metrics content type '$ctype'";; esac

log "unknown paths, wrong methods, bad bodies"
for n in 1 2; do
    expect_code "$n" GET /nope 404
    expect_code "$n" GET /patroni/x 404
    expect_code "$n" POST /nope 404
    expect_code "$n" GET /switchover 405
    expect_code "$n" DELETE /patroni 405
done
for body in '{not json' '[1,2]' '"x"' '{"leader": 5}' '{"candidate": ["node2"]}'; do
    got=$(http_code POST "$(api 1)/switchover" -H 'Content-Type: application/json' --data-binary "$body")
    [ "$got" = 400 ] || fail "POST /switchover with body '$body' answered $got, expected 400"
done
got=$(http_code POST "$(api 1)/failover" --data-binary '{"leader":"node1"}')
[ "$got" = 400 ] || fail "POST /failover without a candidate answered $got, expected 400"
got=$(http_code POST "$(api 2)/reinitialize" --data-binary '{"force":"yes"}')
[ "$got" = 400 ] || fail "POST /reinitialize with a non-boolean force answered $got, expected 400"
got=$(http_code PATCH "$(api 1)/config" --data-binary '{bad')
[ "$got" = 400 ] || fail "PATCH /config with invalid JSON answered $got, expected 400"
got=$(http_code PATCH "$(api 1)/config" --data-binary '{"ttl":"abc"}')
[ "$got" = 400 ] || fail "PATCH /config with ttl \"abc\" answered $got, expected 400"
got=$(head -c 70000 /dev/zero | tr '\0' 'a' | curl -s -o /dev/null -m 10 -w '%{http_code}' -X POST --data-binary @- "$(api 1)/switchover")
[ "$got" = 413 ] || fail "POST /switchover with a 70 kB body answered $got, expected 413"
agent_alive 1 "bad request bodies"
[ "$(leader)" = node1 ] || fail "bad requests changed the leader to '$(leader)'"

log "raw garbage over TCP"
# Each is sent on its own connection, all of them at once; an answer is not required (the
# server may wait for the rest of a line until its connection timeout), survival is.
garbage=(
    '\x00\x01\x02\xff\xfe\r\n\r\n'
    '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03'                  # a TLS ClientHello start
    'GET\r\n\r\n'
    'GET /patroni\r\n\r\n'
    'GET /patroni HTTP/9.9\r\n\r\n'
    'GARBAGE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
    'GET /%%zz%%00/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
    'GET /replica?lag=%%ff%%&&&=&tag_=x&lag=-1&lag=99999999999999999999TB HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
    'POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"leader"'
    'POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}'
    'POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n{}'
    'POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 9\r\n\r\n{}}'
    'POST /reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n'
    'POST /reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nxx\r\n'
    'POST /reload HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!notbase64\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}'
    'POST /reload HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Og==\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}'
    'POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n\x00\xff{"a":\x01'
    'GET /patroni HTTP/1.1\r\nHost: x\r\nX: \xc3\x28\xa0\xa1\r\nConnection: close\r\n\r\n'
    'GET /patroni HTTP/1.1\r\n: novalue\r\nConnection: close\r\n\r\n'
    'GET /patroni HTTP/1.1\r\nHost: x\r\n\r\nGET /cluster HTTP/1.1\r\nHost: x\r\n\r\nBLAH\r\n\r\n'
)
for n in 1 2; do
    pids=()
    for g in "${garbage[@]}"; do
        raw_request "$n" "$g" >/dev/null &
        pids+=($!)
    done
    # an over-long request line and header
    raw_request "$n" "GET /$(head -c 20000 /dev/zero | tr '\0' 'a') HTTP/1.1\r\nHost: x\r\n\r\n" >/dev/null &
    pids+=($!)
    raw_request "$n" "GET /patroni HTTP/1.1\r\nHost: x\r\nX-Big: $(head -c 40000 /dev/zero | tr '\0' 'b')\r\n\r\n" >/dev/null &
    pids+=($!)
    # connections opened and dropped without a byte, and in the middle of a request
    for _ in $(seq 1 20); do (exec 5<>"/dev/tcp/127.0.0.1/${API_PORT[$n]}") 2>/dev/null; done
    for _ in $(seq 1 10); do
        (exec 5<>"/dev/tcp/127.0.0.1/${API_PORT[$n]}"; printf 'GET /pat' >&5) 2>/dev/null
    done
    # health checks keep answering while those connections hang
    expect_code "$n" GET /liveness 200
    expect_code "$n" GET /health 200
    wait "${pids[@]}"
    agent_alive "$n" "raw garbage"
    # a normal request (and a keep-alive pair on one connection) still works
    expect_code "$n" GET /health 200
    two=$(curl -s -o /dev/null -w '%{http_code} ' "$(api "$n")/patroni" "$(api "$n")/liveness")
    [ "$two" = "200 200 " ] || fail "node$n: two requests on one connection answered '$two'"
done
expect_code 1 GET /primary 200
expect_code 2 GET /replica 200
cluster_healthy "1 2" || fail "cluster unhealthy after the garbage"

log "node3 with restapi.authentication"
node_config 3
sed -i 's/^restapi:$/restapi:\n  authentication:\n    username: u\n    password: p/' "$T_DIR/node3.yml"
grep -A3 '^restapi:' "$T_DIR/node3.yml" | grep 'password: p' >/dev/null || fail "could not add restapi.authentication to node3.yml"
start_agent 3
wait_until 90 "node3 streaming" is_streaming 3
wait_until 30 "node3 /replica 200" health_is 3 /replica 200
# health checks and documents need no credentials
for p in /replica /read-only /health /liveness /readiness /patroni /cluster /history /config /metrics; do
    expect_code 3 GET "$p" 200
done
expect_code 3 GET /primary 503
# node3 answers /replica from its own state; its member record reaches etcd (and node1's
# /cluster) in a tick of its own
cluster_lists_3() { local c; c=$(curl -s "$(api 1)/cluster"); echo "$c"; echo "$c" | jq -e '(.members | length) == 3' >/dev/null; }
wait_until 30 "node1's /cluster lists node3" cluster_lists_3
# unsafe methods do
for args in "" "-u u:wrong" "-u x:p" "-u u:" "-u U:P"; do
    # shellcheck disable=SC2086
    got=$(http_code POST "$(api 3)/restart" $args)
    [ "$got" = 401 ] || fail "POST /restart on node3 with '$args' answered $got, expected 401"
done
got=$(curl -s -o /dev/null -m 10 -X POST -w '%{http_code}' -H 'Authorization: Basic garbage' "$(api 3)/restart")
[ "$got" = 401 ] || fail "POST /restart with a malformed Authorization header answered $got"
www=$(curl -s -D - -o /dev/null -X POST "$(api 3)/restart" | tr -d '\r' | grep -i '^WWW-Authenticate:')
grep -qi 'basic' <<<"$www" || fail "401 without a Basic WWW-Authenticate header: '$www'"
got=$(http_code PATCH "$(api 3)/config" --data-binary '{"ttl":9}')
[ "$got" = 401 ] || fail "PATCH /config without credentials answered $got, expected 401"
[ "$(curl -s "$(api 3)/config" | jq .ttl)" = "$T_TTL" ] || fail "an unauthorized PATCH changed the config"
pm_before=$(postmaster_pid 3)
got=$(http_code POST "$(api 3)/restart" -u u:p --data-binary '{}')
case "$got" in 2??) ;; *) fail "POST /restart on node3 with credentials answered $got";; esac
wait_until 60 "node3's postmaster restarted" bash -c "p=\$(head -1 '$T_DIR/node3/data/postmaster.pid' 2>/dev/null); [ -n \"\$p\" ] && [ \"\$p\" != '$pm_before' ]"
wait_until 60 "node3 streaming after the restart" is_streaming 3
agent_alive 3 "the restart"
# the other nodes need no credentials (no authentication configured there)
got=$(http_code POST "$(api 2)/reload" --data-binary '{}')
case "$got" in 2??) ;; *) fail "POST /reload on node2 (no auth configured) answered $got";; esac

for n in 1 2 3; do agent_alive "$n" "the test"; done
echo "PASS [$T_NAME]"
