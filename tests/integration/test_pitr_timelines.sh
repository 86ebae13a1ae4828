#!/bin/bash
# Point-in-time restore across timelines. A 3-node cluster archives into a POSIX repository; a
# writer commits one row at a time (id = its own sequence number, ts = clock_timestamp() in the
# transaction) through a libpq connection that follows the primary, and records for each
# acknowledged commit the server's clock_timestamp() and pg_current_wal_lsn() just after it: the
# commit record's timestamp, what recovery_target_time compares, lies between the row's ts and
# that acknowledgement time. Meanwhile: a full backup on timeline 1, a switchover (timeline 2), a
# second full backup on timeline 2, a kill -9 of the primary's postgres and agent (a replica is
# promoted: timeline 3). Once everything is archived (history files and .partial segments
# included, `backup verify` finds no gap), restores to times and LSNs on each timeline (picked
# in the middle of gaps between commits, away from the events) and to the end of the archive,
# from either backup (given, or the one restore picks: the newest that ended before the target),
# each started as its own server: each holds exactly the rows committed on
# the timeline history before its target. The truth is the final primary's table (the history
# that survived): every acknowledged row is in it, except ones acknowledged by the killed
# primary in its last moments and never replicated (asynchronous replication; counted); rows
# that were never acknowledged (in flight at an event) are in it or not.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_backup.sh"
source "$(dirname "$0")/lib_probe.sh"

backup_cluster 3
[ "$(leader)" = node1 ] || fail "expected node1 to bootstrap, leader is '$(leader)'"
psql_n 1 -c "create table pitr(id int primary key, ts timestamptz not null default clock_timestamp())" || fail "create table"
member_running_replica() { etcdctl_ get --print-value-only "/service/$SCOPE/members/node$1" | jq -e '.state == "running" and .role == "replica"'; }
running_replicas() { local n; for n in "$@"; do member_running_replica "$n" || return 1; done; }

# take_backup N: a full backup of node N's server; prints its label
take_backup() {
    "$BIN" backup take -c "$T_DIR/node$1.yml" >"$T_DIR/backup$1.out" 2>&1 || fail "backup take on node$1: $(cat "$T_DIR/backup$1.out")"
    sed -n 's/^backup \([0-9T]*F\) complete.*/\1/p' "$T_DIR/backup$1.out"
}
label1=$(take_backup 1)
[ -n "$label1" ] || fail "no backup label in: $(cat "$T_DIR/backup1.out")"
log "backup 1 (timeline 1): $(cat "$T_DIR/backup1.out")"

# ---- the writer ---------------------------------------------------------------------------------
# one line per attempt: "ID START_MS END_MS [TS PORT [ACK LSN WALFILE]]": TS the row's
# clock_timestamp() (epoch s), PORT the server that acknowledged it, ACK the server's
# clock_timestamp() after the commit, LSN pg_current_wal_lsn() then, WALFILE its segment (whose
# first 8 digits are the primary's timeline). Only ID START END: no acknowledgement.
W="$T_DIR/writes"
hosts=""; ports=""
for n in 1 2 3; do hosts="${hosts:+$hosts,}127.0.0.1"; ports="${ports:+$ports,}${PG_PORT[$n]}"; done
parent=$$
(
    k=0
    while [ ! -e "$W.stop" ] && kill -0 "$parent" 2>/dev/null; do
        k=$((k + 1))
        t0=$(now_ms)
        out=$(PGPASSWORD=it-super PGOPTIONS="-c statement_timeout=1500" timeout -k 1 4 psql -X -q -At -F ' ' \
            "host=$hosts port=$ports dbname=postgres user=postgres connect_timeout=2 target_session_attrs=read-write" \
            -c "insert into pitr(id) values ($k) returning extract(epoch from ts), inet_server_port()" \
            -c "select extract(epoch from clock_timestamp()), pg_current_wal_lsn(), pg_walfile_name(pg_current_wal_lsn())" 2>/dev/null)
        t1=$(now_ms)
        echo "$k $t0 $t1" $out >>"$W"
        sleep 0.07
    done
) &
WRITER_PID=$!
BG_PIDS+=("$WRITER_PID")
# acked_on N TLI: rows acknowledged by node N on timeline TLI so far
acked_on() { awk -v p="${PG_PORT[$1]}" -v t="$(printf %08X "$2")" 'NF >= 8 && $5 == p && substr($8, 1, 8) == t' "$W" 2>/dev/null | wc -l; }
acked_on_at_least() { local c; c=$(acked_on "$1" "$2"); echo "node$1 acknowledged $c rows on timeline $2"; [ "$c" -ge "$3" ]; }
wait_until 60 "40 rows acknowledged on timeline 1" acked_on_at_least 1 1 40

# ---- switchover node1 -> node2: timeline 2 --------------------------------------------------------
wait_until 30 "node2 and node3 published as running replicas" running_replicas 2 3
ev_sw0=$(now_ms)
# (an archive module that resets the archiver's latch while it waits for the agent holds the
# primary's clean shutdown 60 s, and the switchover fails: pgvigil_archive before its fix)
"$BIN" switchover --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE" --candidate node2 --force >"$T_DIR/switchover.out" 2>&1 ||
    fail "switchover: $(cat "$T_DIR/switchover.out")"
wait_until 60 "node2 acknowledges the writer's rows" acked_on_at_least 2 2 1
ev_sw1=$(now_ms)
log "switchover to node2: writes on node2 after $((ev_sw1 - ev_sw0)) ms"
wait_until 60 "node1 streams from node2" streams_from 1 2
wait_until 60 "node3 streams from node2" streams_from 3 2
wait_until 60 "40 rows acknowledged on timeline 2" acked_on_at_least 2 2 40
label2=$(take_backup 2)
[ -n "$label2" ] && [ "$label2" != "$label1" ] || fail "no second backup label in: $(cat "$T_DIR/backup2.out")"
log "backup 2 (timeline 2): $(cat "$T_DIR/backup2.out")"
n2=$(acked_on 2 2)
wait_until 60 "30 more rows on timeline 2 after backup 2" acked_on_at_least 2 2 $((n2 + 30))

# ---- kill -9 of node2 (postgres and agent): a replica is promoted, timeline 3 -------------------------
wait_until 30 "node1 and node3 published as running replicas" running_replicas 1 3
ev_kill=$(now_ms)
kill9_node 2
log "killed node2 (agent and postmaster)"
new_primary() { l=$(leader); [ -n "$l" ] && [ "$l" != node2 ] && is_primary "$(node_of "$l")"; }
wait_until $((T_TTL * 4 + 30)) "a new leader that is a writable primary" new_primary
fp=$(node_of "$(leader)")
# timeline 3 as a rule; a number is never used twice, so a replica that reserved 3 in an election
# it then lost (a race during the switchover) makes the failover's timeline 4: take what it is
tl3=$((16#$(psql_n "$fp" -c "select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")))
[ "$tl3" -ge 3 ] || fail "the new primary node$fp is on timeline $tl3, not after timeline 2"
[ "$tl3" = 3 ] || log "the failover promoted node$fp on timeline $tl3 (a lower number was reserved by an election it lost)"
wait_until 60 "node$fp acknowledges the writer's rows" acked_on_at_least "$fp" "$tl3" 1
ev_fo1=$(now_ms)
log "failover to node$fp: writes on node$fp $((ev_fo1 - ev_kill)) ms after the kill"
wait_until 60 "40 rows acknowledged on timeline $tl3" acked_on_at_least "$fp" "$tl3" 40
touch "$W.stop"
for _ in $(seq 1 60); do kill -0 "$WRITER_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$WRITER_PID" 2>/dev/null && fail "the writer did not stop"
wait "$WRITER_PID" 2>/dev/null

# ---- everything archived -----------------------------------------------------------------------
seg=$(psql_n "$fp" -c "select pg_walfile_name(pg_current_wal_lsn())")
[ "${seg:0:8}" = "$(printf %08X "$tl3")" ] || fail "the final primary node$fp writes $seg, not on timeline $tl3"
psql_n "$fp" -c "select pg_switch_wal()" >/dev/null
stored() { [ -f "$REPO/wal/${1:0:8}/$1" ]; }
no_ready() { local r; r=$(ls "$T_DIR/node$fp/data/pg_wal/archive_status/" | grep '\.ready$'); echo "ready: $r"; [ -z "$r" ]; }
wait_until 60 "$seg in the repository" stored "$seg"
wait_until 60 "nothing left to archive on node$fp" no_ready
for h in 00000002.history "$(printf %08X "$tl3").history"; do stored "$h" || fail "$h is not in the repository: $(ls "$REPO"/wal/*)"; done
p1=$(ls "$REPO/wal/00000001/" | grep '\.partial$' | tr '\n' ' ')
p2=$(ls "$REPO/wal/00000002/" | grep '\.partial$' | tr '\n' ' ')
[ -n "$p1" ] || fail "no .partial segment of timeline 1 in the repository: $(ls "$REPO/wal/00000001/")"
[ -n "$p2" ] || fail "no .partial segment of timeline 2 in the repository: $(ls "$REPO/wal/00000002/")"
log "repository: $(for d in "$REPO"/wal/*/; do echo -n "$(basename "$d"): $(ls "$d" | grep -vc '\.sum$') files; "; done)partial: $p1$p2"
"$BIN" backup verify -c "$T_DIR/node$fp.yml" >"$T_DIR/verify.out" 2>&1 || fail "backup verify: $(cat "$T_DIR/verify.out")"
grep -q "2 restorable, .* 0 gap(s), 0 problem(s)" "$T_DIR/verify.out" || fail "verify summary: $(cat "$T_DIR/verify.out")"
log "verify: $(tail -1 "$T_DIR/verify.out")"

# ---- the truth and the targets ----------------------------------------------------------------------
psql_n "$fp" -F ' ' -c "select id, extract(epoch from ts) from pitr order by id" >"$T_DIR/final.txt" || fail "read the final table"
"$BIN" backup list -c "$T_DIR/node$fp.yml" --json >"$T_DIR/list.json" 2>&1 || fail "backup list: $(cat "$T_DIR/list.json")"
b1_stop=$(jq -r --arg l "$label1" '.[] | select(.label == $l) | .stop_time' "$T_DIR/list.json")
b2_start=$(jq -r --arg l "$label2" '.[] | select(.label == $l) | .start_time' "$T_DIR/list.json")
b2_stop=$(jq -r --arg l "$label2" '.[] | select(.label == $l) | .stop_time' "$T_DIR/list.json")
# targets.txt: "NAME|BACKUP(-: the default choice)|EXPECT_BACKUP|OPTION|VALUE|LAST_ID"; the
# restore must hold exactly the rows of final.txt up to LAST_ID
python3 - "$W" "$T_DIR/final.txt" "$T_DIR/targets.txt" "$ev_sw0" "$ev_sw1" "$ev_kill" "$ev_fo1" "${PG_PORT[2]}" \
    "$label1" "$label2" "$b1_stop" "$b2_start" "$b2_stop" "$tl3" <<'PY' || fail "the writer's record and the final table do not agree (above)"
import sys, datetime
from decimal import Decimal
wfile, ffile, tfile = sys.argv[1:4]
sw0, sw1, kill, fo1 = (Decimal(x) / 1000 for x in sys.argv[4:8])
killed_port = sys.argv[8]
label1, label2 = sys.argv[9:11]
def iso(s):  # backup list times: ISO 8601, UTC
    s = s.rstrip("Z").replace("T", " ")
    return Decimal(datetime.datetime.strptime(s[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()) + \
        (Decimal("0" + s[19:]) if len(s) > 19 else 0)
b1_stop, b2_start, b2_stop = (iso(x) for x in sys.argv[11:14])
tl3 = int(sys.argv[14])  # the failover's timeline
acked, unacked = {}, {}
for line in open(wfile):
    f = line.split()
    k, t0, t1 = int(f[0]), Decimal(f[1]) / 1000, Decimal(f[2]) / 1000
    if len(f) >= 5:
        ack = Decimal(f[5]) if len(f) >= 8 else t1
        acked[k] = dict(ts=Decimal(f[3]), port=f[4], ack=ack, lsn=f[6] if len(f) >= 8 else None,
                        tli=int(f[7][:8], 16) if len(f) >= 8 else None, t0=t0, t1=t1)
    else:
        unacked[k] = (t0, t1)
final = {}
for line in open(ffile):
    i, ts = line.split()
    final[int(i)] = Decimal(ts)
bad = []
ids = sorted(final)
for a, b in zip(ids, ids[1:]):
    if final[a] >= final[b]:
        bad.append(f"rows {a} and {b}: ts not increasing with the id")
lost = sorted(k for k in acked if k not in final)
for k in lost:
    r = acked[k]
    # asynchronous replication: only the killed primary's last acknowledgements may be lost
    if r["port"] != killed_port or r["t1"] < kill - 3:
        bad.append(f"acknowledged row {k} (port {r['port']}, acknowledged {kill - r['t1']:.3f} s before the kill) is lost")
for k in final:
    if k not in acked:
        t0, t1 = unacked.get(k, (None, None))
        if t0 is None:
            bad.append(f"row {k} in the table was never written")
        elif not (sw0 - 1 <= t0 <= sw1 + 1 or kill - 5 <= t0 <= fo1 + 1):
            bad.append(f"row {k} was not acknowledged, away from the events ({t0})")
for k in acked:
    if k in final and final[k] != acked[k]["ts"]:
        bad.append(f"row {k}: ts {final[k]} in the table, {acked[k]['ts']} acknowledged")
if bad:
    print("\n".join(bad[:20]))
    sys.exit(1)
in_flight = sorted(k for k in final if k not in acked)
print(f"writer: {len(acked)} acknowledged, {len(unacked)} not; final table: {len(final)} rows; "
      f"acknowledged but lost at the kill (async): {lost}; unacknowledged but committed: {in_flight}")

# quiet moments: no event, no unacknowledged attempt within 1.5 s
noisy = [(sw0, sw1), (kill, fo1)] + [(t0, t1) for t0, t1 in unacked.values()]
def quiet(t):
    return all(not (a - Decimal("1.5") <= t <= b + Decimal("1.5")) for a, b in noisy)
# gap after row k: k and k+1 both acknowledged on the same timeline and on the history, k+1
# started after k's acknowledgement; the target time in its middle, the LSN after k's commit
cands = {}
for k in sorted(acked):
    r, n = acked[k], acked.get(k + 1)
    if n is None or k not in final or k + 1 not in final or r["tli"] is None or n["tli"] != r["tli"]:
        continue
    if n["ts"] - r["ack"] < Decimal("0.02"):
        continue
    t = (r["ack"] + n["ts"]) / 2
    if quiet(t) and quiet(r["t1"]):
        cands.setdefault(r["tli"], []).append((k, t, r["lsn"]))
def pick(tli, frac, after=None, before=None):
    c = [x for x in cands.get(tli, []) if (after is None or x[1] > after + 1) and (before is None or x[1] < before - 1)]
    if not c:
        print(f"no quiet gap between commits on timeline {tli} (after {after}, before {before})")
        sys.exit(1)
    return c[min(len(c) - 1, int(len(c) * frac))]
def fmt(t):
    s, us = divmod(int(t * 1000000), 1000000)
    return datetime.datetime.fromtimestamp(s, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + f".{us:06d}+00"
out = []
k, t, _ = pick(1, 0.3, after=b1_stop)
out.append(f"tl1_time|-|{label1}|--target-time|{fmt(t)}|{k}")
k, _, lsn = pick(1, 0.7, after=b1_stop)
out.append(f"tl1_lsn|-|{label1}|--target-lsn|{lsn}|{k}")
k, t, _ = pick(2, 0.4, before=b2_start)
out.append(f"tl2_time|-|{label1}|--target-time|{fmt(t)}|{k}")
k, _, lsn = pick(2, 0.6)
out.append(f"tl2_lsn|{label1}|{label1}|--target-lsn|{lsn}|{k}")
k, t, _ = pick(tl3, 0.3)
out.append(f"tl3_time_b1|{label1}|{label1}|--target-time|{fmt(t)}|{k}")
k, t, _ = pick(tl3, 0.5)
out.append(f"tl3_time|-|{label2}|--target-time|{fmt(t)}|{k}")
k, _, lsn = pick(tl3, 0.7, after=b2_stop)
out.append(f"tl3_lsn|-|{label2}|--target-lsn|{lsn}|{k}")
out.append(f"end_b1|{label1}|{label1}|-|-|{max(final)}")
out.append(f"end|-|{label2}|-|-|{max(final)}")
open(tfile, "w").write("\n".join(out) + "\n")
PY
log "targets (name, --backup, backup expected, option, value, last id):"
cat "$T_DIR/targets.txt"

# ---- restores ------------------------------------------------------------------------------------
# (fd 3: what the loop runs may read its standard input)
while IFS='|' read -r -u 3 name backup want_backup opt val last; do
    args=()
    [ "$backup" != - ] && args+=(--backup "$backup")
    [ "$opt" != - ] && args+=("$opt" "$val")
    restore_to "$name" "$T_DIR/node$fp.yml" "${args[@]}"
    grep -q "^restored backup $want_backup " "$T_DIR/$name.restore.out" ||
        fail "restore $name used another backup than $want_backup: $(cat "$T_DIR/$name.restore.out")"
    restored_q "select id from pitr order by id" >"$T_DIR/$name.got" || fail "restore $name: cannot read the table"
    tli=$(restored_q "select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)::int")
    restored_stop "$T_DIR/$name"
    awk -v m="$last" '$1 + 0 <= m + 0 {print $1}' "$T_DIR/final.txt" >"$T_DIR/$name.want"
    [ "$(tail -1 "$T_DIR/$name.want")" = "$last" ] || fail "test error: row $last is not in the final table"
    stop_line=$(grep -E "recovery stopping|redo done" "$T_DIR/$name.sock/postgres.log" | head -1 | sed 's/^.*LOG: *//; s/ system usage:.*//')
    if ! cmp -s "$T_DIR/$name.got" "$T_DIR/$name.want"; then
        fail "restore $name ($opt $val, backup $want_backup): $(wc -l <"$T_DIR/$name.got") rows up to id $(tail -1 "$T_DIR/$name.got"), want $(wc -l <"$T_DIR/$name.want") up to id $last; differences (< restored, > expected):
$(diff "$T_DIR/$name.got" "$T_DIR/$name.want" | head -20)
recovery: $(grep -E "LOG|FATAL" "$T_DIR/$name.sock/postgres.log" | tail -15)"
    fi
    what="$opt $val"; [ "$opt" = - ] && what="to the end of the archive"
    log "restore $name ($what, backup $want_backup): $(wc -l <"$T_DIR/$name.want") rows up to id $last, as expected; promoted on timeline $tli; $stop_line"
    rm -rf "${T_DIR:?}/$name"
done 3<"$T_DIR/targets.txt"
echo "PASS [$T_NAME]"
