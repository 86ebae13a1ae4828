# Helpers for the safety tests (sigstop, etcd outage, switchover, pause), sourced after lib.sh.
# Short-timeout write probes, a background sampler that probes every node at once, and a
# background writer that measures write unavailability. Background loops stop by themselves
# when the test shell is gone, and are stopped by PID with stop_bg. (These tests restart etcd
# and postgres on the same ports; lib.sh keeps every port below the ephemeral range, where a
# client socket could take one.)

# (from bash's clock: no date process, these run many times a second)
now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo "${t:0:-3}"; }
# sleep_until_ms MS: sleep until the clock reads MS (at once when it is past); for the length of
# a fault, never for a check
sleep_until_ms() { local d=$(( $1 - $(now_ms) )); [ "$d" -gt 0 ] && sleep "$((d / 1000)).$(printf '%03d' $((d % 1000)))"; return 0; }

# probe_write N: one INSERT on node N with short timeouts; 0 when the write was acknowledged
probe_write() {
    PGPASSWORD=it-super PGCONNECT_TIMEOUT=2 PGOPTIONS="-c statement_timeout=1500" \
        timeout -k 1 3 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PG_PORT[$1]}" -U postgres -d postgres \
        -At -c "insert into it_probe values ($1)" >/dev/null 2>&1
}

# create the probe table on node N (the primary) and wait until every node in NODES has it
probe_table_init() {
    local n="$1" nodes="$2" m
    psql_n "$n" -c "create table if not exists it_probe(x int)" || fail "cannot create it_probe on node$n"
    for m in $nodes; do
        [ "$m" = "$n" ] && continue
        wait_until 30 "it_probe replicated to node$m" psql_n "$m" -c "select 1 from it_probe limit 1"
    done
}

declare -a BG_PIDS=()
SAMPLER_PID=""

# start_sampler FILE NODES...: every 0.2 s probe all NODES at once (in parallel); append one line
# per round: "<start_ms> <end_ms> <nodes that accepted the write, space separated>"
start_sampler() {
    local out="$1"; shift
    local nodes="$*" parent=$$
    rm -f "$out.stop"
    (
        while [ ! -e "$out.stop" ] && kill -0 "$parent" 2>/dev/null; do
            t0=$(now_ms)
            ok=$(for n in $nodes; do (probe_write "$n" && echo -n "$n ") & done; wait)
            t1=$(now_ms)
            echo "$t0 $t1 ${ok% }" >>"$out"
            sleep 0.2
        done
    ) &
    SAMPLER_PID=$!
    BG_PIDS+=("$SAMPLER_PID")
}

# start_writer FILE NODES...: write in a loop to whichever of NODES is read-write (libpq's
# multi-host connection with target_session_attrs=read-write picks it); append "<ms> <node>"
# per acknowledged write
start_writer() {
    local out="$1"; shift
    local parent=$$ n hosts="" ports="" map=""
    for n in "$@"; do
        hosts="${hosts:+$hosts,}127.0.0.1"; ports="${ports:+$ports,}${PG_PORT[$n]}"; map="$map ${PG_PORT[$n]}=$n"
    done
    rm -f "$out.stop"
    (
        while [ ! -e "$out.stop" ] && kill -0 "$parent" 2>/dev/null; do
            port=$(PGPASSWORD=it-super PGOPTIONS="-c statement_timeout=1500" timeout -k 1 4 psql -X -q -At \
                "host=$hosts port=$ports dbname=postgres user=postgres connect_timeout=2 target_session_attrs=read-write" \
                -c "insert into it_probe values (0) returning inet_server_port()" 2>/dev/null)
            if [ -n "$port" ]; then
                for m in $map; do [ "${m%%=*}" = "$port" ] && echo "$(now_ms) ${m#*=}" >>"$out"; done
            else
                sleep 0.02
            fi
        done
    ) &
    BG_PIDS+=("$!")
    WRITER_PID=$!
}

# stop_bg FILE PID: ask a sampler/writer to finish its round, then wait for it
stop_bg() {
    local out="$1" pid="$2"
    touch "$out.stop"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# start_leader_watch FILE: from now on, append "<ms> <line>" for each line etcdctl prints
# watching the leader key: "PUT" / "DELETE", the key, the value. etcd deletes the key when its
# lease expires, so a DELETE nobody asked for is the lease's expiry, the moment another node may
# take over; the tests order the old primary's last write and its fence against it. The watch
# starts at the revision read now, so events are not lost while etcdctl connects.
start_leader_watch() {
    local out="$1" parent=$$ rev
    rev=$(etcdctl_ get "/service/$SCOPE/leader" -w json | jq -r '.header.revision') || fail "cannot read etcd's revision"
    [ -n "$rev" ] && [ "$rev" != null ] || fail "cannot read etcd's revision"
    (
        etcdctl_ watch --rev "$((rev + 1))" "/service/$SCOPE/leader" 2>/dev/null |
            while IFS= read -r line && kill -0 "$parent" 2>/dev/null; do echo "$(now_ms) $line" >>"$out"; done
    ) &
    LEADER_WATCH_PID=$!
    BG_PIDS+=("$LEADER_WATCH_PID")
}
# leader_deleted_after FILE MS: ms of the first deletion of the leader key at or after MS
leader_deleted_after() { awk -v a="$2" '$1 >= a && $2 == "DELETE" {print $1; exit}' "$1"; }
# sampler rounds started at or after MS in which node N acknowledged a write (none when a write
# of N surely came before MS: a round's acknowledgements fall between its start and its end)
sampler_ok_from() { awk -v n="$2" -v a="$3" '$1 >= a {for (i = 3; i <= NF; i++) if ($i == n) print}' "$1"; }

# sampler rounds in which more than one node acknowledged a write
sampler_double_primaries() { awk 'NF > 3' "$1"; }
# last round end (ms) at which node N acknowledged a write, empty if never
sampler_last_ok() { awk -v n="$2" '{for (i = 3; i <= NF; i++) if ($i == n) t = $2} END {print t}' "$1"; }
# first round start (ms) at which node N acknowledged a write at or after ms AFTER
sampler_first_ok_after() { awk -v n="$2" -v a="$3" '$1 >= a && !t {for (i = 3; i <= NF; i++) if ($i == n) t = $1} END {print t}' "$1"; }

# largest gap (ms) between consecutive acknowledged writes in a writer file, with its start
writer_max_gap() { awk 'NR > 1 && $1 - p > g {g = $1 - p; s = p} {p = $1} END {printf "%.0f %.0f\n", g, s}' "$1"; }
# median interval (ms) between consecutive acknowledged writes: the resolution of the gap
writer_median_interval() { awk 'NR > 1 {print $1 - p} {p = $1}' "$1" | sort -n | awk '{a[NR] = $1} END {print (NR ? a[int((NR + 1) / 2)] : 0)}'; }

# node that the replica N streams from, as a PG port number (empty when not streaming)
streaming_from_port() { psql_n "$1" -c "select sender_port from pg_stat_wal_receiver where status = 'streaming'" 2>/dev/null; }
streams_from() { [ "$(streaming_from_port "$1")" = "${PG_PORT[$2]}" ]; }

# ms timestamp of the last line of an agent log containing TEXT (logs start "YYYY-MM-DD HH:MM:SS.mmm")
log_time_ms() { local l; l=$(grep -F -- "$2" "$1" | tail -1 | cut -c1-23); [ -n "$l" ] && date -d "$l" +%s%3N; }
# log_span_ms LOG1 TEXT1 LOG2 TEXT2: ms from the last TEXT1 line in LOG1 to the last TEXT2 line in LOG2
log_span_ms() { local a b; a=$(log_time_ms "$1" "$2"); b=$(log_time_ms "$3" "$4"); [ -n "$a" ] && [ -n "$b" ] && echo $((b - a)) || echo "?"; }
