#!/bin/bash
# Backups under faults: one backup or expiry at a time, and a killed backup.
#   - A backup holds pgvigil_backup_running in etcd on a lease of its own while it runs (held
#     here, its files stored and no manifest yet, by a test hook): a second backup and an
#     expiry started meanwhile stop with one clear line, and change nothing.
#   - kill -9 of that backup: its lease expires and frees the lock; the backup is never listed
#     or counted by verify; the next backup completes; expire removes the killed backup's files;
#     a restore of the new backup holds the data; the agent reports it as the cluster's newest
#     backup (/patroni, pgvigil_backup_age_seconds).
#   - a failover during a backup of the standby (held mid-way, then the standby promoted): the
#     backup fails with PostgreSQL's reason and is never listed; the lock is freed.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_backup.sh"

backup_cluster 2 "  retention_full: 5"
export PGVIGIL_TEST_BACKUP_LOCK_TTL=4
psql_n 1 -c "create table t(id int primary key, v text)" >/dev/null || fail "create table"
psql_n 1 -c "insert into t select g, md5(g::text) from generate_series(1, 5000) g" >/dev/null || fail "insert"

lock_key() { etcdctl_ get --print-value-only "/service/$SCOPE/pgvigil_backup_running" 2>/dev/null; }
lock_taken() { [ -n "$(lock_key)" ]; }
lock_free() { [ -z "$(lock_key)" ]; }
repo_state() { find "$REPO/backup" -type f -printf '%P %s\n' | sort | sha256sum; }

# backup A, held with its files stored and no manifest
PAUSE="$T_DIR/pause"
touch "$PAUSE"
PGVIGIL_TEST_BACKUP_PAUSE_FILE="$PAUSE" "$BIN" backup take -c "$CFG" >"$T_DIR/a.out" 2>&1 &
a_pid=$!
EXTRA_PIDS+=("$a_pid")
wait_until 60 "backup A holds the backup lock" lock_taken
log "lock: $(lock_key)"
held() { [ -f "$PAUSE.held" ]; }
wait_until 60 "backup A stored its files" held
label_a=$(ls "$REPO/backup")

before=$(repo_state)
"$BIN" backup take -c "$CFG" >"$T_DIR/b.out" 2>&1 && fail "a second backup ran beside A: $(cat "$T_DIR/b.out")"
grep -q "^error: another backup or expiry runs in this cluster" "$T_DIR/b.out" || fail "second backup: $(cat "$T_DIR/b.out")"
[ "$(grep -c . "$T_DIR/b.out")" -le 2 ] || fail "second backup: more than an error and a hint: $(cat "$T_DIR/b.out")"
"$BIN" backup expire -c "$CFG" >"$T_DIR/e.out" 2>&1 && fail "an expiry ran beside backup A: $(cat "$T_DIR/e.out")"
grep -q "^error: another backup or expiry runs in this cluster" "$T_DIR/e.out" || fail "expire: $(cat "$T_DIR/e.out")"
[ "$(repo_state)" = "$before" ] || fail "the refused commands changed the backups in the repository"
log "refused: $(head -1 "$T_DIR/b.out")"

# kill -9 of backup A, mid-backup
kill -9 "$a_pid"
wait "$a_pid" 2>/dev/null
wait_until 30 "the killed backup's lock expired" lock_free
"$BIN" backup list -c "$CFG" --json >"$T_DIR/list.json" 2>&1 || fail "list: $(cat "$T_DIR/list.json")"
[ "$(jq length "$T_DIR/list.json")" = 0 ] || fail "the killed backup is listed: $(cat "$T_DIR/list.json")"
"$BIN" backup verify -c "$CFG" >"$T_DIR/verify1.out" 2>&1
grep -q "$label_a" "$T_DIR/verify1.out" && fail "verify counts the killed backup: $(cat "$T_DIR/verify1.out")"

psql_n 1 -c "insert into t select g, 'after' from generate_series(5001, 6000) g" >/dev/null || fail "insert 2"
"$BIN" backup take -c "$CFG" >"$T_DIR/c.out" 2>&1 || fail "backup after the killed one: $(cat "$T_DIR/c.out")"
label_c=$(sed -n 's/^backup \([0-9T]*F\) complete.*/\1/p' "$T_DIR/c.out")
[ -n "$label_c" ] || fail "no label: $(cat "$T_DIR/c.out")"
lock_free || fail "the lock stayed after the backup ended: $(lock_key)"
# the agents know the cluster's newest backup (pgvigil_backup_newest): /patroni and /metrics
newest_known() { [ "$(curl -s "http://127.0.0.1:${API_PORT[1]}/patroni" | jq -r '.backup.newest // ""')" = "$label_c" ]; }
wait_until 30 "the agent reports $label_c as the newest backup" newest_known
age=$(curl -s "http://127.0.0.1:${API_PORT[1]}/metrics" | awk '$1 ~ /^pgvigil_backup_age_seconds/ {print $2}')
[ -n "$age" ] && [ "$age" -ge 0 ] && [ "$age" -lt 600 ] || fail "pgvigil_backup_age_seconds: '$age'"
"$BIN" backup expire -c "$CFG" >"$T_DIR/e2.out" 2>&1 || fail "expire: $(cat "$T_DIR/e2.out")"
grep -q "removed the files of $label_a, a backup that never completed" "$T_DIR/e2.out" || fail "expire: $(cat "$T_DIR/e2.out")"
[ -e "$REPO/backup/$label_a" ] && [ -n "$(find "$REPO/backup/$label_a" -type f)" ] && fail "files of $label_a are left"
[ -f "$REPO/backup/$label_c/manifest" ] || fail "expire removed the complete backup $label_c"

want=$(psql_n 1 -c "select count(*) from t")
seg=$(psql_n 1 -c "select pg_walfile_name(pg_current_wal_lsn())")
psql_n 1 -c "select pg_switch_wal()" >/dev/null
archived() { [ "$(psql_n 1 -c "select coalesce(last_archived_wal >= '$seg', false) from pg_stat_archiver")" = t ]; }
wait_until 60 "WAL up to $seg archived" archived
restore_to restored "$CFG" --backup "$label_c"
got=$(restored_q "select count(*) from t")
restored_stop "$T_DIR/restored"
[ "$got" = "$want" ] || fail "the restore of $label_c holds $got rows, the primary $want"
log "after the killed backup: $label_c restored with $got rows"

# a failover during a backup of the standby: held mid-way, the standby is promoted (switchover to
# it), then the backup goes on: PostgreSQL refuses to end it, and it never becomes complete
n_before=$("$BIN" backup list -c "$CFG" --json | jq length)
rm -f "$PAUSE.held"
touch "$PAUSE"
PGVIGIL_TEST_BACKUP_PAUSE_FILE="$PAUSE" "$BIN" backup take -c "$T_DIR/node2.yml" >"$T_DIR/f.out" 2>&1 &
f_pid=$!
EXTRA_PIDS+=("$f_pid")
wait_until 60 "the standby's backup stored its files" held
"$BIN" switchover --dcs-url "http://127.0.0.1:$E_PORT" --scope "$SCOPE" --candidate node2 --force >"$T_DIR/so.out" 2>&1 ||
    fail "switchover: $(cat "$T_DIR/so.out")"
wait_until 60 "node2 promoted" is_primary 2
rm -f "$PAUSE"
wait "$f_pid" && fail "the backup of the promoted standby completed: $(cat "$T_DIR/f.out")"
grep -q "^error: .*promoted during online backup" "$T_DIR/f.out" || fail "backup across the failover: $(cat "$T_DIR/f.out")"
[ "$("$BIN" backup list -c "$CFG" --json | jq length)" = "$n_before" ] || fail "the backup across the failover is listed"
wait_until 30 "the lock freed after the failed backup" lock_free
log "backup across a failover: $(grep -m1 '^error' "$T_DIR/f.out")"
echo "PASS [$T_NAME]"
