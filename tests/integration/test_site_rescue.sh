#!/bin/bash
# Delayed standby rescue. Site b (nodes 3 4) is a standby cluster of site a whose standby leader
# applies WAL an hour late (standby_cluster.recovery_min_apply_delay: 1h). After rows are
# written on a, then deleted by mistake, `pgvigil rescue node3 --target-time T` (T between the
# two) opens node3 as it was at T without applying the backlog: it is promoted, detached
# (role Rescued in list, no standby leader key: node4 takes it and follows a), and has the rows.
# `pgvigil reinit node3` makes it a replica again. Refused: a rescue of a member of the primary
# site, and of a standby that already replayed past T (node4, which has no delay).
# Then the whole DR site: after another mistake on a (a table dropped), `pgvigil site promote
# --target-time T2` demotes the running site a, opens node4 (the delayed standby leader now) at
# T2 as site b's primary, and a rejoins by rewind, its divergence report naming what it had
# after T2 (the drop); node3, which applied the drop, is rewound too. Refused first: a target
# node4 applied already, and a target time that is not a timestamp.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_sites.sh"
export PGVIGIL_TEST_PROMOTE_AT_STOP="$T_DIR/promote-at-stop"   # (the agents' test hook: see below)

sites_setup
# (site a busy while node3 copies it: the copy holds commits that node3, delayed, would otherwise
# wait an hour to replay before it receives anything)
SITES_BUSY_A=1 SITE_B_STANDBY_EXTRA="      recovery_min_apply_delay: 1h" sites_start
grep -q "create replica: streaming from the source: taking the apply delay (1h)" "$T_DIR/node3.log" ||
    fail "node3's copy did not stream before it took its apply delay"
psql_n 1 -c "create table precious(id int primary key)" -c "insert into precious select generate_series(1, 10)"
sleep 1.5   # (a target time strictly between the rows and the mistake)
T=$(psql_n 1 -c "select now()")
sleep 1.5
psql_n 1 -c "delete from precious"
wait_until 30 "node4 (no delay) has applied the delete" bash -c \
    "[ \"\$(PGPASSWORD=it-super nsenter -F --net=/run/netns/$(netns_name 4) psql -X -At -h ${NODE_IP[4]} -U postgres -c 'select count(*) from precious' 2>/dev/null)\" = 0 ]"
[ "$(psql_n 3 -c "select count(*) from pg_class where relname = 'precious'")" = 0 ] ||
    fail "node3 applied WAL despite its delay"

# ---- refusals
out=$(sitectl a rescue node1 --target-time "$T" 2>&1) && fail "rescue of a primary-site member accepted: $out"
grep -q "only a running member of a standby cluster" <<<"$out" || fail "unexpected answer: $out"
sitectl b rescue node4 --target-time "$T" >"$T_DIR/r4.out" 2>&1 || fail "rescue node4: $(cat "$T_DIR/r4.out")"
wait_until 20 "node4's agent refuses: it replayed past T" grep -q "rescue to .* refused: this standby already replayed past that time" "$T_DIR/node4.log"
is_replica 4 || fail "node4 left recovery after a refused rescue"

# ---- the rescue
sitectl b rescue node3 --target-time "$T" | tee "$T_DIR/r3.out" || fail "rescue node3"
wait_until 90 "node3 is opened" is_primary 3
[ "$(psql_n 3 -c "select count(*) from precious")" = 10 ] || fail "node3 does not have the rows of before the mistake"
wait_until 30 "node3 is listed as Rescued" site_role_is 3 Rescued
wait_until 60 "node4 is site b's standby leader" site_role_is 4 "Standby Leader"
wait_until 60 "node4 streams from site a" streams_from 4 1
[ "$(site_leader b)" = node4 ] || fail "site b's leader is $(site_leader b)"
psql_n 1 -c "insert into precious values (100)"
lsn=$(psql_n 1 -c "select pg_current_wal_lsn()")
# (node4, the new standby leader, applies an hour late too: what it receives is what counts)
received4() { [ "$(psql_n 4 -c "select pg_last_wal_receive_lsn() >= '$lsn'" 2>/dev/null)" = t ]; }
wait_until 30 "site b goes on receiving site a's WAL" received4
sleep 3   # (checking something does not happen: node3's agent leaves it open)
is_primary 3 || fail "node3's agent did not leave the rescued server open"
[ "$(psql_n 3 -c "select count(*) from precious")" = 10 ] || fail "the rescued server changed"

# ---- back to a replica
sitectl b reinit node3 --force >"$T_DIR/reinit.out" 2>&1 || fail "reinit: $(cat "$T_DIR/reinit.out")"
wait_until 120 "node3 is a replica of node4 again" streams_from 3 4
wait_until 30 "node3 is listed as a replica" site_role_is 3 Replica

# ---- the whole DR site opened at a time before a mistake on a
psql_n 1 -c "create table ledger(id int primary key)" -c "insert into ledger select generate_series(1, 5)"
sleep 1.5
T2=$(psql_n 1 -c "select now()")
sleep 1.5
psql_n 1 -c "drop table ledger" -c "insert into precious values (200)"
lsn=$(psql_n 1 -c "select pg_current_wal_lsn()")
wait_until 30 "site b received the drop" received4
out=$(site_cli_b promote --target-time "$T" 2>&1) && fail "site promote to a time node4 applied already accepted: $out"
grep -q "already applied commits at or after that time" <<<"$out" || fail "unexpected answer: $out"
for bad in "now'; drop table precious; --" today; do
    out=$(site_cli_b promote --target-time "$bad" 2>&1) && fail "a target that is not a timestamp accepted: $bad"
    grep -q "is not a timestamp" <<<"$out" || fail "unexpected answer: $out"
done
is_primary 1 || fail "a refused site promote demoted site a"
# node4's agent is killed in the middle (postgres stopped for the promotion, the marker written):
# started again, it finishes the promotion at T2, never a plain start
touch "$T_DIR/promote-at-stop"
site_cli_b promote --target-time "$T2" --timeout 90 >"$T_DIR/site-rescue.out" 2>&1 &
cli_pid=$!
BG_PIDS+=("$cli_pid")
wait_until 60 "node4 stopped postgres for its promotion at T2" grep -q "test hook: promote at a time: stopped" "$T_DIR/node4.log"
[ -f "$T_DIR/node4/data/pgvigil.promote_at" ] || fail "no promotion marker in node4's data directory"
kill -9 "${AGENT_PID[4]}"
wait "${AGENT_PID[4]}" 2>/dev/null
rm -f "$T_DIR/promote-at-stop"
start_agent 4
wait "$cli_pid" || fail "site promote --target-time: $(cat "$T_DIR/site-rescue.out")"
cat "$T_DIR/site-rescue.out"
grep -q "resuming an interrupted promotion" "$T_DIR/node4.log" || fail "node4's agent did not resume the promotion"
[ ! -f "$T_DIR/node4/data/pgvigil.promote_at" ] || fail "the promotion marker is still there"
wait_until 60 "node4 is site b's primary" is_primary 4
[ "$(psql_n 4 -c "select count(*) from ledger")" = 5 ] || fail "node4 was not opened before the drop"
[ "$(psql_n 4 -c "select count(*) from precious where id = 200")" = 0 ] || fail "node4 has a write of after T2"
# (node1 connects to node4 at once; what counts is that it rewinds, reporting the drop, then follows)
wait_until 120 "node1 reports what it had after T2 before rewinding" \
    grep -q "before pg_rewind: this data directory has what" "$T_DIR/node1.log"
grep -h "before pg_rewind: this data directory has what" "$T_DIR/node1.log"
wait_until 120 "site a rejoins: node1 streams from node4" streams_from 1 4
wait_until 120 "node3 follows node4 (rewound past the drop)" streams_from 3 4
[ "$(psql_n 3 -c "select count(*) from ledger")" = 5 ] || fail "node3 does not have the table opened at T2"
psql_n 4 -c "insert into precious values (300)"
lsn=$(psql_n 4 -c "select pg_current_wal_lsn()")
# (site a, a standby cluster now, takes site b's delay: what it receives is what counts)
received1() { [ "$(psql_n 1 -c "select pg_last_wal_receive_lsn() >= '$lsn'" 2>/dev/null)" = t ]; }
wait_until 30 "node1 receives site b's new write" received1
echo "PASS [$T_NAME]"
