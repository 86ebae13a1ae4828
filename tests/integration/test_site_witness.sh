#!/bin/bash
# Automatic site failover with a witness (site.failover: automatic). Site a (nodes 1 2, etcd in
# namespace 11) is the primary site, site b (nodes 3 4, etcd in 12) its standby cluster, and a
# third site's etcd (namespace 13) the witness, TTL 4 s. Two writers in the bridge namespace
# (clients that reach both sites whatever happens between them) write through a's and b's
# addresses; every acknowledged write is logged with its time.
#  1. The witness is cut off from both sites: a keeps writing (b's etcd confirms it), b does
#     not promote.
#  2. The sites are cut off from each other, both reach the witness: a keeps writing (the
#     witness confirms it), b does not promote.
#  3. Site a is cut off from b and the witness: a's primary stops writes before its
#     confirmation runs out, and b promotes itself after it ran out; never two writable sites:
#     every write acknowledged by a comes before the first one acknowledged by b, and none after.
#  4. Healed: a finds b promoted over it, becomes its standby cluster (rewinding, its divergent
#     transactions reported), and takes no write; the witness names b.
#  5. A planned `site switchover` back to a works in automatic mode (the witness and b's lease
#     key move to a).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_sites.sh"

TTL_W=4
export SITE_AUTOMATIC=1 SITE_WITNESS_TTL=$TTL_W
sites_setup
start_site_etcd w
sites_start
witness_key() {
    ETCDCTL_API=3 nsexec 0 etcdctl --endpoints "$(site_url w)" get --print-value-only \
        /service/pgvigil-sites/site-a+site-b/primary_site 2>/dev/null | jq -r '.site // empty'
}
peer_lease_in() { site_etcdctl "$1" get --print-value-only "/service/${SITE_SCOPE[$1]}/pgvigil_peer_lease" | jq -r '.site // empty'; }
wait_until 20 "the witness names site-a" eval '[ "$(witness_key)" = site-a ]'
wait_until 20 "site b's etcd holds site a's lease key" eval '[ "$(peer_lease_in b)" = site-a ]'
grep -q "site witness: site-a holds the primary role" "$T_DIR/node1.log" || fail "node1 never said it holds the primary role"
psql_n 1 -c "create table dr_w(id int primary key)"
wait_until 30 "site b has dr_w" psql_n 3 -c "select 1 from dr_w limit 1"
declare -A INODE
for n in 1 2 3 4; do INODE[$n]=$(stat -c %i "$T_DIR/node$n/data"); done

SITE_WRITER_NODES="1 2" SITE_WRITER_BASE=0 start_site_writer "$T_DIR/acks-a"
SITE_WRITER_NODES="3 4" SITE_WRITER_BASE=1000000 start_site_writer "$T_DIR/acks-b"
acks() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
wait_until 20 "site a takes writes" eval '[ "$(acks "$T_DIR/acks-a")" -gt 5 ]'

# site a is still writing: an acknowledged write in the last 2 s, and site b still a standby
# cluster whose leader is a standby leader
a_writes_now() { local last; last=$(tail -1 "$T_DIR/acks-a" | cut -d' ' -f1); [ $(($(date +%s%3N) - last)) -lt 2000 ]; }
b_still_standby() {
    [ -n "$(site_config b | jq -r '.standby_cluster.host // empty')" ] || fail "site b promoted: $(site_config b)"
    [ "$(acks "$T_DIR/acks-b")" = 0 ] || fail "site b took writes: $(head -2 "$T_DIR/acks-b")"
}
# hold a state for 3 witness TTLs, checking it all along (the thing checked is that nothing changes)
hold_for() {
    local until=$(($(date +%s) + 3 * TTL_W))
    while [ "$(date +%s)" -lt "$until" ]; do
        a_writes_now || fail "$1: site a stopped taking writes"
        b_still_standby
        sleep 0.5
    done
}

# ---- 1. the witness is cut off: b's etcd confirms a
netns_partition "13" "1 2 3 4"
hold_for "witness cut off"
netns_heal_all
log "1. witness cut off for $((3 * TTL_W)) s: site a kept writing, site b stayed a standby cluster"

# ---- 2. the sites are cut off from each other: the witness confirms a
netns_partition "1 2 11" "3 4 12"
hold_for "sites cut off from each other"
netns_heal_all
wait_until 20 "b's etcd holds site a's lease key again" eval '[ "$(peer_lease_in b)" = site-a ]'
log "2. sites cut off from each other for $((3 * TTL_W)) s: site a kept writing, site b stayed a standby cluster"

# ---- 3. site a is cut off from b and the witness
a_lead=$(site_leader a)
log_from=$(wc -c <"$T_DIR/$a_lead.log")
t_cut=$(date +%s%3N)
netns_partition "1 2 11" "3 4 12 13"
demoted_since_cut() { tail -c +"$((log_from + 1))" "$T_DIR/$a_lead.log" | grep -Eq "demote: neither the witness nor the other site confirms|fence: agent missed its heartbeat deadline"; }
wait_until 30 "$a_lead stops writes" demoted_since_cut
wait_until 60 "site b promoted itself" eval '[ "$(acks "$T_DIR/acks-b")" -gt 3 ]'
grep -q "site witness: site-b is the primary site now" "$T_DIR/node3.log" "$T_DIR/node4.log" ||
    fail "site b's leader did not say it promoted the site"
last_a=$(tail -1 "$T_DIR/acks-a" | cut -d' ' -f1)
first_b=$(head -1 "$T_DIR/acks-b" | cut -d' ' -f1)
[ "$last_a" -lt "$first_b" ] || fail "two writable sites: site a acknowledged a write at $last_a, after site b's first at $first_b"
log "MEASURE witness_failover a_last_write_after_cut_ms=$((last_a - t_cut)) b_first_write_after_cut_ms=$((first_b - t_cut)) no_write_ms=$((first_b - last_a))"

# ---- 4. healed: a becomes b's standby cluster, rewinds, and takes no write
n_a=$(acks "$T_DIR/acks-a")
netns_heal_all
t_heal=$(date +%s%3N)
wait_until 60 "site a is a standby cluster" eval '[ -n "$(site_config a | jq -r ".standby_cluster.host // empty")" ]'
wait_until 120 "site a's leader follows site b" eval 'site_role_is 1 "Standby Leader" || site_role_is 2 "Standby Leader"'
a_lead=$(site_leader a)
b_lead=$(site_leader b)
# replaying b's timeline: it has rows only site b took
has_b_rows() { [ "$(psql_n "$1" -c "select count(*) from dr_w where id > 1000000" 2>/dev/null)" -gt 0 ] 2>/dev/null; }
wait_until 120 "$a_lead replays site b's writes" has_b_rows "${a_lead#node}"
other_a=node1
[ "$a_lead" = node1 ] && other_a=node2
wait_until 120 "$other_a replays site b's writes" has_b_rows "${other_a#node}"
log "MEASURE witness_failback both_a_nodes_replay_b_ms=$(( $(date +%s%3N) - t_heal ))"
# pgvigil's own rewind did both: it says what it copied, and a fallback says "running pg_rewind"
for n in 1 2; do
    grep -q "pgvigil rewind: copied" "$T_DIR/node$n.log" || fail "node$n was not rewound by pgvigil rewind"
    ! grep -h "running pg_rewind\|rewind failed" "$T_DIR/node$n.log" || fail "node$n's rewind fell back (above)"
done
[ "$(acks "$T_DIR/acks-a")" = "$n_a" ] || fail "site a acknowledged writes after the heal: $(tail -2 "$T_DIR/acks-a")"
[ "$(witness_key)" = site-b ] || fail "the witness names $(witness_key), not site-b"
# what a acknowledged after b's last received write is listed before the rewind
grep -q "before pg_rewind: this data directory has what .* never had: .*public.dr_w" "$T_DIR/$a_lead.log" ||
    fail "$a_lead rewound without reporting the writes site b never had"
for n in 1 2 3 4; do
    [ "$(stat -c %i "$T_DIR/node$n/data")" = "${INODE[$n]}" ] || fail "node$n's data directory was rebuilt"
done
log "4. site a follows site b; no write acknowledged by a after the cut; no data directory rebuilt"

# ---- 5. a planned site switchover back to a, in automatic mode
wait_until 60 "the standby leader of a reaches its source" eval 'site_cli status --json | jq -e ".[] | select(.scope == \"site-a\") | .standby_cluster.source_reachable == true" >/dev/null'
t_switch=$(date +%s%3N)
site_cli switchover >"$T_DIR/switch.out" 2>&1 || fail "site switchover back to a: $(cat "$T_DIR/switch.out")"
cat "$T_DIR/switch.out"
wait_until 30 "the witness names site-a again" eval '[ "$(witness_key)" = site-a ]'
n_a=$(acks "$T_DIR/acks-a")
wait_until 30 "site a takes writes again" eval '[ "$(acks "$T_DIR/acks-a")" -gt "$n_a" ]'
touch "$T_DIR/acks-a.stop" "$T_DIR/acks-b.stop"
# every write site a acknowledged after the cut came before site b's first (until the switch back)
[ "$(awk -v b="$first_b" -v s="$t_switch" '$1 >= b && $1 < s' "$T_DIR/acks-a" | wc -l)" = 0 ] ||
    fail "two writable sites: site a acknowledged writes after site b's first, before the switch back"
log "PASS: automatic site failover with a witness, never two writable sites, switchover back"
