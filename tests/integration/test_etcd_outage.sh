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

S="$T_DIR/samples"
start_sampler "$S" 1 2 3
sleep 1.5
[ -n "$(sampler_last_ok "$S" "$ln")" ] || fail "the sampler saw no write accepted by leader $l before the outage"

stop_ms=$(now_ms)
stop_etcd
log "etcd stopped"

# safety: writes on the primary fail within T_TTL + 2 s of the outage (strict)
limit_ms=$((stop_ms + (T_TTL + 2) * 1000))
while probe_write "$ln"; do
    [ "$(now_ms)" -gt "$limit_ms" ] && fail "$l still accepts writes $(( $(now_ms) - stop_ms )) ms after etcd stopped"
    sleep 0.1
done
nowrite_ms=$(now_ms)
log "$l stopped accepting writes $((nowrite_ms - stop_ms)) ms after etcd stopped"
[ "$nowrite_ms" -le "$limit_ms" ] || fail "$l stopped accepting writes only $((nowrite_ms - stop_ms)) ms after etcd stopped"

# the outage lasts two lease TTLs: nobody writable, replicas stay read-only replicas
sleep $((T_TTL * 2))
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
sleep 1.5
[ -n "$(sampler_last_ok "$S" "$ln")" ] || fail "the sampler saw no write accepted by leader $l before etcd froze"
stop_ms=$(now_ms)
kill -STOP "$ETCD_PID"
log "etcd frozen (SIGSTOP)"
limit_ms=$((stop_ms + (T_TTL + 2) * 1000))
while probe_write "$ln"; do
    [ "$(now_ms)" -gt "$limit_ms" ] && { kill -CONT "$ETCD_PID"; fail "$l still accepts writes $(( $(now_ms) - stop_ms )) ms after etcd froze"; }
    sleep 0.1
done
nowrite2_ms=$(now_ms)
log "$l stopped accepting writes $((nowrite2_ms - stop_ms)) ms after etcd froze"
sleep $((T_TTL * 2))
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
