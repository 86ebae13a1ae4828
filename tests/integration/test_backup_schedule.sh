#!/bin/bash
# Scheduled backups: with backup.schedule set to every minute, the cluster takes one backup per
# minute, taken by the streaming standby (the leader lets a standby go first), recorded in
# pgvigil_backup_last, with no running key left once it ends; the backup is listed complete and
# verifies. A bad schedule is refused at start with the key named.
source "$(dirname "$0")/lib.sh"

[ -f /usr/lib/postgresql/15/lib/pgvigil_archive.so ] || fail "pgvigil_archive.so is not installed (make pgext-install)"
REPO="$T_DIR/repo"
NODE_EXTRA="backup:
  repository:
    path: $REPO
  schedule: '* * * * *'"
start_cluster 2
l=$(leader); ln=$(node_of "$l")
for n in 1 2; do [ "$n" != "$ln" ] && rn=$n; done

last() { etcdctl_ get --print-value-only "/service/$SCOPE/pgvigil_backup_last"; }
# the first minute that starts with the standby streaming (the leader may have taken one alone
# before the standby was there)
from_slot=$(( $(date +%s) / 60 + 1 ))
has_last() { local s; s=$(last | jq -r '.slot // 0' 2>/dev/null); [ "${s:-0}" -ge "$from_slot" ]; }
wait_until 180 "a scheduled backup for minute $from_slot or later recorded in pgvigil_backup_last" has_last
[ "$(last | jq -r .ok)" = true ] || fail "the scheduled backup failed: $(last); $(grep -h 'backup' "$T_DIR"/node*.log | tail -5)"
[ "$(last | jq -r .member)" = "node$rn" ] || fail "the backup was taken by $(last | jq -r .member), not the standby node$rn"
[ -z "$(etcdctl_ get --print-value-only "/service/$SCOPE/pgvigil_backup_running")" ] || fail "pgvigil_backup_running left behind"
grep -q "scheduled backup for .* finished" "$T_DIR/node$rn.log" || fail "node$rn did not log its scheduled backup"
slot_text=$(date -u -d "@$(( $(last | jq -r .slot) * 60 ))" '+%Y-%m-%d %H:%M UTC')
grep -q "scheduled backup for $slot_text started" "$T_DIR/$l.log" && fail "the leader also started a backup for $slot_text"
"$BIN" backup list -c "$T_DIR/node$rn.yml" --json >"$T_DIR/list.json" 2>&1 || fail "backup list: $(cat "$T_DIR/list.json")"
[ "$(jq length "$T_DIR/list.json")" -ge 1 ] || fail "no backup listed: $(cat "$T_DIR/list.json")"
"$BIN" backup verify -c "$T_DIR/node$rn.yml" >"$T_DIR/verify.out" 2>&1 || fail "verify: $(cat "$T_DIR/verify.out")"
log "scheduled backup by node$rn: $(last); $(tail -1 "$T_DIR/verify.out")"

# a bad schedule: the agent refuses to start, naming the key
node_config 3 ""
sed -i "s|^name: node3|name: node3\nbackup:\n  repository:\n    path: $REPO\n  schedule: '61 * * * *'|" "$T_DIR/node3.yml"
"$BIN" agent -c "$T_DIR/node3.yml" >"$T_DIR/bad.out" 2>&1 && fail "the agent started with a bad schedule"
grep -q "backup.schedule: field 1 (minute): 61 is out of range" "$T_DIR/bad.out" || fail "unexpected error: $(cat "$T_DIR/bad.out")"
echo "PASS [$T_NAME]"
