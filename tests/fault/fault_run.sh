#!/bin/bash
# One run of the fault suite (tests/fault/run.sh runs these): a 3-node cluster in network
# namespaces, etcd, the proxy, a workload through the proxy, a seeded nemesis, then heal, wait
# for convergence and check.
#   usage: fault_run.sh SEED MODE(sync|async) ETCD_MEMBERS DURATION_S REPORT_JSON [CLIENTS]
# Exit: 0 pass, 1 violation (the run directory is kept), 3 harness error.
FAULT_HOME="$(cd "$(dirname "$0")" && pwd)"
SEED="$1" MODE="$2" FAULT_ETCD="$3" DURATION="$4" REPORT="$5" CLIENTS="${6:-4}"
export T_TTL="${T_TTL:-5}"
if [ "$MODE" = sync ]; then
    BOOTSTRAP_EXTRA="    synchronous_mode: true
    synchronous_node_count: 1"
fi
source "$FAULT_HOME/../integration/lib.sh"
source "$FAULT_HOME/../integration/lib_netns.sh"
source "$FAULT_HOME/lib_fault.sh"
T_NAME="fault-$SEED-$MODE"
PY=/usr/bin/python3
MAX_LAG=10485760    # maximum_lag_on_failover in lib.sh's node configuration

# a harness failure (cluster does not start...) is not a violation: report it as an error
fail() {
    echo "ERROR [$T_NAME]: $*"
    dump_logs 2>/dev/null | tail -150
    printf '{"seed": %s, "mode": "%s", "etcd_members": %s, "result": "ERROR", "error": %s, "run_dir": "%s"}\n' \
        "$SEED" "$MODE" "$FAULT_ETCD" "$(printf '%s' "$*" | jq -Rs .)" "$T_DIR" >"$REPORT"
    exit 3
}

now_s() { date +%s.%3N; }
# a sleep that a signal interrupts (bash runs traps only between commands)
nap() { sleep "$1" & wait $!; }
NEM="$T_DIR/nemesis.jsonl"
# nem PHASE FAULT TARGET [DETAIL]: one line of the nemesis log, read by fault.py check. PHASE is
# apply or heal (a fault's two ends), window or skip (kill9_agent_promoting: the window was hit,
# or the hook line never came), or unexpected_exit (FAULT is agent, proxy or workload: a crash or
# a hung workload, each a violation)
nem() { printf '{"t": %s, "phase": "%s", "fault": "%s", "target": "%s", "detail": %s}\n' "$(now_s)" "$1" "$2" "$3" \
    "$(printf '%s' "${4:-}" | jq -Rs .)" >>"$NEM"; }

alive() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]; }

# hold_watch SECONDS NAME=PID...: wait SECONDS, watching the processes; WATCH tells, for each,
# how long after the start it ended, or that it still runs (what the fence did while the agent
# was dead)
hold_watch() {
    local hold="$1" t0 now item
    shift
    local -A gone=()
    t0=$(now_s)
    while :; do
        now=$(now_s)
        for item in "$@"; do
            [ -n "${item#*=}" ] && [ -z "${gone[$item]:-}" ] && ! alive "${item#*=}" && gone[$item]=$(echo "$now - $t0" | bc)
        done
        [ "$(echo "$now - $t0 >= $hold" | bc)" = 1 ] && break
        nap 0.1
    done
    WATCH=""
    for item in "$@"; do
        [ -n "${item#*=}" ] || { WATCH="$WATCH${WATCH:+, }${item%%=*}: none"; continue; }
        WATCH="$WATCH${WATCH:+, }${item%%=*} ${item#*=} ${gone[$item]:+ended after ${gone[$item]} s}"
        [ -n "${gone[$item]:-}" ] || WATCH="${WATCH}still running"
    done
}

# an agent that exited although nobody killed it is a crash: record it, start it again
check_agents() {
    local k
    for k in 1 2 3; do
        if [ -n "${AGENT_PID[$k]:-}" ] && ! alive "${AGENT_PID[$k]}"; then
            nem unexpected_exit agent "node$k" "agent pid ${AGENT_PID[$k]} exited; see node$k.log"
            log "agent of node$k exited unexpectedly; starting it again"
            start_agent "$k"
        fi
    done
    if [ -n "$PXF_PID" ] && ! alive "$PXF_PID"; then
        nem unexpected_exit proxy proxy "proxy pid $PXF_PID exited; see proxy.log"
        restart_proxy
    fi
}

restart_proxy() {
    local p keep=()
    [ -n "$PXF_PID" ] && kill -9 "$PXF_PID" 2>/dev/null
    for p in "${EXTRA_PIDS[@]}"; do [ "$p" != "$PXF_PID" ] && keep+=("$p"); done
    EXTRA_PIDS=("${keep[@]}")
    for _ in $(seq 1 20); do alive "$PXF_PID" || break; sleep 0.05; done
    start_fault_proxy
}

# the node holding the leader key now (waits a little when there is none)
current_leader_node() {
    local l
    for _ in $(seq 1 20); do
        l=$(leader)
        [ -n "$l" ] && { node_of "$l"; return; }
        sleep 0.5
    done
    echo ""
}

# ---- cluster, proxy, workload ------------------------------------------------------------------
T0=$(now_s)
# whether this binary has the promotion hook (a test build): without it kill9_agent_promoting
# still kills the primary, and logs that the window was not reached
HOOK_IN_BIN=no
grep -qF 'test hook: paused after promotion' "$BIN" 2>/dev/null && HOOK_IN_BIN=yes
log "seed $SEED, mode $MODE, etcd members $FAULT_ETCD, nemesis for ${DURATION}s, dir $T_DIR"
SCHEDULE=$("$PY" "$FAULT_HOME/fault.py" schedule --seed "$SEED" --duration "$DURATION" --etcd "$FAULT_ETCD" --ttl "$T_TTL") ||
    fail "cannot make the schedule"
echo "$SCHEDULE" >"$T_DIR/schedule.txt"
netns_setup 3
fault_etcd_setup
start_cluster 3
start_fault_proxy
L=$(leader)
for _ in $(seq 1 100); do [ "$(proxy_primary_ns)" = "$L" ] && break; sleep 0.2; done
if [ "$MODE" = sync ]; then
    sync_confirmed() { etcdctl_ get --print-value-only "/service/$SCOPE/sync" | jq -e '(.sync_standby | type == "string") and (has("pgvigil_catchup") | not)' >/dev/null; }
    wait_until 60 "a confirmed synchronous standby" sync_confirmed
fi
nodes="node1=${NODE_IP[1]},node2=${NODE_IP[2]},node3=${NODE_IP[3]}"
# clients through the proxy, and one direct writer to each node's postgres
nsspawn 0 env PGPASSWORD=it-super "$PY" "$FAULT_HOME/fault.py" workload --dir "$T_DIR" --etcd "$DCS_URL" --scope "$SCOPE" \
    --clients "$CLIENTS" --nodes "$nodes" --seed "$SEED" --dsn "host=127.0.0.1 port=$PXF_PORT user=postgres password=it-super dbname=postgres sslmode=disable connect_timeout=30" \
    >>"$T_DIR/workload.log" 2>&1
WL_PID=$NSSPAWN_PID
EXTRA_PIDS+=("$WL_PID")
wait_until 60 "the workload's tables" test -e "$T_DIR/workload.ready"
sleep 5
T_START=$(now_s)
log "cluster up in $(echo "$T_START - $T0" | bc) s; leader $(leader); nemesis starts"

# ---- nemesis -------------------------------------------------------------------------------------
declare -a STOPPED=()
while read -r -u 9 kind role hold pause pick; do
    [ -n "$kind" ] || continue
    check_agents
    target="" detail=""
    k=$(current_leader_node)
    if [ "$role" = replica ] || [ -z "$k" ]; then
        reps=()
        for n in 1 2 3; do [ "$n" != "$k" ] && reps+=("$n"); done
        k=${reps[$((pick % ${#reps[@]}))]}
    fi
    case "$kind" in
    kill9_node)
        pids=$(node_pids "$k" | tr '\n' ' ')
        nem apply "$kind" "node$k" "role $role; kill -9 $pids"
        kill -9 $pids 2>/dev/null
        AGENT_PID[$k]=""
        nap "$hold"
        start_agent "$k"
        nem heal "$kind" "node$k" "agent restarted (pid ${AGENT_PID[$k]})"
        ;;
    stop_node)
        pids=$(node_pids "$k" | tr '\n' ' ')
        nem apply "$kind" "node$k" "role $role; SIGSTOP $pids"
        kill -STOP $pids 2>/dev/null
        nap "$hold"
        kill -CONT $pids 2>/dev/null
        nem heal "$kind" "node$k" "SIGCONT $pids"
        ;;
    stop_agent)
        p="${AGENT_PID[$k]:-}"
        nem apply "$kind" "node$k" "role $role; SIGSTOP agent $p (fence $(fence_pid "$k") runs)"
        kill -STOP "$p" 2>/dev/null
        nap "$hold"
        kill -CONT "$p" 2>/dev/null
        nem heal "$kind" "node$k" "SIGCONT $p"
        ;;
    isolate_primary)
        nem apply "$kind" "node$k" "role $role; isolated from everyone"
        netns_isolate "$k" >/dev/null
        nap "$hold"
        netns_heal "$k" >/dev/null
        nem heal "$kind" "node$k" ""
        ;;
    cut_primary_etcd)
        nem apply "$kind" "node$k" "role $role; cut from etcd members ${ETCD_MEMBERS[*]}"
        for e in "${ETCD_MEMBERS[@]}"; do netns_cut "$k" "$e" >/dev/null; done
        nap "$hold"
        for e in "${ETCD_MEMBERS[@]}"; do netns_uncut "$k" "$e" >/dev/null; done
        nem heal "$kind" "node$k" ""
        ;;
    cut_primary_replicas)
        others=""
        for n in 1 2 3; do [ "$n" != "$k" ] && others="$others $n"; done
        nem apply "$kind" "node$k" "role $role; cut from nodes$others"
        netns_partition "$k" "$others" >/dev/null
        nap "$hold"
        for n in $others; do netns_uncut "$k" "$n" >/dev/null; done
        nem heal "$kind" "node$k" ""
        ;;
    isolate_etcd)
        e=$((10 + ${role#etcd}))
        nem apply "$kind" "etcd$e" "member $(netns_ip "$e") isolated"
        netns_isolate "$e" >/dev/null
        nap "$hold"
        netns_heal "$e" >/dev/null
        nem heal "$kind" "etcd$e" ""
        ;;
    kill9_agent)
        # the agent alone dies; its postgres and its fence go on (the fence must stop a primary
        # at the lease deadline unless the agent is back and renews in time)
        p="${AGENT_PID[$k]:-}"
        if [ -z "$p" ]; then
            nem skip "$kind" "node$k" "no agent pid"
        else
            f=$(fence_pid "$k" | xargs)
            pm=$(postmaster_pid "$k")
            nem apply "$kind" "node$k" "role $role; kill -9 agent $p (postgres ${pm:-none} and fence ${f:-none} keep running)"
            kill -9 "$p" 2>/dev/null
            AGENT_PID[$k]=""
            hold_watch "$hold" "postmaster=$pm" "fence=${f%% *}"
            start_agent "$k"
            nem heal "$kind" "node$k" "agent restarted (pid ${AGENT_PID[$k]}); while it was dead: $WATCH"
        fi
        ;;
    kill9_agent_promoting)
        # the promotion window: the primary node dies, a replica takes the leader key and
        # promotes, and its agent dies right after pg_promote (held there by the test hook),
        # before it wrote the history key or announced itself. Its postgres and fence go on:
        # the fence must stop that primary before the lease expires and another node takes over.
        reps=()
        for n in 1 2 3; do [ "$n" != "$k" ] && reps+=("$n"); done
        logoff=()
        for n in "${reps[@]}"; do
            logoff[$n]=$(stat -c %s "$T_DIR/node$n.log" 2>/dev/null || echo 0)
            touch "$T_DIR/node$n.promote-pause"
        done
        pids=$(node_pids "$k" | tr '\n' ' ')
        nem apply "$kind" "node$k" "kill -9 of the primary node$k ($pids); pause files for nodes ${reps[*]}; hook in the binary: $HOOK_IN_BIN"
        kill -9 $pids 2>/dev/null
        AGENT_PID[$k]=""
        hit="" l="" since=""
        t_end=$(($(date +%s) + 3 * T_TTL + 20))
        while [ "$(date +%s)" -lt "$t_end" ]; do
            for n in "${reps[@]}"; do
                # grep -c reads to the end: with -q under pipefail, tail's SIGPIPE could hide a match
                [ "$(tail -c +$((logoff[n] + 1)) "$T_DIR/node$n.log" 2>/dev/null | grep -cF 'test hook: paused after promotion')" -gt 0 ] && hit=$n
            done
            [ -n "$hit" ] && break
            # another node leads and no hook line 10 s later: the window will not come
            l=$(leader)
            if [ -n "$l" ] && [ "$l" != "node$k" ]; then
                [ -n "$since" ] || since=$(date +%s)
                [ $(($(date +%s) - since)) -ge 10 ] && break
            fi
            nap 0.1
        done
        promoted=""
        if [ -n "$hit" ]; then
            p="${AGENT_PID[$hit]:-}"
            f=$(fence_pid "$hit" | xargs)
            pm=$(postmaster_pid "$hit")
            kill -9 "$p" 2>/dev/null
            AGENT_PID[$hit]=""
            promoted=$hit
            nem window "$kind" "node$hit" "hook line seen; kill -9 agent $p (postgres ${pm:-none} and fence ${f:-none} keep running)"
        else
            nem skip "$kind" "node$k" "no 'test hook: paused after promotion' line from nodes ${reps[*]} (leader now ${l:-none})"
        fi
        rm -f "$T_DIR"/node*.promote-pause
        if [ -n "$promoted" ]; then
            hold_watch "$hold" "postmaster=$pm" "fence=${f%% *}"
        else
            nap "$hold"
            WATCH=""
        fi
        for n in "$k" $promoted; do [ -z "${AGENT_PID[$n]:-}" ] && start_agent "$n"; done
        nem heal "$kind" "node$k${promoted:+,node$promoted}" "agents restarted${WATCH:+; while the agent of node$promoted was dead: $WATCH}"
        ;;
    restart_proxy)
        old=$PXF_PID
        nem apply "$kind" proxy "kill -9 $old"
        restart_proxy
        nem heal "$kind" proxy "started again (pid $PXF_PID)"
        ;;
    *) fail "unknown fault $kind" ;;
    esac
    log "nemesis: $kind on ${k:+node$k} (role $role) for ${hold}s, then ${pause}s"
    nap "$pause"
done 9<<<"$SCHEDULE"

# ---- heal everything, let the workload see the healed cluster, stop it ----------------------------
nem apply heal_all all "heal every partition, SIGCONT every process, restart missing agents"
rm -f "$T_DIR"/node*.promote-pause
netns_heal_all >/dev/null
for k in 1 2 3; do
    p=$(node_pids "$k")
    [ -n "$p" ] && kill -CONT $p 2>/dev/null
    [ -z "${AGENT_PID[$k]:-}" ] && start_agent "$k"
done
[ -n "$PXF_PID" ] && kill -CONT "$PXF_PID" 2>/dev/null
check_agents
T_HEAL=$(now_s)
nem heal heal_all all ""
# convergence is timed with the workload still running; then a few more seconds of writes
nsexec 0 env PGPASSWORD=it-super "$PY" "$FAULT_HOME/fault.py" converge --dir "$T_DIR" --nodes "$nodes" --etcd "$DCS_URL" \
    --scope "$SCOPE" --t-heal "$T_HEAL" --converge-bound 90 2>>"$T_DIR/check.err" | while read -r l; do log "$l"; done
nap 5
touch "$T_DIR/workload.stop"
for _ in $(seq 1 300); do alive "$WL_PID" || break; sleep 0.1; done
alive "$WL_PID" && { kill -9 "$WL_PID"; nem unexpected_exit workload workload "the workload did not stop within 30 s"; }
check_agents
# (sanitizer reports in the node and proxy logs, and in the report files of ASAN_OPTIONS'
# log_path, are found by the checker itself)

# ---- check ----------------------------------------------------------------------------------------
log "checking (workload: $(wc -l <"$T_DIR/history.jsonl") operations)"
summary=$(nsexec 0 env PGPASSWORD=it-super "$PY" "$FAULT_HOME/fault.py" check --dir "$T_DIR" --mode "$MODE" --nodes "$nodes" \
    --etcd "$DCS_URL" --etcd-members "$FAULT_ETCD" --scope "$SCOPE" --seed "$SEED" --ttl "$T_TTL" --duration "$DURATION" \
    --t-start "$T_START" --t-heal "$T_HEAL" --converge-bound 90 --max-lag "$MAX_LAG" --report "$REPORT" 2>>"$T_DIR/check.err")
rc=$?
[ -s "$T_DIR/check.err" ] && cat "$T_DIR/check.err" >&2
[ -f "$REPORT" ] || fail "the checker wrote no report (rc $rc): $(tail -5 "$T_DIR/check.err")"
elapsed=$(echo "$(now_s) - $T0" | bc)
echo "SUMMARY seed=$SEED mode=$MODE etcd=$FAULT_ETCD duration=${DURATION}s: $summary (${elapsed%.*}s)"
if [ "$rc" -ne 0 ]; then
    cp "$REPORT" "$T_DIR/report.json" 2>/dev/null
    echo "run directory kept: $T_DIR"
    exit 1
fi
exit 0
