#!/bin/bash
# A primary whose postgres answers the agent slowly is not fenced while its lease is renewed.
# The agent's own backend and the postmaster are frozen (SIGSTOP) for longer than the lease
# TTL: the agent's query and every reconnect time out, but its etcd lease is renewed all along.
# The fence must not stop that postgres, the leader must stay, and once thawed the agent sees
# postgres again. (Before the fix, the queries and reconnects of one tick added up to more
# than the gap between a renewal and the fence: a loaded primary was stopped by its own fence.)
source "$(dirname "$0")/lib.sh"

start_cluster 3
l=$(leader); ln=$(node_of "$l")
[ -n "$ln" ] || fail "no leader after start"
pm=$(postmaster_pid "$ln")
is_our_postmaster "$pm" || fail "no postmaster for $l"
# the backend serving the agent's cached connection (application_name pgvigil)
backend=""
agent_backend() {
    backend=$(psql_n "$ln" -c "select pid from pg_stat_activity where application_name = 'pgvigil' and pid <> pg_backend_pid() limit 1")
    [ -n "$backend" ]
}
wait_until 20 "the agent's connection to $l" agent_backend
started=$(psql_n "$ln" -c "select pg_postmaster_start_time()")

freeze_s=$((T_TTL + 3))
log "freezing the postmaster $pm and the agent's backend $backend of $l for ${freeze_s}s"
kill -STOP "$pm" "$backend" || fail "cannot SIGSTOP $pm $backend"
sleep "$freeze_s"
kill -CONT "$pm" "$backend"
log "thawed"

grep -q "fence: agent missed its heartbeat deadline" "$T_DIR/node$ln.log" &&
    fail "the fence stopped the postgres of $l while its agent renewed the lease"
[ "$(leader)" = "$l" ] || fail "leadership moved from $l to $(leader) although its lease was renewed"
# a tick reports itself as slow when it ends, which may be just after the thaw
wait_until 20 "a slow tick reported by the agent of $l" grep -q "slow tick" "$T_DIR/node$ln.log"
# postgres was not restarted, and the agent sees it again (a thawed postmaster answers again)
start_time_now() { psql_n "$ln" -c "select pg_postmaster_start_time()"; }
wait_until 20 "the postgres of $l answers after the thaw" start_time_now
[ "$(start_time_now)" = "$started" ] || fail "the postgres of $l was restarted"
wait_until 20 "cluster healthy" cluster_healthy "1 2 3"
psql_n "$ln" -c "create table after_freeze(id int)" || fail "no write on $l after the thaw"
log "slow postgres on $l: no fence, leader kept, $(grep -c 'slow tick' "$T_DIR/node$ln.log") slow ticks reported"
echo "PASS [$T_NAME]"
