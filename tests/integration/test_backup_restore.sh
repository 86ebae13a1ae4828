#!/bin/bash
# Base backup and point-in-time restore: a full backup of a running primary into a POSIX
# repository (pgvigil backup take), listed once complete; then writes in batches with a time, an
# LSN and a named restore point between them, all archived; each restore (pgvigil restore) into
# a new directory, started as its own server, recovers from the archive through wal-fetch and
# holds exactly the batches committed before its target; a restore to the end of the archive
# holds them all. A restore into a non-empty directory is refused and touches nothing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_backup.sh"

backup_cluster 1
psql_n 1 -c "create table ev(id int primary key, batch text, t timestamptz default clock_timestamp())" || fail "create table"
psql_n 1 -c "insert into ev(id, batch) select g, 'base' from generate_series(1, 100) g" || fail "insert base"
# a table of a few MB: a delta restore rewrites only the 1 MB regions of its file that differ
psql_n 1 -c "create table big as select g, md5(g::text) || repeat('x', 300) as pad from generate_series(1, 12000) g" ||
    fail "create big"
big_sum=$(psql_n 1 -c "select sum(g) || ':' || md5(string_agg(pad, '' order by g)) from big")
big_file=$(psql_n 1 -c "select pg_relation_filepath('big')")

"$BIN" backup take -c "$CFG" --workers 2 >"$T_DIR/backup.out" 2>&1 || fail "backup take: $(cat "$T_DIR/backup.out")"
label=$(sed -n 's/^backup \([0-9T]*F\) complete.*/\1/p' "$T_DIR/backup.out")
first_needed=$(psql_n 1 -c "select pg_walfile_name(pg_current_wal_lsn())")
[ -n "$label" ] || fail "no backup label in: $(cat "$T_DIR/backup.out")"
"$BIN" backup list -c "$CFG" --json >"$T_DIR/list.json" 2>&1 || fail "backup list: $(cat "$T_DIR/list.json")"
[ "$(jq -r '.[0].label' "$T_DIR/list.json")" = "$label" ] || fail "backup list does not show $label: $(cat "$T_DIR/list.json")"
[ "$(jq -r '.[0].files' "$T_DIR/list.json")" -gt 100 ] || fail "the backup holds too few files: $(cat "$T_DIR/list.json")"
log "backup: $(cat "$T_DIR/backup.out")"

batch() { psql_n 1 -c "insert into ev(id, batch) select g, '$1' from generate_series($2, $3) g" || fail "insert batch $1"; }
batch A 101 200
t_after_a=$(psql_n 1 -c "select clock_timestamp() at time zone 'UTC'")
batch B 201 300
lsn_after_b=$(psql_n 1 -c "select pg_current_wal_lsn()")
batch C 301 400
psql_n 1 -c "select pg_create_restore_point('before_d')" >/dev/null
batch D 401 500
seg=$(psql_n 1 -c "select pg_walfile_name(pg_current_wal_lsn())")
psql_n 1 -c "select pg_switch_wal()" >/dev/null
archived() { [ "$(psql_n 1 -c "select coalesce(last_archived_wal >= '$seg', false) from pg_stat_archiver")" = t ]; }
wait_until 60 "WAL up to $seg archived" archived

# restore_and_count NAME RESTORE-ARGS...: restore, start, and keep the batches it holds
batches() {
    RESTORED_BATCHES=$(restored_q "select string_agg(batch, ' ' order by batch) from (select distinct batch from ev) b")
    RESTORED_COUNT=$(restored_q 'select count(*) from ev')
}
restore_and_count() {
    local name="$1"; shift
    restore_to "$name" "$CFG" "$@"
    batches
    restored_stop "$T_DIR/$name"
}
check() {   # NAME WANT-BATCHES WANT-COUNT
    [ "$RESTORED_BATCHES" = "$2" ] && [ "$RESTORED_COUNT" = "$3" ] ||
        fail "restore $1: batches '$RESTORED_BATCHES' ($RESTORED_COUNT rows), want '$2' ($3 rows)"
    log "restore $1: batches $RESTORED_BATCHES ($RESTORED_COUNT rows)"
}

restore_and_count by_time --target-time "$t_after_a+00"
check by_time "A base" 200
restore_and_count by_lsn --target-lsn "$lsn_after_b"
check by_lsn "A B base" 300
restore_and_count by_name --target-name before_d
check by_name "A B C base" 400
restore_and_count to_end
check to_end "A B C D base" 500

# wal-fetch prefetches: serving a segment starts a background fetch of the next ones into
# pg_wal/pgvigil-prefetch, the next request is served from there (the same bytes as a direct
# fetch), and a request past the end of the archive clears the spool
pf="$T_DIR/pf/pg_wal"
mkdir -p "$pf" "$T_DIR/pf2/pg_wal"
mapfile -t segs < <(ls "$REPO/wal/00000001/" | grep -E '^[0-9A-F]{24}$' | sort)
[ "${#segs[@]}" -ge 3 ] || fail "too few segments in the repository for the prefetch check: ${segs[*]}"
"$BIN" wal-fetch -c "$CFG" "${segs[0]}" "$pf/RECOVERYXLOG" 2>"$T_DIR/pf0.err" || fail "wal-fetch ${segs[0]}: $(cat "$T_DIR/pf0.err")"
prefetched() { [ -f "$pf/pgvigil-prefetch/${segs[2]}" ]; }
wait_until 60 "${segs[1]} and ${segs[2]} prefetched" prefetched
"$BIN" wal-fetch -c "$CFG" "${segs[1]}" "$pf/RECOVERYXLOG" 2>"$T_DIR/pf1.err" || fail "wal-fetch ${segs[1]}: $(cat "$T_DIR/pf1.err")"
grep -q "${segs[1]} from the prefetch spool" "$T_DIR/pf1.err" || fail "${segs[1]} did not come from the spool: $(cat "$T_DIR/pf1.err")"
"$BIN" wal-fetch -c "$CFG" "${segs[1]}" "$T_DIR/pf2/pg_wal/RECOVERYXLOG" 2>/dev/null || fail "direct wal-fetch ${segs[1]}"
cmp -s "$pf/RECOVERYXLOG" "$T_DIR/pf2/pg_wal/RECOVERYXLOG" || fail "the prefetched ${segs[1]} differs from a direct fetch"
idle() { flock -n "$pf/pgvigil-prefetch/.lock" true; }
wait_until 60 "the prefetcher done" idle
"$BIN" wal-fetch -c "$CFG" 0000000100000000000000F0 "$pf/RECOVERYXLOG" 2>/dev/null && fail "wal-fetch of a segment never archived succeeded"
[ -e "$pf/pgvigil-prefetch" ] && fail "the spool is still there past the end of the archive: $(ls -a "$pf/pgvigil-prefetch")"
log "wal-fetch: ${segs[1]} served from the prefetch spool, as a direct fetch has it; spool cleared at the end of the archive"

# delta restore into that (stopped) server's directory, after damage: one data file changed, a
# file the backup does not have added; only those are touched, and the result holds the same
relfile=$(find "$T_DIR/to_end/base" -type f -size +8k -size -1024k | head -1)
printf 'garbage' | dd of="$relfile" bs=1 seek=100 conv=notrunc 2>/dev/null
echo stray >"$T_DIR/to_end/base/stray_file"
# and 7 bytes in the third MB of big's file (over 3 MB)
[ "$(stat -c %s "$T_DIR/to_end/$big_file")" -gt 3145728 ] || fail "big's file is not over 3 MB"
printf 'garbage' | dd of="$T_DIR/to_end/$big_file" bs=1 seek=2200000 conv=notrunc 2>/dev/null
"$BIN" restore -c "$CFG" --target-dir "$T_DIR/to_end" --delta >"$T_DIR/delta.out" 2>&1 || fail "delta restore: $(cat "$T_DIR/delta.out")"
written=$(sed -n 's/.*: \([0-9]*\) written, \([0-9]*\) kept, \([0-9]*\) removed.*/\1 \2 \3/p' "$T_DIR/delta.out")
read -r w k rm_ <<<"$written"
[ -n "$w" ] && [ "$k" -gt 900 ] && [ "$w" -lt 20 ] && [ "$rm_" -ge 1 ] || fail "delta restore counts (written kept removed): '$written' ($(cat "$T_DIR/delta.out"))"
[ -e "$T_DIR/to_end/base/stray_file" ] && fail "delta restore left a file the backup does not have"
grep -q "(1 of them only where they differed: 1.0 MB written)" "$T_DIR/delta.out" ||
    fail "big's file was not rewritten in its damaged 1 MB region alone: $(cat "$T_DIR/delta.out")"
log "delta restore: $w written, $k kept, $rm_ removed; big's file rewritten in one 1 MB region"
restored_start delta "$T_DIR/to_end"
batches
[ "$(restored_q "select sum(g) || ':' || md5(string_agg(pad, '' order by g)) from big")" = "$big_sum" ] ||
    fail "big after the delta restore differs from the primary's"
restored_stop "$T_DIR/to_end"
check delta "A B C D base" 500
# a delta into another cluster's directory is refused
"$BIN" restore -c "$CFG" --target-dir "$T_DIR/node1/data" --delta >"$T_DIR/delta2.out" 2>&1 && fail "delta restore into the running primary succeeded"
grep -q "postgres runs in" "$T_DIR/delta2.out" || fail "unexpected error: $(cat "$T_DIR/delta2.out")"

# verify: all intact; then a WAL segment taken away (a gap) and a damaged backup file are named
for i in 1 2; do
    batch "E$i" $((1000 * i)) $((1000 * i + 50))
    # named by pg_switch_wal itself (a later write could start the next segment first)
    seg=$(psql_n 1 -c "select pg_walfile_name(pg_switch_wal())")
done
wait_until 60 "WAL up to $seg archived" archived
"$BIN" backup verify -c "$CFG" >"$T_DIR/verify.out" 2>&1 || fail "verify of an intact repository: $(cat "$T_DIR/verify.out")"
grep -q "1 restorable, .* 0 gap(s), 0 problem(s)" "$T_DIR/verify.out" || fail "verify summary: $(cat "$T_DIR/verify.out")"
log "verify: $(tail -1 "$T_DIR/verify.out")"
mapfile -t walsegs < <(ls "$REPO/wal/00000001/" | grep -E '^[0-9A-F]{24}$' | sort)
[ "${#walsegs[@]}" -ge 3 ] || fail "expected at least 3 archived segments: ${walsegs[*]}"
hole=${walsegs[$(( ${#walsegs[@]} - 2 ))]}
mv "$REPO/wal/00000001/$hole" "$T_DIR/hole"
"$BIN" backup verify -c "$CFG" >"$T_DIR/verify.out" 2>&1 && fail "verify passed with $hole missing"
grep -q "problem: WAL gap on timeline 1: $hole missing" "$T_DIR/verify.out" || fail "verify did not name the gap at $hole: $(cat "$T_DIR/verify.out")"
# restore names the missing segment and the furthest point: a target past it is refused, and a
# restore to the end warns
"$BIN" restore -c "$CFG" --target-dir "$T_DIR/gap" --target-lsn "$(psql_n 1 -c 'select pg_current_wal_lsn()')" \
    >"$T_DIR/gap.out" 2>&1 && fail "a restore to a target past the gap at $hole started"
grep -q "^error: restore: WAL segment $hole is missing from the repository .*: recovery can reach [0-9A-F]*/[0-9A-F]* (the end of [0-9A-F]\{24\}), not the target LSN" "$T_DIR/gap.out" ||
    fail "restore past the gap: $(cat "$T_DIR/gap.out")"
[ -e "$T_DIR/gap" ] && fail "the refused restore wrote $T_DIR/gap"
"$BIN" restore -c "$CFG" --target-dir "$T_DIR/gap" >"$T_DIR/gap.out" 2>&1 || fail "restore to the end with a gap: $(cat "$T_DIR/gap.out")"
grep -q "WARNING: restore: WAL segment $hole is missing from the repository .*: recovery stops at" "$T_DIR/gap.out" ||
    fail "restore to the end did not warn about $hole: $(cat "$T_DIR/gap.out")"
rm -rf "$T_DIR/gap"
log "restore with $hole missing: $(grep -m1 WARNING "$T_DIR/gap.out")"
mv "$T_DIR/hole" "$REPO/wal/00000001/$hole"
obj=$(find "$REPO/backup/$label/data/base" -type f | head -1)
python3 - "$obj" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-1] ^= 0x01
open(p, "wb").write(b)
PY
"$BIN" backup verify -c "$CFG" >"$T_DIR/verify.out" 2>&1 && fail "verify passed with a damaged backup file"
grep -q "problem: backup/$label/data/base/" "$T_DIR/verify.out" && grep -q "backup $label .*NOT RESTORABLE" "$T_DIR/verify.out" ||
    fail "verify did not name the damaged file: $(cat "$T_DIR/verify.out")"
log "verify named the gap at $hole and the damaged file ${obj#$REPO/}"
# a restore of the damaged backup fails naming the file, and leaves no pg_control: what it wrote
# cannot be started as a cluster
"$BIN" restore -c "$CFG" --target-dir "$T_DIR/damaged" --backup "$label" >"$T_DIR/damaged.out" 2>&1 &&
    fail "the restore of a damaged backup succeeded"
grep -q "^error: .*backup/$label/data/base/" "$T_DIR/damaged.out" || fail "restore of the damaged backup: $(cat "$T_DIR/damaged.out")"
[ -e "$T_DIR/damaged/global/pg_control" ] && fail "the failed restore wrote pg_control"
rm -rf "$T_DIR/damaged"

# retention: a second backup, then keep 1: the first (damaged) backup and the WAL before the
# second's start go; what is kept verifies, and still restores to the end of the archive
# on a terminal (script gives it one) the backup shows its progress; in a file it does not
script -qec "'$BIN' backup take -c '$CFG'" /dev/null >"$T_DIR/backup2.tty" 2>&1 || fail "second backup: $(cat "$T_DIR/backup2.tty")"
grep -aq "backup: [0-9.]* MB of [0-9.]* MB ([0-9]*%)" "$T_DIR/backup2.tty" || fail "no progress on a terminal: $(cat -v "$T_DIR/backup2.tty")"
tr '\r' '\n' <"$T_DIR/backup2.tty" | sed 's/\x1b\[K//g' | grep -a '^backup .* complete' >"$T_DIR/backup2.out"
grep -q "MB of" "$T_DIR/backup.out" && fail "progress written into a file: $(cat "$T_DIR/backup.out")"
label2=$(sed -n 's/^backup \([0-9T]*F\) complete.*/\1/p' "$T_DIR/backup2.out")
[ -n "$label2" ] && [ "$label2" != "$label" ] || fail "no second backup label: $(cat "$T_DIR/backup2.out")"
"$BIN" backup expire -c "$CFG" --keep 1 >"$T_DIR/expire.out" 2>&1 || fail "expire: $(cat "$T_DIR/expire.out")"
grep -q "^expired backup $label" "$T_DIR/expire.out" || fail "expire did not expire $label: $(cat "$T_DIR/expire.out")"
[ -e "$REPO/backup/$label" ] && [ -n "$(find "$REPO/backup/$label" -type f)" ] && fail "files of $label are left"
[ -f "$REPO/wal/00000001/$first_needed" ] && fail "WAL before the kept backup is left"
"$BIN" backup list -c "$CFG" --json >"$T_DIR/list.json" 2>&1
[ "$(jq -r 'map(.label) | join(" ")' "$T_DIR/list.json")" = "$label2" ] || fail "after expire, list: $(cat "$T_DIR/list.json")"
"$BIN" backup verify -c "$CFG" >"$T_DIR/verify.out" 2>&1 || fail "verify after expire: $(cat "$T_DIR/verify.out")"
log "expire: $(tail -1 "$T_DIR/expire.out")"
restore_and_count after_expire
check after_expire "A B C D E1 E2 base" 602

# a non-empty directory: refused, its contents untouched
mkdir -p "$T_DIR/busy" && echo keep >"$T_DIR/busy/file"
"$BIN" restore -c "$CFG" --target-dir "$T_DIR/busy" >"$T_DIR/busy.out" 2>&1 && fail "restore into a non-empty directory succeeded"
grep -q "is not empty" "$T_DIR/busy.out" || fail "unexpected error: $(cat "$T_DIR/busy.out")"
[ "$(ls "$T_DIR/busy")" = file ] && [ "$(cat "$T_DIR/busy/file")" = keep ] || fail "restore touched a non-empty directory"
echo "PASS [$T_NAME]"
