#!/bin/bash
# An encrypted repository (backup.encryption: aes-256-gcm, the key in a file of postgres's, mode
# 0600), without compression so that any clear copy would show: WAL archived by the agent and a
# base backup are stored sealed (no stored file holds a string inserted into a table, every
# object's clear header says encrypted, the key is in no file of the repository and no log);
# list and verify work; a restore with the right key recovers every row, through wal-fetch run
# by the restored server. With a wrong key, every command (list, verify, take, restore,
# wal-fetch, wal-push) fails with one error line naming the repository and the key file, and
# the repository is left as it was; so is it with no key, or with a key file others may read.
# An agent given the wrong key logs that, keeps the WAL, and archives it once the key is right:
# nothing is lost. The key from $PGVIGIL_BACKUP_KEY works as the file's.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_backup.sh"

[ -f /usr/lib/postgresql/15/lib/pgvigil_archive.so ] || fail "pgvigil_archive.so is not installed (make pgext-install)"
REPO="$T_DIR/repo"
KEY="$T_DIR/repo.key"
WRONG="$T_DIR/wrong.key"
MARKER="pgvigil-it-marker-$RANDOM-$RANDOM-plaintext"
( umask 077; openssl rand -base64 33 >"$KEY"; openssl rand -base64 33 >"$WRONG" )
chown postgres: "$KEY" "$WRONG"   # restore_command (wal-fetch) runs as postgres
KEY_TEXT=$(cat "$KEY")
backup_yaml() {   # KEY-FILE
    printf 'backup:\n  repository:\n    path: %s\n  compression: none\n  encryption: aes-256-gcm\n  encryption_key_file: %s\n' "$REPO" "$1"
}
NODE_EXTRA=$(backup_yaml "$KEY")
start_cluster 1
CFG="$T_DIR/node1.yml"
psql_n 1 -c "create table secret(id int primary key, note text)" || fail "create table"
psql_n 1 -c "insert into secret select g, '$MARKER ' || g from generate_series(1, 2000) g" || fail "insert"
psql_n 1 -c "checkpoint" || fail "checkpoint"
# the control: the server's own files hold the string in the clear
grep -rqF "$MARKER" "$T_DIR/node1/data/base" || fail "control: $MARKER is not in the data files"

"$BIN" backup take -c "$CFG" >"$T_DIR/backup.out" 2>&1 || fail "backup take: $(cat "$T_DIR/backup.out")"
label=$(sed -n 's/^backup \([0-9T]*F\) complete.*/\1/p' "$T_DIR/backup.out")
[ -n "$label" ] || fail "no backup label in: $(cat "$T_DIR/backup.out")"
psql_n 1 -c "insert into secret values (5001, '$MARKER after the backup')" || fail "insert after"
archived_upto() { [ "$(psql_n 1 -c "select coalesce(last_archived_wal >= '$1', false) from pg_stat_archiver")" = t ]; }
switch_and_wait() {
    local seg
    seg=$(psql_n 1 -c "select pg_walfile_name(pg_current_wal_lsn())")
    psql_n 1 -c "select pg_switch_wal()" >/dev/null
    wait_until 60 "WAL up to $seg archived" archived_upto "$seg"
}
switch_and_wait

# ---- what the repository holds ------------------------------------------------------------------
[ -f "$REPO/repo.cipher" ] || fail "no repo.cipher in the repository"
hits=$(grep -rlF "$MARKER" "$REPO")
[ -z "$hits" ] || fail "stored files hold the plaintext: $hits"
grep -rqF "$KEY_TEXT" "$REPO" && fail "the key material is in the repository"
grep -qF "$KEY_TEXT" "$T_DIR"/*.log && fail "the key material is in a log"
python3 - "$REPO" <<'PY' || fail "an object is not encrypted"
import os, sys
n = 0
for top in ("wal", "backup"):
    for d, _, files in os.walk(os.path.join(sys.argv[1], top)):
        for f in files:
            b = open(os.path.join(d, f), "rb").read(16)
            if b[:8] != b"PGVOBJ01" or b[9] != 1:
                sys.exit("%s: clear header %r" % (os.path.join(d, f), b))
            n += 1
if n < 100:
    sys.exit("only %d objects" % n)
PY
log "repository: $(find "$REPO" -type f | wc -l) files, all objects sealed, no plaintext, no key"
"$BIN" backup list -c "$CFG" --json >"$T_DIR/list.json" 2>&1 || fail "backup list: $(cat "$T_DIR/list.json")"
[ "$(jq -r '.[0].label' "$T_DIR/list.json")" = "$label" ] || fail "backup list: $(cat "$T_DIR/list.json")"
"$BIN" backup verify -c "$CFG" >"$T_DIR/verify.out" 2>&1 || fail "verify: $(cat "$T_DIR/verify.out")"
log "verify: $(tail -1 "$T_DIR/verify.out")"

# ---- a wrong key, no key, an open key file: one line each, the repository as it was -------------
snapshot() { (cd "$REPO" && find . -type f | LC_ALL=C sort | xargs -d '\n' sha256sum); }
# (node1's agent, with the right key, stopped first: its archiving, at shutdown too, would
# change the repository under the checks below)
stop_agent 1
before=$(snapshot)
backup_yaml "$WRONG" >"$T_DIR/wrong.backup.yml"
sed '/^backup:/,$d' "$CFG" >"$T_DIR/wrong.yml" && cat "$T_DIR/wrong.backup.yml" >>"$T_DIR/wrong.yml"
seg=$(ls "$REPO/wal/00000001/" | grep -E '^[0-9A-F]{24}$' | head -1)
ready_seg=$(ls "$T_DIR/node1/data/pg_wal/" | grep -E '^[0-9A-F]{24}$' | tail -1)
want="wrong encryption key for repository $REPO (backup.encryption_key_file $WRONG)"
one_error() {   # NAME WANT-TEXT: the output is one error line holding the text (and a hint at most)
    local out="$T_DIR/$1.out"
    [ "$(grep -c '^error: ' "$out")" = 1 ] && [ "$(grep -vc '^\(error\|hint\): ' "$out")" = 0 ] &&
        grep '^error: ' "$out" | grep -qF "$2" || fail "$1: want one error line with '$2', got: $(cat "$out")"
}
"$BIN" backup list -c "$T_DIR/wrong.yml" >"$T_DIR/w_list.out" 2>&1 && fail "backup list with a wrong key succeeded"
one_error w_list "$want"
"$BIN" backup verify -c "$T_DIR/wrong.yml" >"$T_DIR/w_verify.out" 2>&1 && fail "verify with a wrong key succeeded"
one_error w_verify "$want"
"$BIN" backup take -c "$T_DIR/wrong.yml" >"$T_DIR/w_take.out" 2>&1 && fail "backup take with a wrong key succeeded"
one_error w_take "$want"
"$BIN" restore -c "$T_DIR/wrong.yml" --target-dir "$T_DIR/w_restore" >"$T_DIR/w_restore.out" 2>&1 &&
    fail "restore with a wrong key succeeded"
one_error w_restore "$want"
[ -e "$T_DIR/w_restore" ] && fail "restore with a wrong key created its target directory"
"$BIN" wal-fetch -c "$T_DIR/wrong.yml" "$seg" "$T_DIR/w_fetched" >"$T_DIR/w_fetch.out" 2>&1
rc=$?
[ "$rc" = 126 ] || fail "wal-fetch with a wrong key: exit $rc, want 126 (recovery stops): $(cat "$T_DIR/w_fetch.out")"
one_error w_fetch "$want"
[ -e "$T_DIR/w_fetched" ] && fail "wal-fetch with a wrong key wrote a file"
"$BIN" wal-push -c "$T_DIR/wrong.yml" "$T_DIR/node1/data/pg_wal/$ready_seg" >"$T_DIR/w_push.out" 2>&1 &&
    fail "wal-push with a wrong key succeeded"
one_error w_push "$want"
log "wrong key: $(cat "$T_DIR/w_list.out")"
# no encryption configured, on an encrypted repository
sed '/^  encryption/d' "$T_DIR/wrong.yml" >"$T_DIR/nokey.yml"
"$BIN" backup list -c "$T_DIR/nokey.yml" >"$T_DIR/nokey.out" 2>&1 && fail "backup list without a key succeeded"
one_error nokey "repository $REPO is encrypted (it has repo.cipher): set backup.encryption: aes-256-gcm"
# a key file the group may read
cp -p "$KEY" "$T_DIR/open.key" && chmod 640 "$T_DIR/open.key"
backup_yaml "$T_DIR/open.key" >"$T_DIR/open.backup.yml"
sed '/^backup:/,$d' "$CFG" >"$T_DIR/open.yml" && cat "$T_DIR/open.backup.yml" >>"$T_DIR/open.yml"
"$BIN" backup list -c "$T_DIR/open.yml" >"$T_DIR/open.out" 2>&1 && fail "backup list with an open key file succeeded"
one_error open "backup.encryption_key_file $T_DIR/open.key: group or others may access it (mode 0640)"
# the key from the environment instead of a file
sed '/^  encryption_key_file/d' "$T_DIR/wrong.yml" >"$T_DIR/env.yml"
PGVIGIL_BACKUP_KEY="$KEY_TEXT" "$BIN" backup list -c "$T_DIR/env.yml" --json >"$T_DIR/env.json" 2>&1 ||
    fail "backup list with the key in the environment: $(cat "$T_DIR/env.json")"
[ "$(jq -r '.[0].label' "$T_DIR/env.json")" = "$label" ] || fail "backup list (environment key): $(cat "$T_DIR/env.json")"
[ "$(snapshot)" = "$before" ] || fail "the repository changed under commands with a wrong or missing key"
log "no key, an open key file: refused in one line; the environment's key works; the repository is unchanged"

# ---- the agent with the wrong key: archiving fails loudly, the WAL waits, nothing is lost --------
stop_agent 1
node_config 1 "$(backup_yaml "$WRONG")"
start_agent 1
wait_until 60 "node1 primary again (wrong key)" is_primary 1
psql_n 1 -c "insert into secret values (5002, '$MARKER while the key was wrong')" || fail "insert (wrong key)"
wait_seg=$(psql_n 1 -c "select pg_walfile_name(pg_current_wal_lsn())")
psql_n 1 -c "select pg_switch_wal()" >/dev/null
wait_until 60 "the agent names the wrong key" grep -qF "$want" "$T_DIR/node1.log"
failing() { [ "$(psql_n 1 -c "select failed_count > 0 from pg_stat_archiver")" = t ]; }
wait_until 60 "the archiver reports failures" failing
[ -f "$T_DIR/node1/data/pg_wal/archive_status/$wait_seg.ready" ] || fail "$wait_seg is not waiting in pg_wal"
[ "$(snapshot)" = "$before" ] || fail "the agent with a wrong key changed the repository"
log "agent with the wrong key: $(grep -F "$want" "$T_DIR/node1.log" | head -1 | cut -c1-200)"
stop_agent 1
node_config 1 "$(backup_yaml "$KEY")"
start_agent 1
wait_until 60 "node1 primary again (right key)" is_primary 1
wait_until 120 "$wait_seg archived with the right key" archived_upto "$wait_seg"
switch_and_wait
hits=$(grep -rlF "$MARKER" "$REPO")
[ -z "$hits" ] || fail "stored files hold the plaintext: $hits"

# ---- restore with the right key -------------------------------------------------------------------
restore_to to_end "$CFG"
got=$(restored_q "select count(*) from secret where note like '$MARKER%'")
restored_stop "$T_DIR/to_end"
[ "$got" = 2002 ] || fail "the restored server holds $got marked rows, want 2002"
log "restore with the right key: all $got rows, including those written while the agent had the wrong key"
echo "PASS [$T_NAME]"
