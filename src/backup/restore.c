/* Restores (see base_backup.h): a backup's files, each put together from the backup and the
 * ones it builds on and checked, and the settings that make PostgreSQL recover from the
 * archive. */
#include "backup/base_backup.h"
#include "backup/file_sink.h"
#include "backup/manifest.h"
#include "backup/obj.h"
#include "backup/pages.h"
#include "backup/parallel.h"
#include "backup/wal_chain.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/lsn.h"
#include "common/proc.h"
#include "pg/pg.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* "2026-12-05 02:03:00[.123][+00|Z]" or "2026-12-05T02:03:00.123Z": seconds since the epoch;
 * false for any other form or zone */
static bool parse_utc(const char *s, double *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *rest = strptime(s, "%Y-%m-%d", &tm);
    if (!rest || (*rest != ' ' && *rest != 'T'))
        return false;
    rest = strptime(rest + 1, "%H:%M:%S", &tm);
    if (!rest)
        return false;
    double frac = 0;
    if (*rest == '.') {
        double unit = 0.1;
        while (*++rest >= '0' && *rest <= '9') {
            frac += (*rest - '0') * unit;
            unit /= 10;
        }
    }
    if (strcmp(rest, "Z") != 0 && strcmp(rest, "+00") != 0 && strcmp(rest, "+00:00") != 0 && strcmp(rest, " UTC") != 0)
        return false;
    *out = (double)timegm(&tm) + frac;
    return true;
}

/* What one restore worker keeps from one file to the next. */
typedef struct RestoreWorker {
    ObjDecoder *dec;
    unsigned char *chunk;    /* RESTORE_CHUNK bytes, aligned for direct I/O */
} RestoreWorker;

#define RESTORE_CHUNK ((size_t)4 << 20)

typedef struct RestoreCtx {
    RestoreWorker *workers;
    bool delta;
    atomic_int written, kept, patched;
    atomic_llong patched_bytes;
    atomic_llong written_bytes;
    Repo *repo;
    Manifest **chain;        /* the backup restored first, then those it builds on */
    int n_chain;
    const char *target_dir;
    json_t *files;           /* chain[0]'s file entries */
    Progress *progress;      /* on a terminal */
    int control;             /* index of global/pg_control in files (-1 none): written last */
} RestoreCtx;

/* The object of path in backup label, decoded and checked; its header to info when not NULL. */
static bool read_object(RestoreCtx *c, const char *label, const char *path, unsigned char **buf, size_t *n,
                        ObjInfo *info, Err *err)
{
    char *key = str_printf("backup/%s/data/%s", label, path);
    void *stored = NULL, *raw = NULL;
    size_t sn = 0, rn = 0;
    bool missing = false;
    bool ok = c->repo->ops->read_all(c->repo, key, &stored, &sn, &missing, err) &&
              obj_decode_hashed(c->repo->cipher, stored, sn, &raw, &rn, info, err);
    free(stored);
    if (!ok)
        err_prefix(err, "%s: %s", c->repo->desc, key);
    free(key);
    *buf = raw;
    *n = rn;
    return ok;
}

/* The content of path as backup k of the chain has it (malloc'd); *known, and info, when it is
 * one whole object (whose checksum is then the file's). */
static bool put_together(RestoreCtx *c, int k, const char *path, unsigned char **buf, size_t *n, ObjInfo *info,
                         bool *known, Err *err)
{
    const Manifest *m = c->chain[k];
    const json_t *e = manifest_file(m, path);
    *known = false;
    if (!e) {
        /* a block-mode file the older backup did not have: it starts empty */
        *buf = xmalloc(1);
        *n = 0;
        return true;
    }
    const char *mode = manifest_file_mode(e);
    if (strcmp(mode, "whole") == 0) {
        *known = true;
        return read_object(c, m->info.label, path, buf, n, info, err);
    }
    if (k + 1 >= c->n_chain) {
        err_set(err, "backup %s: %s refers to an older backup, and %s is a full one", m->info.label, path,
                m->info.label);
        return false;
    }
    if (strcmp(mode, "ref") == 0)
        return put_together(c, k + 1, path, buf, n, info, known, err);
    if (strcmp(mode, "blocks") != 0) {
        err_set(err, "backup %s: %s: unknown mode \"%s\" in the manifest", m->info.label, path, mode);
        return false;
    }
    unsigned char *base = NULL, *blocks = NULL;
    size_t bn = 0, kn = 0;
    bool base_known = false;
    if (!put_together(c, k + 1, path, &base, &bn, info, &base_known, err))
        return false;
    if (!read_object(c, m->info.label, path, &blocks, &kn, NULL, err)) {
        free(base);
        return false;
    }
    size_t size = (size_t)json_integer_value(json_object_get(e, "size"));
    const json_t *list = json_object_get(e, "blocks");
    if (kn != json_array_size(list) * PAGE_SIZE_BYTES) {
        err_set(err, "backup %s: %s: %zu bytes of blocks for %zu blocks listed", m->info.label, path, kn,
                json_array_size(list));
        free(base);
        free(blocks);
        return false;
    }
    /* the older copy, cut or zero-extended to this size, with the stored blocks laid over it */
    unsigned char *out = xcalloc(size + 1, 1);
    memcpy(out, base, bn < size ? bn : size);
    free(base);
    size_t i;
    json_t *b;
    bool ok = true;
    json_array_foreach(list, i, b) {
        json_int_t blk = json_integer_value(b);
        size_t off = (size_t)blk * PAGE_SIZE_BYTES;
        if (blk < 0 || off >= size) {
            err_set(err, "backup %s: %s: block %lld lies beyond the file's %zu bytes", m->info.label, path,
                    (long long)blk, size);
            ok = false;
            break;
        }
        size_t len = size - off < PAGE_SIZE_BYTES ? size - off : PAGE_SIZE_BYTES;
        memcpy(out + off, blocks + i * PAGE_SIZE_BYTES, len);
    }
    free(blocks);
    if (!ok) {
        free(out);
        return false;
    }
    *buf = out;
    *n = size;
    return true;
}

/* A local file opened to compare it with the backup: a large one with direct I/O where the file
 * system takes it (it is seldom in the page cache, a restore writes with direct I/O too, and
 * filling the cache with gigabytes costs more CPU than hashing them); -1 when it cannot be read. */
static int open_to_compare(const char *dst, off_t size)
{
    int fd = -1;
    if (size >= (off_t)FILE_SINK_DIRECT_MIN)
        fd = open(dst, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_DIRECT);
    if (fd < 0)
        fd = open(dst, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    return fd;
}

/* Delta: is the local copy already the backup's (same size and checksum)? Read a chunk at a
 * time into the worker's buffer. */
static bool same_as_local(RestoreWorker *w, const char *dst, const json_t *e)
{
    const char *want = manifest_file_checksum(e);
    ChecksumKind kind;
    struct stat st;
    if (!checksum_kind_of_hex(want, &kind) || lstat(dst, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size != json_integer_value(json_object_get(e, "size")))
        return false;
    int fd = open_to_compare(dst, st.st_size);
    if (fd < 0)
        return false;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    Checksum sum;
    checksum_init(&sum, kind);
    int64_t total = 0;
    ssize_t r;
    while ((r = read(fd, w->chunk, RESTORE_CHUNK)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        checksum_update(&sum, w->chunk, (size_t)r);
        total += r;
    }
    close(fd);
    unsigned char bin[CHECKSUM_MAX_LEN];
    char hex[CHECKSUM_HEX_LEN];
    checksum_final(&sum, bin);
    checksum_hex(kind, bin, hex);
    return r == 0 && total == st.st_size && strcmp(hex, want) == 0;
}

/* Restore one file of the backup (one item of the parallel loop). */
static bool restore_one(RestoreCtx *c, RestoreWorker *w, const json_t *e, Err *err);

static bool restore_file(void *arg, int worker, int i, Err *err)
{
    RestoreCtx *c = arg;
    if (i == c->control)
        return true; /* after every other file */
    const json_t *e = json_array_get(c->files, (size_t)i);
    bool ok = restore_one(c, &c->workers[worker], e, err);
    json_int_t size = json_integer_value(json_object_get(e, "size"));
    progress_add(c->progress, size > 0 ? (uint64_t)size : 0);
    return ok;
}

/* The target file dst, opened for writing: never through a link planted there (the target may
 * be the server user's directory). */
static bool open_target(RestoreCtx *c, RestoreWorker *w, FileSink *sink, const char *dst, uint64_t size, Err *err)
{
    struct stat lst;
    if (c->delta && lstat(dst, &lst) == 0 && !S_ISREG(lst.st_mode))
        unlink(dst);
    return file_sink_open(sink, dst, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (c->delta ? O_TRUNC : O_EXCL),
                          0600, size, w->chunk, RESTORE_CHUNK, err);
}

/* The stored object of entry e (path in backup label) read and its decoder begun, its header
 * compared with e (size, checksum) before anything is written; *stored is the caller's to free
 * once the decoder is done, *key (for messages) too. */
static bool begin_checked(RestoreCtx *c, RestoreWorker *w, const char *label, const char *path, const json_t *e,
                          void **stored, char **key, Err *err)
{
    *key = str_printf("backup/%s/data/%s", label, path);
    size_t sn = 0;
    bool missing = false;
    ObjInfo info;
    if (!c->repo->ops->read_all(c->repo, *key, stored, &sn, &missing, err) ||
        !obj_decoder_begin(w->dec, c->repo->cipher, *stored, sn, &info, err)) {
        err_prefix(err, "%s: %s", c->repo->desc, *key);
        return false;
    }
    uint64_t size = (uint64_t)json_integer_value(json_object_get(e, "size"));
    const char *want = manifest_file_checksum(e);
    char hex[CHECKSUM_HEX_LEN];
    checksum_hex(info.sum_kind, info.sum, hex);
    if (info.raw_size != size || (want[0] && strcmp(hex, want) != 0)) {
        err_set(err, "backup %s: %s is %llu bytes with %s %s, the manifest says %llu bytes and %s", label, path,
                (unsigned long long)info.raw_size, checksum_kind_name(info.sum_kind), hex, (unsigned long long)size,
                want[0] ? want : "(no checksum)");
        return false;
    }
    return true;
}

/* One level of a block-mode chain: the file as that backup has it is the one below cut or
 * zero-extended to size, with the stored blocks laid over it. */
typedef struct Overlay {
    const char *label;       /* the backup that stored these blocks */
    uint64_t size;
    const json_t *blocks;    /* block numbers, ascending */
    unsigned char *data;     /* the stored blocks, one after the other */
    size_t next;             /* the first block not laid over yet */
} Overlay;

/* Read exactly want bytes of content (fewer only at its end) into buf. */
static bool decoder_fill(ObjDecoder *d, unsigned char *buf, size_t want, size_t *got, Err *err)
{
    *got = 0;
    while (*got < want) {
        size_t n = 0;
        if (!obj_decoder_read(d, buf + *got, want - *got, &n, err))
            return false;
        if (n == 0)
            break;
        *got += n;
    }
    return true;
}

/* A level's block list: strictly ascending, every block within the level's size (what
 * put_together refuses too, whether or not the final file reaches that far). */
static bool overlay_blocks_ok(const Overlay *o, const char *path, Err *err)
{
    json_int_t prev = -1;
    size_t i;
    const json_t *b;
    json_array_foreach(o->blocks, i, b) {
        json_int_t blk = json_integer_value(b);
        if (!json_is_integer(b) || blk <= prev || (uint64_t)blk * PAGE_SIZE_BYTES >= o->size) {
            err_set(err, "backup %s: %s: block %lld %s", o->label, path, (long long)blk,
                    blk <= prev ? "out of order in the manifest" : "lies beyond the file's size");
            return false;
        }
        prev = blk;
    }
    return true;
}

/* The chunk [off, off + len) of the file: the base's bytes there (zeros past its end), then each
 * overlay from the oldest to the newest. */
static bool lay_over(const char *path, Overlay *ov, int n_ov, unsigned char *chunk, uint64_t off, size_t len,
                     Err *err)
{
    for (int l = n_ov - 1; l >= 0; l--) {
        Overlay *o = &ov[l];
        if (off + len > o->size) {
            uint64_t from = o->size > off ? o->size - off : 0;
            memset(chunk + from, 0, len - from);
        }
        size_t nb = json_array_size(o->blocks);
        while (o->next < nb) {
            json_int_t blk = json_integer_value(json_array_get(o->blocks, o->next));
            uint64_t boff = (uint64_t)blk * PAGE_SIZE_BYTES;
            if (boff >= off + len)
                break;
            if (blk < 0 || boff < off || boff >= o->size) { /* checked by overlay_blocks_ok */
                err_set(err, "backup %s: %s: block %lld out of place", o->label, path, (long long)blk);
                return false;
            }
            size_t blen = o->size - boff < PAGE_SIZE_BYTES ? (size_t)(o->size - boff) : PAGE_SIZE_BYTES;
            memcpy(chunk + (boff - off), o->data + o->next * PAGE_SIZE_BYTES, blen);
            o->next++;
        }
    }
    return true;
}

/* A file of 1 MB or more, written a chunk at a time: the whole object it comes from (this
 * backup's, or the one a chain of references and block-mode entries leads to) is decoded
 * chunk by chunk, and the blocks stored by the backups above it are laid over each chunk. The
 * base object's header is compared with its manifest before anything is written, and its
 * content as it goes: a mismatch found at its end fails the restore, and the file is removed
 * (the restore then leaves no pg_control). */
static bool restore_streamed(RestoreCtx *c, RestoreWorker *w, const json_t *e0, const char *path, const char *dst,
                             Err *err)
{
    const char *top = c->chain[0]->info.label;
    uint64_t size = (uint64_t)json_integer_value(json_object_get(e0, "size"));
    Overlay *ov = NULL;
    int n_ov = 0;
    const json_t *base = NULL;
    const char *base_label = NULL;
    bool ok = true;
    for (int k = 0; ok; k++) {
        const json_t *e = manifest_file(c->chain[k], path);
        if (!e)
            break; /* a block-mode file the older backup did not have: it starts empty */
        const char *mode = manifest_file_mode(e);
        if (strcmp(mode, "whole") == 0) {
            base = e;
            base_label = c->chain[k]->info.label;
            break;
        }
        if (k + 1 >= c->n_chain) {
            err_set(err, "backup %s: %s refers to an older backup, and %s is a full one", c->chain[k]->info.label,
                    path, c->chain[k]->info.label);
            ok = false;
        } else if (strcmp(mode, "blocks") == 0) {
            ov = xrealloc(ov, (size_t)(n_ov + 1) * sizeof(Overlay));
            Overlay *o = &ov[n_ov++];
            memset(o, 0, sizeof(*o));
            o->label = c->chain[k]->info.label;
            o->size = (uint64_t)json_integer_value(json_object_get(e, "size"));
            o->blocks = json_object_get(e, "blocks");
            size_t kn = 0;
            ok = overlay_blocks_ok(o, path, err) && read_object(c, o->label, path, &o->data, &kn, NULL, err);
            if (ok && kn != json_array_size(o->blocks) * PAGE_SIZE_BYTES) {
                err_set(err, "backup %s: %s: %zu bytes of blocks for %zu blocks listed", c->chain[k]->info.label,
                        path, kn, json_array_size(o->blocks));
                ok = false;
            }
        } else if (strcmp(mode, "ref") != 0) {
            err_set(err, "backup %s: %s: unknown mode \"%s\" in the manifest", c->chain[k]->info.label, path, mode);
            ok = false;
        }
    }
    char *key = NULL;
    void *stored = NULL;
    uint64_t base_size = base ? (uint64_t)json_integer_value(json_object_get(base, "size")) : 0;
    if (ok && base)
        ok = begin_checked(c, w, base_label, path, base, &stored, &key, err);
    /* a reference alone: the file is the base, whose size must be this one's */
    if (ok && n_ov == 0 && base_size != size) {
        err_set(err, "backup %s: %s is %llu bytes, and the copy it refers to (backup %s) %llu", top, path,
                (unsigned long long)size, base ? base_label : "(none)", (unsigned long long)base_size);
        ok = false;
    }
    /* the file as put together, against this backup's checksum of it (when the manifest has
     * one: a block-mode entry has none) unless it is the base itself, checked as decoded */
    const char *want = manifest_file_checksum(e0);
    ChecksumKind want_kind;
    bool summing = ok && base != e0 && checksum_kind_of_hex(want, &want_kind);
    Checksum sum;
    if (summing)
        checksum_init(&sum, want_kind);
    FileSink sink;
    bool opened = ok && open_target(c, w, &sink, dst, size, err);
    ok = ok && opened;
    /* the sink's bounce buffer is the chunk itself: content decoded there is aligned already */
    for (uint64_t off = 0; ok && off < size; off += RESTORE_CHUNK) {
        size_t len = size - off < RESTORE_CHUNK ? (size_t)(size - off) : RESTORE_CHUNK;
        size_t got = 0;
        /* never past the base's content: its end (and checksum) is read after the loop */
        if (base && off < base_size) {
            ok = decoder_fill(w->dec, w->chunk, base_size - off < len ? (size_t)(base_size - off) : len, &got, err);
            if (!ok)
                err_prefix(err, "%s: %s", c->repo->desc, key);
        }
        if (ok && got < len)
            memset(w->chunk + got, 0, len - got);
        ok = ok && lay_over(path, ov, n_ov, w->chunk, off, len, err);
        if (ok && summing)
            checksum_update(&sum, w->chunk, len);
        ok = ok && file_sink_write(&sink, w->chunk, len, err);
    }
    if (summing) {
        unsigned char bin[CHECKSUM_MAX_LEN];
        char hex[CHECKSUM_HEX_LEN];
        checksum_final(&sum, bin);
        checksum_hex(want_kind, bin, hex);
        if (ok && strcmp(hex, want) != 0) {
            err_set(err, "backup %s: %s put together has another checksum than the manifest's %s", top, path, want);
            ok = false;
        }
    }
    /* the rest of the base (a file that shrank since) is read too: its checksum covers it all,
     * and a damaged object fails here rather than pass unseen */
    if (ok && base) {
        size_t got = 0;
        do
            ok = obj_decoder_read(w->dec, w->chunk, RESTORE_CHUNK, &got, err);
        while (ok && got > 0);
        if (!ok)
            err_prefix(err, "%s: %s", c->repo->desc, key);
    }
    free(stored);
    free(key);
    for (int l = 0; l < n_ov; l++)
        free(ov[l].data);
    free(ov);
    if (!ok) {
        if (opened) {
            /* written before the end showed it wrong: not left behind */
            file_sink_abort(&sink);
            unlink(dst);
        }
        return false;
    }
    if (!file_sink_close(&sink, err)) {
        unlink(dst);
        return false;
    }
    return true;
}

/* Delta, for a whole file with region checksums: the local copy is compared region by region,
 * and only the regions that differ are written, from the object decoded chunk by chunk (its
 * size and checksum checked at its end, as always). 1: done (kept or patched); 0: not
 * applicable (no such list, no local regular file): restore it whole; -1: failed (a file
 * written in part is removed). */
static int delta_by_regions(RestoreCtx *c, RestoreWorker *w, const json_t *e, const char *path, const char *dst,
                            Err *err)
{
    const char *sums = json_string_value(json_object_get(e, "region_checksums"));
    json_int_t region = json_integer_value(json_object_get(c->chain[0]->root, "region_size"));
    uint64_t size = (uint64_t)json_integer_value(json_object_get(e, "size"));
    uint64_t n_regions = (size + CHECKSUM_REGION - 1) / CHECKSUM_REGION;
    struct stat st;
    if (!sums || strcmp(manifest_file_mode(e), "whole") != 0 || region != (json_int_t)CHECKSUM_REGION ||
        strlen(sums) != n_regions * CHECKSUM_REGION_HEX || lstat(dst, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    int fd = open_to_compare(dst, st.st_size);
    if (fd < 0)
        return 0;
    bool *differs = xcalloc(n_regions + 1, sizeof(bool));
    uint64_t n_diff = 0;
    for (uint64_t r = 0; r < n_regions; r++) {
        uint64_t off = r * CHECKSUM_REGION;
        size_t want = size - off < CHECKSUM_REGION ? (size_t)(size - off) : CHECKSUM_REGION;
        /* a whole number of file system blocks (direct I/O): at the end of the file a read
         * returns what there is */
        size_t ask = (want + FILE_SINK_ALIGN - 1) / FILE_SINK_ALIGN * FILE_SINK_ALIGN;
        ssize_t got = pread(fd, w->chunk, ask, (off_t)off);
        char hex[CHECKSUM_REGION_HEX + 1];
        if (got >= (ssize_t)want)
            checksum_region_hex(w->chunk, want, hex);
        differs[r] = got < (ssize_t)want || memcmp(hex, sums + r * CHECKSUM_REGION_HEX, CHECKSUM_REGION_HEX) != 0;
        n_diff += differs[r];
    }
    close(fd);
    if (n_diff == 0 && (uint64_t)st.st_size == size) {
        free(differs);
        atomic_fetch_add(&c->kept, 1);
        return 1;
    }
    char *key = NULL;
    void *stored = NULL;
    bool ok = begin_checked(c, w, c->chain[0]->info.label, path, e, &stored, &key, err);
    int wfd = ok ? open(dst, O_WRONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (ok && wfd < 0) {
        err_set(err, "cannot write %s: %s", dst, strerror(errno));
        ok = false;
    }
    int64_t written = 0;
    bool touched = false;
    for (uint64_t off = 0; ok && off < size; off += RESTORE_CHUNK) {
        size_t len = size - off < RESTORE_CHUNK ? (size_t)(size - off) : RESTORE_CHUNK;
        size_t got = 0;
        ok = decoder_fill(w->dec, w->chunk, len, &got, err);
        if (ok && got != len) {
            err_set(err, "%s: %s: content shorter than its header says", c->repo->desc, key);
            ok = false;
        }
        /* RESTORE_CHUNK is a whole number of regions */
        for (size_t in = 0; ok && in < len; in += CHECKSUM_REGION) {
            if (!differs[(off + in) / CHECKSUM_REGION])
                continue;
            size_t rl = len - in < CHECKSUM_REGION ? len - in : CHECKSUM_REGION;
            touched = true;
            if (pwrite(wfd, w->chunk + in, rl, (off_t)(off + in)) != (ssize_t)rl) {
                err_set(err, "cannot write %s: %s", dst, strerror(errno));
                ok = false;
            }
            written += (int64_t)rl;
        }
    }
    if (ok && (uint64_t)st.st_size != size) {
        touched = true;
        if (ftruncate(wfd, (off_t)size) != 0) {
            err_set(err, "cannot write %s: %s", dst, strerror(errno));
            ok = false;
        }
    }
    /* the object's end: its size and checksum (what was written came from it) */
    if (ok) {
        size_t got = 0;
        ok = obj_decoder_read(w->dec, w->chunk, RESTORE_CHUNK, &got, err) && got == 0;
        if (!ok)
            err_prefix(err, "%s: %s", c->repo->desc, key);
    }
    if (wfd >= 0 && close(wfd) != 0 && ok) {
        err_set(err, "cannot write %s: %s", dst, strerror(errno));
        ok = false;
    }
    free(stored);
    free(key);
    free(differs);
    if (!ok) {
        if (touched)
            unlink(dst); /* part old, part new: not left behind */
        return -1;
    }
    atomic_fetch_add(&c->written, 1);
    atomic_fetch_add(&c->patched, 1);
    atomic_fetch_add(&c->patched_bytes, (long long)written);
    atomic_fetch_add(&c->written_bytes, (long long)written);
    return 1;
}

static bool restore_one(RestoreCtx *c, RestoreWorker *w, const json_t *e, Err *err)
{
    const char *path = json_string_value(json_object_get(e, "path"));
    const char *want = manifest_file_checksum(e);
    char *dst = str_printf("%s/%s", c->target_dir, path);
    int by_regions = c->delta ? delta_by_regions(c, w, e, path, dst, err) : 0;
    if (by_regions != 0) {
        free(dst);
        return by_regions > 0;
    }
    if (c->delta && same_as_local(w, dst, e)) {
        free(dst);
        atomic_fetch_add(&c->kept, 1);
        return true;
    }
    /* a large file is decoded straight into place; a small one (pg_control among them) is put
     * together and checked whole before a byte of it is written */
    if (json_integer_value(json_object_get(e, "size")) >= (json_int_t)FILE_SINK_DIRECT_MIN) {
        bool ok = restore_streamed(c, w, e, path, dst, err);
        free(dst);
        if (ok) {
            atomic_fetch_add(&c->written, 1);
            atomic_fetch_add(&c->written_bytes, (long long)json_integer_value(json_object_get(e, "size")));
        }
        return ok;
    }
    unsigned char *buf = NULL;
    size_t n = 0;
    ObjInfo info;
    bool known = false;
    if (!put_together(c, 0, path, &buf, &n, &info, &known, err)) {
        free(dst);
        return false;
    }
    /* the whole file against the manifest, when it knows the whole file's checksum (an object
     * that is the whole file was checked as it was decoded) */
    bool same = (int64_t)n == json_integer_value(json_object_get(e, "size"));
    ChecksumKind kind;
    if (same && checksum_kind_of_hex(want, &kind)) {
        unsigned char bin[CHECKSUM_MAX_LEN];
        char hex[CHECKSUM_HEX_LEN];
        if (known && info.sum_kind == kind)
            memcpy(bin, info.sum, sizeof(bin));
        else
            checksum_buf(kind, buf, n, bin);
        checksum_hex(kind, bin, hex);
        same = strcmp(hex, want) == 0;
    }
    if (!same) {
        err_set(err, "backup %s: %s put together is %zu bytes%s, the manifest says %lld bytes and checksum %s",
                c->chain[0]->info.label, path, n, want[0] ? " with another checksum" : "",
                (long long)json_integer_value(json_object_get(e, "size")), want[0] ? want : "(not known)");
        free(buf);
        free(dst);
        return false;
    }
    FileSink sink;
    bool ok = open_target(c, w, &sink, dst, n, err);
    if (ok && !file_sink_write(&sink, buf, n, err)) {
        file_sink_abort(&sink);
        unlink(dst);
        ok = false;
    } else if (ok && !file_sink_close(&sink, err)) {
        unlink(dst);
        ok = false;
    }
    if (ok)
        atomic_fetch_add(&c->written_bytes, (long long)n);
    free(buf);
    free(dst);
    if (ok)
        atomic_fetch_add(&c->written, 1);
    return ok;
}

/* Delta: the directory must be a stopped data directory of the cluster the backup is of. */
static bool delta_target_ok(const Config *cfg, const char *dir, const Manifest *m, bool by_agent, Err *err)
{
    /* the node's agent would start postgres in the middle of the restore */
    if (cfg->pid_file && !by_agent) {
        int fd = open(cfg->pid_file, O_RDONLY | O_CLOEXEC);
        bool locked = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
        if (fd >= 0)
            close(fd);
        if (locked) {
            err_set(err, "restore --delta: the agent of %s runs (%s is locked); stop it first", cfg->name,
                    cfg->pid_file);
            return false;
        }
    }
    char *p = str_printf("%s/PG_VERSION", dir);
    bool pg = file_exists(p);
    free(p);
    if (!pg) {
        err_set(err, "restore --delta: %s is not a PostgreSQL data directory (no PG_VERSION)", dir);
        return false;
    }
    if (pg_postmaster_pid(dir) != 0) {
        err_set(err, "restore --delta: postgres runs in %s; stop it first", dir);
        return false;
    }
    /* WAL this server wrote and never archived would be lost with pg_wal */
    p = str_printf("%s/pg_wal/archive_status", dir);
    DIR *d = opendir(p);
    int ready = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        ready += len > 6 && strcmp(de->d_name + len - 6, ".ready") == 0;
    }
    if (d)
        closedir(d);
    free(p);
    if (ready > 0 && by_agent) {
        log_warn("delta restore: %d WAL file(s) in %s/pg_wal were never archived; they go with the rest of what "
                 "this diverged data directory had", ready, dir);
    } else if (ready > 0) {
        err_set(err, "restore --delta: %d WAL file(s) in %s/pg_wal were never archived; start the server once to "
                "archive them, or move them aside", ready, dir);
        return false;
    }
    /* the system identifier is the first field of pg_control */
    p = str_printf("%s/global/pg_control", dir);
    size_t n = 0;
    char *ctl = file_read_all(p, &n, NULL);
    free(p);
    uint64_t sysid = 0;
    if (ctl && n >= 8)
        memcpy(&sysid, ctl, 8);
    free(ctl);
    char mine[32];
    str_fmt(mine, sizeof(mine), "%llu", (unsigned long long)sysid);
    if (strcmp(mine, m->info.sysid) != 0) {
        err_set(err, "restore --delta: %s belongs to another cluster (system identifier %s, the backup's %s)", dir,
                mine, m->info.sysid);
        return false;
    }
    return true;
}

/* Delta: remove what the backup does not have (pg_wal is emptied: recovery takes WAL from the
 * archive, and stale files of another timeline must not be replayed). */
static bool delta_prune(const char *root, const char *rel, const Manifest *m, const json_t *dirs, int *removed,
                        Err *err)
{
    char *dir = rel[0] ? str_printf("%s/%s", root, rel) : str_dup(root);
    DIR *d = opendir(dir);
    if (!d) {
        err_set(err, "restore --delta: cannot read %s: %s", dir, strerror(errno));
        free(dir);
        return false;
    }
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *child = rel[0] ? str_printf("%s/%s", rel, e->d_name) : str_dup(e->d_name);
        char *full = str_printf("%s/%s", root, child);
        struct stat st;
        if (lstat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
            bool known = false;
            size_t i;
            json_t *v;
            json_array_foreach(dirs, i, v) if (strcmp(json_string_value(v), child) == 0) known = true;
            if (known) {
                ok = delta_prune(root, child, m, dirs, removed, err);
            } else if (dir_remove_all(full, err)) {
                (*removed)++;
            } else {
                ok = false;
            }
        } else if (!manifest_file(m, child) || strncmp(child, "pg_wal/", 7) == 0) {
            if (unlink(full) == 0)
                (*removed)++;
            else if (errno != ENOENT) {
                err_set(err, "restore --delta: cannot remove %s: %s", full, strerror(errno));
                ok = false;
            }
        }
        free(full);
        free(child);
    }
    closedir(d);
    free(dir);
    return ok;
}

static bool append_conf(const char *path, const char *text, Err *err)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text) && fsync(fd) == 0;
    if (!ok)
        err_set(err, "cannot write %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return ok;
}

/* 'value' with quotes doubled, as postgresql.conf wants */
static char *conf_quote(const char *v)
{
    size_t n = strlen(v);
    char *q = xmalloc(2 * n + 3);
    size_t k = 0;
    q[k++] = '\'';
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\'')
            q[k++] = '\'';
        q[k++] = v[i];
    }
    q[k++] = '\'';
    q[k] = '\0';
    return q;
}

/* Which backup: the one named, else the newest (the newest that ended before a target time
 * given in UTC; with a time in another form, the oldest, which reaches any target the archive
 * covers). */
static bool choose_backup(Repo *r, const RestoreOptions *o, char *label, size_t sz, Err *err)
{
    label[0] = '\0';
    if (o->label) {
        str_copy(label, sz, o->label);
        return true;
    }
    BackupInfo *all = NULL;
    int n = 0;
    if (!backup_list(r, &all, &n, err))
        return false;
    double target = 0, stop = 0;
    bool by_time = o->target_time != NULL;
    bool target_utc = by_time && parse_utc(o->target_time, &target);
    /* an LSN target: the newest backup that ended before it. A backup that ends after it cannot
     * stop there (PostgreSQL refuses a stop point before the consistent point, after the restore) */
    Lsn target_lsn = 0;
    bool by_lsn = !by_time && o->target_lsn && lsn_parse(o->target_lsn, &target_lsn);
    for (int i = 0; i < n; i++) {
        if (by_lsn) {
            if (all[i].stop_lsn < target_lsn)
                str_copy(label, sz, all[i].label);
        } else if (!by_time || (target_utc && parse_utc(all[i].stop_time, &stop) && stop < target)) {
            str_copy(label, sz, all[i].label);
        } else if (by_time && !target_utc && !label[0]) {
            str_copy(label, sz, all[i].label);
        }
    }
    free(all);
    if (!label[0] && n > 0 && (by_lsn || target_utc)) {
        err_set(err, "restore: no backup in the %s ended before the target %s (give --backup LABEL to try one)",
                r->desc, by_lsn ? o->target_lsn : o->target_time);
        return false;
    }
    if (!label[0]) {
        err_set(err, "restore: the %s holds no complete backup", r->desc);
        return false;
    }
    return true;
}

static bool make_dirs(const Manifest *m, const char *target_dir, Err *err)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(m->root, "directories"), i, v) {
        const char *d = json_string_value(v);
        if (!d || strstr(d, "..")) {
            err_set(err, "restore: backup %s: bad directory entry in the manifest", m->info.label);
            return false;
        }
        char *p = str_printf("%s/%s", target_dir, d);
        bool ok = mkdir(p, 0700) == 0 || errno == EEXIST;
        if (ok)
            proc_lchown_run_as(p, NULL);
        else
            err_set(err, "restore: cannot create %s: %s", p, strerror(errno));
        free(p);
        if (!ok)
            return false;
    }
    json_array_foreach(json_object_get(m->root, "files"), i, v) {
        const char *p = json_string_value(json_object_get(v, "path"));
        if (!p || strstr(p, "..") || !json_is_integer(json_object_get(v, "size"))) {
            err_set(err, "restore: backup %s: bad file entry in the manifest", m->info.label);
            return false;
        }
    }
    return true;
}

/* Make what the restore wrote durable: one syncfs of the target's file system instead of an
 * fsync per file (much faster for thousands of files; the directory entries are synced too). */
static bool sync_target(const char *dir, Err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || syncfs(fd) != 0) {
        err_set(err, "restore: cannot sync %s to disk: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    close(fd);
    return true;
}

/* Before anything is written: the WAL the backup needs to become consistent must be in the
 * repository, and a target LSN past a gap in the WAL is out of reach. A gap that does not stop
 * the target is a warning naming the missing segment and the furthest point recovery reaches. */
static bool check_wal(Repo *r, const BackupInfo *b, const RestoreOptions *o, Err *err)
{
    WalChain ch;
    if (!wal_chain_load(r, &ch, err))
        return false;
    unsigned tli = (unsigned)b->timeline;
    uint64_t start = b->start_lsn / WAL_SEG_BYTES;
    uint64_t stop = b->stop_lsn > b->start_lsn ? (b->stop_lsn - 1) / WAL_SEG_BYTES : start;
    bool ok = true;
    for (uint64_t s = start; s <= stop && ok; s++)
        if (!wal_chain_has(&ch, tli, s)) {
            char name[32];
            wal_seg_name(tli, s, name, sizeof(name));
            err_set(err, "restore: WAL segment %s, which backup %s needs to become consistent, is not in the %s", name,
                    b->label, r->desc);
            ok = false;
        }
    unsigned end_tli;
    uint64_t end_seg;
    if (ok) {
        wal_chain_reach(&ch, tli, stop, &end_tli, &end_seg);
        if (wal_chain_more_after(&ch, end_tli, end_seg)) {
            char missing[32], last[32], at[LSN_BUFSZ];
            wal_seg_name(end_tli, end_seg + 1, missing, sizeof(missing));
            wal_seg_name(end_tli, end_seg, last, sizeof(last));
            Lsn reach = (end_seg + 1) * WAL_SEG_BYTES;
            Lsn target = 0;
            if (o->target_lsn && lsn_parse(o->target_lsn, &target) && target > reach) {
                err_set(err, "restore: WAL segment %s is missing from the %s: recovery can reach %s (the end of %s), not "
                        "the target LSN %s",
                        missing, r->desc, lsn_format(reach, at), last, o->target_lsn);
                ok = false;
            } else {
                log_warn("restore: WAL segment %s is missing from the %s: recovery stops at %s (the end of %s); what "
                         "was written after it is out of reach",
                         missing, r->desc, lsn_format(reach, at), last);
            }
        }
    }
    wal_chain_free(&ch);
    return ok;
}

bool backup_restore(const Config *cfg, Repo *r, const RestoreOptions *o, BackupInfo *used, RestoreCounts *counts,
                    Err *err)
{
    memset(counts, 0, sizeof(*counts));
    bool delta = o->delta && !dir_is_empty_or_missing(o->target_dir);
    if (!delta && !dir_is_empty_or_missing(o->target_dir)) {
        err_set(err, "restore: %s is not empty (restore into an empty or missing directory, or use --delta)",
                o->target_dir);
        return false;
    }
    char label[40];
    if (!choose_backup(r, o, label, sizeof(label), err))
        return false;
    Manifest **chain = NULL;
    int n_chain = 0;
    if (!manifest_chain(r, label, &chain, &n_chain, err))
        return false;
    *used = chain[0]->info;
    if (!check_wal(r, &chain[0]->info, o, err)) {
        manifest_chain_free(chain, n_chain);
        return false;
    }
    if (delta && (!delta_target_ok(cfg, o->target_dir, chain[0], o->by_agent, err) ||
                  !delta_prune(o->target_dir, "", chain[0], json_object_get(chain[0]->root, "directories"),
                               &counts->removed, err))) {
        manifest_chain_free(chain, n_chain);
        return false;
    }
    if (!dir_make_all(o->target_dir, 0700, err)) {
        manifest_chain_free(chain, n_chain);
        return false;
    }
    proc_lchown_run_as(o->target_dir, NULL);
    chmod(o->target_dir, 0700);
    bool ok = make_dirs(chain[0], o->target_dir, err);
    if (ok) {
        RestoreCtx c = {.delta = delta, .repo = r, .chain = chain, .n_chain = n_chain, .target_dir = o->target_dir,
                        .files = json_object_get(chain[0]->root, "files"), .control = -1};
        uint64_t total = 0;
        size_t fi;
        json_t *fe;
        json_array_foreach(c.files, fi, fe) {
            json_int_t size = json_integer_value(json_object_get(fe, "size"));
            total += size > 0 ? (uint64_t)size : 0;
            const char *fp = json_string_value(json_object_get(fe, "path"));
            if (fp && strcmp(fp, "global/pg_control") == 0)
                c.control = (int)fi;
        }
        /* pg_control last, and (delta) gone until then: a restore that fails half-way leaves a
         * directory PostgreSQL refuses to start, never one that starts as a wrong cluster */
        char *control = str_printf("%s/global/pg_control", o->target_dir);
        if (unlink(control) != 0 && errno != ENOENT) {
            err_set(err, "restore: cannot remove %s: %s", control, strerror(errno));
            ok = false;
        }
        free(control);
        int nw = o->workers > 1 ? o->workers : 1;
        c.workers = xcalloc((size_t)nw, sizeof(RestoreWorker));
        for (int i = 0; i < nw; i++) {
            c.workers[i].dec = obj_decoder_new();
            c.workers[i].chunk = xcalloc_aligned(1, RESTORE_CHUNK, FILE_SINK_ALIGN);
        }
        c.progress = progress_start("restore", total);
        ok = ok && parallel_for((int)json_array_size(c.files), nw, restore_file, &c, err);
        /* the backup label before pg_control: a directory with pg_control and no label would
         * start as if it were consistent at the backup's last checkpoint, and the agent starts
         * any data directory that has PG_VERSION and pg_control */
        if (ok) {
            const char *lf = json_string_value(json_object_get(chain[0]->root, "backup_label"));
            char *p = str_printf("%s/backup_label", o->target_dir);
            ok = lf && file_write_atomic(p, lf, strlen(lf), 0600, err);
            if (ok)
                proc_lchown_run_as(p, NULL);
            free(p);
        }
        /* every other file durable before pg_control exists, then pg_control */
        ok = ok && sync_target(o->target_dir, err);
        if (ok && c.control >= 0) {
            const json_t *ce = json_array_get(c.files, (size_t)c.control);
            ok = restore_one(&c, &c.workers[0], ce, err) && sync_target(o->target_dir, err);
            progress_add(c.progress, (uint64_t)json_integer_value(json_object_get(ce, "size")));
        }
        progress_end(c.progress);
        for (int i = 0; i < nw; i++) {
            obj_decoder_free(c.workers[i].dec);
            free(c.workers[i].chunk);
        }
        free(c.workers);
        counts->written = atomic_load(&c.written);
        counts->kept = atomic_load(&c.kept);
        counts->patched = atomic_load(&c.patched);
        counts->patched_bytes = (int64_t)atomic_load(&c.patched_bytes);
        counts->written_bytes = (int64_t)atomic_load(&c.written_bytes);
        if (!ok)
            err_prefix(err, "restore");
    }
    /* recovery: a recovery signal, and how to get WAL and where to stop (the agent writes its
     * own, into the configuration it owns) */
    if (ok && !o->files_only) {
        char *p = str_printf("%s/recovery.signal", o->target_dir);
        ok = file_write_atomic(p, "", 0, 0600, err);
        if (ok)
            proc_lchown_run_as(p, NULL);
        free(p);
    }
    if (ok && !o->files_only) {
        char *cmd = str_printf("%s %%f %%p", o->wal_fetch_cmd);
        char *qcmd = conf_quote(cmd);
        char *text = str_printf("\n# added by pgvigil restore of backup %s\n"
                                "restore_command = %s\n"
                                "recovery_target_action = 'promote'\n"
                                "recovery_target_inclusive = %s\n"
                                /* a restored copy must not archive into the cluster's repository,
                                 * nor read the commit guard lease of the node it was taken from */
                                "archive_mode = off\n"
                                "pgvigil_guard.lease_file = ''\n",
                                label, qcmd, o->exclusive ? "off" : "on");
        free(qcmd);
        free(cmd);
        const char *keys[] = {"recovery_target_time", "recovery_target_lsn", "recovery_target_xid",
                              "recovery_target_name"};
        const char *vals[] = {o->target_time, o->target_lsn, o->target_xid, o->target_name};
        for (size_t k = 0; k < ARRAY_LEN(keys); k++)
            if (vals[k]) {
                char *q = conf_quote(vals[k]);
                char *t2 = str_printf("%s%s = %s\n", text, keys[k], q);
                free(q);
                free(text);
                text = t2;
            }
        char *p = str_printf("%s/postgresql.auto.conf", o->target_dir);
        ok = append_conf(p, text, err);
        if (ok)
            proc_lchown_run_as(p, NULL);
        free(p);
        free(text);
    }
    manifest_chain_free(chain, n_chain);
    return ok;
}
