# Proxy helpers for integration tests; source after lib.sh.
# start_proxy [EXTRA_YAML]: a pgvigil proxy with a read-write route on PX_RW, a read-only one on
# PX_RO, a tcp route to the primary's PostgreSQL port on PX_TCP, and its admin port on PX_ADMIN.
PX_PID=""
PX_WAIT="${PX_WAIT:-30}"

proxy_config() {
    local extra="${1:-}"
    [ -n "${PX_RW:-}" ] || { alloc_port PX_RW; alloc_port PX_RO; alloc_port PX_TCP; alloc_port PX_ADMIN; }
    cat >"$T_DIR/proxy.yml" <<YML
scope: $SCOPE
log:
  level: ${LOG_LEVEL:-info}
etcd3:
  hosts: 127.0.0.1:$E_PORT
proxy:
  admin_listen: 127.0.0.1:$PX_ADMIN
  workers: 2
  connect_wait: $PX_WAIT
  connect_timeout: 2
  routes:
    - name: rw
      listen: 127.0.0.1:$PX_RW
      role: primary
    - name: ro
      listen: 127.0.0.1:$PX_RO
      role: replica
    - name: tcp
      listen: 127.0.0.1:$PX_TCP
      role: primary
      protocol: tcp
$extra
YML
}

start_proxy() {
    proxy_config "${1:-}"
    "$BIN" proxy -c "$T_DIR/proxy.yml" >>"$T_DIR/proxy.log" 2>&1 &
    PX_PID=$!
    EXTRA_PIDS+=("$PX_PID")
    wait_until 20 "proxy admin port" curl -sf "http://127.0.0.1:$PX_ADMIN/health"
}

stop_proxy() {
    [ -n "$PX_PID" ] || return 0
    kill -TERM "$PX_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$PX_PID" 2>/dev/null || break; sleep 0.1; done
    PX_PID=""
}

# psql_px PORT ARGS...: psql through the proxy (no TLS, so the proxy can route cancels)
psql_px() {
    local port="$1"; shift
    PGPASSWORD=it-super PGCONNECT_TIMEOUT=${PX_CONNECT_TIMEOUT:-60} PGSSLMODE=disable \
        psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -At "$@"
}

proxy_metric() { curl -sf "http://127.0.0.1:$PX_ADMIN/metrics" | awk -v m="$1" '$1==m {print $2}'; }
proxy_primary() { curl -s "http://127.0.0.1:$PX_ADMIN/health" | jq -r '.primary // ""'; }
proxy_is_primary() { [ "$(proxy_primary)" = "$1" ]; }
proxy_replicas_are() { [ "$(curl -s "http://127.0.0.1:$PX_ADMIN/health" | jq '.replicas|length')" = "$1" ]; }
