#!/bin/bash
# The group's DDL lock (pgvigil_aa.agent_url, written by the agent; aa/ddl_lock in etcd): two
# nodes a and b run by agents.
#  - concurrent DDL on both nodes: a adds column x in a transaction that stays open, b adds y
#    meanwhile; b's statement waits for the lock and for a's DDL to be applied, so both nodes
#    end with the columns in one order (id, x, y);
#  - the check's self-test: the same race with the lock turned off (pgvigil_aa.agent_url empty
#    by ALTER SYSTEM) leaves the two nodes with their columns in different orders;
#  - a holder whose backend is terminated releases the lock as it aborts, and one killed with -9
#    (the server restarts) is found gone by the agent, which releases it: b's DDL goes on;
#  - a lock that cannot be had within pgvigil_aa.ddl_lock_timeout: a clear error naming the
#    holder, and the statement does not run.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_aa_agents.sh"

NODES=(a b)
declare -A NUM=([a]=1 [b]=2) LOC=()
AA_SCHEMA="create table t (id int primary key)"
aa_agents_up
agent_url_set() { [ -n "$(qn "$1" -c "show pgvigil_aa.agent_url")" ]; }
for n in a b; do wait_until 30 "node $n knows its agent (pgvigil_aa.agent_url)" agent_url_set "$n"; done
running() { [ "$(qn "$1" -c "select count(*) from pgvigil_aa.status() where pid is not null")" = 1 ]; }
for n in a b; do wait_until 30 "node $n applies from its peer" running "$n"; done

cols() { qn "$1" -c "select string_agg(attname, ',' order by attnum) from pg_attribute where attrelid = 't'::regclass and attnum > 0 and not attisdropped"; }
# the check: both nodes hold the columns in, and in the order, wanted
same_columns() {
    local ca cb
    ca=$(cols a) && cb=$(cols b) || return 2
    [ "$ca" = "$1" ] && [ "$cb" = "$1" ] || { echo "a: $ca / b: $cb (want $1)"; return 1; }
}
ddl_holder() { aa_leader_json | jq -r '.ddl_lock.node // ""'; }
# (on a timeout, wait_until shows what the group looked like)
holder_is() {
    local j
    j=$(aa_leader_json) || return 2
    [ "$(jq -r '.ddl_lock.node // ""' <<<"$j")" = "$1" ] || { echo "$j"; return 1; }
}
# race N1 COL1 N2 COL2: N1 adds COL1 in a transaction held open 3 s; once it runs, N2 adds COL2
race() {
    local n1="$1" c1="$2" n2="$3" c2="$4" locked="$5"
    qn "$n1" -c "begin" -c "alter table t add column $c1 int" -c "select pg_sleep(3)" -c "commit" >"$T_DIR/race.out" 2>&1 &
    local p=$!
    EXTRA_PIDS+=("$p")
    if [ "$locked" = 1 ]; then
        wait_until 20 "$n1 holds the DDL lock" holder_is "$n1"
    else
        in_ddl() { [ "$(qn "$n1" -c "select count(*) from pg_stat_activity where query = 'select pg_sleep(3)' and state = 'active'")" = 1 ]; }
        wait_until 20 "$n1's transaction is open" in_ddl
    fi
    qn "$n2" -c "alter table t add column $c2 int" || fail "$n2: alter table t add column $c2 failed"
    wait "$p" || fail "$n1's DDL failed: $(cat "$T_DIR/race.out")"
}
t0=$(date +%s%N)
race a x b y 1
t1=$(date +%s%N)
wait_until 30 "a and b hold t's columns in one order" same_columns "id,x,y"
[ -z "$(ddl_holder)" ] || fail "the DDL lock is still held by $(ddl_holder)"
log "concurrent DDL on a and b serialized: columns id,x,y on both (b waited $(((t1 - t0) / 1000000)) ms in all)"

# two DDL transactions back to back in one session (the first one's release may still be on its
# way when the second asks), then b's: one order everywhere, the lock free at the end
qn a -c "alter table t add column m1 int" -c "alter table t add column m2 int" || fail "a: two DDL in a row"
qn b -c "alter table t add column m3 int" || fail "b: DDL after a's two"
wait_until 30 "a and b hold t's columns in one order" same_columns "id,x,y,m1,m2,m3"
lock_free() { [ -z "$(ddl_holder)" ]; }
wait_until 10 "the DDL lock is free" lock_free
log "two DDL transactions in one session, then one on b: id,x,y,m1,m2,m3 on both"

# self-test: the same race without the lock leaves different orders
for n in a b; do qn "$n" -c "alter system set pgvigil_aa.agent_url = ''" -c "select pg_reload_conf()" >/dev/null; done
url_empty() { [ -z "$(qn "$1" -c "show pgvigil_aa.agent_url")" ]; }
for n in a b; do wait_until 20 "node $n runs without the lock" url_empty "$n"; done
race a p b q 0
both_have() { [ "$(cols a | tr ',' '\n' | grep -c '^[pq]$')" = 2 ] && [ "$(cols b | tr ',' '\n' | grep -c '^[pq]$')" = 2 ]; }
wait_until 30 "both nodes have p and q" both_have
same_columns "id,x,y,m1,m2,m3,p,q" >/dev/null && fail "self-test: without the lock the orders agree ($(cols a)); the race did not happen"
log "self-test: without the lock, a has $(cols a) and b has $(cols b): the check fails"
for n in a b; do qn "$n" -c "alter system reset pgvigil_aa.agent_url" -c "select pg_reload_conf()" >/dev/null; done
for n in a b; do wait_until 20 "node $n uses the lock again" agent_url_set "$n"; done

# a holder terminated: released, and b's DDL goes on
qn a -c "begin" -c "alter table t add column z int" -c "select pg_sleep(60)" >/dev/null 2>&1 &
HOLDER=$!
EXTRA_PIDS+=("$HOLDER")
wait_until 20 "a holds the DDL lock" holder_is a
pid=$(aa_leader_json | jq -r '.ddl_lock.pid')
qn a -c "select pg_terminate_backend($pid)" >/dev/null
wait "$HOLDER" 2>/dev/null
qn b -c "alter table t add column w int" || fail "b's DDL after a's holder was terminated"
[ "$(cols b | tr ',' '\n' | grep -c '^z$')" = 0 ] || fail "the terminated transaction's column reached b"
log "a holder terminated: its abort released the lock, b's DDL ran"
# a holder killed -9 (the server restarts): the agent finds it gone and releases the lock
qn a -c "begin" -c "alter table t add column z2 int" -c "select pg_sleep(60)" >/dev/null 2>&1 &
HOLDER=$!
EXTRA_PIDS+=("$HOLDER")
wait_until 20 "a holds the DDL lock" holder_is a
pid=$(aa_leader_json | jq -r '.ddl_lock.pid')
kill -9 "$pid"
wait "$HOLDER" 2>/dev/null
wait_until 60 "a runs again after its backend's crash" is_primary 1
released() { grep -q "held the group's DDL lock and is gone; released" "$T_DIR/node1.log"; }
wait_until 30 "a's agent releases the lock of the killed backend" released
qn b -c "alter table t add column w2 int" || fail "b's DDL after a's holder was killed"
log "a holder killed -9: a's agent released the lock (after a mark in a's stream), b's DDL ran"

# a lock not had in time: a clear error, and nothing ran
qn a -c "begin" -c "alter table t add column v int" -c "select pg_sleep(4)" -c "commit" >/dev/null 2>&1 &
HOLDER=$!
EXTRA_PIDS+=("$HOLDER")
wait_until 20 "a holds the DDL lock" holder_is a
out=$(qn b -c "set pgvigil_aa.ddl_lock_timeout = 300" -c "alter table t add column u int" 2>&1) &&
    fail "b's DDL ran while a held the lock: $out"
grep -q "cannot take the group's DDL lock: not had within 300 ms: node a holds it" <<<"$out" || fail "unexpected error: $out"
[ "$(cols b | tr ',' '\n' | grep -c '^u$')" = 0 ] || fail "the refused statement ran on b"
wait "$HOLDER" || fail "a's DDL failed"
log "a lock not had within the timeout: $out"
echo "PASS [$T_NAME]"
