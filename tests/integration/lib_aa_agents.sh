# Active-active nodes run by pgvigil agents: each node its own single-node pgvigil cluster (scope
# aa-<node>) whose agent has active_active.group: shop. Source after lib.sh. The caller sets
#   NODES=(a b ...)            the nodes' names (pgvigil_aa.local_node)
#   declare -A NUM=([a]=1 ...) each node's number in lib.sh (ports, node<N>.yml, psql_n)
#   declare -A LOC=([a]=vl ...) each node's active_active.location ("" none)
#   AA_SCHEMA                  SQL run on every node before the extension (its tables)
# aa_agents_up: etcd, the agents (each bootstraps its postgres), the extension, every node's
# slot and peer row on every other node; waits until every node can take writes (aa/nodes).
#   qn N [psql args]   psql on node N;   conninfo N   its libpq conninfo
#   aa_leader_json     `pgvigil aa leader --json` of the group;   group_leader   its write leader
# aa_proxy_start ROUTES: a pgvigil proxy on the group (admin on PX_ADMIN), ROUTES the YAML list
# items of proxy.routes (indented 4), each listen port allocated by the caller
[ -f /usr/lib/postgresql/15/lib/pgvigil_aa.so ] || fail "pgvigil_aa.so is not installed (make pgext-install)"
qn() { local n="$1"; shift; psql_n "${NUM[$n]}" "$@"; }
conninfo() { echo "host=127.0.0.1 port=${PG_PORT[${NUM[$1]}]} user=postgres password=it-super dbname=postgres"; }
aa_leader_json() { "$BIN" aa leader --group shop --dcs-url "http://127.0.0.1:$E_PORT" --json 2>/dev/null; }
group_leader() { aa_leader_json | jq -r '.write_leader.node // ""'; }
aa_all_writable() { [ "$(aa_leader_json | jq '[.nodes[] | select(.writable)] | length')" = "${#NODES[@]}" ]; }
aa_agents_up() {
    local n o i loc opl=""
    start_etcd
    # (a server that restricts output plugins must be told this one may be used)
    grep -q "^output_plugin_libraries" <<<"$(/usr/lib/postgresql/15/bin/postgres --describe-config 2>/dev/null)" &&
        opl="
    output_plugin_libraries: 'pgoutput, test_decoding, pgvigil_aa'"
    for n in "${NODES[@]}"; do
        i=${NUM[$n]}
        loc=""
        [ -n "${LOC[$n]:-}" ] && loc="
  location: ${LOC[$n]}"
        SCOPE="aa-$n" PG_EXTRA="  parameters:
    shared_preload_libraries: pgvigil_aa
    track_commit_timestamp: 'on'
    wal_level: logical
    max_worker_processes: 16
    max_replication_slots: 10
    max_wal_senders: 10$opl" node_config "$i" "active_active:
  group: shop$loc
  ttl: 3"
        start_agent "$i"
    done
    for n in "${NODES[@]}"; do wait_until 60 "node $n runs as a primary" is_primary "${NUM[$n]}"; done
    for n in "${NODES[@]}"; do
        qn "$n" -c "${AA_SCHEMA:-select 1}" -c "create extension pgvigil_aa" \
            -c "insert into pgvigil_aa.local_node (name, sequence_offset) values ('$n', ${NUM[$n]})" >/dev/null ||
            fail "setting up node $n"
    done
    for n in "${NODES[@]}"; do
        for o in "${NODES[@]}"; do
            [ "$n" = "$o" ] && continue
            qn "$o" -c "select pg_create_logical_replication_slot('aa_for_$n', 'pgvigil_aa')" >/dev/null || fail "slot on $o"
            qn "$n" -c "insert into pgvigil_aa.peers (name, conninfo, slot_name) values ('$o', '$(conninfo "$o")', 'aa_for_$n')" ||
                fail "peer $o on $n"
        done
    done
    wait_until 60 "the ${#NODES[@]} nodes can take writes (aa/nodes)" aa_all_writable
}
aa_proxy_start() {
    alloc_port PX_ADMIN
    cat >"$T_DIR/proxy.yml" <<YML
scope: shop
etcd3:
  hosts: 127.0.0.1:$E_PORT
proxy:
  admin_listen: 127.0.0.1:$PX_ADMIN
  workers: 2
  connect_wait: 60
  connect_timeout: 2
  routes:
$1
YML
    "$BIN" proxy -c "$T_DIR/proxy.yml" >>"$T_DIR/proxy.log" 2>&1 &
    PX_PID=$!
    EXTRA_PIDS+=("$PX_PID")
    wait_until 20 "proxy admin port" curl -sf "http://127.0.0.1:$PX_ADMIN/health"
}
