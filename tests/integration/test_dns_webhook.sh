#!/bin/bash
# What a leader change does outside PostgreSQL: the DNS record (a real BIND 9, RFC 2136 update
# signed with TSIG) names the leader and follows it through kill -9 and a switchover; the
# webhook receives signed failover, member_down, member_rejoined and switchover events (its
# first answers are errors, so delivery must retry).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_bind.sh"

start_bind
REC="db.${BIND_ZONE%.}."
alloc_port HOOK_PORT
HOOK_SECRET="it-hook-secret"
/usr/bin/python3 "$(dirname "$0")/webhook_sink.py" "$HOOK_PORT" "$T_DIR/hooks.jsonl" "$HOOK_SECRET" --fail-first 3 \
    >>"$T_DIR/hooks.log" 2>&1 &
EXTRA_PIDS+=("$!")
wait_until 10 "webhook sink" sh -c "curl -s -o /dev/null -X POST -d x http://127.0.0.1:$HOOK_PORT/warmup; [ -s $T_DIR/hooks.jsonl ]"
rm -f "$T_DIR/hooks.jsonl"

start_etcd
for n in 1 2 3; do
    node_config "$n" "$(bind_dns_yaml "$REC" "127.0.0.$((10 + n))")
notify:
  webhook:
    url: http://127.0.0.1:$HOOK_PORT/pgvigil
    secret: $HOOK_SECRET
  lag_threshold: 1048576
  max_attempts: 6
  timeout: 2"
done
start_agent 1
wait_until 60 "node1 bootstraps as primary" is_primary 1
start_agent 2; start_agent 3
wait_until 90 "cluster healthy" cluster_healthy "1 2 3"
addr_of() { echo "127.0.0.$((10 + $(node_of "$1")))"; }
L=$(leader)
wait_until 20 "DNS names the leader $L" dns_is "$REC" "$(addr_of "$L")"
log "DNS: $REC -> $(dns_lookup "$REC") (leader $L)"

# events as JSON lines: "event member signature_ok answered"
events() {
    [ -s "$T_DIR/hooks.jsonl" ] || return 0
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line); b = json.loads(r["body"])
    print(b["event"], b.get("member") or "-", r["signature_ok"], r["answered"], b["cluster"], b["node"])
' "$T_DIR/hooks.jsonl"
}
has_event() { events | awk -v e="$1" -v m="$2" '$1==e && $2==m && $3=="True" && $4==200 {f=1} END {exit !f}'; }

# ---- a replica whose WAL receiver is frozen falls behind: lag_high for it
LN=$(node_of "$L")
R=$(( LN % 3 + 1 ))
WR=$(psql_n "$R" -c "select pid from pg_stat_wal_receiver")
[ -n "$WR" ] || fail "node$R has no WAL receiver"
kill -STOP "$WR"
psql_n "$LN" -c "create table lag_t as select g, repeat('x', 100) as pad from generate_series(1, 40000) g" ||
    fail "cannot write on $L"
wait_until 30 "a lag_high event for node$R" has_event lag_high "node$R"
kill -CONT "$WR"
wait_until 60 "cluster healthy after the lag" cluster_healthy "1 2 3"
other=$(events | awk -v r="node$R" '$1=="lag_high" && $2!=r')
[ -z "$other" ] || fail "lag_high for a replica that kept up: $other"

# ---- kill -9 of the leader: DNS follows, failover and member_down are notified
kill9_node "$LN"
wait_until 40 "a new leader" leader_is_not "$L"
NL=$(leader)
wait_until 20 "DNS follows to $NL" dns_is "$REC" "$(addr_of "$NL")"
log "DNS after kill -9 of $L: $REC -> $(dns_lookup "$REC")"
wait_until 30 "a signed failover event for $NL (after retries)" has_event failover "$NL"
wait_until 30 "a member_down event for $L" has_event member_down "$L"
[ "$(events | awk '$4==500' | wc -l)" -ge 2 ] || fail "the sink's error answers were not retried: $(events)"
start_agent "$LN"
wait_until 90 "cluster healthy again" cluster_healthy "1 2 3"
wait_until 30 "a member_rejoined event for $L" has_event member_rejoined "$L"

# ---- switchover: DNS follows again, a switchover event
T=$L
"$BIN" switchover --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE" --candidate "$T" --force >/dev/null 2>&1 ||
    fail "switchover to $T failed"
wait_until 30 "$T leads" leader_is "$T"
wait_until 20 "DNS follows to $T" dns_is "$REC" "$(addr_of "$T")"
wait_until 30 "a switchover event for $T" has_event switchover "$T"
events | awk '$3!="True" && $4==200 {bad=1} END {exit bad}' || fail "an event arrived without a valid signature: $(events)"
events | awk '{print $5}' | sort -u | grep -x "$SCOPE" >/dev/null || fail "events do not name the cluster"
log "events: $(events | awk '{print $1 "(" $2 ")"}' | tr '\n' ' ')"
echo "PASS [$T_NAME]"
