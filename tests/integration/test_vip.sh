#!/bin/bash
# Floating IP, on 3 nodes in network namespaces (lib_netns.sh): the VIP is on the leader's eth0
# only and a client reaching it (psql -h VIP, from the bridge namespace) lands on the primary;
# a switchover moves it; a SIGSTOPped leader's fence removes it before the new leader adds it;
# a clean agent stop removes it. A monitor samples all three nodes through every transition and
# the test fails if two ever hold the address at once.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_netns.sh"

NETNS_PG_LISTEN=0.0.0.0   # postgres must accept connections to the VIP as well
netns_setup 3
VIP="$NETNS_SUBNET.100"
NODE_EXTRA="vip:
  address: $VIP/24
  interface: eth0
  arp_count: 3"
start_cluster 3
l=$(leader); ln=$(node_of "$l")
[ -n "$ln" ] || fail "no leader after start"
log "leader $l; VIP $VIP"

# nodes holding the VIP now, e.g. "2" (sequential ip calls: use the monitor for overlap)
vip_holders() { local k h=""; for k in 1 2 3; do netns_has_addr "$k" "$VIP" && h="$h$k "; done; echo "${h% }"; }
vip_only_on() { [ "$(vip_holders)" = "$1" ]; }
vip_nowhere() { [ -z "$(vip_holders)" ]; }
# the node a client reaches through the VIP, and whether it is a writable primary there
via_vip() { psql_at "$VIP" -c "select current_setting('cluster_name') || ' ' || pg_is_in_recovery()" 2>/dev/null; }
vip_reaches_primary() { [ "$(via_vip)" = "node$1 false" ]; }

# Monitor: each round checks nodes 1 2 3 and then 1 2 3 again, one line per round:
# "<ms> a1 b1 c1 a2 b2 c2" (1 = has the VIP). A node seen with it in both of its checks held
# it throughout; if another node had it in a check made in between, both held it at once.
start_vip_monitor() {
    local out="$1" parent=$$
    rm -f "$out.stop"
    (
        while [ ! -e "$out.stop" ] && kill -0 "$parent" 2>/dev/null; do
            line="$(now_ms)"
            for k in 1 2 3 1 2 3; do
                if netns_has_addr "$k" "$VIP"; then line="$line 1"; else line="$line 0"; fi
            done
            echo "$line" >>"$out"
            sleep 0.05
        done
    ) &
    MONITOR_PID=$!
    BG_PIDS+=("$MONITOR_PID")
}
# the current monitor ($M) has made a round: it watches from then on
monitor_ran() { [ -s "$M" ]; }
# rounds proving two holders at once (empty when none)
vip_doubles() {
    awk '($2 && $5 && ($3 || $4)) || ($3 && $6 && ($4 || $5)) || ($4 && $7 && ($5 || $6))' "$1"
}
check_no_double() {
    local d
    d=$(vip_doubles "$1")
    [ -z "$d" ] || fail "two nodes held the VIP at once ($2), rounds \"ms n1 n2 n3 n1 n2 n3\":
$(echo "$d" | head -5)"
    log "$2: $(wc -l <"$1") monitor rounds, never two holders"
}

# ---- 1. the leader holds the VIP, and only it ----------------------------------------------
wait_until 30 "the VIP on $l only" vip_only_on "$ln"
wait_until 30 "the VIP reaches primary $l" vip_reaches_primary "$ln"
nsexec "$ln" ip -o -4 addr show dev eth0
log "the VIP is on $l only and reaches its primary"
# the neighbours learnt the leader's MAC from its gratuitous ARPs (or from resolving the VIP)
mac_of_leader=$(ip -n "$(netns_name "$ln")" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
grep -qi "$mac_of_leader" <<<"$(ip -n "$NETNS_BR" neigh show "$VIP")" || fail "the bridge namespace's neighbour entry for $VIP is not $l's MAC $mac_of_leader: $(ip -n "$NETNS_BR" neigh show "$VIP")"

# ---- 2. switchover: the VIP moves with the leader ------------------------------------------
member_running_replica() { etcdctl_ get --print-value-only "/service/$SCOPE/members/node$1" | jq -e '.state == "running" and .role == "replica"'; }
cand=""
for n in 1 2 3; do [ "$n" != "$ln" ] && [ -z "$cand" ] && cand=$n; done
wait_until 60 "node$cand published as a running replica" member_running_replica "$cand"
M="$T_DIR/vip_switchover"
start_vip_monitor "$M"
wait_until 10 "the VIP monitor's first round" monitor_ran
out=$(pgvigil_cli switchover --dcs-url "$DCS_URL" --scope "$SCOPE" --candidate "node$cand" --force 2>&1) ||
    fail "switchover to node$cand failed: $out"
log "switchover $l -> node$cand: $out"
wait_until 30 "the VIP on node$cand only" vip_only_on "$cand"
wait_until 30 "the VIP reaches primary node$cand" vip_reaches_primary "$cand"
sleep 1
stop_bg "$M" "$MONITOR_PID"
check_no_double "$M" "switchover"
tail -1 "$M" | awk -v c="$cand" '{exit !($(1 + c) && $(4 + c))}' || fail "the monitor's last round does not show node$cand with the VIP"
wait_until 60 "$l streams from node$cand" streams_from "$ln" "$cand"
netns_has_addr "$ln" "$VIP" && fail "old leader $l still holds the VIP"
ln=$cand; l="node$cand"

# ---- 3. SIGSTOP of the leader's agent: its fence removes the VIP ---------------------------
M="$T_DIR/vip_sigstop"
W="$T_DIR/leader_watch"
start_leader_watch "$W"
start_vip_monitor "$M"
wait_until 10 "the VIP monitor's first round" monitor_ran
stop_ms=$(now_ms)
kill -STOP "${AGENT_PID[$ln]}" || fail "cannot SIGSTOP the agent of $l"
log "SIGSTOP agent of $l (pid ${AGENT_PID[$ln]})"
# the fence removes the VIP: wait for that state. Whether it came in time is checked against
# the lease's expiry (etcd deleting the leader key) once the new leader holds the VIP.
vip_not_on() { ! netns_has_addr "$1" "$VIP"; }
wait_until $((T_TTL * 4 + 30)) "the VIP leaves $l, whose agent is stopped" vip_not_on "$ln"
gone_ms=$(now_ms)
log "the VIP left $l (seen $((gone_ms - stop_ms)) ms after SIGSTOP)"
new_vip_leader() { local x; x=$(leader); [ -n "$x" ] && [ "$x" != "$l" ] && vip_only_on "$(node_of "$x")"; }
wait_until $((T_TTL * 4 + 40)) "a new leader holding the VIP" new_vip_leader
nl=$(node_of "$(leader)")
moved_ms=$(now_ms)
log "node$nl holds the VIP $((moved_ms - stop_ms)) ms after SIGSTOP"
wait_until 30 "the VIP reaches primary node$nl" vip_reaches_primary "$nl"
grep -q "fence: removed vip" "$T_DIR/$l.log" || fail "the fence of $l did not log removing the VIP"
# the fence removed it before the lease expired: no monitor round that started after etcd
# deleted the leader key shows the VIP on $l (column 1 + n, then 4 + n: the same round's checks)
expired_ms=$(leader_deleted_after "$W" "$stop_ms")
[ -n "$expired_ms" ] || fail "the leader key of $l was never deleted (lease expiry) after SIGSTOP: $(cat "$W")"
late=$(awk -v a="$expired_ms" -v c="$ln" '$1 >= a && ($(1 + c) || $(4 + c))' "$M")
[ -z "$late" ] || fail "$l held the VIP after its lease expired (+$((expired_ms - stop_ms)) ms), rounds \"ms n1 n2 n3 n1 n2 n3\":
$(echo "$late" | head -5)"
log "lease of $l expired $((expired_ms - stop_ms)) ms after SIGSTOP; the VIP had left it before"
kill -CONT "${AGENT_PID[$ln]}"
log "SIGCONT agent of $l"
wait_until 120 "$l streams from node$nl" streams_from "$ln" "$nl"
sleep 2
stop_bg "$M" "$MONITOR_PID"
check_no_double "$M" "SIGSTOP of the leader's agent"
vip_only_on "$nl" || fail "after $l rejoined the VIP is on '$(vip_holders)', expected node$nl only"
ln=$nl; l="node$nl"

# ---- 4. clean stop of the leader's agent removes the VIP -----------------------------------
M="$T_DIR/vip_stop"
start_vip_monitor "$M"
wait_until 10 "the VIP monitor's first round" monitor_ran
apid=${AGENT_PID[$ln]}
stop_agent "$ln"
kill -0 "$apid" 2>/dev/null && fail "the agent of $l did not exit"
netns_has_addr "$ln" "$VIP" && fail "$l still holds the VIP after its agent stopped cleanly"
log "the VIP left $l with its agent's clean stop"
new_vip_leader() { local x; x=$(leader); [ -n "$x" ] && [ "$x" != "$l" ] && vip_only_on "$(node_of "$x")"; }
wait_until $((T_TTL * 4 + 40)) "a new leader holding the VIP after the stop" new_vip_leader
nl=$(node_of "$(leader)")
wait_until 30 "the VIP reaches primary node$nl" vip_reaches_primary "$nl"
sleep 1
stop_bg "$M" "$MONITOR_PID"
check_no_double "$M" "clean stop of the leader's agent"
log "node$nl holds the VIP after the agent of $l stopped"

echo "MEASURE vip: sigstop_vip_gone_ms=$((gone_ms - stop_ms)) sigstop_lease_expired_ms=$((expired_ms - stop_ms)) sigstop_vip_moved_ms=$((moved_ms - stop_ms))"
echo "PASS [$T_NAME]"
