#!/bin/bash
# etcd goes away (stopped, then in a second phase frozen by SIGSTOP): the primary stops accepting writes before its lease could expire, the
# replicas stay read-only, nobody accepts writes while etcd is down. etcd comes back (same data
# directory and ports): exactly one writable primary, the others streaming, no data lost.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_probe.sh"

start_cluster 3
l=$(leader); ln=$(node_of "$l")
[ -n "$ln" ] || fail "no leader after start"
psql_n "$ln" -c "create table t(id int primary key); insert into t select generate_series(1, 1000)" || fail "initial write"
probe_table_init "$ln" "1 2 3"
rows_on() { [ "$(psql_n "$1" -c 'select count(*) from t' 2>/dev/null)" = "$2" ]; }
for n in 1 2 3; do wait_until 30 "node$n has the 1000 rows" rows_on "$n" 1000; done

# The primary must stop writes before its lease can expire. Its last renewal reached etcd
# before etcd went away, so the lease ends at the latest one TTL after that moment: no write
# may be acknowledged by it in a sample round that starts later (limit_ms). This bound is
# the rule itself, not a speed limit; it is listed in the README. (With etcd down there is no
# expiry event to watch, as test_sigstop.sh does.)
no_write_on() { ! probe_write "$1"; }
wrote_on() { [ -n "$(sampler_last_ok "$S" "$1")" ]; }
S="$T_DIR/samples"
start_sampler "$S" 1 2 3
wait_until 30 "the sampler sees leader $l accept a write before the outage" wrote_on "$ln"

stop_ms=$(now_ms)
stop_etcd
log "etcd stopped"
limit_ms=$((stop_ms + T_TTL * 1000))   # the latest moment the lease of $l can end

wait_until $((T_TTL * 4 + 30)) "$l stops accepting writes while etcd is down" no_write_on "$ln"
nowrite_ms=$(now_ms)
log "$l stopped accepting writes (seen $((nowrite_ms - stop_ms)) ms after etcd stopped)"

# the outage lasts two lease TTLs past the lease's end (the length of the fault, not a check):
# nobody writable, replicas stay read-only replicas
sleep_until_ms $((limit_ms + T_TTL * 2000))
late=$(sampler_ok_from "$S" "$ln" "$limit_ms")
[ -z "$late" ] || fail "$l acknowledged writes after its lease could have expired (etcd stopped + ttl ${T_TTL} s), rounds:
$late"
for n in 1 2 3; do
    [ "$n" = "$ln" ] && continue
    is_replica "$n" || fail "replica node$n is not running read-only during the outage"
done
probe_write "$ln" && fail "$l accepts writes again while etcd is down"
restart_ms=$(now_ms)
start_etcd
log "etcd started again"

# recovery: one writable primary, the others streaming from it
wait_until 180 "cluster healthy after etcd came back" cluster_healthy "1 2 3"
recovered_ms=$(now_ms)
nl_name=$(leader); nl=$(node_of "$nl_name")
wait_until 30 "the leader $nl_name accepts writes" probe_write "$nl"
writable_ms=$(now_ms)
log "leader after the outage: $nl_name, healthy $((recovered_ms - restart_ms)) ms after etcd restart"
for n in 1 2 3; do
    [ "$n" = "$nl" ] && continue
    is_replica "$n" || fail "node$n is not a replica after recovery"
    streams_from "$n" "$nl" || wait_until 60 "node$n streaming from $nl_name" streams_from "$n" "$nl"
    probe_write "$n" && fail "node$n accepts writes beside leader $nl_name"
done
# no data written before the outage is lost
for n in 1 2 3; do wait_until 30 "node$n still has the 1000 rows" rows_on "$n" 1000; done
sleep 1
stop_bg "$S" "$SAMPLER_PID"

dbl=$(sampler_double_primaries "$S")
[ -z "$dbl" ] || fail "two nodes accepted writes in the same sample round:
$dbl"
# no node acknowledged a write between the primary stopping writes and etcd coming back
# only rounds wholly inside (limit, restart): one straddling the restart may see a promotion made after it
late=$(awk -v a="$limit_ms" -v b="$restart_ms" '$1 > a && $2 < b && NF > 2' "$S")
[ -z "$late" ] || fail "a node accepted writes while etcd was down:
$late"
for n in 1 2 3; do
    [ "$n" = "$ln" ] && continue
    bad=$(awk -v n="$n" -v a="$stop_ms" -v b="$restart_ms" '$1 >= a && $1 < b {for (i = 3; i <= NF; i++) if ($i == n) print}' "$S")
    [ -z "$bad" ] || fail "replica node$n accepted a write during the outage"
done
grep -q "etcd unreachable" "$T_DIR/$l.log" || fail "$l did not log losing etcd"
echo "MEASURE etcd_outage: writes_stopped_ms=$((nowrite_ms - stop_ms)) healthy_after_restart_ms=$((recovered_ms - restart_ms)) writable_after_restart_ms=$((writable_ms - restart_ms)) new_leader=$nl_name old_leader=$l rounds=$(wc -l <"$S")"

# ---- phase 2: etcd frozen (SIGSTOP) instead of gone: every call times out instead of being
# refused, like a network partition. Same strict rule; when etcd resumes its leases have run out.
l=$nl_name; ln=$nl
S="$T_DIR/samples2"
start_sampler "$S" 1 2 3
wait_until 30 "the sampler sees leader $l accept a write before etcd froze" wrote_on "$ln"
stop_ms=$(now_ms)
kill -STOP "$ETCD_PID"
log "etcd frozen (SIGSTOP)"
limit_ms=$((stop_ms + T_TTL * 1000))
wait_until $((T_TTL * 4 + 30)) "$l stops accepting writes while etcd is frozen" no_write_on "$ln"
nowrite2_ms=$(now_ms)
log "$l stopped accepting writes (seen $((nowrite2_ms - stop_ms)) ms after etcd froze)"
sleep_until_ms $((limit_ms + T_TTL * 2000))
late=$(sampler_ok_from "$S" "$ln" "$limit_ms")
[ -z "$late" ] || fail "$l acknowledged writes after its lease could have expired (etcd frozen + ttl ${T_TTL} s), rounds:
$late"
restart_ms=$(now_ms)
kill -CONT "$ETCD_PID"
log "etcd resumed (SIGCONT)"
wait_until 180 "cluster healthy after etcd resumed" cluster_healthy "1 2 3"
nl_name=$(leader); nl=$(node_of "$nl_name")
wait_until 30 "the leader $nl_name accepts writes" probe_write "$nl"
recovered2_ms=$(now_ms)
for n in 1 2 3; do
    [ "$n" = "$nl" ] && continue
    wait_until 60 "node$n streaming from $nl_name" streams_from "$n" "$nl"
    probe_write "$n" && fail "node$n accepts writes beside leader $nl_name"
done
for n in 1 2 3; do wait_until 30 "node$n still has the 1000 rows" rows_on "$n" 1000; done
sleep 1
stop_bg "$S" "$SAMPLER_PID"
dbl=$(sampler_double_primaries "$S")
[ -z "$dbl" ] || fail "two nodes accepted writes in the same sample round (etcd frozen):
$dbl"
# only rounds wholly inside (limit, restart): one straddling the restart may see a promotion made after it
late=$(awk -v a="$limit_ms" -v b="$restart_ms" '$1 > a && $2 < b && NF > 2' "$S")
[ -z "$late" ] || fail "a node accepted writes while etcd was frozen:
$late"
echo "MEASURE etcd_frozen: writes_stopped_ms=$((nowrite2_ms - stop_ms)) writable_after_resume_ms=$((recovered2_ms - restart_ms)) leader_before=$l leader_after=$nl_name"
echo "PASS [$T_NAME]"
