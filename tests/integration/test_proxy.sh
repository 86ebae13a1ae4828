#!/bin/bash
# pgvigil proxy against a real 3-node cluster: read-write and read-only routing, cancel
# requests, a session on a primary that lost the lead is cut, connections made while there is
# no primary wait and then succeed, writes resume after kill -9 through the same address,
# garbage and abrupt disconnects, and no read-write routing once etcd is gone past the TTL.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_proxy.sh"

PX_WAIT=20
start_cluster 3
L=$(leader); LN=$(node_of "$L")
alloc_port ECHO_PORT; alloc_port PX_ECHO; alloc_port PX_HTTP
/usr/bin/python3 "$(dirname "$0")/echo_load.py" serve "$ECHO_PORT" >>"$T_DIR/echo.log" 2>&1 &
EXTRA_PIDS+=("$!")
# generic L4 routes: a fixed port on whichever node leads (all nodes are 127.0.0.1 here, so an
# echo server stands for "the application port"; the REST API port shows HTTP going through)
start_proxy "    - {name: echo, listen: 127.0.0.1:$PX_ECHO, role: primary, protocol: tcp, target_port: $ECHO_PORT}
    - {name: http, listen: 127.0.0.1:$PX_HTTP, role: primary, protocol: tcp, target_port: ${API_PORT[$LN]}}"
wait_until 10 "proxy routes to $L" proxy_is_primary "$L"

# --- read-write, tcp and read-only routes
[ "$(psql_px "$PX_RW" -c 'select pg_is_in_recovery()')" = "f" ] || fail "read-write route did not reach a primary"
[ "$(psql_px "$PX_RW" -c 'select inet_server_port()')" = "${PG_PORT[$LN]}" ] || fail "read-write route not on $L"
[ "$(psql_px "$PX_TCP" -c 'select pg_is_in_recovery()')" = "f" ] || fail "tcp route did not reach the primary"
wait_until 20 "two replicas eligible" proxy_replicas_are 2
ports=""
for i in $(seq 1 20); do
    r=$(psql_px "$PX_RO" -c 'select pg_is_in_recovery(), inet_server_port()') || fail "read-only connection $i failed"
    [ "${r%%|*}" = "t" ] || fail "read-only route landed on the primary: $r"
    ports="$ports ${r##*|}"
done
[ "$(echo $ports | tr ' ' '\n' | sort -u | wc -l)" = 2 ] || fail "read-only connections not spread over both replicas: $ports"
[ "$(curl -sf "http://127.0.0.1:$PX_HTTP/patroni" | jq -r .role)" = "primary" ] || fail "HTTP through a tcp route failed"
out=$(/usr/bin/python3 "$(dirname "$0")/echo_load.py" load "$PX_ECHO" 2000 3 2>&1) || fail "2000 concurrent connections through the proxy: $out"
[ "$out" = "ok 2000" ] || fail "echo load: $out"
log "2000 concurrent connections echoed through a tcp route; proxy RSS $(awk '/VmRSS/{print $2 $3}' /proc/$PX_PID/status)"
# the counters are kept per worker (two here) and summed by the admin port
[ "$(proxy_metric 'pgvigil_proxy_connections_accepted_total{route="echo"}')" -ge 2000 ] || fail "accepted connections not counted"
echo_in=$(proxy_metric 'pgvigil_proxy_bytes_in_total{route="echo"}')
echo_out=$(proxy_metric 'pgvigil_proxy_bytes_out_total{route="echo"}')
[ "${echo_in:-0}" -gt 0 ] && [ "$echo_in" = "$echo_out" ] || fail "echo route bytes in $echo_in, out $echo_out: not equal"
echo_idle() { [ "$(proxy_metric 'pgvigil_proxy_connections_active{route="echo"}')" = 0 ]; }
wait_until 10 "no echo connection left active" echo_idle
# a server that sends a lot and closes while the client is not reading: the proxy holds full
# buffers when the close arrives, and must still pass on every byte and then the close
for i in 1 2 3 4 5; do
    out=$(/usr/bin/python3 "$(dirname "$0")/echo_load.py" slow "$PX_ECHO" 5000000 1 2>&1)
    [ "$out" = "ok 5000000" ] || fail "server close behind buffered data (try $i): $out"
done
log "5 MB then a close, to a client that waits before reading: every byte and the close arrived"
log "routes ok: rw on $L, read-only spread over ports$(echo $ports | tr ' ' '\n' | sort -u | tr '\n' ' ')"

# --- a cancel request reaches the backend of its session (through each route)
# the statement to cancel, running on some node (a SIGINT before it runs would cancel nothing)
sleeper_running() {
    local n c
    for n in 1 2 3; do
        c=$(psql_n "$n" -c "select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'" 2>/dev/null)
        [ "$c" = 1 ] && return 0
    done
    return 1
}
for port in "$PX_RW" "$PX_RO"; do
    psql_px "$port" -c 'select pg_sleep(30)' >"$T_DIR/cancel.out" 2>&1 &
    cp=$!
    wait_until 20 "pg_sleep(30) through port $port running" sleeper_running
    # psql (the function's child) sends the CancelRequest on SIGINT, as on Ctrl-C. The error
    # says the statement was cancelled: it did not just run out its 30 s.
    kill -INT $(ps --ppid "$cp" -o pid= -o comm= | awk '$2=="psql"{print $1}')
    wait "$cp"
    grep -q "canceling statement due to user request" "$T_DIR/cancel.out" || fail "cancel through port $port not delivered: $(cat "$T_DIR/cancel.out")"
done
[ "$(proxy_metric 'pgvigil_proxy_cancel_requests_total{route="rw"}')" -ge 1 ] || fail "cancel not counted"
log "cancel requests delivered through both routes"

# --- a session on a primary that lost the lead is cut at once
mkfifo "$T_DIR/s.fifo"
psql_px "$PX_RW" <"$T_DIR/s.fifo" >"$T_DIR/s.out" 2>&1 &
SP=$!
exec 7>"$T_DIR/s.fifo"
echo "select 'pid=' || pg_backend_pid();" >&7
wait_until 10 "session open" grep -q "^pid=" "$T_DIR/s.out"
BPID=$(grep "^pid=" "$T_DIR/s.out" | head -1 | cut -d= -f2)
# freeze the leader's agent and its fencing process: postgres stays up, the lease expires
FENCE=$(ps --ppid "${AGENT_PID[$LN]}" -o pid=,comm= | awk '$2=="pgvigil-fence"{print $1}')
[ -n "$FENCE" ] || fail "no fencing process under agent ${AGENT_PID[$LN]}"
kill -STOP "${AGENT_PID[$LN]}" "$FENCE"
wait_until 30 "a new leader" leader_is_not "$L"
NL=$(leader); NLN=$(node_of "$NL")
wait_until 30 "proxy routes to $NL" proxy_is_primary "$NL"
# the old postgres still runs (its agent is frozen): the proxy must have closed our session.
# The proxy closes it before routing to $NL; the backend exits once it reads that close.
session_gone() {
    local c
    c=$(psql_n "$LN" -c "select count(*) from pg_stat_activity where pid = $BPID") || return 1
    echo "backends with pid $BPID on $L: $c"
    [ "$c" = 0 ]
}
wait_until 20 "session $BPID closed on the old primary $L after the leader moved to $NL" session_gone
echo "select 1;" >&7 2>/dev/null
exec 7>&-
wait "$SP" && fail "the session on the old primary kept working"
[ "$(psql_px "$PX_RW" -c 'select inet_server_port()')" = "${PG_PORT[$NLN]}" ] || fail "read-write route not on $NL"
[ "$(proxy_metric 'pgvigil_proxy_closed_on_change_total{route="rw"}')" -ge 1 ] || fail "closed_on_change not counted"
log "session on the deposed primary $L closed; new sessions go to $NL"
kill -CONT "$FENCE" "${AGENT_PID[$LN]}"
wait_until 90 "cluster healthy again" cluster_healthy "1 2 3"

# --- kill -9 of the primary: a connection made in the gap waits and succeeds; writes resume
L=$(leader); LN=$(node_of "$L")
psql_px "$PX_RW" -c 'create table px_t(id int primary key, at timestamptz default now())'
(
    i=0
    while [ ! -f "$T_DIR/stop_writer" ]; do
        i=$((i + 1))
        PX_CONNECT_TIMEOUT=5 psql_px "$PX_RW" -c "insert into px_t(id) values ($i)" >/dev/null 2>&1 && echo "$i" >>"$T_DIR/acked"
        sleep 0.05
    done
) &
WRITER=$!
EXTRA_PIDS+=("$WRITER")
wait_until 10 "writes flow" test -s "$T_DIR/acked"
kill9_node "$LN"
t0=$(date +%s.%N)
psql_px "$PX_RW" -c "insert into px_t(id) values (1000000)" || fail "a connection made without a primary did not get through"
held=$(echo "$(date +%s.%N) - $t0" | bc)
before=$(wc -l <"$T_DIR/acked")
wait_until 30 "writes resume" sh -c "[ \$(wc -l <$T_DIR/acked) -gt $((before + 5)) ]"
touch "$T_DIR/stop_writer"; wait "$WRITER"
NL=$(leader)
log "MEASURE proxy: connection opened right after kill -9 of $L waited ${held}s and committed on $NL"
n_acked=$(wc -l <"$T_DIR/acked")
n_rows=$(psql_px "$PX_RW" -c "select count(*) from px_t where id < 1000000")
[ "$n_rows" -ge $((n_acked - 1)) ] || fail "acknowledged $n_acked inserts, found $n_rows (async mode may lose the last one)"
start_agent "$LN"
wait_until 90 "cluster healthy again" cluster_healthy "1 2 3"

# --- garbage and abrupt disconnects never crash the proxy
for port in "$PX_RW" "$PX_RO" "$PX_TCP"; do
    for i in $(seq 1 20); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port" && head -c $((RANDOM % 3000)) /dev/urandom >&3; exec 3>&-) 2>/dev/null
        (exec 3<>"/dev/tcp/127.0.0.1/$port"; exec 3>&-) 2>/dev/null
    done
    # a half startup packet, then gone; a huge length; a cancel for a key nobody issued
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf '\x00\x00\x00\x50\x00\x03' >&3; exec 3>&-) 2>/dev/null
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf '\x7f\xff\xff\xff\x00\x03\x00\x00' >&3; sleep 0.2; exec 3>&-) 2>/dev/null
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf '\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x01\x00\x00\x00\x02' >&3; sleep 0.2; exec 3>&-) 2>/dev/null
done
kill -0 "$PX_PID" || fail "proxy died on garbage input"
[ "$(psql_px "$PX_RW" -c 'select 1')" = "1" ] || fail "proxy unusable after garbage input"
log "garbage and abrupt disconnects survived"

# --- etcd gone for longer than the TTL: no read-write routing, a clear error after the wait
stop_etcd
wait_until 30 "proxy drops the primary" sh -c "! curl -sf http://127.0.0.1:$PX_ADMIN/health >/dev/null"
out=$(PX_CONNECT_TIMEOUT=60 psql_px "$PX_RW" -c 'select 1' 2>&1) && fail "read-write route still routed without etcd: $out"
grep -q "no primary available" <<<"$out" || fail "unexpected error without etcd: $out"
log "without etcd: $out"
kill -0 "$PX_PID" || fail "proxy died"
echo "PASS [$T_NAME]"
