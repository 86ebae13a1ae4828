#!/bin/bash
# A former primary whose pg_rewind fails after pg_rewind's own crash recovery (which marks the
# control file as cleanly shut down) must not start as a replica of a diverged timeline: it
# stays down and says why, or rebuilds itself when remove_data_directory_on_rewind_failure is
# set. The rewind is made to fail for real: the rewind user may log in to the new primary but
# may not read its files, so pg_rewind fails on its first fetch, after the recovery. The rebuild
# is a delta restore from the backup repository over the node's own data directory.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_backup.sh"

# a repository, with a backup taken before the failure: the rebuild in part 2 restores it as a
# delta over node1's own data directory (postgresql.create_replica_methods: [pgvigil, ...])
backup_cluster 2
psql_n 1 -c "create table t(id int primary key); insert into t select generate_series(1, 100)" || fail "initial write"
"$BIN" backup take -c "$CFG" >"$T_DIR/backup.out" 2>&1 || fail "backup take: $(cat "$T_DIR/backup.out")"
wait_until 20 "node2 has the rows" bash -c "[ \"\$(PGPASSWORD=it-super psql -X -h 127.0.0.1 -p ${PG_PORT[2]} -U postgres -Atc 'select count(*) from t' 2>/dev/null)\" = 100 ]"

# writes on node1 that node2 never receives, so the timelines really diverge
pm1=$(postmaster_pid 1)
kill -STOP "$pm1"
kill -9 "${AGENT_PID[1]}"; AGENT_PID[1]=""
wait_until $((T_TTL * 4 + 20)) "node2 leads" leader_is node2
wait_until 20 "node2 is a writable primary" is_primary 2
kill -9 "$pm1"; kill -CONT "$pm1" 2>/dev/null
psql_n 2 -c "insert into t select generate_series(101, 200); create role rewinder login password 'rw-pass'" ||
    fail "writes on the new primary"

# 1. without remove_data_directory_on_rewind_failure: the node stays down and says so
sed -i -e 's/remove_data_directory_on_rewind_failure: true/remove_data_directory_on_rewind_failure: false/' \
    -e 's/^    replication:$/    rewind:\n      username: rewinder\n      password: rw-pass\n    replication:/' \
    "$T_DIR/node1.yml"
grep -q "username: rewinder" "$T_DIR/node1.yml" || fail "could not edit node1.yml"
start_agent 1
wait_until 60 "node1 reports the failed rewind" grep -q "pg_rewind failed; data directory not usable" "$T_DIR/node1.log"
grep "rewind failed" "$T_DIR/node1.log" | grep "permission denied" >/dev/null ||
    fail "the rewind error does not say why: $(grep 'rewind failed' "$T_DIR/node1.log")"
ctl_state=$(LC_ALL=C /usr/lib/postgresql/15/bin/pg_controldata "$T_DIR/node1/data" | sed -n 's/^Database cluster state: *//p')
log "node1 control file after the failed rewind: $ctl_state"
sleep 4
grep -q "start as replica" "$T_DIR/node1.log" && fail "node1 started as a replica after its rewind failed"
psql_n 1 -c "select 1" >/dev/null 2>&1 && fail "node1's postgres runs after its rewind failed"
leader_is node2 || fail "leadership moved"

# 2. with it set (after an agent restart): the node rebuilds and follows; from the repository,
# by a delta restore over its own data directory (only what differs is written), not a copy
stop_agent 1
inode=$(stat -c %i "$T_DIR/node1/data")
sed -i -e 's/remove_data_directory_on_rewind_failure: false/remove_data_directory_on_rewind_failure: true/' \
    -e 's/^postgresql:$/postgresql:\n  create_replica_methods: [pgvigil, basebackup]/' "$T_DIR/node1.yml"
grep -q "create_replica_methods: \[pgvigil, basebackup\]" "$T_DIR/node1.yml" || fail "could not edit node1.yml"
start_agent 1
wait_until 90 "node1 rebuilt and streaming" is_streaming 1
grep -q "pg_rewind failed: rebuilding the data directory from node2" "$T_DIR/node1.log" ||
    fail "node1 did not rebuild after the failed rewind"
grep "create replica: delta restore done" "$T_DIR/node1.log" || fail "node1 was not rebuilt by a delta restore"
[ "$(stat -c %i "$T_DIR/node1/data")" = "$inode" ] || fail "node1's data directory was replaced"
# (streaming is not caught up: the rows come with the replay of what followed the backup)
rows_200() { local c; c=$(psql_n 1 -c 'select count(*) from t'); echo "node1 has $c rows"; [ "$c" = 200 ]; }
wait_until 60 "node1 has the new primary's 200 rows" rows_200
accepts_writes 1 && fail "rebuilt node1 accepted a write"
echo "PASS [$T_NAME]"
