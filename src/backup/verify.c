/* pgvigil backup verify: re-read the whole repository and say what can be restored.
 *   - every stored object (backup files, manifests, WAL) decodes and matches its SHA-256, and
 *     every backup file matches its manifest entry;
 *   - each backup has the WAL from its start to its stop segment (without it, it cannot reach a
 *     consistent state);
 *   - the WAL of each timeline has no gap from the oldest backup's start on;
 *   - each backup's reach: the last WAL segment restore can replay from it, following timeline
 *     switches recorded in the history files.
 * WAL segments are taken to be 16 MB (PostgreSQL's default). */
#include "backup/verify.h"
#include "backup/base_backup.h"
#include "backup/manifest.h"
#include "backup/obj.h"
#include "backup/wal_archive.h"
#include "backup/wal_chain.h"

#include <jansson.h>

typedef struct Ctx {
    Repo *r;
    FILE *out;
    VerifyReport *rep;
    WalChain chain;          /* stored, valid segments */
} Ctx;

static void problem(Ctx *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void problem(Ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("problem: ", c->out);
    vfprintf(c->out, fmt, ap);
    fputc('\n', c->out);
    va_end(ap);
    c->rep->problems++;
}

/* Decode one object; with want_sum (a hex checksum), also compare with the manifest's. */
static bool check_object(Ctx *c, const char *key, const char *want_sum, int64_t want_size)
{
    void *stored = NULL, *raw = NULL;
    size_t sn = 0, rn = 0;
    bool missing = false;
    Err err = {{0}};
    ObjInfo info;
    bool ok = c->r->ops->read_all(c->r, key, &stored, &sn, &missing, &err) &&
              obj_decode_hashed(c->r->cipher, stored, sn, &raw, &rn, &info, &err);
    free(stored);
    if (ok && want_sum) {
        char hex[CHECKSUM_HEX_LEN];
        checksum_hex(info.sum_kind, info.sum, hex);
        if (strcmp(hex, want_sum) != 0 || (int64_t)rn != want_size) {
            err_set(&err, "content differs from the manifest");
            ok = false;
        }
    }
    free(raw);
    c->rep->objects++;
    c->rep->bytes += sn;
    if (!ok)
        problem(c, "%s: %s", key, missing ? "missing" : err.msg);
    return ok;
}

bool backup_verify(Repo *r, FILE *out, VerifyReport *rep, Err *err)
{
    memset(rep, 0, sizeof(*rep));
    Ctx c = {.r = r, .out = out, .rep = rep, .chain = {.r = r}};
    BackupInfo *backups = NULL;
    int n_backups = 0;
    if (!backup_list(r, &backups, &n_backups, err))
        return false;
    rep->backups = n_backups;

    /* WAL: every object decodes; remember the valid segments */
    RepoKeys wal;
    if (!r->ops->list(r, "wal", &wal, err)) {
        free(backups);
        return false;
    }
    for (int i = 0; i < wal.n; i++) {
        const char *name = strrchr(wal.keys[i], '/') + 1;
        bool ok = check_object(&c, wal.keys[i], NULL, 0);
        rep->wal_files++;
        WalSeg s;
        if (ok && wal_seg_parse(name, &s))
            wal_chain_add(&c.chain, s);
    }
    repo_keys_free(&wal);
    wal_chain_sort(&c.chain);

    /* manifests that cannot be read (the backups list leaves them out) */
    RepoKeys mk;
    if (r->ops->list(r, "backup", &mk, err)) {
        for (int i = 0; i < mk.n; i++) {
            char label[40];
            if (!manifest_key_label(mk.keys[i], label, sizeof(label)))
                continue;
            Err me = {{0}};
            Manifest *m = manifest_load(r, label, &me);
            if (!m)
                problem(&c, "%s", me.msg);
            manifest_free(m);
        }
        repo_keys_free(&mk);
    }

    /* backups: every file against its manifest */
    uint64_t oldest = UINT64_MAX;
    for (int b = 0; b < n_backups; b++) {
        char *mkey = str_printf("backup/%s/manifest", backups[b].label);
        void *stored = NULL, *raw = NULL;
        size_t sn = 0, rn = 0;
        bool missing = false;
        Err e = {{0}};
        json_t *m = NULL;
        if (r->ops->read_all(r, mkey, &stored, &sn, &missing, &e) && obj_decode(r->cipher, stored, sn, &raw, &rn, &e))
            m = json_loadb(raw, rn, 0, NULL);
        free(stored);
        free(raw);
        free(mkey);
        if (!m) {
            problem(&c, "backup %s: manifest unreadable", backups[b].label);
            continue;
        }
        size_t i;
        json_t *f;
        int bad = 0;
        json_array_foreach(json_object_get(m, "files"), i, f) {
            const char *mode = json_string_value(json_object_get(f, "mode"));
            if (mode && strcmp(mode, "ref") == 0)
                continue; /* kept by the backup it builds on */
            char *key = str_printf("backup/%s/data/%s", backups[b].label, json_string_value(json_object_get(f, "path")));
            /* a block-mode object holds blocks, not the file: its own hash, and its size against the
             * blocks listed, are what can be checked */
            bool blocks = mode && strcmp(mode, "blocks") == 0;
            if (!check_object(&c, key, blocks ? NULL : manifest_file_checksum(f),
                              json_integer_value(json_object_get(f, "size"))))
                bad++;
            else if (blocks && !json_is_array(json_object_get(f, "blocks"))) {
                problem(&c, "%s: block-mode entry without its list of blocks", key);
                bad++;
            }
            free(key);
        }
        /* the backups it builds on, down to a full one */
        if (strcmp(backups[b].type, "full") != 0) {
            Manifest **chain = NULL;
            int n_chain = 0;
            Err ce = {{0}};
            if (!manifest_chain(r, backups[b].label, &chain, &n_chain, &ce)) {
                problem(&c, "backup %s: %s", backups[b].label, ce.msg);
                bad++;
            }
            manifest_chain_free(chain, n_chain);
        }
        json_decref(m);
        /* the stop LSN ends the WAL the backup needs: on a segment boundary, not the next one */
        uint64_t start = backups[b].start_lsn / WAL_SEG_BYTES;
        uint64_t stop = backups[b].stop_lsn > backups[b].start_lsn ? (backups[b].stop_lsn - 1) / WAL_SEG_BYTES : start;
        if (start < oldest)
            oldest = start;
        /* the WAL it needs to become consistent */
        int missing_wal = 0;
        for (uint64_t s = start; s <= stop; s++)
            if (!wal_chain_has(&c.chain, (unsigned)backups[b].timeline, s)) {
                char name[32];
                wal_seg_name((unsigned)backups[b].timeline, s, name, sizeof(name));
                problem(&c, "backup %s: WAL segment %s, which it needs to be consistent, is not in the repository",
                        backups[b].label, name);
                missing_wal++;
            }
        /* how far it reaches: contiguous segments on, following timeline switches */
        unsigned tli;
        uint64_t seg;
        wal_chain_reach(&c.chain, (unsigned)backups[b].timeline, stop, &tli, &seg);
        char last[32];
        wal_seg_name(tli, seg, last, sizeof(last));
        fprintf(out, "backup %s (%s, %s): %s; restores to any point up to the end of WAL segment %s\n",
                backups[b].label, backups[b].type, backups[b].stop_time,
                bad || missing_wal ? "NOT RESTORABLE" : "files intact", last);
        if (!bad && !missing_wal)
            rep->restorable++;
    }

    /* gaps: on each timeline, from the oldest backup's start to its last stored segment */
    for (int i = 0; i < c.chain.n; i++) {
        WalSeg s = c.chain.segs[i];
        if (s.segno <= oldest || wal_chain_has(&c.chain, s.tli, s.segno - 1))
            continue;
        /* the first segment of a timeline that starts here is not a gap */
        uint64_t start;
        if (s.tli > 1 && wal_chain_next_timeline(&c.chain, s.tli - 1, &start) && start == s.segno)
            continue;
        /* is there an earlier segment on this timeline? then the ones between are missing */
        uint64_t prev = 0;
        bool any = false;
        for (int k = 0; k < c.chain.n; k++)
            if (c.chain.segs[k].tli == s.tli && c.chain.segs[k].segno < s.segno && (!any || c.chain.segs[k].segno > prev)) {
                prev = c.chain.segs[k].segno;
                any = true;
            }
        if (!any)
            continue;
        char from[32], to[32];
        wal_seg_name(s.tli, prev + 1, from, sizeof(from));
        wal_seg_name(s.tli, s.segno - 1, to, sizeof(to));
        problem(&c, "WAL gap on timeline %u: %s%s%s missing", s.tli, from, prev + 1 == s.segno - 1 ? "" : " to ",
                prev + 1 == s.segno - 1 ? "" : to);
        rep->gaps++;
    }
    fprintf(out, "verified %llu objects (%.1f MB stored): %d backup(s), %d restorable, %llu WAL file(s), %d gap(s), %d problem(s)\n",
            (unsigned long long)rep->objects, (double)rep->bytes / 1048576.0, rep->backups, rep->restorable,
            (unsigned long long)rep->wal_files, rep->gaps, rep->problems);
    wal_chain_free(&c.chain);
    free(backups);
    return true;
}
