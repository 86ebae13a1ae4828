# Two data centers (sites) in network namespaces, each an ordinary pgvigil cluster with its own
# etcd in its own namespace, plus a witness namespace for a third site. Source after lib.sh; it
# pulls in lib_netns.sh (whose cleanup deletes every namespace).
#
#   site a: nodes 1 2, scope site-a, etcd in namespace 11
#   site b: nodes 3 4, scope site-b, etcd in namespace 12
#   witness: namespace 13 (an etcd of its own, when a test starts it; SITE_AUTOMATIC=1 gives
#            every node site.failover: automatic with it as the witness)
# Every namespace hangs off one bridge (lib_netns.sh), so the sites reach each other until a
# test cuts them apart (netns_partition "1 2 11" "3 4 12").
#
# Functions:
#   sites_setup                 namespaces for both sites and the witness
#   start_site_etcd SITE        etcd of site a or b (or w, the witness) in its namespace
#   site_url SITE               its client URL
#   site_node_config N SITE [EXTRA_YAML]   node N's file, for SITE's scope and etcd
#   site_leader SITE            the leader key's value in SITE's etcd
#   site_json SITE              `pgvigil list --json` of SITE
#   site_role N                 role of node N in its site's list (Leader, Standby Leader, Replica)
#   site_config SITE            the config key (dynamic configuration) of SITE
#   sitectl SITE ARGS...        pgvigil ARGS... against SITE's etcd and scope (from the bridge)

if ! declare -F netns_setup >/dev/null; then
    source "$(dirname "${BASH_SOURCE[0]}")/lib_netns.sh"
fi

declare -A SITE_SCOPE=([a]=site-a [b]=site-b [w]=witness)
declare -A SITE_ETCD_NS=([a]=11 [b]=12 [w]=13)
declare -A SITE_OF=([1]=a [2]=a [3]=b [4]=b)

sites_setup() {
    local k
    netns_setup 0
    for k in 1 2 3 4 11 12 13; do netns_add_node "$k"; done
}

site_url() { echo "http://$(netns_ip "${SITE_ETCD_NS[$1]}"):2379"; }

start_site_etcd() {
    local s="$1" k="${SITE_ETCD_NS[$1]}" ip
    ip=$(netns_ip "$k")
    nsspawn "$k" /usr/bin/etcd --name "etcd-$s" --data-dir "$T_DIR/etcd-$s" \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
        --initial-cluster "etcd-$s=http://$ip:2380" --heartbeat-interval 100 --election-timeout 1000 \
        >>"$T_DIR/etcd-$s.log" 2>&1
    EXTRA_PIDS+=("$NSSPAWN_PID")
    wait_until 30 "etcd of site $s on $ip" nsexec 0 curl -sf "http://$ip:2379/health"
}

# node_config of lib_netns.sh, then this site's scope and etcd
site_node_config() {
    local n="$1" s="$2" extra="${3:-}" f="$T_DIR/node$1.yml" ip
    SITE_OF[$n]="$s"
    SCOPE="${SITE_SCOPE[$s]}" node_config "$n" "$extra"
    ip=$(netns_ip "${SITE_ETCD_NS[$s]}")
    sed -i -e "s|^  hosts: $BR_IP:$E_PORT\$|  hosts: $ip:2379|" -e "s|^scope: .*|scope: ${SITE_SCOPE[$s]}|" "$f"
    grep -q "^  hosts: $ip:2379\$" "$f" || fail "site_node_config $n: could not point $f at site $s's etcd"
    # the other site, which the agent watches (a site promoted over this one while it was away)
    local other=b
    [ "$s" = b ] && other=a
    if [ "$s" = a ] || [ "$s" = b ]; then
        printf 'site:\n  peer:\n    scope: %s\n    etcd3:\n      hosts: %s:2379\n' "${SITE_SCOPE[$other]}" \
            "$(netns_ip "${SITE_ETCD_NS[$other]}")" >>"$f"
        # SITE_AUTOMATIC=1: automatic site failover with the witness's etcd (namespace 13)
        if [ -n "${SITE_AUTOMATIC:-}" ]; then
            printf '  failover: automatic\n  witness:\n    ttl: %s\n    etcd3:\n      hosts: %s:2379\n' \
                "${SITE_WITNESS_TTL:-4}" "$(netns_ip "${SITE_ETCD_NS[w]}")" >>"$f"
        fi
    fi
}

# every process in namespace K, killed at once (a data center losing power): agents, fences,
# postmasters and their backends, etcd
netns_kill_all() {
    local k pids
    for k in "$@"; do
        pids=$(ip netns pids "$(netns_name "$k")" 2>/dev/null)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    done
    for k in "$@"; do
        for _ in $(seq 1 50); do
            [ -z "$(ip netns pids "$(netns_name "$k")" 2>/dev/null)" ] && break
            sleep 0.1
        done
    done
    for k in "$@"; do [ "${SITE_OF[$k]:-}" ] && AGENT_PID[$k]=""; done
    return 0
}

sitectl() {
    local s="$1"
    shift
    nsexec 0 "$BIN" "$@" --dcs-url "$(site_url "$s")" --scope "${SITE_SCOPE[$s]}"
}
site_etcdctl() {
    local s="$1"
    shift
    ETCDCTL_API=3 nsexec 0 etcdctl --endpoints "$(site_url "$s")" "$@"
}
site_leader() { site_etcdctl "$1" get --print-value-only "/service/${SITE_SCOPE[$1]}/leader" 2>/dev/null; }
site_leader_is() { [ "$(site_leader "$1")" = "$2" ]; }
site_config() { site_etcdctl "$1" get --print-value-only "/service/${SITE_SCOPE[$1]}/config" 2>/dev/null; }
site_json() { sitectl "$1" list --json 2>/dev/null; }
site_role() { site_json "${SITE_OF[$1]}" | jq -r --arg m "node$1" '.[] | select(.Member == $m) | .Role'; }
site_role_is() { [ "$(site_role "$1")" = "$2" ]; }

# sites_start: site a (nodes 1 2) with a permanent slot site_b; site b (nodes 3 4) a standby
# cluster of it through standby_cluster.host = a's nodes and slot site_b, keeping slot site_a
# for the day it is the primary site. Waits until b's standby leader streams from a and node4
# cascades from it. SITE_EXTRA (YAML) is added to every node's file.
sites_start() {
    start_site_etcd a
    start_site_etcd b
    A_HOSTS="${NODE_IP[1]},${NODE_IP[2]}"
    local sa="    slots:
      site_b:
        type: physical" sb="    slots:
      site_a:
        type: physical
    standby_cluster:
      host: $A_HOSTS
      port: 5432
      primary_slot_name: site_b${SITE_B_STANDBY_EXTRA:+
$SITE_B_STANDBY_EXTRA}"
    BOOTSTRAP_EXTRA="$sa" site_node_config 1 a "${SITE_EXTRA:-}"
    BOOTSTRAP_EXTRA="$sa" site_node_config 2 a "${SITE_EXTRA:-}"
    BOOTSTRAP_EXTRA="$sb" site_node_config 3 b "${SITE_EXTRA:-}"
    BOOTSTRAP_EXTRA="$sb" site_node_config 4 b "${SITE_EXTRA:-}"
    start_agent 1
    wait_until 60 "node1 bootstraps site a" is_primary 1
    start_agent 2
    wait_until 90 "node2 streams from node1" streams_from 2 1
    # SITES_BUSY_A: site a commits without pause while node3 copies it, so that its copy holds
    # commits written after the point where it is consistent (a delayed node3 must stream anyway)
    local busy=""
    if [ -n "${SITES_BUSY_A:-}" ]; then
        psql_n 1 -c "create table sites_busy(at timestamptz)" >/dev/null || fail "sites_busy on node1"
        ( while :; do psql_n 1 -c "insert into sites_busy values (now())" >/dev/null 2>&1; done ) &
        busy=$!
        EXTRA_PIDS+=("$busy")
    fi
    start_agent 3
    wait_until 120 "node3 is site b's standby leader" site_role_is 3 "Standby Leader"
    wait_until 60 "node3 streams from node1 (site a's primary)" streams_from 3 1
    if [ -n "$busy" ]; then
        kill "$busy"
        wait "$busy" 2>/dev/null
        psql_n 1 -c "select count(*) from sites_busy" | sed 's/^/site a committed while node3 was copied: /'
    fi
    # node4 clones node3 with pg_basebackup, which on a standby starts at a restartpoint: that
    # needs a checkpoint record node3 replayed after its own start, and an idle site a writes
    # none until checkpoint_timeout (a CI run waited 120 s for node4). A node3 that applies WAL
    # late (standby_cluster.recovery_min_apply_delay, test_site_rescue) holds replay at the first
    # commit it received, and site a's heartbeat commits every second from the moment node3
    # streams: when one came before the checkpoint, node3 replays it only after its delay, and
    # that wait is what there is to see (node4 clones it as it did before this checkpoint).
    psql_n 1 -c "checkpoint" >/dev/null || fail "checkpoint on node1"
    SITES_CK_LSN=$(psql_n 1 -c "select pg_current_wal_lsn()") && [ -n "$SITES_CK_LSN" ] || fail "node1's WAL position"
    _sites_ck_replayed() {
        local r
        r=$(psql_n 3 -c "select pg_last_wal_replay_lsn(), pg_last_wal_replay_lsn() >= '$SITES_CK_LSN' or exists (select 1
            from pg_stat_activity where backend_type = 'startup' and wait_event = 'RecoveryApplyDelay')")
        echo "node3 (replay LSN|replayed or waiting on its delay): $r"
        [[ "$r" == *"|t" ]]
    }
    wait_until 60 "node3 replays node1's checkpoint at $SITES_CK_LSN (or waits on its apply delay)" _sites_ck_replayed
    start_agent 4
    wait_until 120 "node4 cascades from node3" streams_from 4 3
}

# `pgvigil site ...` as an operator on the bridge would run it: site a's file, site b's etcd
site_cli() { nsexec 0 "$BIN" site "$@" -c "$T_DIR/node1.yml" --peer-dcs-url "$(site_url b)" --peer-scope site-b; }
# ... from site b's side (works while site a's etcd is gone)
site_cli_b() { nsexec 0 "$BIN" site "$@" -c "$T_DIR/node3.yml" --peer-dcs-url "$(site_url a)" --peer-scope site-a; }

# start_site_proxy: a pgvigil proxy in the bridge namespace that knows both sites (its file names
# site a, and site b as site.peer): read-write route on $BR_IP:5000, admin on $BR_IP:5001
start_site_proxy() {
    cat >"$T_DIR/proxy-sites.yml" <<YML
scope: site-a
log:
  level: info
etcd3:
  hosts: $(netns_ip "${SITE_ETCD_NS[a]}"):2379
site:
  peer:
    scope: site-b
    etcd3:
      hosts: $(netns_ip "${SITE_ETCD_NS[b]}"):2379
proxy:
  admin_listen: $BR_IP:5001
  workers: 2
  connect_wait: 30
  connect_timeout: 2
  routes:
    - name: rw
      listen: $BR_IP:5000
      role: primary
YML
    nsspawn 0 "$BIN" proxy -c "$T_DIR/proxy-sites.yml" >>"$T_DIR/proxy.log" 2>&1
    EXTRA_PIDS+=("$NSSPAWN_PID")
    wait_until 20 "the proxy routes writes" site_proxy_has_primary
}
site_proxy_primary() { nsexec 0 curl -s "http://$BR_IP:5001/health" | jq -r '.primary // ""'; }
site_proxy_has_primary() { [ -n "$(site_proxy_primary)" ]; }

# start_site_writer FILE: inserts 1, 2, 3... into dr_w, each through a new connection: through
# the proxy of start_site_proxy when SITE_WRITER_VIA=proxy, else to every node's address (or
# those of SITE_WRITER_NODES, e.g. "1 2") with target_session_attrs=read-write (whichever site is
# primary); ids start after SITE_WRITER_BASE (default 0). Each acknowledged id is logged as
# "<ms> <id>" in FILE. Stop it by creating FILE.stop.
start_site_writer() {
    local out="$1" parent=$$ conn n hosts=""
    for n in ${SITE_WRITER_NODES:-1 2 3 4}; do hosts="${hosts:+$hosts,}${NODE_IP[$n]}"; done
    conn="host=$hosts port=5432 target_session_attrs=read-write"
    [ "${SITE_WRITER_VIA:-}" = proxy ] && conn="host=$BR_IP port=5000 sslmode=disable"
    rm -f "$out.stop"
    (
        i=${SITE_WRITER_BASE:-0}
        while [ ! -e "$out.stop" ] && kill -0 "$parent" 2>/dev/null; do
            i=$((i + 1))
            if PGPASSWORD=it-super PGOPTIONS="-c statement_timeout=1500" nsexec 0 timeout -k 1 4 psql -X -q -At \
                "$conn dbname=postgres user=postgres connect_timeout=2" \
                -c "insert into dr_w values ($i)" >/dev/null 2>&1; then
                t=${EPOCHREALTIME//[!0-9]/}   # (ms, without forking date)
                echo "${t:0:-3} $i" >>"$out"
            else
                sleep 0.02
            fi
        done
    ) &
    BG_PIDS+=("$!")
}

# the longest time between two acknowledged writes in FILE from line FROM on (ms)
max_write_gap() { tail -n +"${2:-1}" "$1" | awk 'NR > 1 && $1 - prev > gap { gap = $1 - prev } { prev = $1 } END { print gap + 0 }'; }

# every id acknowledged in FILE is in dr_w on node N; prints what is missing
acked_present() {
    local f="$1" n="$2" missing
    missing=$(comm -23 <(awk '{print $2}' "$f" | sort -u) <(psql_n "$n" -c "select id from dr_w" | sort -u))
    [ -z "$missing" ] || { echo "acknowledged but missing on node$n: $(echo $missing | head -c 300)"; return 1; }
}
