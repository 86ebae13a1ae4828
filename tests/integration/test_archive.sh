#!/bin/bash
# WAL archiving through the pgvigil_archive module and the agent's archive service, into a POSIX
# repository (a small tmpfs, so that it can fill up):
#   1. the primary archives: every switched segment is in the repository, and what wal-fetch
#      restores from it is byte for byte what pg_wal held;
#   2. the repository fills up: archiving fails loudly (pg_stat_archiver, postgres log, agent
#      log, metrics, an archive_failing notification), PostgreSQL keeps the WAL file ready, and
#      once space is back it is archived by itself;
#   3. a segment the primary could not store (repository full) when it was killed is stored by
#      the standby that received it (archive_mode always), so verify finds no gap; the new
#      primary archives the new timeline's history file, the old timeline's last partial segment
#      and its own segments;
#   4. wal-fetch (restore_command): a missing file exits 1, a damaged copy exits 126 and names it.
source "$(dirname "$0")/lib.sh"

[ -f /usr/lib/postgresql/15/lib/pgvigil_archive.so ] || fail "pgvigil_archive.so is not installed (make pgext-install)"
REPO="$T_DIR/repo"
mkdir -p "$REPO"
mount -t tmpfs -o size=48m pgvigil-it-repo "$REPO" || fail "cannot mount a tmpfs for the repository"
unmount_repo() { umount -l "$REPO" 2>/dev/null; return 0; }
CLEANUP_HOOKS+=(unmount_repo)
alloc_port HOOK_PORT
/usr/bin/python3 "$(dirname "$0")/webhook_sink.py" "$HOOK_PORT" "$T_DIR/hooks.jsonl" it-hook-secret >>"$T_DIR/hooks.log" 2>&1 &
EXTRA_PIDS+=("$!")
NODE_EXTRA="backup:
  repository:
    path: $REPO
  archive_workers: 2
notify:
  webhook:
    url: http://127.0.0.1:$HOOK_PORT/pgvigil
    secret: it-hook-secret"
start_cluster 2
l=$(leader); ln=$(node_of "$l")
[ -n "$ln" ] || fail "no leader"
for n in 1 2; do [ "$n" != "$ln" ] && rn=$n; done
[ "$(psql_n "$ln" -c 'show archive_library')" = pgvigil_archive ] || fail "archive_library is not pgvigil_archive on $l"
[ "$(psql_n "$ln" -c 'show archive_mode')" = always ] || fail "archive_mode is not always"
grep -q "archive: storing WAL in the repository $REPO" "$T_DIR/$l.log" || fail "the agent of $l did not start its archive service"

# ---- 1. switched segments reach the repository, intact -------------------------------------------
stored() { [ -f "$REPO/wal/${1:0:8}/$1" ]; }
psql_n "$ln" -c "create table a(id int, pad text)" || fail "create table"
segs=""
for i in 1 2 3; do
    psql_n "$ln" -c "insert into a select g, repeat('x', 200) from generate_series(1, 20000) g" || fail "insert"
    seg=$(psql_n "$ln" -c "select pg_walfile_name(pg_current_wal_lsn())")
    psql_n "$ln" -c "select pg_switch_wal()" >/dev/null
    segs="$segs $seg"
done
for seg in $segs; do
    wait_until 60 "$seg in the repository" stored "$seg"
    "$BIN" wal-fetch -c "$T_DIR/node$ln.yml" "$seg" "$T_DIR/fetched" >"$T_DIR/fetch.out" 2>&1 ||
        fail "wal-fetch $seg: $(cat "$T_DIR/fetch.out")"
    src="$T_DIR/node$ln/data/pg_wal/$seg"
    [ -f "$src" ] && { cmp -s "$src" "$T_DIR/fetched" || fail "$seg restored from the repository differs from pg_wal's"; }
done
[ "$(psql_n "$ln" -c 'select failed_count from pg_stat_archiver')" = 0 ] || fail "archiving failed: $(psql_n "$ln" -c 'select * from pg_stat_archiver')"
stored_kb=$(du -sk "$REPO/wal" | cut -f1)
# the repository is root's, readable by postgres's group, writable by nobody else
first_seg=${segs# }; first_seg=${first_seg%% *}
[ "$(stat -c '%U %G %a' "$REPO/wal/00000001/$first_seg")" = "root postgres 640" ] ||
    fail "stored WAL file: $(stat -c '%U %G %a' "$REPO/wal/00000001/$first_seg"), want root postgres 640"
[ "$(stat -c '%U %G %a' "$REPO/wal/00000001")" = "root postgres 750" ] || fail "repository directory: $(stat -c '%U %G %a' "$REPO/wal/00000001")"
# the agent (root) stores nothing the server's user points it at through a link
sock="/tmp/.pgvigil_archive.${PG_PORT[$ln]}"
runuser -u postgres -- ln -s /etc/passwd "$T_DIR/node$ln/data/pg_wal/0000000100000000000000AA"
reply=$(runuser -u postgres -- /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(("ARCHIVE 0000000100000000000000AA " + sys.argv[2] + "/pg_wal/0000000100000000000000AA\n").encode())
print(s.recv(600).decode().strip())' "$sock" "$T_DIR/node$ln/data")
rm -f "$T_DIR/node$ln/data/pg_wal/0000000100000000000000AA"
[[ "$reply" == "ERR "*"0000000100000000000000AA"*"symbolic link"* ]] || fail "a linked WAL path got: $reply"
stored 0000000100000000000000AA && fail "the agent stored a file a link pointed at"
log "part 1: segments$segs archived and restored intact (repository ${stored_kb} kB for $(ls "$REPO"/wal/*/ | wc -l) files)"

# ---- 2. a full repository: loud failure, WAL kept, resumes by itself -------------------------------
dd if=/dev/zero of="$REPO/filler" bs=1M count=64 >/dev/null 2>&1   # fills the tmpfs (ENOSPC)
psql_n "$ln" -c "insert into a select g, md5(g::text) from generate_series(1, 50000) g" || fail "insert"
full_seg=$(psql_n "$ln" -c "select pg_walfile_name(pg_current_wal_lsn())")
psql_n "$ln" -c "select pg_switch_wal()" >/dev/null
failed() { [ "$(psql_n "$ln" -c 'select failed_count > 0 from pg_stat_archiver')" = t ]; }
wait_until 60 "archiving $full_seg fails on the full repository" failed
stored "$full_seg" && fail "$full_seg stored although the repository is full"
[ -f "$T_DIR/node$ln/data/pg_wal/archive_status/$full_seg.ready" ] || fail "$full_seg is not kept ready in pg_wal"
grep -q "pgvigil_archive: could not archive \"$full_seg\".*No space left on device" "$T_DIR/node$ln/node$ln.postgresql.log" ||
    grep -rq "pgvigil_archive: could not archive \"$full_seg\".*No space left" "$T_DIR/node$ln" ||
    fail "postgres did not log why archiving $full_seg failed"
grep -q "archive: .*No space left on device" "$T_DIR/$l.log" || fail "the agent did not log the full repository"
metric() { curl -s "http://127.0.0.1:${API_PORT[$ln]}/metrics" | awk -v m="$1" '$1 ~ "^"m"[{ ]" {print $2}'; }
backlog_seen() { [ "$(metric pgvigil_archive_ready_files)" -ge 1 ] && [ "$(metric pgvigil_archive_failures_total)" -ge 1 ]; }
wait_until 30 "the metrics show the backlog and the failures" backlog_seen
# what a restore would lose now: at least the whole segment that could not be stored
lag_seen() { [ "$(metric pgvigil_archive_lag_bytes)" -ge 16777216 ] && [ "$(metric pgvigil_archive_rpo_seconds)" -ge 0 ]; }
wait_until 30 "the metrics show the unarchived WAL (lag and RPO)" lag_seen
log "while full: lag $(metric pgvigil_archive_lag_bytes) bytes, RPO $(metric pgvigil_archive_rpo_seconds) s"
alerted() {
    [ -s "$T_DIR/hooks.jsonl" ] && python3 -c '
import json, sys
sys.exit(not any(json.loads(json.loads(l)["body"])["event"] == "archive_failing" for l in open(sys.argv[1])))
' "$T_DIR/hooks.jsonl"
}
wait_until 30 "an archive_failing notification" alerted
ls "$REPO"/wal/*/ | grep -q 'pgvigil-tmp' && fail "a partial write was left in the repository"
rm -f "$REPO/filler"
wait_until 120 "$full_seg archived once space is back" stored "$full_seg"
archived_again() { [ "$(psql_n "$ln" -c "select last_archived_wal >= '$full_seg' from pg_stat_archiver")" = t ]; }
wait_until 60 "pg_stat_archiver reports $full_seg archived" archived_again
lag_back() { [ "$(metric pgvigil_archive_lag_bytes)" -lt 16777216 ]; }
wait_until 30 "the lag metric back under one segment" lag_back
log "part 2: a full repository failed $full_seg loudly, kept it ready, and archived it once space was back"

# ---- 3. failover: the new primary archives the new timeline ----------------------------------------
# a segment the primary finished but could not store (the repository full) when it died: the
# standby, which archives what it receives (archive_mode always), stores it once space is back
dd if=/dev/zero of="$REPO/filler" bs=1M count=64 >/dev/null 2>&1
psql_n "$ln" -c "insert into a select g, md5(g::text) from generate_series(1, 20000) g" || fail "insert"
lost_seg=$(psql_n "$ln" -c "select pg_walfile_name(pg_current_wal_lsn())")
psql_n "$ln" -c "select pg_switch_wal()" >/dev/null
wait_until 60 "archiving $lost_seg fails on the full repository" failed
# WAL in the middle of a segment, on the replica too: its last segment of timeline 1 is partial
psql_n "$ln" -c "insert into a values (0, 'before failover')" || fail "insert"
lsn=$(psql_n "$ln" -c "select pg_current_wal_lsn()")
replayed() { [ "$(psql_n "$rn" -c "select pg_last_wal_replay_lsn() >= '$lsn'")" = t ]; }
wait_until 30 "node$rn replayed $lsn" replayed
kill9_node "$ln"
stored "$lost_seg" && fail "$lost_seg was stored although the repository was full"
rm -f "$REPO/filler"
wait_until 60 "node$rn promoted" bash -c "[ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[$rn]} -U postgres -d postgres -Atc 'select pg_is_in_recovery()' 2>/dev/null)\" = f ]"
tl=$(psql_n "$rn" -c "select timeline_id from pg_control_checkpoint()")
hist=$(printf '%08X.history' 2)
wait_until 60 "the history file of timeline 2 in the repository" test -f "$REPO/wal/00000002/$hist"
has_partial() { ls "$REPO/wal/00000001/" | grep -q '\.partial$'; }
wait_until 60 "the old timeline's partial segment in the repository" has_partial
psql_n "$rn" -c "insert into a values (1, 'after failover')" || fail "write on the new primary"
seg2=$(psql_n "$rn" -c "select pg_walfile_name(pg_current_wal_lsn())")
psql_n "$rn" -c "select pg_switch_wal()" >/dev/null
wait_until 60 "$seg2 (timeline 2) in the repository" stored "$seg2"
wait_until 60 "$lost_seg, which the dead primary never stored, in the repository" stored "$lost_seg"
"$BIN" backup verify -c "$T_DIR/node$rn.yml" >"$T_DIR/verify3.out" 2>&1
grep -q " 0 gap(s)" "$T_DIR/verify3.out" || fail "a WAL gap after the failover: $(cat "$T_DIR/verify3.out")"
log "part 3: after the failover node$rn archived $hist, $(ls "$REPO/wal/00000001/" | grep '\.partial$') and $seg2 (checkpoint timeline $tl)"

# ---- 4. wal-fetch as restore_command --------------------------------------------------------------
"$BIN" wal-fetch -c "$T_DIR/node$rn.yml" 0000000100000000000000FF "$T_DIR/none" >"$T_DIR/fetch.out" 2>&1
rc=$?
[ "$rc" = 1 ] || fail "wal-fetch of a missing file: exit $rc, want 1 ($(cat "$T_DIR/fetch.out"))"
first=${segs# }; first=${first%% *}
obj="$REPO/wal/00000001/$first"
python3 - "$obj" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x20
open(p, "wb").write(b)
PY
"$BIN" wal-fetch -c "$T_DIR/node$rn.yml" "$first" "$T_DIR/damaged" >"$T_DIR/fetch.out" 2>&1
rc=$?
[ "$rc" = 126 ] || fail "wal-fetch of a damaged file: exit $rc, want 126 ($(cat "$T_DIR/fetch.out"))"
grep -q "wal/00000001/$first" "$T_DIR/fetch.out" || fail "wal-fetch did not name the damaged file: $(cat "$T_DIR/fetch.out")"
[ -e "$T_DIR/damaged" ] && fail "wal-fetch wrote a damaged file"
[ "$(grep -c '^error: ' "$T_DIR/fetch.out")" = 1 ] || fail "wal-fetch's error is not one line: $(cat "$T_DIR/fetch.out")"
log "part 4: wal-fetch: missing -> 1, damaged -> 126 ($(head -1 "$T_DIR/fetch.out"))"
echo "PASS [$T_NAME]"
