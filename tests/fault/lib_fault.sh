# Fault-suite helpers, sourced after tests/integration/lib.sh and lib_netns.sh (which it does
# not change). Differences from lib_netns.sh's cluster:
#   - etcd runs in namespaces of its own, as members 11..10+FAULT_ETCD (addresses .11, .12, ...),
#     so that the primary can be cut from etcd while the proxy (bridge namespace) still reaches
#     it, and an etcd member can be partitioned; DCS_URL lists every member
#   - the pgvigil proxy runs in the bridge namespace with a read-write route on 127.0.0.1:5000
#   - node_pids K lists a node's processes (agent, its children, the postmaster and its
#     children), checked to be inside node K's namespace, for SIGSTOP/SIGCONT and kill -9
FAULT_ETCD="${FAULT_ETCD:-1}"
declare -a ETCD_MEMBERS=() ETCD_PIDS=()
PXF_PID=""
PXF_PORT=5000
PXF_ADMIN=5010

fault_etcd_setup() {
    local i k hosts="" urls=""
    for i in $(seq 1 "$FAULT_ETCD"); do
        k=$((10 + i))
        netns_add_node "$k"
        ETCD_MEMBERS+=("$k")
        hosts="${hosts:+$hosts,}$(netns_ip "$k"):$E_PORT"
        urls="${urls:+$urls,}http://$(netns_ip "$k"):$E_PORT"
    done
    ETCD_HOSTS="$hosts"
    DCS_URL="$urls"
}

start_etcd() {
    [ ${#ETCD_MEMBERS[@]} -gt 0 ] || fault_etcd_setup
    local k init="" ip
    for k in "${ETCD_MEMBERS[@]}"; do init="${init:+$init,}e$k=http://$(netns_ip "$k"):$E_PEER"; done
    for k in "${ETCD_MEMBERS[@]}"; do
        ip=$(netns_ip "$k")
        nsspawn "$k" /usr/bin/etcd --name "e$k" --data-dir "$T_DIR/etcd$k" \
            --listen-client-urls "http://$ip:$E_PORT" --advertise-client-urls "http://$ip:$E_PORT" \
            --listen-peer-urls "http://$ip:$E_PEER" --initial-advertise-peer-urls "http://$ip:$E_PEER" \
            --initial-cluster "$init" --initial-cluster-state new --initial-cluster-token "fault$$" \
            --heartbeat-interval 100 --election-timeout 1000 >>"$T_DIR/etcd$k.log" 2>&1
        ETCD_PIDS+=("$NSSPAWN_PID")
    done
    ETCD_PID="${ETCD_PIDS[0]}"
    for k in "${ETCD_MEMBERS[@]}"; do
        wait_until 30 "etcd member $k" nsexec 0 curl -sf "http://$(netns_ip "$k"):$E_PORT/health"
    done
}

_netns_save_fn node_config _fault_netns_node_config
node_config() {
    _fault_netns_node_config "$@"
    local f="$T_DIR/node$1.yml"
    sed -i "s|^  hosts: $BR_IP:$E_PORT\$|  hosts: $ETCD_HOSTS|" "$f"
    grep -q "^  hosts: $ETCD_HOSTS\$" "$f" || fail "node_config $1: cannot set etcd3.hosts in $f"
}

# ---- processes of a node ---------------------------------------------------------------------

_ns_inode() { stat -L -c %i "/run/netns/$(netns_name "$1")" 2>/dev/null; }
# pid and its descendants (by the ppid links in /proc)
proc_tree() {
    ps -e -o pid=,ppid= | awk -v roots="$*" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) want[r[i]] = 1 }
        { pp[$1] = $2; order[NR] = $1 }
        END {
            changed = 1
            while (changed) {
                changed = 0
                for (i = 1; i <= NR; i++) { p = order[i]; if (!(p in want) && (pp[p] in want)) { want[p] = 1; changed = 1 } }
            }
            for (p in want) print p
        }'
}
# node_pids K: the agent (and its children: the fence, pg_ctl, pg_rewind...), the postmaster
# (from postmaster.pid) and its children; only processes inside node K's namespace
node_pids() {
    local k="$1" roots="" ino p pm
    [ -n "${AGENT_PID[$k]:-}" ] && roots="${AGENT_PID[$k]}"
    pm=$(postmaster_pid "$k")
    [ -n "$pm" ] && roots="$roots $pm"
    [ -n "$roots" ] || return 0
    ino=$(_ns_inode "$k")
    for p in $(proc_tree $roots); do
        [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "net:[$ino]" ] && echo "$p"
    done
}
# fence_pid K: the fencing process of node K's agent: the agent's child (any of its threads
# may have forked it) whose name is pgvigil-fence
fence_pid() {
    local a="${AGENT_PID[$1]:-}" c
    [ -n "$a" ] || return 0
    for c in $(cat /proc/"$a"/task/*/children 2>/dev/null); do
        [ "$(cat "/proc/$c/comm" 2>/dev/null)" = pgvigil-fence ] && echo "$c"
    done
    return 0
}

# every agent runs with the test build's promotion hook pointed at a file of its own: when
# $T_DIR/nodeK.promote-pause exists as agent K promotes, it stops right after pg_promote (it
# holds the leader key, postgres is a primary) until the file is removed (at most 60 s). The
# kill9_agent_promoting fault creates the files; nothing else does, so agents never pause
# otherwise. (A build without the hook ignores the variable.)
start_agent() {
    local n="$1"
    nsspawn "$n" env PGVIGIL_TEST_PROMOTE_PAUSE="$T_DIR/node$n.promote-pause" "$BIN" agent -c "$T_DIR/node$n.yml" \
        >>"$T_DIR/node$n.log" 2>&1
    AGENT_PID[$n]=$NSSPAWN_PID
}

# ---- the proxy, in the bridge namespace ------------------------------------------------------

fault_proxy_config() {
    cat >"$T_DIR/proxy.yml" <<YML
scope: $SCOPE
log:
  level: info
etcd3:
  hosts: $ETCD_HOSTS
proxy:
  admin_listen: 127.0.0.1:$PXF_ADMIN
  workers: 2
  connect_wait: 20
  connect_timeout: 2
  backend_user_timeout: 5
  routes:
    - {name: rw, listen: 127.0.0.1:$PXF_PORT, role: primary}
YML
}

start_fault_proxy() {
    [ -f "$T_DIR/proxy.yml" ] || fault_proxy_config
    nsspawn 0 "$BIN" proxy -c "$T_DIR/proxy.yml" >>"$T_DIR/proxy.log" 2>&1
    PXF_PID=$NSSPAWN_PID
    EXTRA_PIDS+=("$PXF_PID")
    wait_until 20 "proxy admin port" nsexec 0 curl -sf "http://127.0.0.1:$PXF_ADMIN/health"
}

proxy_primary_ns() { nsexec 0 curl -s "http://127.0.0.1:$PXF_ADMIN/health" | jq -r '.primary // ""'; }

# ---- teardown: fast, and before lib.sh's (which would stop agents one by one, slowly, with
# etcd possibly cut off): continue everything stopped, kill the agents, stop each postmaster
# with an immediate shutdown (it removes its shared memory), then etcd
fault_teardown() {
    local k p pm ns
    [ -n "${NETNS_BR:-}" ] || return 0
    netns_heal_all >/dev/null 2>&1
    for ns in "${NETNS_CREATED[@]}"; do
        p=$(ip netns pids "$ns" 2>/dev/null)
        [ -n "$p" ] && kill -CONT $p 2>/dev/null
    done
    for k in "${!AGENT_PID[@]}"; do
        p="${AGENT_PID[$k]}"
        [ -n "$p" ] || continue
        kill -9 $(proc_tree "$p" | while read -r q; do [ "$(readlink "/proc/$q/ns/net" 2>/dev/null)" = "net:[$(_ns_inode "$k")]" ] && echo "$q"; done) 2>/dev/null
        AGENT_PID[$k]=""
    done
    for d in "$T_DIR"/node*/data; do
        [ -f "$d/postmaster.pid" ] || continue
        pm=$(head -1 "$d/postmaster.pid")
        [ -n "$pm" ] && is_our_postmaster "$pm" && kill -QUIT "$pm" 2>/dev/null
    done
    for _ in $(seq 1 50); do
        p=""
        for d in "$T_DIR"/node*/data; do
            [ -f "$d/postmaster.pid" ] && pm=$(head -1 "$d/postmaster.pid") && [ -n "$pm" ] && is_our_postmaster "$pm" && p="$p $pm"
        done
        [ -z "$p" ] && break
        sleep 0.1
    done
    for p in "${ETCD_PIDS[@]}"; do is_ours "$p" && kill -TERM "$p" 2>/dev/null; done
    ETCD_PID=""
    return 0
}
CLEANUP_HOOKS+=(fault_teardown)
