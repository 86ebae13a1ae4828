# Network-namespace harness for integration tests that need real addresses and real partitions
# (floating IP, fault injection). Source it after lib.sh; it pulls in lib_probe.sh itself, so do
# not source lib_probe.sh after it (that would undo the overrides below).
#
# Topology made by `netns_setup N` (root only; nothing touches the host's own network):
#   pgv<uniq>-br   bridge namespace: bridge br0 with one port per member; etcd runs here on
#                  etcd0 = $BR_IP (= $NETNS_SUBNET.254), behind bridge port p0
#   pgv<uniq>-nK   node K: eth0 = ${NODE_IP[K]} (= $NETNS_SUBNET.K/24), behind bridge port pK
# Every member has the same ports in its own namespace: etcd 2379/2380, postgres 5432 and
# REST 8008 on every node, so a floating IP reaches whichever node holds it. Member 0 (or "br")
# is the etcd/client side: `nsexec 0 cmd` is a client on the network.
#
# Functions (K is a node number, or 0/br for the bridge namespace where etcd and clients run):
#   netns_setup N            create the namespaces (start_cluster calls it when needed)
#   netns_add_node K         one more node namespace, wired to the bridge
#   nsexec K CMD...          run CMD in K's namespace (`nsexec ... &` makes $! a subshell's PID)
#   nsspawn K CMD...         start CMD in K's namespace in the background; NSSPAWN_PID is CMD's
#                            own PID (to signal it: SIGSTOP, kill -9)
#   netns_name K / netns_ip K / netns_dev K     namespace, IPv4 address, interface of K
#   netns_addrs K            IPv4 addresses (a.b.c.d/p) on K's interface, one a line
#   netns_has_addr K ADDR    whether ADDR (with or without /prefix) is on K's interface
#   netns_isolate K...       cut K off from everyone (its bridge port stops forwarding; the
#                            link stays up, packets vanish silently, like a switch failure)
#   netns_heal K...          undo netns_isolate and every cut involving K
#   netns_cut A B            A and B cannot reach each other (both directions)
#   netns_cut_oneway A B     packets from A to B vanish (B to A still arrive; TCP breaks both
#                            ways, as with real one-way loss). Cuts work per peer address: a
#                            floating IP held by B is still reachable from A
#   netns_uncut A B          undo netns_cut (both directions)
#   netns_partition "A..." "B..."   cut every member of one group from every member of the other
#   netns_heal_all           undo every isolation and cut
#   (a replica cut from its primary still shows "streaming" until wal_receiver_timeout, 60 s)
#   netns_shape K RATE       limit K's traffic both ways (tc tbf, e.g. RATE=1mbit)
#   netns_unshape K
#   netns_teardown           delete every namespace created (runs from the EXIT trap)
# Overrides of lib.sh / lib_probe.sh (same names and arguments): start_etcd, etcdctl_,
# cluster_json, node_config, start_agent, start_cluster, psql_n (runs inside node N's
# namespace, so it works while N is isolated), probe_write, start_writer (a client in the
# bridge namespace), streams_from (by address: all nodes share a port), streaming_from_port;
# cleanup also tears the namespaces down, and SIGTERM/SIGINT/SIGHUP now exit through it.
# New helpers: streaming_from_host N, psql_at ADDR ARGS... (psql from the bridge namespace to any address, e.g. a VIP),
# pgvigil_cli ARGS... ($BIN in the bridge namespace; etcd is at $DCS_URL), api_url K,
# api_curl ARGS... (curl from the bridge namespace).
# Settings (set before node_config / start_cluster): NETNS_PG_LISTEN (host of postgresql.listen;
# default the node's address; a floating IP needs 0.0.0.0).

if ! declare -F probe_write >/dev/null; then
    source "$(dirname "${BASH_SOURCE[0]}")/lib_probe.sh"
fi

NETNS_PREFIX=""
NETNS_BR=""
NETNS_SUBNET=""
BR_IP=""
DCS_URL=""
declare -a NETNS_NODE=() NODE_IP=() NETNS_CREATED=()
declare -A NETNS_CUTS=()
NETNS_PG_PORT=5432
NETNS_API_PORT=8008
NETNS_PG_LISTEN="${NETNS_PG_LISTEN:-}"
# frames to this MAC reach no one: a permanent neighbour entry with it cuts one direction
NETNS_NOWHERE_MAC="02:00:5e:00:de:ad"

# keep a copy of a lib.sh function under another name before overriding it
_netns_save_fn() { eval "$(declare -f "$1" | sed "1s/^$1 /$2 /")"; }
_netns_return() { return "$1"; }

# ---- namespaces --------------------------------------------------------------------------

_netns_add() {
    ip netns add "$1" || return 1
    NETNS_CREATED+=("$1")
}

netns_setup() {
    local count="$1" k
    [ -z "$NETNS_BR" ] || fail "netns_setup: already set up ($NETNS_BR)"
    [ "$(id -u)" = 0 ] || fail "netns_setup: network namespaces need root"
    NETNS_PREFIX="pgv$$"
    while [ -e "/run/netns/$NETNS_PREFIX-br" ]; do NETNS_PREFIX="pgv$$r$RANDOM"; done
    # 10.200-249.x.0/24: private, and only ever seen inside our namespaces
    NETNS_SUBNET="10.$((200 + RANDOM % 50)).$(($$ % 250 + 1))"
    BR_IP="$NETNS_SUBNET.254"
    NETNS_BR="$NETNS_PREFIX-br"
    _netns_add "$NETNS_BR" || fail "netns_setup: cannot create namespace $NETNS_BR"
    local B=(ip -n "$NETNS_BR")
    "${B[@]}" link set lo up &&
        "${B[@]}" link add br0 type bridge &&
        "${B[@]}" link set br0 up &&
        "${B[@]}" link add p0 type veth peer name etcd0 &&
        "${B[@]}" link set p0 master br0 up &&
        "${B[@]}" link set etcd0 up &&
        "${B[@]}" addr add "$BR_IP/24" dev etcd0 ||
        fail "netns_setup: cannot build the bridge in $NETNS_BR"
    E_PORT=2379
    E_PEER=2380
    DCS_URL="http://$BR_IP:$E_PORT"
    for k in $(seq 1 "$count"); do netns_add_node "$k"; done
    log "network namespaces: $NETNS_BR (etcd $BR_IP) and $count nodes on $NETNS_SUBNET.0/24"
}

netns_add_node() {
    local k="$1" ns="$NETNS_PREFIX-n$1" ip="$NETNS_SUBNET.$1"
    [ -n "$NETNS_BR" ] || fail "netns_add_node: call netns_setup first"
    [ -z "${NETNS_NODE[$k]:-}" ] || fail "netns_add_node: node $k exists"
    _netns_add "$ns" || fail "netns_add_node: cannot create namespace $ns"
    ip -n "$NETNS_BR" link add "p$k" type veth peer name eth0 netns "$ns" &&
        ip -n "$NETNS_BR" link set "p$k" master br0 up &&
        ip -n "$ns" link set lo up &&
        ip -n "$ns" link set eth0 up &&
        ip -n "$ns" addr add "$ip/24" dev eth0 ||
        fail "netns_add_node: cannot wire $ns to the bridge"
    NETNS_NODE[$k]="$ns"
    NODE_IP[$k]="$ip"
}

netns_name() {
    case "$1" in
        0 | br) echo "$NETNS_BR" ;;
        *) echo "${NETNS_NODE[$1]:-}" ;;
    esac
}
netns_ip() {
    case "$1" in
        0 | br) echo "$BR_IP" ;;
        *) echo "${NODE_IP[$1]:-}" ;;
    esac
}
netns_dev() {
    case "$1" in
        0 | br) echo etcd0 ;;
        *) echo eth0 ;;
    esac
}
_netns_port() {
    case "$1" in
        0 | br) echo p0 ;;
        *) echo "p$1" ;;
    esac
}

nsexec() {
    local k="$1" ns
    shift
    ns=$(netns_name "$k")
    if [ -z "$ns" ]; then
        echo "nsexec: no namespace for member '$k'" >&2
        return 127
    fi
    nsenter -F --net="/run/netns/$ns" "$@"
}

nsspawn() {
    local k="$1" ns
    shift
    ns=$(netns_name "$k")
    [ -n "$ns" ] || fail "nsspawn: no namespace for member '$k'"
    nsenter -F --net="/run/netns/$ns" "$@" &
    NSSPAWN_PID=$!
}

netns_addrs() { ip -n "$(netns_name "$1")" -o -4 addr show dev "$(netns_dev "$1")" 2>/dev/null | awk '{print $4}'; }
# one `ip` call and no pipe: monitors call this in tight loops
netns_has_addr() {
    local out want="$2"
    out=$(ip -n "$(netns_name "$1")" -o -4 addr show dev "$(netns_dev "$1")" 2>/dev/null) || return 1
    [[ "$want" == */* ]] || want="$want/"
    [[ "$out" == *" inet $want"* ]]
}

# ---- faults ------------------------------------------------------------------------------

netns_isolate() {
    local k
    for k in "$@"; do
        bridge -n "$NETNS_BR" link set dev "$(_netns_port "$k")" state 0 || fail "netns_isolate $k failed"
        log "netns: isolated $k ($(netns_ip "$k"))"
    done
}

netns_cut_oneway() {
    local a="$1" b="$2"
    ip -n "$(netns_name "$a")" neigh replace "$(netns_ip "$b")" lladdr "$NETNS_NOWHERE_MAC" \
        dev "$(netns_dev "$a")" nud permanent || fail "netns_cut_oneway $a $b failed"
    NETNS_CUTS["$a>$b"]=1
}
_netns_uncut_oneway() {
    local a="$1" b="$2"
    [ -n "${NETNS_CUTS["$a>$b"]:-}" ] || return 0
    ip -n "$(netns_name "$a")" neigh del "$(netns_ip "$b")" dev "$(netns_dev "$a")" 2>/dev/null
    unset 'NETNS_CUTS["$a>$b"]'
}
netns_cut() {
    netns_cut_oneway "$1" "$2"
    netns_cut_oneway "$2" "$1"
    log "netns: cut $1 <-> $2"
}
netns_uncut() {
    _netns_uncut_oneway "$1" "$2"
    _netns_uncut_oneway "$2" "$1"
    log "netns: uncut $1 <-> $2"
}
netns_partition() {
    local a b
    for a in $1; do
        for b in $2; do
            [ "$a" = "$b" ] || netns_cut "$a" "$b"
        done
    done
}

netns_heal() {
    local k c
    for k in "$@"; do
        bridge -n "$NETNS_BR" link set dev "$(_netns_port "$k")" state 3 || fail "netns_heal $k failed"
        for c in "${!NETNS_CUTS[@]}"; do
            [ "${c%>*}" = "$k" ] || [ "${c#*>}" = "$k" ] && _netns_uncut_oneway "${c%>*}" "${c#*>}"
        done
        log "netns: healed $k"
    done
}

netns_heal_all() {
    local k c
    for c in "${!NETNS_CUTS[@]}"; do _netns_uncut_oneway "${c%>*}" "${c#*>}"; done
    for k in 0 "${!NETNS_NODE[@]}"; do
        bridge -n "$NETNS_BR" link set dev "$(_netns_port "$k")" state 3
    done
    log "netns: healed all"
}

netns_shape() {
    local k="$1" rate="$2"
    ip netns exec "$(netns_name "$k")" tc qdisc replace dev "$(netns_dev "$k")" root tbf rate "$rate" burst 32kbit latency 400ms &&
        ip netns exec "$NETNS_BR" tc qdisc replace dev "$(_netns_port "$k")" root tbf rate "$rate" burst 32kbit latency 400ms ||
        fail "netns_shape $k $rate failed"
    log "netns: $k limited to $rate"
}
netns_unshape() {
    ip netns exec "$(netns_name "$1")" tc qdisc del dev "$(netns_dev "$1")" root 2>/dev/null
    ip netns exec "$NETNS_BR" tc qdisc del dev "$(_netns_port "$1")" root 2>/dev/null
    return 0
}

# Delete our namespaces. Processes still inside (all started by this test: nothing else can
# enter a namespace it does not know) get SIGTERM, then SIGKILL; lib.sh's cleanup has already
# stopped the agents, postmasters and etcd by PID.
netns_teardown() {
    local ns pids p
    [ ${#NETNS_CREATED[@]} -eq 0 ] && return 0
    for ns in "${NETNS_CREATED[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        [ -n "$pids" ] && kill -CONT $pids 2>/dev/null && kill -TERM $pids 2>/dev/null
    done
    for _ in $(seq 1 20); do
        p=""
        for ns in "${NETNS_CREATED[@]}"; do p="$p$(ip netns pids "$ns" 2>/dev/null)"; done
        [ -z "$p" ] && break
        sleep 0.1
    done
    for ns in "${NETNS_CREATED[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null || echo "netns_teardown: could not delete namespace $ns"
    done
    NETNS_CREATED=()
}

_netns_save_fn cleanup _netns_lib_cleanup
cleanup() {
    local rc=$?
    _netns_return "$rc"
    _netns_lib_cleanup
    rc=$?   # lib.sh's cleanup fails a passed test on a sanitizer report
    netns_teardown
    return "$rc"
}
# (lib.sh turns SIGTERM, SIGINT and SIGHUP into an exit, so a test killed by run.sh's timeout
# or ^C still deletes its namespaces)

# ---- cluster in namespaces: overrides of lib.sh ------------------------------------------

start_etcd() {
    [ -n "$NETNS_BR" ] || fail "start_etcd: call netns_setup first"
    nsspawn 0 /usr/bin/etcd --name it --data-dir "$T_DIR/etcd" \
        --listen-client-urls "http://$BR_IP:$E_PORT" --advertise-client-urls "http://$BR_IP:$E_PORT" \
        --listen-peer-urls "http://$BR_IP:$E_PEER" --initial-advertise-peer-urls "http://$BR_IP:$E_PEER" \
        --initial-cluster "it=http://$BR_IP:$E_PEER" --heartbeat-interval 100 --election-timeout 1000 \
        >>"$T_DIR/etcd.log" 2>&1
    ETCD_PID=$NSSPAWN_PID
    wait_until 30 "etcd on $BR_IP:$E_PORT" nsexec 0 curl -sf "http://$BR_IP:$E_PORT/health"
}

etcdctl_() { ETCDCTL_API=3 nsexec 0 etcdctl --endpoints "$DCS_URL" "$@"; }
cluster_json() { nsexec 0 "$BIN" list --dcs-url "$DCS_URL" --scope "$SCOPE" --json 2>/dev/null; }
pgvigil_cli() { nsexec 0 "$BIN" "$@"; }
api_url() { echo "http://$(netns_ip "$1"):${API_PORT[$1]}"; }
api_curl() { nsexec 0 curl "$@"; }

# node_config N [EXTRA_YAML]: lib.sh's file, with the node's own address for postgres and the
# REST API, etcd on the bridge, a socket directory per node (every postmaster uses port 5432)
# and pg_hba rules for the subnet
_netns_save_fn node_config _netns_lib_node_config
node_config() {
    local n="$1" extra="${2:-}" ip="${NODE_IP[$1]:-}" f="$T_DIR/node$1.yml"
    [ -n "$ip" ] || fail "node_config $n: no namespace for node $n (netns_setup / netns_add_node)"
    PG_PORT[$n]=$NETNS_PG_PORT
    API_PORT[$n]=$NETNS_API_PORT
    _netns_lib_node_config "$n" "$extra"
    local sock="$T_DIR/sock$n"
    mkdir -p "$sock" && chmod 1777 "$sock"
    local listen="${NETNS_PG_LISTEN:-$ip}"
    sed -i -e "s|^  hosts: 127.0.0.1:$E_PORT\$|  hosts: $BR_IP:$E_PORT|" \
        -e "s|^  listen: 127.0.0.1:${API_PORT[$n]}\$|  listen: $ip:${API_PORT[$n]}|" \
        -e "s|^  connect_address: 127.0.0.1:${API_PORT[$n]}\$|  connect_address: $ip:${API_PORT[$n]}|" \
        "$f"
    # postgres and REST share no port, but both sections use the same key names: edit the
    # postgresql section's lines only
    awk -v ip="$ip" -v listen="$listen" -v port="${PG_PORT[$n]}" -v sock="$sock" -v net="$NETNS_SUBNET.0/24" '
        /^[^ ]/ { sect = $1 }
        sect == "postgresql:" && $0 == "  listen: 127.0.0.1:" port { print "  listen: " listen ":" port; next }
        sect == "postgresql:" && $0 == "  connect_address: 127.0.0.1:" port { print "  connect_address: " ip ":" port; next }
        { print }
        $0 == "postgresql:" {
            print "  unix_socket_directories: " sock
            print "  pg_hba:"
            print "    - local all all trust"
            print "    - local replication all trust"
            print "    - host replication replicator 127.0.0.0/8 scram-sha-256"
            print "    - host all all 127.0.0.0/8 scram-sha-256"
            print "    - host replication replicator " net " scram-sha-256"
            print "    - host all all " net " scram-sha-256"
        }' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
    grep -q "^  hosts: $BR_IP:$E_PORT\$" "$f" && grep -q "^  connect_address: $ip:${PG_PORT[$n]}\$" "$f" &&
        grep -q "^  listen: $ip:${API_PORT[$n]}\$" "$f" && ! grep -q "127\.0\.0\.1:\($E_PORT\|${API_PORT[$n]}\)\$" "$f" ||
        fail "node_config $n: lib.sh's YAML layout changed; lib_netns.sh could not rewrite $f"
}

start_agent() {
    local n="$1"
    nsspawn "$n" "$BIN" agent -c "$T_DIR/node$n.yml" >>"$T_DIR/node$n.log" 2>&1
    AGENT_PID[$n]=$NSSPAWN_PID
}

_netns_save_fn start_cluster _netns_lib_start_cluster
start_cluster() {
    [ -n "$NETNS_BR" ] || netns_setup "$1"
    _netns_lib_start_cluster "$@"
}

# ---- clients ------------------------------------------------------------------------------

# psql as superuser inside node N's namespace, to its own address (works while N is isolated)
psql_n() {
    local n="$1"
    shift
    PGPASSWORD=it-super PGCONNECT_TIMEOUT=3 nsexec "$n" psql -X -q -v ON_ERROR_STOP=1 -h "${NODE_IP[$n]}" \
        -p "${PG_PORT[$n]}" -U postgres -d postgres -At "$@"
}

# psql ADDR ARGS...: a client in the bridge namespace (e.g. to a floating IP)
psql_at() {
    local addr="$1"
    shift
    PGPASSWORD=it-super PGCONNECT_TIMEOUT=3 nsexec 0 psql -X -q -v ON_ERROR_STOP=1 -h "$addr" \
        -p "$NETNS_PG_PORT" -U postgres -d postgres -At "$@"
}

probe_write() {
    PGPASSWORD=it-super PGCONNECT_TIMEOUT=2 PGOPTIONS="-c statement_timeout=1500" nsexec "$1" \
        timeout -k 1 3 psql -X -q -v ON_ERROR_STOP=1 -h "${NODE_IP[$1]}" -p "${PG_PORT[$1]}" -U postgres \
        -d postgres -At -c "insert into it_probe values ($1)" >/dev/null 2>&1
}

# start_writer FILE NODES...: like lib_probe.sh's, from the bridge namespace; nodes are told
# apart by address since every node uses the same port
start_writer() {
    local out="$1"
    shift
    local parent=$$ n hosts="" map=""
    for n in "$@"; do
        hosts="${hosts:+$hosts,}${NODE_IP[$n]}"
        map="$map ${NODE_IP[$n]}=$n"
    done
    rm -f "$out.stop"
    (
        while [ ! -e "$out.stop" ] && kill -0 "$parent" 2>/dev/null; do
            addr=$(PGPASSWORD=it-super PGOPTIONS="-c statement_timeout=1500" nsexec 0 timeout -k 1 4 psql -X -q -At \
                "host=$hosts port=$NETNS_PG_PORT dbname=postgres user=postgres connect_timeout=2 target_session_attrs=read-write" \
                -c "insert into it_probe values (0) returning host(inet_server_addr())" 2>/dev/null)
            if [ -n "$addr" ]; then
                for m in $map; do [ "${m%%=*}" = "$addr" ] && echo "$(now_ms) ${m#*=}" >>"$out"; done
            else
                sleep 0.02
            fi
        done
    ) &
    BG_PIDS+=("$!")
    WRITER_PID=$!
}

# the address replica N streams from (empty when not streaming); streams_from N M
streaming_from_host() { psql_n "$1" -c "select sender_host from pg_stat_wal_receiver where status = 'streaming'" 2>/dev/null; }
streaming_from_port() { psql_n "$1" -c "select sender_port from pg_stat_wal_receiver where status = 'streaming'" 2>/dev/null; }
streams_from() { [ "$(streaming_from_host "$1")" = "${NODE_IP[$2]}" ]; }
