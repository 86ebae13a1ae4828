/* WAL summaries in the repository (see wal_summary_store.h). */
#include "backup/wal_summary_store.h"
#include "backup/obj.h"
#include "backup/wal_archive.h"
#include "backup/wal_chain.h"
#include "common/log.h"


bool wal_summary_key(const char *segment_name, char *key, size_t sz)
{
    if (wal_file_kind(segment_name) != WALFILE_SEGMENT)
        return false;
    return str_fmt(key, sz, "walsum/%.8s/%s", segment_name, segment_name);
}

bool wal_summary_store(Repo *r, const char *name, const unsigned char *raw, size_t n, Err *err)
{
    char key[128];
    WalSeg seg;
    if (!wal_summary_key(name, key, sizeof(key)) || !wal_seg_parse(name, &seg))
        return true; /* only segments have summaries */
    uint64_t start = seg.segno * WAL_SEG_BYTES;
    WalSummary s;
    Err pe = {{0}};
    if (n != WAL_SEG_BYTES || !wal_summary_parse(raw, n, start, 0, &s, &pe)) {
        log_warn("archive: no WAL summary for %s (%s); incremental backups over it compare page LSNs", name,
                 pe.msg[0] ? pe.msg : "not a 16 MB segment");
        return true;
    }
    size_t sn = 0;
    unsigned char *ser = wal_summary_serialize(&s, &sn);
    wal_summary_free(&s);
    void *obj = NULL;
    size_t on = 0;
    /* not made durable: a summary lost or damaged by a crash only makes an incremental compare
     * page LSNs */
    bool ok = obj_encode(r->cipher, COMPRESS_ZSTD, 3, ser, sn, &obj, &on, err) && repo_put_lazy(r, key, obj, on, err);
    free(ser);
    free(obj);
    if (!ok)
        err_prefix(err, "archive: WAL summary of %s", name);
    return ok;
}

bool wal_summary_stored(Repo *r, const char *name, bool *exists, Err *err)
{
    char key[128];
    *exists = false;
    if (!wal_summary_key(name, key, sizeof(key)))
        return true;
    return r->ops->exists(r, key, exists, err);
}

/* The summary of one segment: from the repository, else from the server's pg_wal up to stop. */
static bool load_one(Repo *r, const char *data_dir, const char *name, uint64_t start, Lsn stop, WalSummary *out,
                     char *why, size_t why_sz)
{
    char key[128];
    wal_summary_key(name, key, sizeof(key));
    void *stored = NULL, *raw = NULL;
    size_t sn = 0, rn = 0;
    bool missing = false;
    Err e = {{0}};
    if (r->ops->read_all(r, key, &stored, &sn, &missing, &e)) {
        bool ok = obj_decode(r->cipher, stored, sn, &raw, &rn, &e) && wal_summary_deserialize(raw, rn, out, &e);
        free(stored);
        free(raw);
        if (!ok) {
            str_fmt(why, why_sz, "%s: %s", key, e.msg);
            return false;
        }
        if (out->seg_start != start || !out->complete) {
            str_fmt(why, why_sz, "%s %s", key,
                    out->seg_start != start ? "summarizes another segment" : "covers the segment only in part");
            wal_summary_free(out);
            return false;
        }
        return true;
    }
    if (!missing) {
        str_fmt(why, why_sz, "%s", e.msg);
        return false;
    }
    /* not archived yet (the segment the backup starts in) or never summarized */
    char *path = str_printf("%s/pg_wal/%s", data_dir, name);
    size_t n = 0;
    unsigned char *seg = (unsigned char *)wal_file_read(path, &n, NULL);
    free(path);
    if (!seg) {
        str_fmt(why, why_sz, "no summary of %s in the repository, and no %s in pg_wal", name, name);
        return false;
    }
    bool ok = wal_summary_parse(seg, n, start, stop, out, &e);
    free(seg);
    if (!ok) {
        str_fmt(why, why_sz, "pg_wal/%s: %s", name, e.msg);
        return false;
    }
    if (!out->complete) {
        str_fmt(why, why_sz, "pg_wal/%s ends before %X/%X", name, (unsigned)(stop >> 32), (unsigned)stop);
        wal_summary_free(out);
        return false;
    }
    return true;
}

WalSummary *wal_changes_between(Repo *r, const char *data_dir, int tli, Lsn from, Lsn to, char *why, size_t why_sz)
{
    why[0] = '\0';
    if (to <= from) {
        str_fmt(why, why_sz, "nothing between %X/%X and %X/%X", (unsigned)(from >> 32), (unsigned)from,
                (unsigned)(to >> 32), (unsigned)to);
        return NULL;
    }
    WalSummary *acc = NULL;
    uint64_t first = from / WAL_SEG_BYTES, last = (to - 1) / WAL_SEG_BYTES;
    for (uint64_t seg = first; seg <= last; seg++) {
        char name[32];
        wal_seg_name((unsigned)tli, seg, name, sizeof(name));
        WalSummary one;
        /* a summary made by the archive covers its whole segment; the local read stops at to */
        if (!load_one(r, data_dir, name, seg * WAL_SEG_BYTES, seg == last ? to : 0, &one, why, why_sz))
            goto fail;
        if (!acc) {
            acc = xmalloc(sizeof(*acc));
            *acc = one;
            continue;
        }
        Err me = {{0}};
        bool ok = wal_summary_merge(acc, &one, &me);
        wal_summary_free(&one);
        if (!ok) {
            str_fmt(why, why_sz, "%s", me.msg);
            goto fail;
        }
    }
    return acc;
fail:
    if (acc) {
        wal_summary_free(acc);
        free(acc);
    }
    return NULL;
}
