# Integration test harness, sourced by each tests/integration/test_*.sh.
# Starts a real etcd and real PostgreSQL 15 nodes (each run by a pgvigil agent) on 127.0.0.1,
# in a fresh directory with free ports; everything started is stopped by PID on exit.
set -uo pipefail

IT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${PGVIGIL_BIN:-$IT_ROOT/build-asan/pgvigil}"
# PostgreSQL 15's own client programs (psql, pg_basebackup, ...) rather than Debian's
# /usr/bin/psql, a Perl wrapper that picks the same binary: the wrapper costs ~75 ms of CPU per
# call, and the tests run psql several times a second (waits, samplers, writers)
[ -x /usr/lib/postgresql/15/bin/psql ] && export PATH="/usr/lib/postgresql/15/bin:$PATH"
# agents end through signal handlers while threads run; leak reports there are noise.
# Reports go to each process's stderr, so into the logs and output files under $T_DIR, where
# cleanup looks for them (sanitizer_check).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
T_NAME="$(basename "$0" .sh)"
T_DIR="$(mktemp -d /tmp/pgvigil-it.XXXXXX)"
chmod 755 "$T_DIR"
SCOPE="it"
T_TTL="${T_TTL:-5}"
declare -a PG_PORT API_PORT AGENT_PID
# other processes a test started (proxies, servers): TERMed, then KILLed, at exit
declare -a EXTRA_PIDS=()
# functions run first at exit (helpers such as lib_netns.sh register their teardown here)
declare -a CLEANUP_HOOKS=()
ETCD_PID=""
E_PORT=""
E_PEER=""
# Ports: from 10000 up to Linux's ephemeral range (32768-60999 by default), where a client
# socket's local port could take one of ours unseen by port_in_use. That range is cut into
# PORT_SLOTS slots; a test takes a free one at its first alloc_port and holds it while it runs
# (a lock on /tmp/pgvigil-it-ports.N.lock, held by a small process of its own that ends within
# a second of the test's shell), and picks its ports in it only. So tests running at once (the
# lanes of run.sh, two runs on one machine, a test started by hand) never pick the same port.
read -r _it_eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || _it_eph_lo=32768
if ! [[ "$_it_eph_lo" =~ ^[0-9]+$ ]] || [ "$_it_eph_lo" -gt 32768 ] || [ "$_it_eph_lo" -lt 12000 ]; then _it_eph_lo=32768; fi
PORT_SLOTS=8
PORT_LO=""
PORT_HI=""
NEXT_PORT=""

# _it_take_port_slot: wait for a free slot, hold it, and set PORT_LO, PORT_HI (exclusive) and a
# random NEXT_PORT in it. The holder is forked from this shell and left to init (not a child
# of the test, so cleanup and `wait` leave it alone); it checks every second that this shell,
# the same process (start time: PIDs wrap), still runs.
_it_take_port_slot() {
    local f="$T_DIR/.port-slot" width=$(( (_it_eph_lo - 10000) / PORT_SLOTS )) slot="" i
    if ! command -v flock >/dev/null; then
        PORT_LO=10000; PORT_HI=$_it_eph_lo   # (no flock: the whole range, shared)
    else
        (
            exec </dev/null >/dev/null 2>&1
            (
                me=$(cut -d' ' -f22 "/proc/$$/stat") || exit 1   # (the test's shell: comm has no space)
                first=$((RANDOM % PORT_SLOTS))
                while :; do
                    for ((i = 0; i < PORT_SLOTS; i++)); do
                        k=$(( (first + i) % PORT_SLOTS ))
                        exec 9>>"/tmp/pgvigil-it-ports.$k.lock" || continue
                        if flock -n 9; then
                            echo "$k" >"$f.tmp" && mv "$f.tmp" "$f"
                            while [ "$(cut -d' ' -f22 "/proc/$$/stat" 2>/dev/null)" = "$me" ]; do sleep 1; done
                            exit 0
                        fi
                        exec 9>&-
                    done
                    [ "$(cut -d' ' -f22 "/proc/$$/stat" 2>/dev/null)" = "$me" ] || exit 0
                    sleep 1
                done
            ) &
        )
        for ((i = 0; ; i++)); do
            [ -s "$f" ] && { read -r slot <"$f"; break; }
            [ "$i" = 100 ] && echo "[$T_NAME] waiting for a free port slot (each of the $PORT_SLOTS slots is held by a test)"
            sleep 0.05
        done
        PORT_LO=$(( 10000 + slot * width ))
        PORT_HI=$(( PORT_LO + width ))
    fi
    # a random start, with room above it for one test's ports (alloc_port wraps to PORT_LO anyway)
    NEXT_PORT=$(( PORT_LO + (RANDOM % ((PORT_HI - PORT_LO - 400) / 20)) * 20 ))
}

log() { echo "[$T_NAME $(date +%H:%M:%S.%N | cut -c1-12)] $*"; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# alloc_port VAR: store a free port in VAR (no subshell, so NEXT_PORT advances); never one
# outside PORT_LO..PORT_HI-1
alloc_port() {
    local tried=0
    [ -n "$PORT_LO" ] || _it_take_port_slot
    while [ "$NEXT_PORT" -ge "$PORT_HI" ] || port_in_use "$NEXT_PORT"; do
        NEXT_PORT=$((NEXT_PORT + 1))
        [ "$NEXT_PORT" -ge "$PORT_HI" ] && NEXT_PORT=$PORT_LO
        tried=$((tried + 1))
        [ "$tried" -le $((PORT_HI - PORT_LO)) ] || fail "alloc_port: no free port in $PORT_LO-$((PORT_HI - 1))"
    done
    printf -v "$1" '%s' "$NEXT_PORT"
    NEXT_PORT=$((NEXT_PORT + 1))
}

dump_logs() {
    for f in "$T_DIR"/*.log "$T_DIR"/*/*.log; do
        [ -f "$f" ] || continue
        echo "----- tail of $f"
        grep -v " DEBUG: " "$f" | tail -40
    done
}

# is_ours PID: the process descends from this test's shell. A PID recorded long ago may have
# exited and been reused by someone else's process (PIDs wrap on a busy machine): never signal
# that one.
is_ours() {
    local p="$1" ppid
    while [ -n "$p" ] && [ "$p" -gt 1 ] 2>/dev/null; do
        [ "$p" = "$$" ] && return 0
        ppid=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null) || return 1
        p="$ppid"
    done
    return 1
}

# is_our_postmaster PID: a postgres whose data directory is under $T_DIR (postmasters are
# daemonized, so they do not descend from the test's shell)
is_our_postmaster() {
    local args
    mapfile -d '' args 2>/dev/null <"/proc/$1/cmdline" || return 1
    [[ "${args[*]}" == *"$T_DIR/"* ]]
}

# pids_naming TEXT: PIDs (space separated) of the processes whose command line contains TEXT
pids_naming() {
    local d args out=""
    for d in /proc/[0-9]*; do
        mapfile -d '' args 2>/dev/null <"$d/cmdline" || continue
        [[ "${args[*]}" == *"$1"* ]] && out="$out ${d#/proc/}"
    done
    echo "${out# }"
}

# leftover_pids: processes this test started that still run: every descendant of the test's
# shell, and every process whose command line names $T_DIR (daemons that left our process
# tree: postmasters, `pgvigil demo` processes, anything started with setsid). The latter are
# also in LEFTOVER_DAEMONS. Builtins only: a helper forked here would be a descendant too.
leftover_pids() {
    local d p st rest args
    local -A parent=()
    LEFTOVER=()
    LEFTOVER_DAEMONS=()
    for d in /proc/[0-9]*; do
        p="${d#/proc/}"
        [ "$p" = "$$" ] && continue
        read -r st 2>/dev/null <"$d/stat" || continue
        rest="${st##*) }"          # the command name may hold spaces and parentheses
        set -- $rest
        [ "$1" = Z ] && continue
        parent[$p]="$2"
    done
    for p in "${!parent[@]}"; do
        local q="${parent[$p]}" mine=""
        while [ -n "$q" ] && [ "$q" -gt 1 ]; do
            [ "$q" = "$$" ] && { mine=1; break; }
            q="${parent[$q]:-}"
        done
        if [ -z "$mine" ]; then
            mapfile -d '' args 2>/dev/null <"/proc/$p/cmdline" || continue
            [[ "${args[*]}" == *"$T_DIR/"* ]] && mine=1 && LEFTOVER_DAEMONS+=("$p")
        fi
        [ -n "$mine" ] && LEFTOVER+=("$p")
    done
}

# stop_leftovers: SIGTERM (after SIGCONT: it may be frozen by the test), 5 s, then SIGKILL,
# every process leftover_pids finds. Background helpers of the test (samplers, watches) end
# here quietly; a daemon outside the test's process tree is named, as a test should have
# stopped it.
stop_leftovers() {
    local p args i
    leftover_pids
    [ ${#LEFTOVER[@]} -eq 0 ] && return 0
    for p in "${LEFTOVER_DAEMONS[@]}"; do
        mapfile -d '' args 2>/dev/null <"/proc/$p/cmdline"
        echo "cleanup: stopping process $p, outside the test's process tree: ${args[*]:0:8}"
    done
    for p in "${LEFTOVER[@]}"; do
        kill -CONT "$p" 2>/dev/null
        kill -TERM "$p" 2>/dev/null
    done
    for i in $(seq 1 50); do
        leftover_pids
        [ ${#LEFTOVER[@]} -eq 0 ] && return 0
        sleep 0.1
    done
    for p in "${LEFTOVER[@]}"; do
        mapfile -d '' args 2>/dev/null <"/proc/$p/cmdline"
        echo "cleanup: killing process $p (SIGTERM did not stop it in 5 s): ${args[*]:0:8}"
        kill -9 "$p" 2>/dev/null
    done
    return 0
}

# sanitizer_check: 1 (and the reports printed) when a log or output file of the test holds an
# AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report: agents, fences and
# proxies write theirs into their logs, CLI calls into the files a test keeps their output in.
# The data directories of postgres and etcd are not searched; -D skip: a test's FIFO would block.
SANITIZER_RE='ERROR: (AddressSanitizer|LeakSanitizer)|UndefinedBehaviorSanitizer|: runtime error: '
sanitizer_check() {
    local f found=0
    while IFS= read -r f; do
        found=1
        echo "----- sanitizer report in $f"
        grep -E -B 2 -A 40 -- "$SANITIZER_RE" "$f" | head -80
    done < <(grep -rIlE -D skip --exclude-dir=data --exclude-dir='etcd*' -- "$SANITIZER_RE" "$T_DIR" 2>/dev/null)
    [ "$found" = 0 ]
}

cleanup() {
    local rc=$?
    local h p
    # a test stopped (run.sh's timeout, ^C) while a predicate of wait_until ran, whose output
    # goes to a file: what cleanup says goes back to the test's own output
    [ -n "${WAIT_UNTIL_STDOUT:-}" ] && exec >&"$WAIT_UNTIL_STDOUT"
    for h in "${CLEANUP_HOOKS[@]}"; do "$h" || true; done
    local ours=()
    for p in "${EXTRA_PIDS[@]}"; do is_ours "$p" && ours+=("$p"); done
    EXTRA_PIDS=("${ours[@]}")
    for i in "${!AGENT_PID[@]}"; do
        [ -n "${AGENT_PID[$i]}" ] && ! is_ours "${AGENT_PID[$i]}" && AGENT_PID[$i]=""
    done
    for p in "${EXTRA_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
    for p in "${EXTRA_PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    for i in "${!AGENT_PID[@]}"; do
        local p="${AGENT_PID[$i]}"
        [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
    done
    for i in "${!AGENT_PID[@]}"; do
        local p="${AGENT_PID[$i]}"
        [ -z "$p" ] && continue
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$p" 2>/dev/null
    done
    # postmasters left behind (agents killed on purpose)
    local pms=()
    for d in "$T_DIR"/node*/data; do
        [ -f "$d/postmaster.pid" ] || continue
        local pm; pm=$(head -1 "$d/postmaster.pid")
        [ -n "$pm" ] && is_our_postmaster "$pm" && kill -CONT "$pm" 2>/dev/null && kill -QUIT "$pm" 2>/dev/null && pms+=("$pm")
    done
    for pm in "${pms[@]}"; do
        for _ in $(seq 1 50); do is_our_postmaster "$pm" || break; sleep 0.1; done
    done
    # a fencing process ends with its agent's clean stop; one left by an agent killed on purpose
    # is stopped with the other leftovers below
    [ -n "$ETCD_PID" ] && is_ours "$ETCD_PID" && kill -CONT "$ETCD_PID" 2>/dev/null && kill -TERM "$ETCD_PID" 2>/dev/null && wait "$ETCD_PID" 2>/dev/null
    # whatever is left: background loops of the test, daemons that left our process tree
    stop_leftovers
    # reports are complete once every process is gone
    if ! sanitizer_check; then
        echo "FAIL [$T_NAME]: sanitizer report (above)"
        rc=1
    fi
    if [ "$rc" -ne 0 ] || [ -n "${KEEP:-}" ]; then
        echo "test directory kept: $T_DIR"
    else
        rm -rf "$T_DIR"
    fi
    return "$rc"
}
# the test's exit status is cleanup's: a sanitizer report found at the end fails a test that
# passed. A test stopped by a signal (run.sh's timeout sends SIGTERM, ^C) goes through cleanup
# too: bash runs no EXIT trap when a signal kills it.
trap 'cleanup; exit $?' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

fail() {
    # called from a predicate of wait_until, whose output goes to a file: back to the test's own
    [ -n "${WAIT_UNTIL_STDOUT:-}" ] && exec >&"$WAIT_UNTIL_STDOUT"
    echo "FAIL [$T_NAME]: $*"
    dump_logs
    exit 1
}

# wait_until TIMEOUT_S DESCRIPTION COMMAND...: poll every 0.2 s until COMMAND succeeds. The
# timeout only catches a state that never comes: a test waits for the state it checks, and
# never asserts on how long that took. On timeout the test fails with what the last check
# printed (a predicate that prints what it sees explains its failure).
wait_until() {
    local timeout="$1" what="$2"
    shift 2
    local deadline=$(( EPOCHSECONDS + timeout )) out="$T_DIR/wait_until.out" ok=1 opened=""
    # the test's stdout, for a predicate that calls fail (see fail)
    if [ -z "${WAIT_UNTIL_STDOUT:-}" ]; then exec {WAIT_UNTIL_STDOUT}>&1; opened=1; fi
    while [ "$EPOCHSECONDS" -lt "$deadline" ]; do
        if "$@" >"$out" 2>&1; then ok=0; break; fi
        sleep 0.2
    done
    # once more: on a busy machine the deadline may pass while one check is running
    [ "$ok" = 0 ] || { "$@" >"$out" 2>&1 && ok=0; }
    if [ -n "$opened" ]; then exec {WAIT_UNTIL_STDOUT}>&-; WAIT_UNTIL_STDOUT=""; fi
    [ "$ok" = 0 ] && return 0
    if [ -s "$out" ]; then
        fail "timed out after ${timeout}s waiting for: $what; the last check printed:
$(tail -c 3000 "$out")"
    fi
    fail "timed out after ${timeout}s waiting for: $what"
}

start_etcd() {
    if [ -z "$E_PORT" ]; then alloc_port E_PORT; alloc_port E_PEER; fi
    /usr/bin/etcd --name it --data-dir "$T_DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$E_PORT" --advertise-client-urls "http://127.0.0.1:$E_PORT" \
        --listen-peer-urls "http://127.0.0.1:$E_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$E_PEER" \
        --initial-cluster "it=http://127.0.0.1:$E_PEER" --heartbeat-interval 100 \
        --election-timeout "${ETCD_ELECTION_MS:-1000}" \
        >>"$T_DIR/etcd.log" 2>&1 &
    ETCD_PID=$!
    wait_until 30 "etcd on port $E_PORT" curl -sf "http://127.0.0.1:$E_PORT/health"
}

stop_etcd() {
    kill -TERM "$ETCD_PID" 2>/dev/null
    wait "$ETCD_PID" 2>/dev/null
    ETCD_PID=""
}

etcdctl_() { ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$E_PORT" "$@"; }
leader() { etcdctl_ get --print-value-only "/service/$SCOPE/leader" 2>/dev/null; }
leader_is() { [ "$(leader)" = "$1" ]; }
leader_is_not() { local l; l=$(leader); [ -n "$l" ] && [ "$l" != "$1" ]; }

# node_config N [EXTRA_YAML]: write $T_DIR/nodeN.yml. Also from the environment: BOOTSTRAP_EXTRA
# (under bootstrap.dcs, indented 4), BOOTSTRAP_TOP_EXTRA (under bootstrap, indented 2), PG_EXTRA
# (under postgresql, indented 2).
node_config() {
    local n="$1" extra="${2:-}"
    if [ -z "${PG_PORT[$n]:-}" ]; then alloc_port "PG_PORT[$n]"; alloc_port "API_PORT[$n]"; fi
    cat >"$T_DIR/node$n.yml" <<YML
scope: $SCOPE
name: node$n
log:
  level: ${LOG_LEVEL:-info}
etcd3:
  hosts: 127.0.0.1:$E_PORT
restapi:
  listen: 127.0.0.1:${API_PORT[$n]}
  connect_address: 127.0.0.1:${API_PORT[$n]}
bootstrap:
  dcs:
    ttl: $T_TTL
    loop_wait: ${T_LOOP_WAIT:-1}
    retry_timeout: 2
    maximum_lag_on_failover: 10485760
${BOOTSTRAP_EXTRA:-}
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 30
        shared_buffers: 16MB
${BOOTSTRAP_TOP_EXTRA:-}
postgresql:
  listen: 127.0.0.1:${PG_PORT[$n]}
  connect_address: 127.0.0.1:${PG_PORT[$n]}
  data_dir: $T_DIR/node$n/data
  bin_dir: /usr/lib/postgresql/15/bin
  authentication:
    superuser:
      username: postgres
      password: it-super
    replication:
      username: replicator
      password: it-repl
  remove_data_directory_on_rewind_failure: true
${PG_EXTRA:-}
$extra
YML
}

start_agent() {
    local n="$1"
    "$BIN" agent -c "$T_DIR/node$n.yml" >>"$T_DIR/node$n.log" 2>&1 &
    AGENT_PID[$n]=$!
}

stop_agent() {
    local n="$1" p="${AGENT_PID[$1]:-}"
    [ -z "$p" ] && return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    AGENT_PID[$n]=""
}

postmaster_pid() { head -1 "$T_DIR/node$1/data/postmaster.pid" 2>/dev/null; }

# kill -9 the node: its agent and its postmaster
kill9_node() {
    local n="$1" pm
    pm=$(postmaster_pid "$n")
    kill -9 "${AGENT_PID[$n]}" ${pm:+$pm} 2>/dev/null
    AGENT_PID[$n]=""
}

psql_n() {
    local n="$1"; shift
    PGPASSWORD=it-super PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PG_PORT[$n]}" -U postgres -d postgres -At "$@"
}

is_primary() { [ "$(psql_n "$1" -c 'select pg_is_in_recovery()' 2>/dev/null)" = "f" ]; }
is_replica() { [ "$(psql_n "$1" -c 'select pg_is_in_recovery()' 2>/dev/null)" = "t" ]; }
is_streaming() { [ "$(psql_n "$1" -c 'select status from pg_stat_wal_receiver' 2>/dev/null)" = "streaming" ]; }
accepts_writes() { psql_n "$1" -c "create table if not exists it_probe(x int); insert into it_probe values (1)" >/dev/null 2>&1; }
node_of() { echo "${1#node}"; }

# the cluster as `pgvigil list --json`
cluster_json() { "$BIN" list --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE" --json 2>/dev/null; }

# one leader that is a writable primary, every other listed node streaming from it
cluster_healthy() {
    local want="$1" l n
    l=$(leader); [ -n "$l" ] || return 1
    is_primary "$(node_of "$l")" || return 1
    for n in $want; do
        [ "node$n" = "$l" ] && continue
        is_streaming "$n" || return 1
    done
}

# start etcd and N nodes (node1 first so it bootstraps), wait until healthy
start_cluster() {
    local count="$1" n all=""
    start_etcd
    for n in $(seq 1 "$count"); do node_config "$n" "${NODE_EXTRA:-}"; all="$all $n"; done
    start_agent 1
    wait_until 60 "node1 bootstraps as primary" is_primary 1
    for n in $(seq 2 "$count"); do start_agent "$n"; done
    wait_until 90 "cluster of $count healthy" cluster_healthy "$all"
}
