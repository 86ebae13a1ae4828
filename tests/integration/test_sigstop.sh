#!/bin/bash
# SIGSTOP of the leader's agent only (its postgres keeps running): the fencing process stops the
# postmaster before the lease can expire, a replica is elected and accepts writes, and at no
# sampled moment do two nodes accept writes. After SIGCONT the old agent never serves writes:
# it rewinds and ends up streaming from the new leader.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_probe.sh"

start_cluster 3
l=$(leader); ln=$(node_of "$l")
[ -n "$ln" ] || fail "no leader after start"
psql_n "$ln" -c "create table t(id int primary key); insert into t select generate_series(1, 100)" || fail "initial write"
probe_table_init "$ln" "1 2 3"
for n in 1 2 3; do
    [ "$n" = "$ln" ] && continue
    wait_until 30 "node$n caught up" bash -c "[ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[$n]} -U postgres -Atc 'select count(*) from t' 2>/dev/null)\" = 100 ]"
done

S="$T_DIR/samples"
W="$T_DIR/leader_watch"
start_leader_watch "$W"
start_sampler "$S" 1 2 3
wrote_on() { [ -n "$(sampler_last_ok "$S" "$1")" ]; }
wait_until 30 "the sampler sees leader $l accept a write before SIGSTOP" wrote_on "$ln"

stop_ms=$(now_ms)
kill -STOP "${AGENT_PID[$ln]}" || fail "cannot SIGSTOP the agent of $l"
log "SIGSTOP agent of $l (pid ${AGENT_PID[$ln]}), postgres left running"

# the fence stops the postmaster: wait for that state. Whether it came in time is checked below
# against the lease's expiry (etcd deleting the leader key), not against a number of seconds.
no_write_on() { ! probe_write "$1"; }
wait_until $((T_TTL * 4 + 30)) "$l stops accepting writes with its agent stopped" no_write_on "$ln"
fenced_ms=$(now_ms)
log "$l stopped accepting writes (seen $((fenced_ms - stop_ms)) ms after SIGSTOP)"

# a new leader is elected and accepts writes
new_leader() { local x; x=$(leader); [ -n "$x" ] && [ "$x" != "$l" ] && probe_write "$(node_of "$x")"; }
wait_until $((T_TTL * 4 + 40)) "a new leader that accepts writes" new_leader
nl_name=$(leader); nl=$(node_of "$nl_name")
elected_ms=$(now_ms)
log "new leader $nl_name accepts writes $((elected_ms - stop_ms)) ms after SIGSTOP"
probe_write "$ln" && fail "$l accepts writes while its agent is stopped and $nl_name leads"
[ "$(psql_n "$nl" -c 'select count(*) from t')" = 100 ] || fail "rows lost on the new leader"

# the old agent resumes: never writable again, rewinds, streams from the new leader
sleep 1
cont_ms=$(now_ms)
kill -CONT "${AGENT_PID[$ln]}"
log "SIGCONT agent of $l"
wait_until 120 "$l streaming from $nl_name" streams_from "$ln" "$nl"
rejoin_ms=$(now_ms)
log "$l streams from $nl_name $((rejoin_ms - cont_ms)) ms after SIGCONT"
is_replica "$ln" || fail "$l is not a replica after rejoining"
probe_write "$ln" && fail "rejoined $l accepted a write"
[ "$(leader)" = "$nl_name" ] || fail "leadership moved again after $l rejoined (leader: $(leader))"
other=""
for n in 1 2 3; do [ "$n" != "$ln" ] && [ "$n" != "$nl" ] && other=$n; done
wait_until 60 "node$other streaming from $nl_name" streams_from "$other" "$nl"
sleep 1
stop_bg "$S" "$SAMPLER_PID"

# the old primary's data must have gone through pg_rewind (or a rebuild), never served as is
grep -qE "pg_rewind from|cloning from" "$T_DIR/$l.log" || fail "$l rejoined without pg_rewind or a rebuild"
grep -q "fence: agent missed its heartbeat deadline" "$T_DIR/$l.log" || fail "the fence of $l did not log its action"

# safety over every sampled moment
dbl=$(sampler_double_primaries "$S")
[ -z "$dbl" ] || fail "two nodes accepted writes in the same sample round:
$dbl"
# the fence came before the lease could expire: no write acknowledged by $l in a sample round
# that started after etcd deleted the leader key (the lease's expiry, as seen by the watch)
expired_ms=$(leader_deleted_after "$W" "$stop_ms")
[ -n "$expired_ms" ] || fail "the leader key of $l was never deleted (lease expiry) after SIGSTOP: $(cat "$W")"
late=$(sampler_ok_from "$S" "$ln" "$expired_ms")
[ -z "$late" ] || fail "$l acknowledged writes after its lease expired (+$((expired_ms - stop_ms)) ms), rounds:
$late"
old_last=$(sampler_last_ok "$S" "$ln")
[ -n "$old_last" ] || fail "the sampler saw no write on $l"
new_first=$(sampler_first_ok_after "$S" "$nl" "$stop_ms")
[ -n "$new_first" ] || fail "the sampler never saw $nl_name accept a write"
[ "$old_last" -lt "$new_first" ] || fail "the last write on $l (+$((old_last - stop_ms)) ms) did not end before the first on $nl_name (+$((new_first - stop_ms)) ms)"
rounds=$(wc -l <"$S")
log "sample rounds: $rounds; last write on $l ended +$((old_last - stop_ms)) ms, lease expired +$((expired_ms - stop_ms)) ms, first write on $nl_name started +$((new_first - stop_ms)) ms after SIGSTOP (no-writer gap $((new_first - old_last)) ms)"
echo "MEASURE sigstop: fenced_after_ms=$((fenced_ms - stop_ms)) old_last_write_ms=$((old_last - stop_ms)) lease_expired_ms=$((expired_ms - stop_ms)) new_first_write_ms=$((new_first - stop_ms)) gap_ms=$((new_first - old_last)) rejoin_after_cont_ms=$((rejoin_ms - cont_ms)) rounds=$rounds"
echo "PASS [$T_NAME]"
