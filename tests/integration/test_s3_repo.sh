#!/bin/bash
# The S3 repository driver against a real S3-compatible server (s3rver, which checks every
# request's AWS Signature Version 4; tests/integration/s3_server.js, installed by scripts/setup.sh),
# with a one-node cluster whose backup.repository is type s3:
#   1. the server itself refuses a wrong secret (403 SignatureDoesNotMatch), so that a success
#      below means a signature that was checked;
#   2. WAL archiving reaches the bucket; objects larger than s3_part_size (64 kB here) go up as
#      multipart uploads; wal-fetch restores them byte for byte;
#   3. backup take, list, verify (ListObjectsV2 in small pages: continuation tokens), and a
#      restore into a new directory that recovers from the bucket to the end of the archive;
#   4. the bucket named in the host (virtual-host style), credentials from the environment;
#   5. a wrong secret: a CLI command fails with one line naming the repository, the request and
#      SignatureDoesNotMatch, never the secret; the server's secret rotated under the agent makes
#      archiving fail loudly while PostgreSQL keeps the WAL, and resume once it is back;
#   6. the server stopped mid-way, then started again: a backup under way fails with one line and
#      is never listed; archiving resumes by itself.
#   7. an encrypted bucket (backup.encryption): repo.cipher written at first use, a WAL file
#      stored sealed and fetched back whole, a wrong key named in one line (wal-fetch exits 126).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_backup.sh"

[ -f /usr/lib/postgresql/15/lib/pgvigil_archive.so ] || fail "pgvigil_archive.so is not installed (make pgext-install)"
S3RVER_DIR="${PGVIGIL_S3RVER_DIR:-/opt/pgvigil-s3rver}"
[ -d "$S3RVER_DIR/node_modules/@20minutes/s3rver" ] || fail "s3rver is not installed in $S3RVER_DIR (run scripts/setup.sh)"
command -v node >/dev/null || fail "node is not installed (run scripts/setup.sh)"
BUCKET=pgvigil-it
S3_KEY=it-s3-key
S3_SECRET=it-s3-secret-K7MDENG
PART=65536
alloc_port S3_PORT
S3_URL="http://127.0.0.1:$S3_PORT"
REPO_DESC="s3://$BUCKET@127.0.0.1:$S3_PORT"
S3_PID=""
# ListObjectsV2 pages of 50 keys (a hook of the test build): a backup's ~1000 objects take ~20
# pages, each after the first asked for with the previous page's continuation token
export PGVIGIL_TEST_S3_MAX_KEYS=50

# start_s3 [SECRET]: the server on $S3_PORT, its objects in $T_DIR/s3data (kept across restarts)
start_s3() {
    local secret="${1:-$S3_SECRET}"
    PGVIGIL_S3RVER_DIR="$S3RVER_DIR" PGVIGIL_S3_VERBOSE=1 node --openssl-legacy-provider \
        "$(dirname "$0")/s3_server.js" --dir "$T_DIR/s3data" --port "$S3_PORT" --key "$S3_KEY" --secret "$secret" \
        >>"$T_DIR/s3.log" 2>&1 &
    S3_PID=$!
    wait_until 30 "the S3 server listens on $S3_PORT" port_in_use "$S3_PORT"
}
stop_s3() {
    [ -n "$S3_PID" ] || return 0
    if is_ours "$S3_PID"; then
        kill -TERM "$S3_PID" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$S3_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$S3_PID" 2>/dev/null
        wait "$S3_PID" 2>/dev/null
    fi
    S3_PID=""
    return 0
}
CLEANUP_HOOKS+=(stop_s3)

# s3curl SECRET CURL-ARGS...: a request signed by curl's own SigV4 (a signer apart from ours)
s3curl() {
    local secret="$1"; shift
    curl -s --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_KEY:$secret" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}
# object_size KEY: the stored object's size (HEAD), empty when there is none
object_size() {
    s3curl "$S3_SECRET" -I "$S3_URL/$BUCKET/$1" | tr -d '\r' | awk 'tolower($1) == "content-length:" {print $2}'
}
in_bucket() { [ "$(s3curl "$S3_SECRET" -o /dev/null -w '%{http_code}' -I "$S3_URL/$BUCKET/$1")" = 200 ]; }
wal_in_bucket() { in_bucket "wal/${1:0:8}/$1"; }

# ---- 1. the server checks signatures --------------------------------------------------------------
start_s3
code=$(s3curl "$S3_SECRET" -o "$T_DIR/mb.out" -w '%{http_code}' -X PUT "$S3_URL/$BUCKET")
[ "$code" = 200 ] || fail "creating bucket $BUCKET: HTTP $code $(cat "$T_DIR/mb.out")"
code=$(s3curl wrong-secret -o "$T_DIR/wrong.out" -w '%{http_code}' -X PUT --data-binary x "$S3_URL/$BUCKET/probe")
[ "$code" = 403 ] && grep -q SignatureDoesNotMatch "$T_DIR/wrong.out" ||
    fail "the S3 server accepted a request signed with a wrong secret: HTTP $code $(cat "$T_DIR/wrong.out")"
code=$(curl -s -o "$T_DIR/anon.out" -w '%{http_code}' -X PUT --data-binary x "$S3_URL/$BUCKET/probe")
[ "$code" = 403 ] || fail "the S3 server accepted an unsigned request: HTTP $code"
in_bucket probe && fail "a rejected request stored an object"
log "part 1: bucket $BUCKET created; the server refuses a wrong secret (403 SignatureDoesNotMatch) and unsigned requests"

S3_SECTION="backup:
  repository:
    type: s3
    s3_endpoint: $S3_URL
    s3_bucket: $BUCKET
    s3_region: us-east-1
    s3_uri_style: path
    s3_key: $S3_KEY
    s3_secret: $S3_SECRET
    s3_part_size: $PART
  archive_workers: 2"
NODE_EXTRA="$S3_SECTION"
start_cluster 1
CFG="$T_DIR/node1.yml"
grep -q "archive: storing WAL in the repository $REPO_DESC" "$T_DIR/node1.log" ||
    fail "the agent did not start its archive service on $REPO_DESC"

# ---- 2. archiving into the bucket, multipart for large objects ------------------------------------
psql_n 1 -c "create table ev(id int primary key, batch text, pad text)" || fail "create table"
batch() {   # NAME FROM TO: rows that compress little, so that WAL objects outgrow a part
    psql_n 1 -c "insert into ev select g, '$1', md5(g::text) || md5((g * 7)::text) from generate_series($2, $3) g" ||
        fail "insert batch $1"
}
switch_wal() { psql_n 1 -c "select pg_walfile_name(pg_current_wal_lsn())"; psql_n 1 -c "select pg_switch_wal()" >/dev/null; }
batch base 1 20000
seg=$(switch_wal)
wait_until 60 "$seg in the bucket" wal_in_bucket "$seg"
size=$(object_size "wal/${seg:0:8}/$seg")
[ -n "$size" ] && [ "$size" -gt "$PART" ] || fail "wal/${seg:0:8}/$seg holds ${size:-nothing} bytes: want more than one part ($PART)"
parts=$(grep -ac "^request: PUT .*/wal/.*[?&]partNumber=" "$T_DIR/s3.log")
[ "$parts" -ge 2 ] || fail "no multipart upload seen by the server (parts stored: $parts)"
"$BIN" wal-fetch -c "$CFG" "$seg" "$T_DIR/fetched" >"$T_DIR/fetch.out" 2>&1 || fail "wal-fetch $seg: $(cat "$T_DIR/fetch.out")"
src="$T_DIR/node1/data/pg_wal/$seg"
[ -f "$src" ] && { cmp -s "$src" "$T_DIR/fetched" || fail "$seg fetched from the bucket differs from pg_wal's"; }
[ "$(psql_n 1 -c 'select failed_count from pg_stat_archiver')" = 0 ] || fail "archiving failed: $(psql_n 1 -c 'select * from pg_stat_archiver')"
log "part 2: $seg archived as a $size-byte object in $parts parts so far, fetched back intact"

# ---- 3. backup take, list, verify, restore ---------------------------------------------------------
"$BIN" backup take -c "$CFG" --workers 2 >"$T_DIR/backup.out" 2>&1 || fail "backup take: $(cat "$T_DIR/backup.out")"
label=$(sed -n 's/^backup \([0-9T]*F\) complete.*/\1/p' "$T_DIR/backup.out")
[ -n "$label" ] || fail "no backup label in: $(cat "$T_DIR/backup.out")"
in_bucket "backup/$label/manifest" || fail "backup/$label/manifest is not in the bucket"
"$BIN" backup list -c "$CFG" --json >"$T_DIR/list.json" 2>&1 || fail "backup list: $(cat "$T_DIR/list.json")"
[ "$(jq -r '.[0].label' "$T_DIR/list.json")" = "$label" ] || fail "backup list does not show $label: $(cat "$T_DIR/list.json")"
files=$(jq -r '.[0].files' "$T_DIR/list.json")
[ "$files" -gt 100 ] || fail "the backup holds too few files: $(cat "$T_DIR/list.json")"
log "backup: $(cat "$T_DIR/backup.out")"
batch A 20001 20100
batch B 20101 20200
seg=$(switch_wal)
archived() { [ "$(psql_n 1 -c "select coalesce(last_archived_wal >= '$1', false) from pg_stat_archiver")" = t ]; }
wait_until 60 "WAL up to $seg archived" archived "$seg"
"$BIN" backup verify -c "$CFG" >"$T_DIR/verify.out" 2>&1 || fail "backup verify: $(cat "$T_DIR/verify.out")"
grep -q "1 restorable, .* 0 gap(s), 0 problem(s)" "$T_DIR/verify.out" || fail "verify summary: $(cat "$T_DIR/verify.out")"
pages=$(grep -ac '^request: GET .*[?&]continuation-token=' "$T_DIR/s3.log")
[ "$pages" -ge 5 ] || fail "listings used $pages continuation pages: want ListObjectsV2 continued (max-keys $PGVIGIL_TEST_S3_MAX_KEYS)"
log "verify: $(tail -1 "$T_DIR/verify.out") ($pages listing pages after a continuation token)"

restore_and_count() {   # NAME CONFIG: restore into $T_DIR/NAME, start it, wait until promoted, count
    restore_to "$1" "$2"
    RESTORED_BATCHES=$(restored_q "select string_agg(batch, ' ' order by batch) from (select distinct batch from ev) b")
    RESTORED_COUNT=$(restored_q 'select count(*) from ev')
    restored_stop "$T_DIR/$1"
}
restore_and_count to_end "$CFG"
[ "$RESTORED_BATCHES" = "A B base" ] && [ "$RESTORED_COUNT" = 20200 ] ||
    fail "restore to the end: batches '$RESTORED_BATCHES' ($RESTORED_COUNT rows), want 'A B base' (20200 rows)"
grep -q "restored backup $label" "$T_DIR/to_end.restore.out" || fail "restore did not use $label: $(cat "$T_DIR/to_end.restore.out")"
log "restore from the bucket to the end of the archive: batches $RESTORED_BATCHES ($RESTORED_COUNT rows)"

# ---- 4. virtual-host style, credentials from the environment ---------------------------------------
# the same bucket as http://pgvigil-it.s3.localhost:PORT/key (*.localhost is the loopback)
sed -e "s|s3_endpoint: .*|s3_endpoint: http://s3.localhost:$S3_PORT|" -e "s|s3_uri_style: path|s3_uri_style: host|" \
    -e '/s3_key:/d' -e '/s3_secret:/d' "$CFG" >"$T_DIR/host.yml"
"$BIN" backup list -c "$T_DIR/host.yml" >"$T_DIR/host.out" 2>&1 && fail "backup list without credentials succeeded"
grep -q "backup.repository.s3_key: required for an s3 repository (or set PGVIGIL_S3_KEY" "$T_DIR/host.out" ||
    fail "no credentials: unexpected error: $(cat "$T_DIR/host.out")"
PGVIGIL_S3_KEY="$S3_KEY" PGVIGIL_S3_SECRET="$S3_SECRET" "$BIN" backup list -c "$T_DIR/host.yml" --json >"$T_DIR/host.json" 2>&1 ||
    fail "backup list in host style: $(cat "$T_DIR/host.json")"
[ "$(jq -r '.[0].label' "$T_DIR/host.json")" = "$label" ] || fail "host style lists: $(cat "$T_DIR/host.json")"
PGVIGIL_S3_KEY="$S3_KEY" PGVIGIL_S3_SECRET="$S3_SECRET" "$BIN" wal-fetch -c "$T_DIR/host.yml" "$seg" "$T_DIR/fetched2" \
    >"$T_DIR/fetch2.out" 2>&1 || fail "wal-fetch in host style: $(cat "$T_DIR/fetch2.out")"
grep -aq "^request: GET $BUCKET.s3.localhost:$S3_PORT /?list-type=2" "$T_DIR/s3.log" ||
    fail "the server saw no listing addressed to $BUCKET.s3.localhost:$S3_PORT"
grep -aq "^request: GET $BUCKET.s3.localhost:$S3_PORT /wal/${seg:0:8}/$seg" "$T_DIR/s3.log" ||
    fail "the server saw no GET of /wal/${seg:0:8}/$seg on $BUCKET.s3.localhost:$S3_PORT"
log "part 4: host style (http://$BUCKET.s3.localhost:$S3_PORT) lists $label and fetches $seg, credentials from the environment"

# ---- 5. a wrong secret ----------------------------------------------------------------------------
# a command's first request, the GET of repo.cipher (the repository's cipher settings, read when
# it is opened), is refused, and named
sed "s|s3_secret: .*|s3_secret: not-the-secret-Z9|" "$CFG" >"$T_DIR/wrong.yml"
"$BIN" backup list -c "$T_DIR/wrong.yml" >"$T_DIR/wrong.out" 2>&1 && fail "backup list with a wrong secret succeeded"
[ "$(grep -c '^error: ' "$T_DIR/wrong.out")" = 1 ] || fail "the error is not one line: $(cat "$T_DIR/wrong.out")"
grep -q "repository $REPO_DESC: GET repo.cipher: 403 SignatureDoesNotMatch" "$T_DIR/wrong.out" ||
    fail "wrong secret: unexpected error: $(cat "$T_DIR/wrong.out")"
grep -q "not-the-secret-Z9" "$T_DIR/wrong.out" && fail "the error shows the secret"
"$BIN" wal-fetch -c "$T_DIR/wrong.yml" "$seg" "$T_DIR/fetched3" >"$T_DIR/wrong2.out" 2>&1 && fail "wal-fetch with a wrong secret succeeded"
grep -q "repository $REPO_DESC: GET repo.cipher: 403 SignatureDoesNotMatch" "$T_DIR/wrong2.out" ||
    fail "wal-fetch, wrong secret: $(cat "$T_DIR/wrong2.out")"
log "part 5: wrong secret: $(grep '^error: ' "$T_DIR/wrong.out")"

# the secret rotated on the server: the agent's requests are refused, archiving fails loudly
stop_s3
start_s3 rotated-secret
batch C 20201 20300
seg=$(switch_wal)
failed() { [ "$(psql_n 1 -c 'select failed_count > 0 from pg_stat_archiver')" = t ]; }
wait_until 60 "archiving $seg fails with the rotated secret" failed
[ -f "$T_DIR/node1/data/pg_wal/archive_status/$seg.ready" ] || fail "$seg is not kept ready in pg_wal"
wal_in_bucket "$seg" && fail "$seg stored although every request is refused"
agent_says() { grep -q "$1" "$T_DIR/node1.log"; }
wait_until 30 "the agent logs the refusal" agent_says "$REPO_DESC: HEAD wal/${seg:0:8}/$seg: 403 SignatureDoesNotMatch"
pg_says() { grep -rqa "pgvigil_archive: could not archive \"$seg\".*SignatureDoesNotMatch" "$T_DIR/node1"; }
wait_until 30 "postgres logs why $seg is not archived" pg_says
log "part 5: rotated secret: $(grep -a -m1 "SignatureDoesNotMatch" "$T_DIR/node1.log" | cut -c1-240)"
stop_s3
start_s3
wait_until 120 "$seg archived once the secret matches again" archived "$seg"
wal_in_bucket "$seg" || fail "$seg not in the bucket"

# ---- 6. the server stopped mid-way, then started again ----------------------------------------------
before=$(psql_n 1 -c 'select failed_count from pg_stat_archiver')
# a backup under way when the server stops (held mid-way by a test hook, its files uploaded): it
# fails with one line naming the repository, and is never listed
n_backups=$("$BIN" backup list -c "$CFG" --json | jq length)
PAUSE="$T_DIR/pause"
touch "$PAUSE"
PGVIGIL_TEST_BACKUP_PAUSE_FILE="$PAUSE" "$BIN" backup take -c "$CFG" >"$T_DIR/backup-down.out" 2>&1 &
bk_pid=$!
EXTRA_PIDS+=("$bk_pid")
wait_until 60 "the backup stored its files" test -f "$PAUSE.held"
stop_s3
rm -f "$PAUSE"
wait "$bk_pid" && fail "a backup completed with the server down: $(cat "$T_DIR/backup-down.out")"
grep -q "^error: .*$REPO_DESC" "$T_DIR/backup-down.out" || fail "backup with the server down: $(cat "$T_DIR/backup-down.out")"
log "part 6: a backup under way when the server stopped: $(grep -m1 '^error' "$T_DIR/backup-down.out")"
batch D 20301 20400
seg=$(switch_wal)
more_failures() { [ "$(psql_n 1 -c 'select failed_count from pg_stat_archiver')" -gt "$before" ]; }
wait_until 60 "archiving $seg fails while the server is down" more_failures
[ -f "$T_DIR/node1/data/pg_wal/archive_status/$seg.ready" ] || fail "$seg is not kept ready in pg_wal"
wait_until 30 "the agent logs the unreachable server" agent_says "$REPO_DESC: .*wal/${seg:0:8}/$seg: .*\(Couldn't connect\|Connection refused\|Failed to connect\)"
start_s3
wait_until 120 "$seg archived after the server came back" archived "$seg"
wal_in_bucket "$seg" || fail "$seg not in the bucket"
[ "$("$BIN" backup list -c "$CFG" --json | jq length)" = "$n_backups" ] || fail "the backup cut by the outage is listed"
"$BIN" backup verify -c "$CFG" >"$T_DIR/verify2.out" 2>&1 || fail "backup verify after the outages: $(cat "$T_DIR/verify2.out")"
log "part 6: with the server down $seg stayed ready ($(psql_n 1 -c 'select failed_count from pg_stat_archiver') failures), then was archived; verify: $(tail -1 "$T_DIR/verify2.out")"

# ---- 7. an encrypted bucket (backup.encryption) ----------------------------------------------------
# its first use writes repo.cipher into the bucket; a WAL file goes in sealed and comes back whole;
# a wrong key is named in one line
code=$(s3curl "$S3_SECRET" -o "$T_DIR/mb2.out" -w '%{http_code}' -X PUT "$S3_URL/$BUCKET-enc")
[ "$code" = 200 ] || fail "creating bucket $BUCKET-enc: HTTP $code $(cat "$T_DIR/mb2.out")"
( umask 077; echo "an encryption key for the s3 test" >"$T_DIR/enc.key"; echo "another key, not the right one" >"$T_DIR/wrong.key" )
sed -e "s|s3_bucket: $BUCKET|s3_bucket: $BUCKET-enc|" "$CFG" >"$T_DIR/enc.yml"
printf '  encryption: aes-256-gcm\n  encryption_key_file: %s\n' "$T_DIR/enc.key" >>"$T_DIR/enc.yml"
sed "s|$T_DIR/enc.key|$T_DIR/wrong.key|" "$T_DIR/enc.yml" >"$T_DIR/enc_wrong.yml"
cp "$T_DIR/fetched" "$T_DIR/0000000100000000000000AA"
"$BIN" wal-push -c "$T_DIR/enc.yml" "$T_DIR/0000000100000000000000AA" >"$T_DIR/enc_push.out" 2>&1 ||
    fail "wal-push into the encrypted bucket: $(cat "$T_DIR/enc_push.out")"
s3curl "$S3_SECRET" -o "$T_DIR/enc_cipher.json" "$S3_URL/$BUCKET-enc/repo.cipher"
[ "$(jq -r .cipher "$T_DIR/enc_cipher.json")" = aes-256-gcm ] || fail "repo.cipher in the bucket: $(cat "$T_DIR/enc_cipher.json")"
s3curl "$S3_SECRET" -o "$T_DIR/enc_obj" "$S3_URL/$BUCKET-enc/wal/00000001/0000000100000000000000AA"
[ "$(head -c 10 "$T_DIR/enc_obj" | tail -c 1 | od -An -tu1 | tr -d ' ')" = 1 ] || fail "the stored WAL object is not sealed"
"$BIN" wal-fetch -c "$T_DIR/enc.yml" 0000000100000000000000AA "$T_DIR/enc_fetched" >"$T_DIR/enc_fetch.out" 2>&1 ||
    fail "wal-fetch from the encrypted bucket: $(cat "$T_DIR/enc_fetch.out")"
cmp -s "$T_DIR/fetched" "$T_DIR/enc_fetched" || fail "the WAL file fetched from the encrypted bucket differs"
"$BIN" wal-fetch -c "$T_DIR/enc_wrong.yml" 0000000100000000000000AA "$T_DIR/enc_fetched2" >"$T_DIR/enc_wrong.out" 2>&1
rc=$?
[ "$rc" = 126 ] && [ "$(grep -c '^error: ' "$T_DIR/enc_wrong.out")" = 1 ] &&
    grep -q "wrong encryption key for repository s3://$BUCKET-enc@127.0.0.1:$S3_PORT (backup.encryption_key_file $T_DIR/wrong.key)" "$T_DIR/enc_wrong.out" ||
    fail "wal-fetch with a wrong key: exit $rc: $(cat "$T_DIR/enc_wrong.out")"
log "part 7: encrypted bucket: repo.cipher written, a WAL file sealed and fetched back whole; wrong key: exit 126, $(cat "$T_DIR/enc_wrong.out")"

# the secret never reaches a log or an output
leaks=$(grep -rla --exclude='*.yml' --exclude-dir=data --exclude-dir=s3data --exclude-dir='etcd*' -- "$S3_SECRET" "$T_DIR" 2>/dev/null || true)
[ -z "$leaks" ] || fail "the secret appears in: $leaks"
echo "PASS [$T_NAME]"
