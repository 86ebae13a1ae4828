#!/bin/bash
# Block-level incremental and differential backups: a full backup of a pgbench database, then 2%
# of pgbench_accounts updated (a contiguous aid range) and 1% new rows: the incremental backup
# reads and stores a small fraction of the full one, the changed blocks the WAL summaries name
# (not the changed files); more changes, then a differential on the full backup taken while
# pgbench writes. Every backup that uses the summaries also compares page LSNs (a test hook) and
# fails if a page changed that the summaries missed. With a summary removed from the repository,
# the next incremental falls back to comparing page LSNs. Restores of the incremental (to an LSN
# between the two change sets) and of the newest backup (to the end of the archive) hold exactly
# the data the primary had then, and verify passes for the whole chain.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_backup.sh"

backup_cluster 1
export PGVIGIL_TEST_CROSSCHECK_SUMMARIES=1
PGPASSWORD=it-super "$PGBIN/pgbench" -q -i -s 4 -h 127.0.0.1 -p "${PG_PORT[1]}" -U postgres postgres >"$T_DIR/pgbench-init.log" 2>&1 ||
    fail "pgbench -i: $(tail -3 "$T_DIR/pgbench-init.log")"
psql_n 1 -c "checkpoint" >/dev/null
state() { psql_n 1 -c "select count(*) || ' ' || sum(abalance) || ' ' || sum(bid) from pgbench_accounts"; }

take() {   # TYPE: prints the label; its "complete" line in $T_DIR/backup-TYPE.out
    "$BIN" backup take -c "$CFG" --type "$1" >"$T_DIR/backup-$1.out" 2>&1 || fail "backup take --type $1: $(cat "$T_DIR/backup-$1.out")"
    sed -n 's/^backup \([0-9T]*[FID]\) complete.*/\1/p' "$T_DIR/backup-$1.out"
}
stored_of() { "$BIN" backup list -c "$CFG" --json | jq -r --arg l "$1" '.[] | select(.label == $l) | .stored'; }
full=$(take full)
[ -n "$full" ] || fail "no full backup: $(cat "$T_DIR/backup-full.out")"

# change set 1: a contiguous 2% of the accounts updated, 1% new rows
psql_n 1 -c "update pgbench_accounts set abalance = abalance + 7 where aid between 100001 and 108000" || fail "update"
psql_n 1 -c "insert into pgbench_accounts select aid, 1, 3, '' from generate_series(400001, 404000) aid" || fail "insert"
psql_n 1 -c "checkpoint" >/dev/null
incr=$(take incr)
[ "${incr: -1}" = I ] || fail "the incremental backup is labelled $incr: $(cat "$T_DIR/backup-incr.out")"
grep -q "(incr on $full)" "$T_DIR/backup-incr.out" || fail "the incremental does not build on $full: $(cat "$T_DIR/backup-incr.out")"
state1=$(state)
lsn1=$(psql_n 1 -c "select pg_current_wal_lsn()")
full_stored=$(stored_of "$full"); incr_stored=$(stored_of "$incr")
[ "$incr_stored" -gt 0 ] && [ $((incr_stored * 5)) -lt "$full_stored" ] ||
    fail "the incremental stores $incr_stored bytes, the full $full_stored: not block-level"
grep -q "(changed blocks from wal-summaries)" "$T_DIR/backup-incr.out" ||
    fail "the incremental did not use the WAL summaries: $(cat "$T_DIR/backup-incr.out")"
field_of() { "$BIN" backup list -c "$CFG" --json | jq -r --arg l "$1" --arg f "$2" '.[] | select(.label == $l) | .[$f]'; }
full_read=$(field_of "$full" read_bytes); incr_read=$(field_of "$incr" read_bytes); db_bytes=$(field_of "$incr" bytes)
[ "$((incr_read * 5))" -lt "$db_bytes" ] || fail "the incremental read $incr_read of $db_bytes bytes: not only the changed blocks"
log "full $full read $full_read bytes, stored $full_stored; incremental $incr read $incr_read bytes, stored $incr_stored"

# change set 2, then a differential on the full backup
psql_n 1 -c "update pgbench_accounts set abalance = abalance - 3 where aid between 300001 and 304000" || fail "update 2"
psql_n 1 -c "delete from pgbench_accounts where aid between 50001 and 51000" || fail "delete"
# the differential while pgbench writes: pages change under the copy
PGPASSWORD=it-super "$PGBIN/pgbench" -n -c 2 -T 8 -h 127.0.0.1 -p "${PG_PORT[1]}" -U postgres postgres \
    >"$T_DIR/pgbench-run.log" 2>&1 &
bench=$!
EXTRA_PIDS+=("$bench")
diff=$(take diff)
[ "${diff: -1}" = D ] && grep -q "(diff on $full)" "$T_DIR/backup-diff.out" || fail "differential: $(cat "$T_DIR/backup-diff.out")"
grep -q "(changed blocks from wal-summaries)" "$T_DIR/backup-diff.out" ||
    fail "the differential did not use the WAL summaries: $(cat "$T_DIR/backup-diff.out")"
wait "$bench" || fail "pgbench during the differential: $(tail -3 "$T_DIR/pgbench-run.log")"

# with the summary of the segment the differential started in damaged, the next incremental
# compares page LSNs (and is as right)
diff_start=$(field_of "$diff" start_lsn)
sum_seg=$(psql_n 1 -c "select pg_walfile_name('$diff_start')")
[ -f "$REPO/walsum/${sum_seg:0:8}/$sum_seg" ] || fail "no WAL summary of $sum_seg in the repository"
echo "damaged" >"$REPO/walsum/${sum_seg:0:8}/$sum_seg"
psql_n 1 -c "update pgbench_accounts set abalance = abalance + 2 where aid between 200001 and 201000" || fail "update 2b"
incr2=$(take incr)
grep -q "(incr on $diff)" "$T_DIR/backup-incr.out" && grep -q "(changed blocks from page-lsns)" "$T_DIR/backup-incr.out" ||
    fail "the incremental without a summary: $(cat "$T_DIR/backup-incr.out")"
psql_n 1 -c "update pgbench_accounts set abalance = abalance + 1 where aid between 1 and 1000" || fail "update 3"
state_end=$(state)
seg=$(psql_n 1 -c "select pg_walfile_name(pg_current_wal_lsn())")
psql_n 1 -c "select pg_switch_wal()" >/dev/null
archived() { [ "$(psql_n 1 -c "select coalesce(last_archived_wal >= '$seg', false) from pg_stat_archiver")" = t ]; }
wait_until 60 "WAL up to $seg archived" archived
"$BIN" backup verify -c "$CFG" >"$T_DIR/verify.out" 2>&1 || fail "verify: $(cat "$T_DIR/verify.out")"
grep -q "4 backup(s), 4 restorable" "$T_DIR/verify.out" || fail "verify: $(cat "$T_DIR/verify.out")"

restore_state() {   # NAME RESTORE-ARGS...: restore, start, keep its state in RESTORED
    local name="$1"; shift
    restore_to "$name" "$CFG" "$@"
    RESTORED=$(restored_q "select count(*) || ' ' || sum(abalance) || ' ' || sum(bid) from pgbench_accounts")
    restored_stop "$T_DIR/$name"
}
restore_state from_incr --backup "$incr" --target-lsn "$lsn1"
[ "$RESTORED" = "$state1" ] || fail "restore of $incr to $lsn1: '$RESTORED', the primary had '$state1'"
log "restore of the incremental to $lsn1: $RESTORED"
restore_state from_incr2 --backup "$incr2"
[ "$RESTORED" = "$state_end" ] || fail "restore of $incr2 to the end: '$RESTORED', the primary has '$state_end'"
log "restore of $incr2 (on the differential) to the end: $RESTORED"
echo "PASS [$T_NAME]"
