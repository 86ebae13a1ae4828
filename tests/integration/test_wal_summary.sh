#!/bin/bash
# WAL summaries against pg_waldump: a pgbench load (with a checkpoint, so full-page images, and
# CREATE DATABASE ... STRATEGY FILE_COPY, a created and a truncated table) is archived through
# the agent; the segments are fetched back from the repository (wal-fetch) and `pgvigil
# wal-summary --blocks` over them, put together, names exactly the blocks pg_waldump's block
# references name, records crossing segment boundaries included. The summary shows the created
# relation, the truncation and the database copied whole. Every archived segment has its summary
# in the repository.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_backup.sh"

backup_cluster 1
first=$(psql_n 1 -c "select pg_walfile_name(pg_current_wal_lsn())")
PGPASSWORD=it-super "$PGBIN/pgbench" -q -i -s 2 -h 127.0.0.1 -p "${PG_PORT[1]}" -U postgres postgres >"$T_DIR/pgbench-init.log" 2>&1 ||
    fail "pgbench -i: $(tail -3 "$T_DIR/pgbench-init.log")"
psql_n 1 -c "checkpoint" >/dev/null
PGPASSWORD=it-super "$PGBIN/pgbench" -n -c 2 -t 4000 -h 127.0.0.1 -p "${PG_PORT[1]}" -U postgres postgres >"$T_DIR/pgbench.log" 2>&1 ||
    fail "pgbench: $(tail -3 "$T_DIR/pgbench.log")"
psql_n 1 -c "create database copied strategy file_copy" >/dev/null || fail "create database"
psql_n 1 -c "create table made(a int); insert into made select generate_series(1, 1000); truncate pgbench_history" >/dev/null ||
    fail "create, truncate"
db_oid=$(psql_n 1 -c "select oid from pg_database where datname = 'copied'")
made=$(psql_n 1 -c "select pg_relation_filenode('made')")
last=$(psql_n 1 -c "select pg_walfile_name(pg_current_wal_lsn())")
psql_n 1 -c "select pg_switch_wal()" >/dev/null
archived() { [ "$(psql_n 1 -c "select coalesce(last_archived_wal >= '$last', false) from pg_stat_archiver")" = t ]; }
wait_until 120 "WAL up to $last archived" archived

mkdir -p "$T_DIR/wal"
segs=()
for f in $(ls "$REPO/wal/${first:0:8}/" | grep -E '^[0-9A-F]{24}$' | sort); do
    [[ "$f" < "$first" || "$f" > "$last" ]] && continue
    [ -f "$REPO/walsum/${f:0:8}/$f" ] || fail "no summary of $f in the repository"
    "$BIN" wal-fetch -c "$CFG" "$f" "$T_DIR/wal/$f" >/dev/null 2>&1 || fail "wal-fetch $f"
    segs+=("$T_DIR/wal/$f")
done
[ "${#segs[@]}" -ge 3 ] || fail "only ${#segs[@]} segment(s) from $first to $last"

"$BIN" wal-summary --blocks "${segs[@]}" | sort -u >"$T_DIR/ours.txt" || fail "wal-summary"
"$PGBIN/pg_waldump" -p "$T_DIR/wal" "$(basename "${segs[0]}")" "$(basename "${segs[-1]}")" 2>"$T_DIR/waldump.err" |
    grep -o 'rel [0-9]*/[0-9]*/[0-9]*\( fork [a-z]*\)\? blk [0-9]*' |
    sed -E 's/rel ([0-9/]+) fork ([a-z]+) blk ([0-9]+)/\1 \2 \3/; s/rel ([0-9/]+) blk ([0-9]+)/\1 main \2/' |
    sort -u >"$T_DIR/theirs.txt"
ours=$(wc -l <"$T_DIR/ours.txt"); theirs=$(wc -l <"$T_DIR/theirs.txt")
[ "$theirs" -gt 1000 ] || fail "pg_waldump found only $theirs block references: $(cat "$T_DIR/waldump.err")"
cmp -s "$T_DIR/ours.txt" "$T_DIR/theirs.txt" ||
    fail "wal-summary and pg_waldump differ ($ours and $theirs blocks): only pg_waldump: $(comm -13 "$T_DIR/ours.txt" "$T_DIR/theirs.txt" | head -3 | tr '\n' ';') only ours: $(comm -23 "$T_DIR/ours.txt" "$T_DIR/theirs.txt" | head -3 | tr '\n' ';')"
log "${#segs[@]} segments: $ours blocks, the same as pg_waldump's"

"$BIN" wal-summary "${segs[@]}" >"$T_DIR/summary.txt" || fail "wal-summary"
grep -q "^database 1663/$db_oid copied whole" "$T_DIR/summary.txt" || fail "the copied database is not in the summary: $(tail -3 "$T_DIR/summary.txt")"
grep -q "^1663/5/$made main: .*created or cut to 0 block(s)" "$T_DIR/summary.txt" ||
    fail "the created table is not in the summary: $(grep "/$made " "$T_DIR/summary.txt")"
log "summary: $(tail -1 "$T_DIR/summary.txt")"
echo "PASS [$T_NAME]"
