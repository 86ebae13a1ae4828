#!/bin/bash
# Replicas and clusters built from the backup repository.
# (a) A 1-node cluster archives into a repository and takes a full backup, then writes more
#     (archived). node2, with postgresql.create_replica_methods [pgvigil, basebackup], is restored
#     from the repository and streams from the primary: the primary served no BASE_BACKUP (it logs
#     every replication command), node2 replayed archived WAL, and a row written after node2
#     started reaches it. node3, whose repository holds no backup, falls back to pg_basebackup and
#     says why; so does node6, whose backup's global/pg_control (restored last) is damaged.
# (b) A new cluster (scope it2, same etcd) with bootstrap.method pgvigil_restore: its first member
#     restores that backup, recovers the archived WAL to its end, promotes itself and leads, with
#     every row the old cluster archived; initialize records the backup's system identifier; it
#     archives into its own repository and writes nothing into the old one. After a backup of the
#     new cluster, a second member joins it, restored from the new repository.
source "$(dirname "$0")/lib.sh"

[ -f /usr/lib/postgresql/15/lib/pgvigil_archive.so ] || fail "pgvigil_archive.so is not installed (make pgext-install)"
REPO="$T_DIR/repo"
REPO_EMPTY="$T_DIR/repo-empty"
REPO2="$T_DIR/repo2"
METHODS="  create_replica_methods: [pgvigil, basebackup]"
pglog() { echo "$T_DIR/node$1/node$1.postgresql.log"; }
base_backups_served() { grep -c "received replication command: BASE_BACKUP" "$(pglog 1)"; }
count_rows() { psql_n "$1" -c "select count(*) from ev" 2>/dev/null; }
rows_are() { local got; got=$(count_rows "$1"); echo "node$1 has ${got:-?} rows, want $2"; [ "$got" = "$2" ]; }
archived_up_to_now() {
    local n="$1" seg
    seg=$(psql_n "$n" -c "select pg_walfile_name(pg_current_wal_lsn())")
    psql_n "$n" -c "select pg_switch_wal()" >/dev/null
    wait_until 60 "WAL up to $seg archived by node$n" bash -c \
        "[ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[$n]} -U postgres -Atc \"select coalesce(last_archived_wal >= '$seg', false) from pg_stat_archiver\")\" = t ]"
}

# ---- (a) replicas from the repository
start_etcd
PG_EXTRA="  parameters:
    log_replication_commands: 'on'" node_config 1 "backup:
  repository:
    path: $REPO"
start_agent 1
wait_until 60 "node1 bootstraps as primary" is_primary 1
sysid=$(psql_n 1 -c "select system_identifier from pg_control_system()")
psql_n 1 -c "create table ev(id int primary key, batch text)" || fail "create table"
psql_n 1 -c "insert into ev select g, 'before' from generate_series(1, 100) g" || fail "insert before the backup"
"$BIN" backup take -c "$T_DIR/node1.yml" >"$T_DIR/backup.out" 2>&1 || fail "backup take: $(cat "$T_DIR/backup.out")"
label=$(sed -n 's/^backup \([0-9T]*F\) complete.*/\1/p' "$T_DIR/backup.out")
[ -n "$label" ] || fail "no backup label in: $(cat "$T_DIR/backup.out")"
log "backup: $(head -1 "$T_DIR/backup.out")"
# after the backup: only the archive (and the primary) have these
psql_n 1 -c "insert into ev select g, 'after' from generate_series(101, 200) g" || fail "insert after the backup"
archived_up_to_now 1
served0=$(base_backups_served)

PG_EXTRA="$METHODS" node_config 2 "backup:
  repository:
    path: $REPO"
start_agent 2
wait_until 120 "node2 streaming from node1" is_streaming 2
# the line comes once the restored server started; it may already stream by then
says() { grep "create replica\|cloning" "$T_DIR/node$1.log"; grep -q "$2" "$T_DIR/node$1.log"; }
wait_until 30 "node2 says it was restored from backup $label" says 2 "create replica: restored from the repository (backup $label), not copied from node1"
[ "$(base_backups_served)" = "$served0" ] || fail "the primary served a BASE_BACKUP while node2 was created from the repository"
grep -q 'restored log file "[0-9A-F]*" from archive' "$(pglog 2)" || fail "node2 replayed nothing from the archive"
psql_n 2 -c "show restore_command" | grep -q "wal-fetch -c $T_DIR/node2.yml %f %p" ||
    fail "node2's restore_command: $(psql_n 2 -c 'show restore_command')"
walsenders_are() { local w; w=$(psql_n 1 -c "select string_agg(application_name || ':' || state, ',') from pg_stat_replication"); echo "walsenders: $w"; [ "$w" = "$1" ]; }
wait_until 30 "node1's one walsender streams to node2" walsenders_are node2:streaming
psql_n 1 -c "insert into ev values (201, 'streamed')" || fail "insert after node2 started"
wait_until 30 "the row written after node2 started on node2" rows_are 2 201
log "node2: restored from backup $label, replayed archived WAL, streams; the primary served $(base_backups_served) BASE_BACKUP"

mkdir -p "$REPO_EMPTY"
PG_EXTRA="$METHODS" node_config 3 "backup:
  repository:
    path: $REPO_EMPTY
  archive: off"
start_agent 3
wait_until 120 "node3 streaming from node1" is_streaming 3
says 3 "create replica: method pgvigil failed: the repository $REPO_EMPTY holds no backup to restore for timeline 1 of node1: no complete backup; trying basebackup" >/dev/null ||
    fail "node3 does not say why it fell back: $(grep 'create replica\|cloning' "$T_DIR/node3.log")"
[ "$(base_backups_served)" = "$((served0 + 1))" ] || fail "the primary served $(base_backups_served) BASE_BACKUP, want $((served0 + 1))"
wait_until 30 "every row on node3" rows_are 3 201
stop_agent 3
log "node3: no backup in its repository, fell back to pg_basebackup"

# node6: a copy of the repository whose backup has a damaged global/pg_control, the file a
# restore writes last: the restore fails with every other file written, and that directory is
# removed before pg_basebackup
cp -a "$REPO" "$T_DIR/repo-damaged"
ctl="$T_DIR/repo-damaged/backup/$label/data/global/pg_control"
[ -f "$ctl" ] || fail "no $ctl"
python3 - "$ctl" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-1] ^= 0x01
open(p, "wb").write(b)
PY
PG_EXTRA="$METHODS" node_config 6 "backup:
  repository:
    path: $T_DIR/repo-damaged
  archive: off"
start_agent 6
wait_until 120 "node6 streaming from node1" is_streaming 6
says 6 "create replica: method pgvigil failed: restore: .*global/pg_control.*; trying basebackup" >/dev/null ||
    fail "node6 does not say the restore failed on global/pg_control: $(grep 'create replica\|cloning' "$T_DIR/node6.log")"
[ "$(base_backups_served)" = "$((served0 + 2))" ] || fail "the primary served $(base_backups_served) BASE_BACKUP, want $((served0 + 2))"
wait_until 30 "every row on node6" rows_are 6 201
stop_agent 6
log "node6: the restore failed at global/pg_control, the directory was removed, fell back to pg_basebackup"

# ---- (b) a new cluster bootstrapped from the backup
psql_n 1 -c "insert into ev select g, 'final' from generate_series(202, 300) g" || fail "insert final"
archived_up_to_now 1
old_wal=$(ls "$REPO/wal" | tr '\n' ' ')
SCOPE=it2
for n in 4 5; do
    BOOTSTRAP_TOP_EXTRA="  method: pgvigil_restore
  pgvigil_restore:
    repository:
      path: $REPO" PG_EXTRA="$METHODS" node_config "$n" "backup:
  repository:
    path: $REPO2"
done
start_agent 4
wait_until 120 "node4 leads cluster it2" bash -c "[ \"\$(ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:$E_PORT get --print-value-only /service/it2/leader)\" = node4 ]"
wait_until 60 "node4 a writable primary" is_primary 4
wait_until 30 "node4 holds every row the old cluster archived" rows_are 4 300
grep -q "bootstrap: restored backup $label" "$T_DIR/node4.log" || fail "node4 did not restore backup $label: $(grep bootstrap "$T_DIR/node4.log")"
grep -q "bootstrap: running initdb" "$T_DIR/node4.log" && fail "node4 ran initdb"
# written once the bootstrap job is collected (postgres is a primary a moment before)
init_is_sysid() { local v; v=$(etcdctl_ get --print-value-only /service/it2/initialize); echo "initialize: '$v'"; [ "$v" = "$sysid" ]; }
wait_until 30 "it2's initialize key holds the backup's system identifier $sysid" init_is_sysid
hist_ok() { local h; h=$(etcdctl_ get --print-value-only /service/it2/history); echo "$h"; echo "$h" | jq -e ".[0][0] == 1 and (.[0][2] | test(\"restored from backup $label\"))" >/dev/null; }
wait_until 30 "it2's history records the fork from the backup's timeline" hist_ok
tl=$(psql_n 4 -c "select timeline_id from pg_control_checkpoint()")
[ "$tl" -ge 2 ] || fail "node4 is on timeline $tl after promoting"
psql_n 4 -c "insert into ev values (1000, 'it2')" || fail "write on node4"
archived_up_to_now 4
[ -n "$(ls "$REPO2/wal/$(printf %08X "$tl")/" 2>/dev/null)" ] || fail "nothing archived into $REPO2 on timeline $tl: $(ls -R "$REPO2" | head)"
[ "$(ls "$REPO/wal" | tr '\n' ' ')" = "$old_wal" ] || fail "the old repository changed: $(ls "$REPO/wal") (was $old_wal)"
log "node4: cluster it2 from backup $label, 300 rows, timeline $tl, archives into $REPO2 only"

"$BIN" backup take -c "$T_DIR/node4.yml" >"$T_DIR/backup2.out" 2>&1 || fail "backup take of it2: $(cat "$T_DIR/backup2.out")"
label2=$(sed -n 's/^backup \([0-9T]*F\) complete.*/\1/p' "$T_DIR/backup2.out")
start_agent 5
wait_until 120 "node5 streaming from node4" is_streaming 5
wait_until 30 "node5 says it was restored from backup $label2" says 5 "create replica: restored from the repository (backup $label2), not copied from node4"
psql_n 4 -c "insert into ev values (1001, 'it2 streamed')" || fail "second write on node4"
wait_until 30 "node4's rows on node5" rows_are 5 302
# the old cluster went on by itself
psql_n 1 -c "insert into ev values (2000, 'old')" || fail "write on node1"
wait_until 30 "the old cluster's replica gets its row" rows_are 2 301
[ "$(count_rows 4)" = 302 ] || fail "a row of the old cluster reached the new one"
log "node5 joined it2 from $REPO2 (backup $label2); the old cluster goes on apart"
echo "PASS [$T_NAME]"
