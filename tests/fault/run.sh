#!/bin/bash
# Randomized fault-injection suite (Jepsen-style) for pgvigil. Each run: 3 PostgreSQL nodes in
# network namespaces (each with its agent), etcd (1 or 3 members, each in its own namespace), the
# pgvigil proxy; clients write through the proxy (an insert of a unique id and an append to a
# per-key list in one transaction) while a seeded nemesis kills, freezes and partitions nodes,
# etcd members and the proxy. After healing: convergence and the checks (acknowledged writes kept
# in sync mode, never two writers, identical nodes, the fate of unknown commits; losses per
# failover in async mode). One summary line per run and a JSON report; exit 1 on any violation,
# with the seed to replay.
#
#   usage: tests/fault/run.sh [--seed S] [--runs N] [--duration S] [--mode sync|async|both]
#                             [--etcd 1|3] [--clients N] [--json FILE] [--bin PATH] [--keep]
#   default: one short run (about 2.5 minutes): a random seed, sync mode, 1 etcd member, 100 s
#   of faults; --keep keeps every run directory (a failing run's is always kept).
#   Overnight: tests/fault/run.sh --runs 100 --duration 600 --mode both --etcd 3 --bin build/pgvigil
#   Run N uses seed S+N-1. Needs root (network namespaces) and python3-psycopg2.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SEED=""
RUNS=1
DURATION=100
MODE=sync
ETCD=1
CLIENTS=4
JSON=""
BIN_ARG=""
while [ $# -gt 0 ]; do
    case "$1" in
        --seed) SEED="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --mode) MODE="$2"; shift 2 ;;
        --etcd) ETCD="$2"; shift 2 ;;
        --clients) CLIENTS="$2"; shift 2 ;;
        --json) JSON="$2"; shift 2 ;;
        --bin) BIN_ARG="$2"; shift 2 ;;
        --keep) export KEEP=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$MODE" in sync) MODES=(sync) ;; async) MODES=(async) ;; both) MODES=(sync async) ;;
    *) echo "error: --mode must be sync, async or both" >&2; exit 2 ;; esac
case "$ETCD" in 1|3) ;; *) echo "error: --etcd must be 1 or 3" >&2; exit 2 ;; esac
[ -z "$SEED" ] && SEED=$(( $(od -An -N3 -tu4 /dev/urandom | tr -d ' ') % 1000000 ))
[[ "$SEED" =~ ^[0-9]+$ ]] || { echo "error: --seed must be a number" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: the fault suite needs root (network namespaces)" >&2; exit 2; }
/usr/bin/python3 -c 'import psycopg2' 2>/dev/null ||
    { echo "error: python3-psycopg2 is missing (bash scripts/setup.sh installs it)" >&2; exit 2; }
export PGVIGIL_BIN="${BIN_ARG:-${PGVIGIL_BIN:-$ROOT/build-asan/pgvigil}}"
[ -x "$PGVIGIL_BIN" ] || { echo "error: $PGVIGIL_BIN is missing (make asan, or --bin build/pgvigil)" >&2; exit 2; }

OUT=$(mktemp -d /tmp/pgvigil-fault.XXXXXX)
CHILD=""
on_signal() {
    [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
    rm -rf "$OUT"
    exit 130
}
trap on_signal INT TERM HUP

echo "fault suite: seed $SEED, $RUNS run(s) x ${MODES[*]}, ${DURATION}s of faults each, etcd members $ETCD, bin $PGVIGIL_BIN"
pass=0; failed=0; errors=0
declare -a REPORTS=() REPLAY=()
t_all=$(date +%s)
for r in $(seq 1 "$RUNS"); do
    s=$((SEED + r - 1))
    for m in "${MODES[@]}"; do
        rep="$OUT/run-$s-$m.json"
        bash "$HERE/fault_run.sh" "$s" "$m" "$ETCD" "$DURATION" "$rep" "$CLIENTS" >"$OUT/run-$s-$m.log" 2>&1 &
        CHILD=$!
        wait "$CHILD"
        rc=$?
        CHILD=""
        line=$(grep '^SUMMARY ' "$OUT/run-$s-$m.log" | tail -1 | sed 's/^SUMMARY //')
        [ -f "$rep" ] && REPORTS+=("$rep")
        kept=$(sed -n 's/^\(run\|test\) directory kept: //p' "$OUT/run-$s-$m.log" | tail -1)
        [ "$rc" -ne 0 ] && [ -d "$kept" ] && cp "$OUT/run-$s-$m.log" "$kept/run.log"
        case "$rc" in
            0) pass=$((pass + 1)); echo "ok    $line"
               echo "      faults: $(jq -r '.fault_counts // {} | to_entries | map("\(.key)=\(.value)") | join(" ")' "$rep" 2>/dev/null)" ;;
            1) failed=$((failed + 1)); echo "FAIL  $line"
               echo "      faults: $(jq -r '.fault_counts // {} | to_entries | map("\(.key)=\(.value)") | join(" ")' "$rep" 2>/dev/null)"
               echo "      run directory kept: $kept"
               jq -c '.violations[] | {check, detail, count}' "$rep" 2>/dev/null | head -10
               # the checker passed, yet the run failed: lib.sh's cleanup found a sanitizer
               # report written at shutdown (after the check)
               [ "$(jq -r '.result' "$rep" 2>/dev/null)" = PASS ] && grep -m3 -i 'sanitizer' "$OUT/run-$s-$m.log" | sed 's/^/      /' 
               REPLAY+=("tests/fault/run.sh --seed $s --mode $m --etcd $ETCD --duration $DURATION") ;;
            *) errors=$((errors + 1))
               echo "ERROR seed=$s mode=$m etcd=$ETCD: harness error (rc $rc): $(jq -r '.error // empty' "$rep" 2>/dev/null | head -3)"
               tail -40 "$OUT/run-$s-$m.log" | sed 's/^/    /'
               [ -d "$kept" ] && echo "      run directory kept: $kept"
               REPLAY+=("tests/fault/run.sh --seed $s --mode $m --etcd $ETCD --duration $DURATION") ;;
        esac
    done
done
# fault counts over every run that got a report: one "kind=N" per fault kind, and how often the
# promotion window of kill9_agent_promoting was reached
FAULT_TOTALS='[.[] | .fault_counts // {} | to_entries[]] | group_by(.key) | map({(.[0].key): (map(.value) | add)}) | add // {}'
if [ -n "$JSON" ]; then
    if [ ${#REPORTS[@]} -gt 0 ]; then
        # each run: its whole report (fault_counts, violations, ...); at the top, the totals
        jq -s --argjson seed "$SEED" --argjson p "$pass" --argjson f "$failed" --argjson e "$errors" \
            "{seed: \$seed, passed: \$p, failed: \$f, errors: \$e, fault_counts: ($FAULT_TOTALS),
              promote_window: {hit: (map(.promote_window.hit // 0) | add), missed: (map(.promote_window.missed // 0) | add)},
              violations: [.[] | select(.violations) | {seed, mode, checks: [.violations[].check]} | select(.checks | length > 0)],
              runs: .}" "${REPORTS[@]}" >"$JSON"
    else
        echo "{\"seed\": $SEED, \"passed\": 0, \"failed\": $failed, \"errors\": $errors, \"fault_counts\": {}, \"runs\": []}" >"$JSON"
    fi
    echo "JSON report: $JSON"
fi
if [ ${#REPORTS[@]} -gt 0 ]; then
    echo "faults: $(jq -rs "$FAULT_TOTALS | to_entries | map(\"\(.key)=\(.value)\") | join(\" \")" "${REPORTS[@]}")" \
        "(promotion window hit $(jq -s 'map(.promote_window.hit // 0) | add' "${REPORTS[@]}")," \
        "missed $(jq -s 'map(.promote_window.missed // 0) | add' "${REPORTS[@]}"))"
fi
for x in "${REPLAY[@]}"; do echo "replay: $x"; done
rm -rf "$OUT"
echo "fault: $pass passed, $((failed + errors)) failed ($(( $(date +%s) - t_all )) s, seed $SEED)"
[ $((failed + errors)) -eq 0 ]
