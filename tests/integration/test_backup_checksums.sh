#!/bin/bash
# Page checksums checked while a backup copies: a cluster pgvigil bootstraps has data checksums
# (initdb --data-checksums by default). A backup of the intact cluster reports no bad page; one
# byte of a table page changed on disk (a clean page, after a checkpoint, that the server does
# not write again) is reported by the next full backup, naming the file, block and page LSN (an
# incremental, which reads only the blocks the WAL changed, does not read it again), and counted in `backup list --json`, while the backups complete (exit 0). With
# the page put back, a backup taken under a pgbench load with checkpoints in a loop (pages
# written while they are read) reports none: pages changed since the backup started are not
# checked, and a page caught mid-write is read again.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_backup.sh"

backup_cluster 1
DATA="$T_DIR/node1/data"
[ "$(psql_n 1 -c 'show data_checksums')" = on ] || fail "the bootstrapped cluster has no data checksums"

take() {   # NAME [ARGS...]: backup take, its output in $T_DIR/NAME.out; prints the label
    local name="$1"; shift
    "$BIN" backup take -c "$CFG" "$@" >"$T_DIR/$name.out" 2>&1 || fail "backup take ($name): $(cat "$T_DIR/$name.out")"
    sed -n 's/^backup \([0-9T]*[FID]\) complete.*/\1/p' "$T_DIR/$name.out"
}
listed() {   # LABEL FIELD: the field of that backup in backup list --json
    "$BIN" backup list -c "$CFG" --json | jq -r --arg l "$1" --arg f "$2" '.[] | select(.label == $l) | .[$f]'
}
expect_bad() {   # NAME LABEL COUNT
    grep -q "^page checksums: $3 page(s) failed the check" "$T_DIR/$1.out" ||
        fail "backup $1 does not report $3 bad page(s): $(cat "$T_DIR/$1.out")"
    [ "$(listed "$2" checksums_checked)" = true ] && [ "$(listed "$2" checksum_errors)" = "$3" ] ||
        fail "backup list shows $2 with checksums_checked $(listed "$2" checksums_checked), $(listed "$2" checksum_errors) bad page(s), want $3"
}

# a table of about 60 pages, every hint bit set and frozen, written out: clean in shared buffers
psql_n 1 -c "create table ck(id int primary key, pad text) with (autovacuum_enabled = false)" || fail "create table"
psql_n 1 -c "insert into ck select g, repeat(md5(g::text), 6) from generate_series(1, 2000) g" || fail "insert"
psql_n 1 -c "vacuum (freeze) ck" || fail "vacuum"
psql_n 1 -c "checkpoint" >/dev/null
rel=$(psql_n 1 -c "select pg_relation_filepath('ck')")
[ "$(stat -c %s "$DATA/$rel")" -ge $((8 * 8192)) ] || fail "$rel is too small: $(stat -c %s "$DATA/$rel") bytes"

clean=$(take clean)
[ -n "$clean" ] || fail "no backup: $(cat "$T_DIR/clean.out")"
expect_bad clean "$clean" 0
grep -q "checksum mismatch" "$T_DIR/clean.out" && fail "the intact cluster has a bad page: $(cat "$T_DIR/clean.out")"
log "intact: $(grep '^page checksums' "$T_DIR/clean.out")"

# block 3 of the table: its LSN, then one byte of its tuples changed on disk
off=$((3 * 8192))
read -r lsn_hi lsn_lo < <(od -A n -t x4 -j "$off" -N 8 "$DATA/$rel")
lsn=$(printf '%X/%X' "0x$lsn_hi" "0x$lsn_lo")
pos=$((off + 6000))
orig=$(od -A n -t u1 -j "$pos" -N 1 "$DATA/$rel" | tr -d ' ')
flip() { printf "\\$(printf '%03o' "$1")" | dd of="$DATA/$rel" bs=1 seek="$pos" conv=notrunc status=none; }
flip $((orig ^ 0x5a))
log "changed byte $pos of $rel (block 3, LSN $lsn)"

bad=$(take corrupt)
[ -n "$bad" ] || fail "the backup of the cluster with a bad page did not complete: $(cat "$T_DIR/corrupt.out")"
grep -q "WARNING: backup: page checksum mismatch in $rel block 3 (LSN $lsn): stored 0x[0-9A-F]\{4\}, computed 0x[0-9A-F]\{4\}$" "$T_DIR/corrupt.out" ||
    fail "no warning naming $rel block 3 (LSN $lsn): $(cat "$T_DIR/corrupt.out")"
[ "$(grep -c 'checksum mismatch' "$T_DIR/corrupt.out")" = 1 ] || fail "more than one bad page: $(cat "$T_DIR/corrupt.out")"
expect_bad corrupt "$bad" 1
log "corrupt: $(grep 'mismatch' "$T_DIR/corrupt.out")"
# an incremental reads only the blocks the WAL changed since the backup it builds on: the bad
# page, unchanged, is not read again (as pgBackRest does not read an unchanged file); the full
# backup reported it
incr=$(take incr --type incr)
expect_bad incr "$incr" 0
grep -q "(changed blocks from wal-summaries)" "$T_DIR/incr.out" || fail "the incremental did not use the WAL summaries: $(cat "$T_DIR/incr.out")"
"$BIN" backup verify -c "$CFG" >"$T_DIR/verify.out" 2>&1 || fail "verify: $(cat "$T_DIR/verify.out")"
# the server never noticed (the page stays in its buffers), and its copy is what we put back
flip "$orig"

# under load: pgbench and checkpoints in a loop write pages while the backup reads them
PGPASSWORD=it-super "$PGBIN/pgbench" -q -i -s 4 -h 127.0.0.1 -p "${PG_PORT[1]}" -U postgres postgres >"$T_DIR/pgbench-init.log" 2>&1 ||
    fail "pgbench -i: $(tail -3 "$T_DIR/pgbench-init.log")"
psql_n 1 -c "checkpoint" >/dev/null
PGPASSWORD=it-super "$PGBIN/pgbench" -n -c 4 -j 2 -T 300 -h 127.0.0.1 -p "${PG_PORT[1]}" -U postgres postgres \
    >"$T_DIR/pgbench.log" 2>&1 &
bench=$!
EXTRA_PIDS+=("$bench")
( while sleep 0.5; do psql_n 1 -c "checkpoint" >/dev/null 2>&1; done ) &
ckpt=$!
EXTRA_PIDS+=("$ckpt")
sleep 3
kill -0 "$bench" 2>/dev/null || fail "pgbench is not running: $(tail -5 "$T_DIR/pgbench.log")"
for i in 1 2; do
    busy=$(take "busy$i" --workers 2)
    [ -n "$busy" ] || fail "no backup under load: $(cat "$T_DIR/busy$i.out")"
    expect_bad "busy$i" "$busy" 0
    grep -q "checksum mismatch" "$T_DIR/busy$i.out" && fail "a false report under load: $(cat "$T_DIR/busy$i.out")"
    log "under load: $(grep '^backup ' "$T_DIR/busy$i.out")"
    sleep 1
done
kill -0 "$bench" 2>/dev/null || fail "pgbench ended before the backups did: $(tail -5 "$T_DIR/pgbench.log")"
kill "$ckpt" "$bench" 2>/dev/null
wait "$ckpt" "$bench" 2>/dev/null
echo "PASS [$T_NAME]"
