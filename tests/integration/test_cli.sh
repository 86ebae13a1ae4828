#!/bin/bash
# The operator CLI against a real 3-node cluster: list (table and --json), show-config and
# edit-config (ttl, and a dynamic postgresql parameter that must reach every node without an
# agent restart), pause/resume, restart, reinit, failover + history, and the exit codes of
# refused and malformed commands.
source "$(dirname "$0")/lib.sh"

cli() { "$BIN" "$1" --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE" "${@:2}" </dev/null; }
# expect_rc CODE CMD ARGS...: run `pgvigil CMD ARGS` against the cluster, want exit CODE
expect_rc() {
    local want="$1" rc
    shift
    cli "$@" >"$T_DIR/cli.out" 2>"$T_DIR/cli.err"
    rc=$?
    [ "$rc" = "$want" ] || fail "pgvigil $* exited $rc, expected $want; stdout: $(cat "$T_DIR/cli.out"); stderr: $(cat "$T_DIR/cli.err")"
}
agents_alive() {
    local n
    for n in 1 2 3; do kill -0 "${AGENT_PID[$n]}" 2>/dev/null || fail "agent of node$n died"; done
}
show_work_mem() { [ "$(psql_n "$1" -c 'show work_mem' 2>/dev/null)" = "$2" ]; }
all_work_mem() { local n; for n in 1 2 3; do show_work_mem "$n" "$1" || return 1; done; }
lease_ttl() {   # the TTL granted to the lease of the leader key (jq would round the 64-bit id)
    local id
    id=$(etcdctl_ get "/service/$SCOPE/leader" -w fields | awk '$1 == "\"Lease\"" { print $3 }')
    [ -n "$id" ] || return 1
    etcdctl_ lease timetolive "$(printf '%x' "$id")" -w json | jq -r '."granted-ttl"'
}
lease_ttl_is() { [ "$(lease_ttl)" = "$1" ]; }
member_state() { cli list --json | jq -r --arg m "$1" '.[] | select(.Member == $m) | .State'; }
member_running() { case "$(member_state "$1")" in running|streaming) return 0;; esac; return 1; }
postmaster_changed() { local p; p=$(postmaster_pid "$1"); [ -n "$p" ] && [ "$p" != "$2" ]; }
config_ttl_is() { curl -s "http://127.0.0.1:${API_PORT[$1]}/config" | jq -e ".ttl == $2" >/dev/null; }
count_is() { [ "$(psql_n "$1" -c "select count(*) from $2" 2>/dev/null)" = "$3" ]; }

# list shows what the members published in etcd, which lags what cluster_healthy sees in
# postgres: a replica already streaming can still be published as "creating replica" with no
# timeline for a tick or two. Wait for the records the checks below are about (printed, so that
# a timeout shows them).
list_settled() {
    local j
    j=$(cli list --json) || return 1
    echo "$j"
    echo "$j" | jq -e 'length == 3 and ([.[] | select(.Role == "Leader") | .Member] == ["node1"])
        and ([.[] | .TL] == [1,1,1])
        and ([.[] | select(.Role == "Replica") | .State] == ["streaming","streaming"])
        and ([.[] | select(.Role == "Replica") | ."Lag in MB" | type] == ["number","number"])' >/dev/null
}
# the history key is written by the new leader after its promotion, not when the leader key moves
history_has() { local h; h=$(cli history) || return 1; echo "$h"; grep -Eq "$1" <<<"$h"; }

start_cluster 3

log "list"
wait_until 30 "list shows node1 leading and two streaming replicas, all on TL 1" list_settled
expect_rc 0 list
out=$(cat "$T_DIR/cli.out")
for n in 1 2 3; do
    grep -Eq "^\| node$n " <<<"$out" || fail "list does not show node$n: $out"
done
grep -Eq '^\| node1 +\| 127\.0\.0\.1:'"${PG_PORT[1]}"' +\| Leader +\| running +\| +1 \|' <<<"$out" || fail "list: no Leader row for node1 on TL 1: $out"
[ "$(echo "$out" | grep -c '| Replica ')" = 2 ] || fail "list: expected 2 Replica rows: $out"
[ "$(echo "$out" | grep -Ec '\| +1 \|')" = 3 ] || fail "list: expected TL 1 on every row: $out"
grep -q "Cluster: $SCOPE" <<<"${out%%$'\n'*}" || fail "list: no cluster title: $out"
grep -q "Maintenance mode" <<<"$out" && fail "list shows maintenance mode before pause"
# -c FILE works as well as --dcs-url
grep -q "| node3 " <<<"$("$BIN" list -c "$T_DIR/node2.yml")" || fail "list -c node2.yml does not show node3"

log "list --json"
expect_rc 0 list --json
j=$(cat "$T_DIR/cli.out")
echo "$j" | jq -e 'type == "array" and length == 3' >/dev/null || fail "list --json is not an array of 3: $j"
echo "$j" | jq -e '[.[] | select(.Role == "Leader") | .Member] == ["node1"]
    and ([.[] | .TL] == [1,1,1]) and ([.[] | .Cluster] | unique) == ["'"$SCOPE"'"]
    and ([.[] | select(.Role == "Replica") | .State] == ["streaming","streaming"])
    and ([.[] | select(.Role == "Replica") | ."Lag in MB" | type] == ["number","number"])' >/dev/null \
    || fail "list --json content: $j"

log "show-config / edit-config ttl"
expect_rc 0 show-config
grep -Eq '^  "ttl": '"$T_TTL"',?$' "$T_DIR/cli.out" || fail "show-config does not show ttl $T_TTL: $(cat "$T_DIR/cli.out")"
cli show-config | jq -e '.loop_wait == 1' >/dev/null || fail "show-config is not JSON"
expect_rc 0 edit-config --set ttl=7 --force
grep -q "ttl: $T_TTL -> 7" "$T_DIR/cli.out" || fail "edit-config did not print the diff: $(cat "$T_DIR/cli.out")"
cli show-config | jq -e '.ttl == 7' >/dev/null || fail "show-config does not reflect ttl=7"
expect_rc 0 edit-config --set ttl=7 --force
grep -q "no changes" "$T_DIR/cli.out" || fail "edit-config of the same value: $(cat "$T_DIR/cli.out")"
# invalid values are refused before anything is written
expect_rc 3 edit-config --set ttl=abc --force
expect_rc 3 edit-config --set loop_wait=100 --force
cli show-config | jq -e '.ttl == 7 and .loop_wait == 1' >/dev/null || fail "a refused edit-config changed the config"
log "leader lease TTL: $(lease_ttl)"
wait_until 30 "the leader's lease is renewed with ttl 7" lease_ttl_is 7
for n in 1 2 3; do wait_until 20 "node$n /config shows ttl 7" config_ttl_is "$n" 7; done
sleep 3
agents_alive
cluster_healthy "1 2 3" || fail "cluster unhealthy after ttl=7"
[ "$(leader)" = node1 ] || fail "leader changed after ttl=7: '$(leader)'"
accepts_writes 1 || fail "node1 does not accept writes after ttl=7"

log "edit-config postgresql.parameters.work_mem=8MB"
all_work_mem 8MB && fail "work_mem is already 8MB"
expect_rc 0 edit-config --set postgresql.parameters.work_mem=8MB --force
cli show-config | jq -e '.postgresql.parameters.work_mem == "8MB"' >/dev/null || fail "show-config lacks work_mem 8MB"
deadline=$(( $(date +%s) + 20 ))
until all_work_mem 8MB; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "dynamic postgresql parameter work_mem=8MB not applied within 20 s: $(for n in 1 2 3; do echo -n "node$n=$(psql_n $n -c 'show work_mem') "; done)"
    sleep 0.5
done
log "work_mem=8MB on every node after $(( 20 - (deadline - $(date +%s)) )) s"
for n in 1 2 3; do
    [ "$(psql_n "$n" -c "select pending_restart from pg_settings where name = 'work_mem'")" = f ] || fail "node$n: work_mem pending restart"
done
agents_alive

log "pause / resume"
expect_rc 0 pause --wait
grep -q "Maintenance mode: on" <<<"$(cli list)" || fail "list does not show maintenance mode after pause"
curl -s "http://127.0.0.1:${API_PORT[2]}/patroni" | jq -e '.pause == true' >/dev/null || fail "node2 /patroni does not report pause"
expect_rc 0 pause
grep -q "already paused" "$T_DIR/cli.out" || fail "second pause: $(cat "$T_DIR/cli.out")"
expect_rc 0 resume --wait
grep -q "Maintenance mode" <<<"$(cli list)" && fail "list still shows maintenance mode after resume"
cluster_healthy "1 2 3" || fail "cluster unhealthy after pause/resume"

log "restart node2"
pm=$(postmaster_pid 2)
expect_rc 0 restart node2
grep -q "^node2: " "$T_DIR/cli.out" || fail "restart printed: $(cat "$T_DIR/cli.out")"
wait_until 60 "node2's postmaster PID changes" postmaster_changed 2 "$pm"
wait_until 60 "node2 streaming after restart" is_streaming 2
show_work_mem 2 8MB || fail "node2 lost work_mem=8MB over the restart"
[ "$(leader)" = node1 ] || fail "restart of node2 changed the leader"

log "reinit node3"
echo marker >"$T_DIR/node3/data/it_marker"
psql_n 1 -c "create table before_reinit as select generate_series(1, 500) x" || fail "write on node1"
expect_rc 0 reinit node3 --force
grep -q "^node3: " "$T_DIR/cli.out" || fail "reinit printed: $(cat "$T_DIR/cli.out")"
wait_until 90 "node3's data directory rebuilt" bash -c "[ ! -e '$T_DIR/node3/data/it_marker' ]"
wait_until 120 "node3 streaming after reinit" is_streaming 3
wait_until 30 "node3 has the rows" count_is 3 before_reinit 500
grep -v ' DEBUG: ' "$T_DIR/node3.log" | grep -i "clon\|basebackup" >/dev/null || fail "node3's log does not mention the re-clone"
# reinit of the leader is refused by its agent
expect_rc 1 reinit node1 --force
grep -qi "leader" "$T_DIR/cli.err" || fail "reinit of the leader: $(cat "$T_DIR/cli.err")"
is_primary 1 || fail "reinit request on the leader disturbed it"

log "failover --candidate node2, history"
expect_rc 0 history
grep -q "no failovers or switchovers yet" "$T_DIR/cli.out" || fail "history before any failover: $(cat "$T_DIR/cli.out")"
wait_until 30 "node2 running in list" member_running node2
expect_rc 0 failover --candidate node2 --force --wait 90
grep -q "new leader node2" "$T_DIR/cli.out" || fail "failover printed: $(cat "$T_DIR/cli.out")"
[ "$(leader)" = node2 ] || fail "leader after failover is '$(leader)'"
wait_until 30 "node2 is a writable primary" accepts_writes 2
wait_until 120 "cluster healthy under node2" cluster_healthy "1 2 3"
wait_until 30 "history has an entry for TL 1 -> node2" history_has '^\| +1 \| +[0-9A-F]+/[0-9A-F]+ \| .* \| node2 +\|$'
expect_rc 0 history
# member records are republished within loop_wait: give list a moment to catch up
list_after_failover() { cli list --json | jq -e '[.[] | select(.Role == "Leader") | .Member] == ["node2"] and ([.[].TL] | unique) == [2]' >/dev/null; }
wait_until 15 "list shows node2 leading on TL 2 everywhere" list_after_failover
agents_alive

log "exit codes"
expect_rc 5 restart nosuch
grep -q "^error: nosuch is not a member" "$T_DIR/cli.err" || fail "restart nosuch: $(cat "$T_DIR/cli.err")"
expect_rc 5 reinit nosuch --force
expect_rc 5 failover --candidate nosuch --force
expect_rc 5 switchover --candidate nosuch --force
expect_rc 5 failover --candidate node2 --force      # already the leader
expect_rc 5 switchover --leader node1 --force        # not the leader
expect_rc 2 list --bogus
grep -q "^error: unknown option --bogus" "$T_DIR/cli.err" || fail "list --bogus: $(cat "$T_DIR/cli.err")"
expect_rc 2 restart --bogus node2
expect_rc 2 edit-config --set nokey --force
expect_rc 2 edit-config --force
expect_rc 2 failover --force                         # no candidate
expect_rc 2 switchover --wait abc --force
expect_rc 2 list extra-arg
expect_rc 2 reinit node3                             # no terminal to confirm on, no --force
expect_rc 2 switchover                               # idem
"$BIN" nosuchcommand >/dev/null 2>&1; rc=$?
[ "$rc" = 2 ] || fail "unknown command exited $rc"
"$BIN" list --scope "$SCOPE" --dcs-url "ftp://127.0.0.1:$E_PORT" >/dev/null 2>&1; rc=$?
[ "$rc" = 2 ] || fail "list with an ftp:// --dcs-url exited $rc"
[ "$(leader)" = node2 ] || fail "refused commands changed the leader"
cluster_healthy "1 2 3" || fail "cluster unhealthy at the end"
agents_alive
echo "PASS [$T_NAME]"
