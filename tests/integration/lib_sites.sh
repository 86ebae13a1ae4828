# Two data centers (sites) in network namespaces, each an ordinary pgvigil cluster with its own
# etcd in its own namespace, plus a witness namespace for a third site. Source after lib.sh; it
# pulls in lib_netns.sh (whose cleanup deletes every namespace).
#
#   site a: nodes 1 2, scope site-a, etcd in namespace 11
#   site b: nodes 3 4, scope site-b, etcd in namespace 12
#   witness: namespace 13 (an etcd of its own, when a test starts it)
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
