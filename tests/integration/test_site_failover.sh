#!/bin/bash
# Site failover and failback without a rebuild. Site a (nodes 1 2) is the primary site, site b
# (nodes 3 4) its standby cluster, each with its own etcd in its own network namespace.
#  1. A partition cuts site a off from site b; a keeps taking writes that b never gets.
#     `site promote` is refused while a's etcd answers and a runs a primary, whatever the flags.
#  2. Site a is lost: its agents, servers and etcd are killed. `site promote` without
#     --old-site-fenced is refused (a cannot be checked); with it, b's standby leader is
#     promoted and b takes writes.
#  3. Site a comes back by itself (etcd, then its agents, which have site.peer), first still cut
#     off from site b: it takes no primary role. Once healed, the agents read
#     b's record (promoted over a, newer epoch) and make a a standby cluster of b; a monitor sees
#     no server of a take writes meanwhile. (`site rejoin` then finds nothing to do.) Its
#     leader finds it cannot stream from b (the timelines diverged), keeps the
#     WAL past the fork and a report listing the transactions b never had (their xids, the
#     table they touched), rewinds from b and follows it; node2 rewinds from node1 and
#     cascades. No data directory is rebuilt (each is the same directory), nothing is cloned; a's
#     servers end with exactly b's rows.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_sites.sh"

sites_setup
sites_start
psql_n 1 -c "create table orders(id int primary key, site text)" -c "insert into orders select g, 'a' from generate_series(1, 100) g"
row_count() { psql_n "$1" -c "select count(*) from orders" 2>/dev/null; }
rows_are() { [ "$(row_count "$1")" = "$2" ]; }
wait_until 30 "site b has the 100 rows" rows_are 4 100
# a rebuilt data directory is a new directory (pg_rewind keeps it and writes into its files)
declare -A INODE
for n in 1 2 3 4; do INODE[$n]=$(stat -c %i "$T_DIR/node$n/data"); done

# ---- 1. partition: a takes writes b never gets
netns_partition "1 2 11" "3 4 12"
psql_n 1 -c "insert into orders values (1001, 'a-only'), (1002, 'a-only')" -c "insert into orders values (1003, 'a-only')"
div_xids=$(psql_n 1 -c "select string_agg(xmin::text, ',' order by id) from orders where site = 'a-only'")
log "site a committed rows 1001-1003 (xids $div_xids) that site b never gets"
wait_until 30 "node2 has a's last rows" rows_are 2 103
sleep 2   # (checking that something does not happen: b must not get a's new rows)
[ "$(row_count 3)" = 100 ] || fail "site b got rows across the partition: $(row_count 3)"
out=$(site_cli_b promote --old-site-fenced 2>&1) && fail "site promote accepted while site a runs a primary: $out"
grep -q "site promote refused: site-a is reachable and its member node1 runs as a writable primary" <<<"$out" ||
    fail "unexpected answer: $out"
[ -n "$(site_config b | jq -r '.standby_cluster.host // empty')" ] || fail "the refused promote changed site b"

# ---- 2. site a is lost
t_lost=$(date +%s%3N)
netns_kill_all 1 2 11
etcd_a_gone() { ! nsexec 0 curl -sf -m 1 "$(site_url a)/health" >/dev/null; }
wait_until 10 "site a's etcd is gone" etcd_a_gone
# (the partition stays: WAL a's walsender had sent into its socket before it was killed is
# retransmitted by a's kernel until acknowledged; healed now, it could reach b before the promotion)
out=$(site_cli_b promote 2>&1) && fail "site promote accepted without --old-site-fenced while site a cannot be checked: $out"
grep -q "site promote refused: cannot reach site-a to check it is down" <<<"$out" || fail "unexpected answer: $out"
site_cli_b promote --old-site-fenced >"$T_DIR/promote.out" 2>&1 || fail "site promote: $(cat "$T_DIR/promote.out")"
cat "$T_DIR/promote.out"
t_promoted=$(date +%s%3N)
b_leader=$(site_leader b)
is_primary "${b_leader#node}" || fail "site b's leader $b_leader is not writable after site promote"
psql_n "${b_leader#node}" -c "insert into orders values (2001, 'b'), (2002, 'b')"
log "MEASURE site_failover lost_to_promoted_ms=$((t_promoted - t_lost)) (manual: includes the test's checks)"

# ---- 3. failback: site a comes back by itself (its agents have site.peer): they read b's
# record (promoted over a, newer epoch), make a a standby cluster of b, and never take writes
start_site_etcd a
W_VIOL="$T_DIR/a-writable"
(
    while [ ! -e "$T_DIR/monitor.stop" ]; do
        for n in 1 2; do
            [ "$(psql_n "$n" -c 'select pg_is_in_recovery()' 2>/dev/null)" = f ] && echo "$(date +%T.%N) node$n" >>"$W_VIOL"
        done
        sleep 0.1
    done
) &
BG_PIDS+=("$!")
# first still cut off from site b: a site back from an outage that cannot read the other site
# takes no primary role (it may have been superseded)
netns_partition "1 2 11" "3 4 12"
start_agent 1
start_agent 2
wait_until 30 "node1 says it cannot read site b" grep -q "site: cannot read the other site site-b" "$T_DIR/node1.log"
sleep 5   # (checking that something does not happen: the monitor above sees no writable server)
[ ! -s "$W_VIOL" ] || fail "site a took writes while it could not read site b: $(head -3 "$W_VIOL")"
grep -q "not taking the primary role .* before the other site was read" "$T_DIR/node1.log" "$T_DIR/node2.log" ||
    fail "no agent of site a held back from the primary role"
netns_heal_all
a_standby_leader() { site_role_is 1 "Standby Leader" || site_role_is 2 "Standby Leader"; }
wait_until 120 "site a has a standby leader" a_standby_leader
grep -h "was promoted while this site was away" "$T_DIR"/node1.log "$T_DIR"/node2.log | head -1 ||
    fail "no agent of site a said it became b's standby cluster"
site_cli rejoin >"$T_DIR/rejoin.out" 2>&1 || fail "site rejoin: $(cat "$T_DIR/rejoin.out")"
grep -q "site-a is already a standby cluster of site-b" "$T_DIR/rejoin.out" || fail "site rejoin: $(cat "$T_DIR/rejoin.out")"
late_ids_are() { [ "$(psql_n "$1" -c "select string_agg(id::text, ',' order by id) from orders where id > 1000" 2>/dev/null)" = "$2" ]; }
wait_until 180 "node1 has b's rows and not its own" late_ids_are 1 2001,2002
wait_until 120 "node2 has b's rows too" late_ids_are 2 2001,2002
touch "$T_DIR/monitor.stop"
[ ! -s "$W_VIOL" ] || fail "site a took writes after coming back while b was the primary site: $(head -3 "$W_VIOL")"
sl=$(site_leader a)
grep -h "before pg_rewind: this data directory has what" "$T_DIR/$sl.log" || fail "no divergence report in $sl's log"
report=$(ls "$T_DIR/$sl"/pgvigil-divergence-*/report.json 2>/dev/null | head -1)
[ -f "$report" ] || fail "no divergence report file beside $sl's server log"
jq . "$report" | head -40
for x in ${div_xids//,/ }; do
    jq -e --argjson x "$x" '.transactions | map(.xid) | index($x) != null' "$report" >/dev/null ||
        fail "the divergence report does not list xid $x: $(cat "$report")"
done
jq -e '.relations | map(.name) | any(test("public.orders"))' "$report" >/dev/null ||
    fail "the divergence report does not name public.orders"
ls "$(dirname "$report")"/0000000* >/dev/null 2>&1 || fail "the divergent WAL was not kept beside the report"
summary=$(site_etcdctl a get --print-value-only /service/site-a/pgvigil_divergence)
grep -q "committed transaction" <<<"$summary" || fail "no divergence summary in site a's etcd: $summary"
for n in 1 2; do
    [ "$(stat -c %i "$T_DIR/node$n/data")" = "${INODE[$n]}" ] || fail "node$n's data directory was rebuilt"
    [ "$(grep -c "with pg_basebackup" "$T_DIR/node$n.log")" -le 1 ] || fail "node$n was cloned again"
done
psql_n "${b_leader#node}" -c "insert into orders values (2003, 'b')"
wait_until 30 "a new row on b reaches site a" late_ids_are 2 2001,2002,2003
log "site failover and failback by rewind: ok"
echo "PASS [$T_NAME]"
