/* Taking base backups, full, differential and incremental (see base_backup.h), and listing
 * them. */
#include "backup/base_backup.h"
#include "backup/manifest.h"
#include "backup/obj.h"
#include "backup/page_checksum.h"
#include "backup/pages.h"
#include "backup/parallel.h"
#include "backup/wal_summary_store.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/progress.h"
#include "common/strbuf.h"
#include "common/timeutil.h"
#include "pg/pg.h"

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- what a backup copies -------------------------------------------------------------------- */

/* Directories whose contents are not copied (PostgreSQL rebuilds or does not need them), and
 * files never copied: as pg_basebackup does. */
static const char *const skip_contents[] = {"pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial",
                                            "pg_snapshots", "pg_stat_tmp", "pg_subtrans"};
static const char *const skip_files[] = {"postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map",
                                         "standby.signal", "recovery.signal", "postgresql.auto.conf.tmp",
                                         "current_logfiles", "current_logfiles.tmp", PG_REWIND_FAILED_FILE};

typedef struct FileEntry {
    char *path;              /* relative to the data directory */
    int64_t size, stored;
    int64_t read;            /* bytes read from the data directory */
    int64_t listed;          /* size when listed (for the progress shown) */
    char checksum[CHECKSUM_HEX_LEN]; /* of the whole file (hex); "" for a block-mode entry */
    char *region_sums;       /* a large file's per-region checksums (checksum_region_hex), or NULL */
    const char *mode;        /* "whole", "ref" or "blocks" */
    uint32_t *blocks;        /* block-mode: the blocks stored, in order */
    int n_blocks;
    bool gone;               /* vanished during the copy (a dropped relation): not in the backup */
    uint32_t *bad_pages;     /* blocks whose page checksum failed (page_check_file) */
    int n_bad_pages;
} FileEntry;

typedef struct FileList {
    char **dirs;
    int n_dirs, cap_dirs;
    FileEntry *files;
    int n_files, cap_files;
} FileList;

static void list_free(FileList *l)
{
    for (int i = 0; i < l->n_dirs; i++)
        free(l->dirs[i]);
    for (int i = 0; i < l->n_files; i++) {
        free(l->files[i].path);
        free(l->files[i].blocks);
        free(l->files[i].bad_pages);
        free(l->files[i].region_sums);
    }
    free(l->dirs);
    free(l->files);
    memset(l, 0, sizeof(*l));
}

static bool in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return true;
    return false;
}

static bool walk(const char *root, const char *rel, FileList *l, Err *err)
{
    char *dir = rel[0] ? str_printf("%s/%s", root, rel) : str_dup(root);
    DIR *d = opendir(dir);
    if (!d) {
        err_set(err, "cannot read %s: %s", dir, strerror(errno));
        free(dir);
        return false;
    }
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strncmp(name, "pgsql_tmp", 9) == 0 ||
            strcmp(name, "pg_internal.init") == 0 || (!rel[0] && in_list(name, skip_files, ARRAY_LEN(skip_files))))
            continue;
        char *child = rel[0] ? str_printf("%s/%s", rel, name) : str_dup(name);
        char *full = str_printf("%s/%s", root, child);
        struct stat st;
        if (lstat(full, &st) != 0) {
            free(full);
            free(child);
            continue; /* removed meanwhile */
        }
        free(full);
        if (S_ISLNK(st.st_mode) && strcmp(child, "pg_wal") == 0) {
            /* WAL on another volume: restored as a directory, its contents left out as always */
            st.st_mode = S_IFDIR;
        }
        if (S_ISLNK(st.st_mode) && strncmp(child, "pg_tblspc/", 10) == 0) {
            err_set(err, "tablespaces are not supported by pgvigil backups yet (%s)", child);
            free(child);
            ok = false;
        } else if (S_ISDIR(st.st_mode)) {
            if (l->n_dirs == l->cap_dirs) {
                l->cap_dirs = l->cap_dirs ? l->cap_dirs * 2 : 64;
                l->dirs = xrealloc(l->dirs, (size_t)l->cap_dirs * sizeof(char *));
            }
            l->dirs[l->n_dirs++] = str_dup(child);
            if (!(!rel[0] && in_list(name, skip_contents, ARRAY_LEN(skip_contents))))
                ok = walk(root, child, l, err);
            free(child);
        } else if (S_ISREG(st.st_mode)) {
            if (l->n_files == l->cap_files) {
                l->cap_files = l->cap_files ? l->cap_files * 2 : 256;
                l->files = xrealloc(l->files, (size_t)l->cap_files * sizeof(FileEntry));
            }
            FileEntry *f = &l->files[l->n_files++];
            memset(f, 0, sizeof(*f));
            f->path = child;
            f->listed = st.st_size;
        } else {
            free(child);
        }
    }
    closedir(d);
    free(dir);
    return ok;
}

static int larger_first(const void *a, const void *b)
{
    const FileEntry *x = a, *y = b;
    if (x->listed != y->listed)
        return x->listed > y->listed ? -1 : 1;
    return strcmp(x->path, y->path);
}

/* ---- parallel copy ----------------------------------------------------------------------------- */

/* What one copy worker keeps from one file to the next. */
typedef struct CopyWorker {
    ObjEncoder *enc;
    unsigned char *chunk;    /* COPY_CHUNK bytes */
} CopyWorker;

/* a whole file is read, checked and compressed this much at a time (whole pages; for zstd, one
 * frame each: a few MB keep the output within 1% of one frame's) */
#define COPY_CHUNK ((size_t)4 << 20)

typedef struct CopyJob {
    CopyWorker *workers;
    const char *data_dir;
    Repo *repo;
    const char *prefix;      /* "backup/<label>/data/" */
    CompressKind compress;
    int level;
    FileList *list;
    /* incremental: the backup this one builds on (NULL for a full one) */
    const Manifest *ref;
    Lsn ref_start;
    /* the blocks the WAL changed since ref_start (NULL: compare page LSNs instead) */
    const WalSummary *changes;
    bool crosscheck;         /* tests: also compare page LSNs, and fail on a block the WAL missed */
    Progress *progress;      /* on a terminal */
    /* data checksums on: the pages of relation files are checked (page_checksum.h) */
    bool check_pages;
    Lsn start_lsn;
    bool lsns_reliable;      /* data checksums or wal_log_hints: every page change moves its LSN */
} CopyJob;

/* Against the backup this one builds on: false when the file is unchanged (a reference);
 * otherwise whole, or (a relation file it had) the blocks changed since it started. */
static bool choose_mode(CopyJob *j, FileEntry *f, const unsigned char *raw, size_t n)
{
    const json_t *e = manifest_file(j->ref, f->path);
    if (!e) {
        f->mode = "whole";
        return true;
    }
    int64_t ref_size = json_integer_value(json_object_get(e, "size"));
    if (strcmp(manifest_file_checksum(e), f->checksum) == 0 && ref_size == f->size) {
        f->mode = "ref";
        return false;
    }
    /* blocks by page LSN only without WAL summaries (a file they say to read whole, a database
     * copied whole or mostly changed, keeps the LSNs of the pages it was copied from), and only
     * when every page change moves the LSN (data checksums or wal_log_hints: otherwise setting
     * PD_ALL_VISIBLE leaves it, and the visibility map, read whole, would disagree with the page) */
    if (!page_file_has_lsns(f->path) || j->changes || !j->lsns_reliable) {
        f->mode = "whole";
        return true;
    }
    size_t nblocks = (n + PAGE_SIZE_BYTES - 1) / PAGE_SIZE_BYTES;
    size_t ref_blocks = (size_t)ref_size / PAGE_SIZE_BYTES;
    uint32_t *changed = xcalloc(nblocks + 1, sizeof(uint32_t));
    int nc = 0;
    for (size_t b = 0; b < nblocks; b++) {
        size_t off = b * PAGE_SIZE_BYTES;
        bool partial = n - off < PAGE_SIZE_BYTES;
        Lsn lsn = partial ? 0 : page_lsn(raw + off);
        /* new since then, changed since it started, or never WAL-logged (a page just added) */
        if (b >= ref_blocks || partial || lsn == 0 || lsn >= j->ref_start)
            changed[nc++] = (uint32_t)b;
    }
    if (nc == 0 && (size_t)ref_size == n) {
        /* only unlogged changes (hint bits): the older copy is as good */
        free(changed);
        f->mode = "ref";
        f->checksum[0] = '\0';
        return false;
    }
    if (nblocks > 0 && (size_t)nc * 2 > nblocks) {
        free(changed);
        f->mode = "whole";
        return true;
    }
    f->mode = "blocks";
    f->blocks = changed;
    f->n_blocks = nc;
    f->checksum[0] = '\0'; /* the whole file exists only once put together with the older copy */
    return true;
}

/* Store an object of f (what store_file or copy_streamed encoded). */
static bool put_object(CopyJob *j, FileEntry *f, const void *obj, size_t on, Err *err)
{
    char *key = str_printf("%s%s", j->prefix, f->path);
    /* made durable all at once before the manifest (repo_sync), not one fsync per file */
    bool ok = repo_put_lazy(j->repo, key, obj, on, err);
    free(key);
    if (ok)
        f->stored = (int64_t)on;
    return ok;
}

/* Compress and store what f keeps of the file (raw, n bytes: the whole file or its blocks). */
static bool store_file(CopyJob *j, CopyWorker *w, FileEntry *f, const void *raw, size_t n, Err *err)
{
    const void *obj = NULL;
    size_t on = 0;
    ChecksumKind kind;
    unsigned char sum[CHECKSUM_MAX_LEN];
    return obj_encoder_begin(w->enc, j->repo->cipher, j->compress, j->level, err) &&
           obj_encoder_feed(w->enc, raw, n, err) && obj_encoder_finish(w->enc, &obj, &on, &kind, sum, err) &&
           put_object(j, f, obj, on, err);
}

/* The blocks of a relation file to read again: those the WAL changed, those past a truncation
 * or creation (limit) and those added since the older backup (from ref_blocks on). */
static uint32_t *blocks_to_read(const WalRelBlocks *rb, uint32_t segno, uint64_t nblocks, uint64_t ref_blocks,
                                int *count)
{
    uint64_t base = (uint64_t)segno * WAL_RELSEG_BLOCKS, from = ref_blocks;
    if (rb && rb->limit != WAL_SUMMARY_NO_LIMIT)
    {
        uint64_t limit = rb->limit > base ? rb->limit - base : 0;
        if (limit < from)
            from = limit;
    }
    if (from > nblocks)
        from = nblocks;
    uint32_t *out = xcalloc(nblocks + 1, sizeof(uint32_t));
    int nc = 0;
    if (rb) {
        /* the summary's blocks are sorted: skip to this segment file's */
        size_t lo = 0, hi = rb->n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (rb->blocks[mid] < base)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < rb->n && rb->blocks[i] - base < from; i++)
            out[nc++] = (uint32_t)(rb->blocks[i] - base);
    }
    for (uint64_t b = from; b < nblocks; b++)
        out[nc++] = (uint32_t)b;
    *count = nc;
    return out;
}

/* Tests: every page whose LSN says it changed after the older backup started and before this one
 * did must be among the blocks the WAL summaries gave. (A page changed after this backup's start
 * need not be read: its first change after that checkpoint wrote a full image to the WAL.) */
static bool crosscheck_blocks(CopyJob *j, FileEntry *f, int fd, uint64_t ref_blocks, Err *err)
{
    unsigned char page[PAGE_SIZE_BYTES];
    int k = 0;
    for (uint64_t b = 0; b < ref_blocks && b < (uint64_t)f->size / PAGE_SIZE_BYTES; b++) {
        if (pread(fd, page, PAGE_SIZE_BYTES, (off_t)(b * PAGE_SIZE_BYTES)) != PAGE_SIZE_BYTES)
            break;
        Lsn lsn = page_lsn(page);
        while (k < f->n_blocks && f->blocks[k] < b)
            k++;
        if (lsn >= j->ref_start && lsn < j->start_lsn && !(k < f->n_blocks && f->blocks[k] == b)) {
            char a[LSN_BUFSZ], z[LSN_BUFSZ];
            err_set(err, "backup: the WAL summaries missed block %llu of %s (page LSN %s, older backup from %s)",
                    (unsigned long long)b, f->path, lsn_format(lsn, a), lsn_format(j->ref_start, z));
            return false;
        }
    }
    return true;
}

/* An incremental with WAL summaries: a main-fork relation file the older backup has is read only
 * in its changed blocks. 1: done (stored, a reference or gone); 0: read it whole; -1: error. */
static int copy_changed_blocks(CopyJob *j, CopyWorker *w, FileEntry *f, Err *err)
{
    WalRelKey k;
    uint32_t segno;
    if (!j->changes || !wal_relpath_parse(f->path, &k, &segno) || k.fork != 0)
        return 0;
    const json_t *e = manifest_file(j->ref, f->path);
    if (!e || wal_summary_db_copied(j->changes, k.spc, k.db))
        return 0;
    char *path = str_printf("%s/%s", j->data_dir, f->path);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int en = errno;
        if (fd >= 0)
            close(fd);
        if (fd < 0 && en == ENOENT) {
            f->gone = true; /* dropped meanwhile: WAL replay removes it anyway */
            free(path);
            return 1;
        }
        err_set(err, "cannot read %s: %s", path, fd >= 0 ? "not a regular file" : strerror(en));
        free(path);
        return -1;
    }
    free(path);
    f->size = (int64_t)st.st_size;
    int64_t ref_size = json_integer_value(json_object_get(e, "size"));
    uint64_t nblocks = ((uint64_t)st.st_size + PAGE_SIZE_BYTES - 1) / PAGE_SIZE_BYTES;
    uint64_t ref_blocks = (uint64_t)ref_size / PAGE_SIZE_BYTES;
    int nc = 0;
    uint32_t *list = blocks_to_read(wal_summary_find(j->changes, &k), segno, nblocks, ref_blocks, &nc);
    if (nc > 0 && (uint64_t)nc * 2 > nblocks) {
        free(list);
        close(fd);
        return 0; /* most of it changed: as cheap to keep it whole */
    }
    f->blocks = list;
    f->n_blocks = nc;
    f->checksum[0] = '\0'; /* the whole file exists only once put together with the older copy */
    if (j->crosscheck && !crosscheck_blocks(j, f, fd, ref_blocks, err)) {
        close(fd);
        return -1;
    }
    if (nc == 0 && f->size == ref_size) {
        close(fd);
        f->mode = "ref";
        str_copy(f->checksum, sizeof(f->checksum), manifest_file_checksum(e));
        return 1;
    }
    unsigned char *blk = xcalloc((size_t)nc + 1, PAGE_SIZE_BYTES);
    bool ok = true;
    for (int b = 0; b < nc && ok; b++) {
        /* a block cut off meanwhile stays zero: the truncation is replayed from the WAL */
        ssize_t got = pread(fd, blk + (size_t)b * PAGE_SIZE_BYTES, PAGE_SIZE_BYTES,
                            (off_t)list[b] * PAGE_SIZE_BYTES);
        if (got < 0) {
            err_set(err, "reading %s/%s: %s", j->data_dir, f->path, strerror(errno));
            ok = false;
        }
        f->read += got > 0 ? got : 0;
    }
    close(fd);
    /* the pages read are checked as a full backup checks them (a partial last block is not) */
    if (ok && j->check_pages) {
        size_t whole = (size_t)nc;
        if (whole > 0 && (uint64_t)list[whole - 1] * PAGE_SIZE_BYTES + PAGE_SIZE_BYTES > (uint64_t)f->size)
            whole--;
        f->n_bad_pages = page_check_blocks(j->data_dir, f->path, blk, whole, list, j->start_lsn, &f->bad_pages);
    }
    f->mode = "blocks";
    ok = ok && store_file(j, w, f, blk, (size_t)nc * PAGE_SIZE_BYTES, err);
    free(blk);
    return ok ? 1 : -1;
}

/* Read up to n bytes at the file's position, fewer only at its end. */
static ssize_t read_full(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Does f's copy need the whole file in memory? Only to pick its changed blocks by page LSN. */
static bool needs_whole_file(const CopyJob *j, const FileEntry *f)
{
    return j->ref && !j->changes && j->lsns_reliable && page_file_has_lsns(f->path) && manifest_file(j->ref, f->path);
}

/* The whole file, read a chunk at a time: each chunk's pages are checked, and it is hashed and
 * compressed into the object, which is stored unless the older backup has the same file. */
static bool copy_streamed(CopyJob *j, CopyWorker *w, FileEntry *f, Err *err)
{
    char *path = str_printf("%s/%s", j->data_dir, f->path);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            f->gone = true; /* dropped meanwhile: WAL replay removes it anyway */
        else
            err_set(err, "cannot open %s: %s", path, strerror(errno));
        free(path);
        return f->gone;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    PageCheckRun pc;
    if (j->check_pages)
        page_check_begin(&pc, j->data_dir, f->path, j->start_lsn);
    bool ok = obj_encoder_begin(w->enc, j->repo->cipher, j->compress, j->level, err);
    uint64_t off = 0;
    StrBuf sums = {0};
    while (ok) {
        /* the kernel reads the next chunk while this one is checked and compressed */
        posix_fadvise(fd, (off_t)(off + COPY_CHUNK), (off_t)COPY_CHUNK, POSIX_FADV_WILLNEED);
        ssize_t n = read_full(fd, w->chunk, COPY_CHUNK);
        if (n < 0) {
            err_set(err, "cannot read %s: %s", path, strerror(errno));
            ok = false;
        }
        if (n <= 0)
            break;
        /* a tail shorter than a page (the file being extended as it was read) is not checked */
        if (j->check_pages)
            page_check_pages(&pc, w->chunk, (size_t)n / PAGE_SIZE_BYTES, (uint32_t)(off / PAGE_SIZE_BYTES), NULL);
        ok = obj_encoder_feed(w->enc, w->chunk, (size_t)n, err);
        /* chunks are whole regions (COPY_CHUNK is a multiple of CHECKSUM_REGION), the last
         * one excepted */
        for (size_t r = 0; r < (size_t)n; r += CHECKSUM_REGION) {
            char hex[CHECKSUM_REGION_HEX + 1];
            checksum_region_hex(w->chunk + r, (size_t)n - r < CHECKSUM_REGION ? (size_t)n - r : CHECKSUM_REGION, hex);
            strbuf_add(&sums, hex, CHECKSUM_REGION_HEX);
        }
        off += (uint64_t)n;
        /* the end as it was when reached: what a relation gains later is in the WAL, and a chunk
         * read after it could start in the middle of a page */
        if ((size_t)n < COPY_CHUNK)
            break;
    }
    close(fd);
    free(path);
    if (j->check_pages)
        f->n_bad_pages = page_check_end(&pc, &f->bad_pages);
    const void *obj = NULL;
    size_t on = 0;
    ChecksumKind kind;
    unsigned char sum[CHECKSUM_MAX_LEN];
    if (!ok || !obj_encoder_finish(w->enc, &obj, &on, &kind, sum, err)) {
        strbuf_free(&sums);
        return false;
    }
    /* worth a list from two regions on */
    if (off > CHECKSUM_REGION)
        f->region_sums = strbuf_take(&sums);
    strbuf_free(&sums);
    f->read = f->size = (int64_t)off;
    checksum_hex(kind, sum, f->checksum);
    f->mode = "whole";
    const json_t *e = j->ref ? manifest_file(j->ref, f->path) : NULL;
    if (e && strcmp(manifest_file_checksum(e), f->checksum) == 0 &&
        json_integer_value(json_object_get(e, "size")) == f->size) {
        f->mode = "ref"; /* unchanged: a reference, nothing to store */
        return true;
    }
    return put_object(j, f, obj, on, err);
}

/* Copy one file into the repository (one item of the parallel loop). */
static bool copy_one(CopyJob *j, CopyWorker *w, FileEntry *f, Err *err);

static bool copy_file(void *arg, int worker, int i, Err *err)
{
    CopyJob *j = arg;
    FileEntry *f = &j->list->files[i];
    bool ok = copy_one(j, &j->workers[worker], f, err);
    progress_add(j->progress, f->listed > 0 ? (uint64_t)f->listed : 0);
    return ok;
}

static bool copy_one(CopyJob *j, CopyWorker *w, FileEntry *f, Err *err)
{
    int done = copy_changed_blocks(j, w, f, err);
    if (done != 0)
        return done > 0;
    if (!needs_whole_file(j, f))
        return copy_streamed(j, w, f, err);
    char *path = str_printf("%s/%s", j->data_dir, f->path);
    size_t n = 0;
    char *raw = file_read_all(path, &n, err);
    struct stat st;
    bool gone = !raw && stat(path, &st) != 0 && errno == ENOENT;
    free(path);
    if (gone) {
        f->gone = true; /* dropped meanwhile: WAL replay removes it anyway */
        return true;
    }
    if (!raw)
        return false;
    f->read = (int64_t)n;
    unsigned char sum[CHECKSUM_MAX_LEN];
    checksum_buf(CHECKSUM_NEW, raw, n, sum);
    checksum_hex(CHECKSUM_NEW, sum, f->checksum);
    f->size = (int64_t)n;
    f->mode = "whole";
    if (j->check_pages)
        f->n_bad_pages = page_check_file(j->data_dir, f->path, (unsigned char *)raw, n, j->start_lsn, &f->bad_pages);
    if (!choose_mode(j, f, (unsigned char *)raw, n)) {
        free(raw);
        return true; /* unchanged: a reference, nothing to store */
    }
    /* block mode: the changed blocks only, one after the other (none: the file only shrank) */
    if (strcmp(f->mode, "blocks") == 0) {
        char *blk = xcalloc((size_t)f->n_blocks + 1, PAGE_SIZE_BYTES);
        for (int b = 0; b < f->n_blocks; b++) {
            size_t off = (size_t)f->blocks[b] * PAGE_SIZE_BYTES;
            size_t len = n - off < PAGE_SIZE_BYTES ? n - off : PAGE_SIZE_BYTES;
            memcpy(blk + (size_t)b * PAGE_SIZE_BYTES, raw + off, len);
        }
        free(raw);
        raw = blk;
        n = (size_t)f->n_blocks * PAGE_SIZE_BYTES;
    }
    bool ok = store_file(j, w, f, raw, n, err);
    free(raw);
    return ok;
}


/* ---- manifest -------------------------------------------------------------------------------- */

/* now, UTC, to the millisecond: "2026-12-05T02:03:00.123Z" */
static void iso_now(char *buf, size_t sz)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char s[24];
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    str_fmt(buf, sz, "%s.%03ldZ", s, ts.tv_nsec / 1000000L);
}

static char *manifest_json(const BackupInfo *b, const FileList *l, const char *label_file)
{
    char a[32], z[32];
    json_t *m = json_object();
    json_object_set_new(m, "format", json_integer(MANIFEST_FORMAT));
    json_object_set_new(m, "label", json_string(b->label));
    json_object_set_new(m, "type", json_string(b->type));
    if (b->reference[0])
        json_object_set_new(m, "reference", json_string(b->reference));
    json_object_set_new(m, "start_lsn", json_string(lsn_format(b->start_lsn, a)));
    json_object_set_new(m, "stop_lsn", json_string(lsn_format(b->stop_lsn, z)));
    json_object_set_new(m, "timeline", json_integer(b->timeline));
    json_object_set_new(m, "start_time", json_string(b->start_time));
    json_object_set_new(m, "stop_time", json_string(b->stop_time));
    json_object_set_new(m, "seconds", json_real(b->seconds));
    json_object_set_new(m, "system_identifier", json_string(b->sysid));
    json_object_set_new(m, "backup_label", json_string(label_file));
    json_object_set_new(m, "read_bytes", json_integer(b->read_bytes));
    if (b->changes_from[0])
        json_object_set_new(m, "changes_from", json_string(b->changes_from));
    json_object_set_new(m, "checksums_checked", json_boolean(b->checksums_checked));
    json_object_set_new(m, "region_size", json_integer((json_int_t)CHECKSUM_REGION));
    json_t *dirs = json_array();
    for (int i = 0; i < l->n_dirs; i++)
        json_array_append_new(dirs, json_string(l->dirs[i]));
    json_object_set_new(m, "directories", dirs);
    json_t *files = json_array();
    for (int i = 0; i < l->n_files; i++) {
        const FileEntry *f = &l->files[i];
        if (f->gone)
            continue;
        json_t *e = json_pack("{s:s, s:I, s:s, s:I}", "path", f->path, "size", (json_int_t)f->size, "checksum",
                              f->checksum, "stored", (json_int_t)f->stored);
        if (f->mode && strcmp(f->mode, "whole") != 0)
            json_object_set_new(e, "mode", json_string(f->mode));
        if (f->mode && strcmp(f->mode, "blocks") == 0) {
            json_t *bl = json_array();
            for (int k = 0; k < f->n_blocks; k++)
                json_array_append_new(bl, json_integer(f->blocks[k]));
            json_object_set_new(e, "blocks", bl);
        }
        if (f->region_sums && (!f->mode || strcmp(f->mode, "whole") == 0))
            json_object_set_new(e, "region_checksums", json_string(f->region_sums));
        if (f->n_bad_pages > 0) {
            json_t *bad = json_array();
            for (int k = 0; k < f->n_bad_pages; k++)
                json_array_append_new(bad, json_integer(f->bad_pages[k]));
            json_object_set_new(e, "checksum_errors", bad);
        }
        json_array_append_new(files, e);
    }
    json_object_set_new(m, "files", files);
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return s;
}

/* ---- backup ---------------------------------------------------------------------------------- */

static char *query_one(PgNode *pg, const char *sql, int timeout_ms, Err *err)
{
    PGresult *r = pg_query(pg, sql, timeout_ms, err);
    if (!r)
        return NULL;
    char *v = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? str_dup(PQgetvalue(r, 0, 0)) : NULL;
    if (!v)
        err_set(err, "no value from: %s", sql);
    PQclear(r);
    return v;
}

/* On a standby, the WAL the backup needs ends in a segment its primary may not finish for a long
 * time (nothing written, no archive_timeout), so it would not be archived: ask the primary this
 * standby streams from to switch to a new segment. Nothing happens on a primary, whose
 * pg_backup_stop has switched already. A failure only leaves the wait for the archive longer. */
static void switch_upstream_wal(PgNode *pg, const Config *cfg)
{
    PGresult *r = pg_query(pg,
                           "SELECT sender_host, sender_port::text FROM pg_stat_wal_receiver "
                           "WHERE pg_is_in_recovery() AND status = 'streaming'",
                           10000, NULL);
    if (!r)
        return;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
        const char *keys[] = {"host", "port", "user", "password", "dbname", "connect_timeout", NULL};
        const char *vals[] = {PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), cfg->pg_superuser.username,
                              cfg->pg_superuser.password, "postgres", "5", NULL};
        PGconn *c = PQconnectdbParams(keys, vals, 0);
        PGresult *sw = PQstatus(c) == CONNECTION_OK ? PQexec(c, "SELECT pg_switch_wal()") : NULL;
        if (!sw || PQresultStatus(sw) != PGRES_TUPLES_OK)
            log_warn("backup: could not make the primary at %s:%s switch WAL segments (%s); waiting for the "
                     "archive anyway (archive_timeout bounds the wait)",
                     PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQerrorMessage(c));
        PQclear(sw);
        PQfinish(c);
    }
    PQclear(r);
}

/* Wait (10 minutes at most) until every WAL segment from the backup's start to its stop is in
 * the repository. */
static bool wait_for_wal(Repo *r, const BackupInfo *b, Err *err)
{
    const uint64_t seg_size = 16ULL * 1024 * 1024, per_id = 0x100000000ULL / seg_size;
    int64_t until = mono_ms() + 600000;
    /* the stop LSN is where the backup's WAL ends: on a segment boundary, the segment it starts
     * is not needed (and may not be finished for a long time) */
    uint64_t last = b->stop_lsn > b->start_lsn ? (b->stop_lsn - 1) / seg_size : b->start_lsn / seg_size;
    for (uint64_t seg = b->start_lsn / seg_size; seg <= last; seg++) {
        char key[80];
        str_fmt(key, sizeof(key), "wal/%08X/%08X%08X%08X", (unsigned)b->timeline, (unsigned)b->timeline,
                (unsigned)(seg / per_id), (unsigned)(seg % per_id));
        /* usually there within milliseconds (the archive service pushes ahead): poll fast first */
        for (int wait_ms = 20;; wait_ms = wait_ms < 1000 ? wait_ms * 2 : 1000) {
            bool exists = false;
            if (!r->ops->exists(r, key, &exists, err))
                return false;
            if (exists)
                break;
            if (mono_ms() >= until) {
                err_set(err, "backup: %s, which the backup needs, was not archived within 10 minutes", key);
                return false;
            }
            sleep_ms(wait_ms);
        }
    }
    return true;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Is every file the backup stored in the repository now, just before the manifest makes it
 * complete? (Nothing else should remove them; this makes sure no backup looks complete
 * without its files, whatever happened meanwhile.) */
static bool files_all_there(Repo *r, const char *prefix, const FileList *l, Err *err)
{
    RepoKeys k;
    char *dir = str_dup(prefix);
    dir[strlen(dir) - 1] = '\0'; /* "backup/<label>/data" */
    bool ok = r->ops->list(r, dir, &k, err);
    free(dir);
    if (!ok)
        return false;
    for (int i = 0; i < l->n_files && ok; i++) {
        const FileEntry *f = &l->files[i];
        if (f->gone || f->stored == 0)
            continue;
        char *key = str_printf("%s%s", prefix, f->path);
        if (!bsearch(&key, k.keys, (size_t)k.n, sizeof(char *), cmp_key)) {
            err_set(err, "backup: %s is no longer in the %s (removed while the backup ran?); the backup is not complete",
                    key, r->desc);
            ok = false;
        }
        free(key);
    }
    repo_keys_free(&k);
    return ok;
}

/* The backup an incremental (the newest) or a differential (the newest full) builds on; NULL
 * (a full backup then) when there is none. */
static Manifest *find_reference(Repo *r, const char *type, Err *err, bool *failed)
{
    *failed = false;
    BackupInfo *all = NULL;
    int n = 0;
    if (!backup_list(r, &all, &n, err)) {
        *failed = true;
        return NULL;
    }
    const char *label = NULL;
    for (int i = n - 1; i >= 0 && !label; i--)
        if (strcmp(type, "incr") == 0 || strcmp(all[i].type, "full") == 0)
            label = all[i].label;
    Manifest *m = label ? manifest_load(r, label, err) : NULL;
    if (label && !m)
        *failed = true;
    free(all);
    return m;
}

/* The label of a backup starting now: its UTC second and type letter. No two backups share a
 * second (whatever their types), so that labels sort as the backups started: a backup that
 * starts in the second of another one waits for the next. */
static bool pick_label(Repo *r, char letter, char *label, size_t sz, Err *err)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char second[24];
        strftime(second, sizeof(second), "%Y%m%dT%H%M%S", &tm);
        bool taken = false;
        for (const char *l = "FDI"; *l && !taken; l++) {
            char *key = str_printf("backup/%s%c/manifest", second, *l);
            bool ok = r->ops->exists(r, key, &taken, err);
            free(key);
            if (!ok)
                return false;
        }
        if (!taken) {
            str_fmt(label, sz, "%s%c", second, letter);
            return true;
        }
        sleep_ms(1000 - (int)(ts.tv_nsec / 1000000) + 5);
    }
    err_set(err, "backup: no free label: a backup exists for every one of the last 5 seconds");
    return false;
}

bool backup_take(const Config *cfg, Repo *r, const BackupOptions *o, BackupInfo *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    const char *type = o->type ? o->type : "full";
    if (strcmp(type, "full") != 0 && strcmp(type, "incr") != 0 && strcmp(type, "diff") != 0) {
        err_set(err, "backup: unknown type \"%s\" (full, incr or diff)", type);
        return false;
    }
    Manifest *ref = NULL;
    if (strcmp(type, "full") != 0) {
        bool failed = false;
        ref = find_reference(r, type, err, &failed);
        if (failed)
            return false;
        if (!ref)
            type = "full"; /* nothing to build on */
    }
    if (!pick_label(r, strcmp(type, "full") == 0 ? 'F' : strcmp(type, "diff") == 0 ? 'D' : 'I', out->label,
                    sizeof(out->label), err)) {
        manifest_free(ref);
        return false;
    }
    str_copy(out->type, sizeof(out->type), type);
    if (ref)
        str_copy(out->reference, sizeof(out->reference), ref->info.label);
    PgNode pg;
    pg_node_init(&pg, cfg);
    int64_t t0 = mono_ms();
    iso_now(out->start_time, sizeof(out->start_time));
    /* notices (pg_backup_stop's "all required WAL segments have been archived") stay quiet */
    pg_exec(&pg, "SET client_min_messages TO warning", 10000, NULL);
    char *sysid = query_one(&pg, "SELECT system_identifier::text FROM pg_control_system()", 10000, err);
    char *sql = str_printf("SELECT pg_backup_start('pgvigil %s', true)::text", out->label);
    char *start = sysid ? query_one(&pg, sql, 600000, err) : NULL;
    free(sql);
    if (!start) {
        err_prefix(err, "backup: cannot start it on %s", cfg->pg_data_dir);
        free(sysid);
        pg_node_close(&pg);
        return false;
    }
    str_copy(out->sysid, sizeof(out->sysid), sysid);
    free(sysid);
    lsn_parse(start, &out->start_lsn);
    free(start);
    /* with data checksums on, every page of the relation files is checked as it is copied */
    char *checksums = query_one(&pg, "SHOW data_checksums", 10000, NULL);
    out->checksums_checked = checksums && strcmp(checksums, "on") == 0;
    if (!checksums)
        log_warn("backup: cannot tell whether data checksums are on; page checksums are not checked");
    free(checksums);
    /* Build only on a backup of this cluster, of this timeline, that ended before this one
     * starts: blocks older than its start are taken from it, which is right only if this server's
     * history contains it (not the WAL an old primary lost at a failover, not the future of a
     * standby that lags behind it). Otherwise a full backup. */
    char *tli_text = ref ? query_one(&pg, "SELECT timeline_id::text FROM pg_control_checkpoint()", 10000, NULL) : NULL;
    int tli = tli_text ? atoi(tli_text) : 0;
    free(tli_text);
    /* and not across data checksums turned on or off (pg_checksums rewrites every page without
     * WAL: the older backup's pages would not match this pg_control) */
    if (ref && (strcmp(ref->info.sysid, out->sysid) != 0 || ref->info.timeline != tli ||
                ref->info.stop_lsn > out->start_lsn || ref->info.checksums_checked != out->checksums_checked)) {
        manifest_free(ref);
        ref = NULL;
        str_copy(out->type, sizeof(out->type), "full");
        out->reference[0] = '\0';
        out->label[strlen(out->label) - 1] = 'F';
    }

    /* what changed since the older backup started: from the WAL summaries when they cover it */
    WalSummary *changes = NULL;
    bool lsns_reliable = false;
    if (ref) {
        char why[512];
        changes = wal_changes_between(r, cfg->pg_data_dir, tli, ref->info.start_lsn, out->start_lsn, why, sizeof(why));
        if (!changes)
            log_info("backup: comparing page LSNs to find the changed blocks: %s", why);
        char *hints = changes ? NULL : query_one(&pg, "SHOW wal_log_hints", 10000, NULL);
        lsns_reliable = out->checksums_checked || (hints && strcmp(hints, "on") == 0);
        free(hints);
        str_copy(out->changes_from, sizeof(out->changes_from),
                 changes ? "wal-summaries" : lsns_reliable ? "page-lsns" : "changed-files");
    }

    FileList list = {0};
    bool ok = walk(cfg->pg_data_dir, "", &list, err);
    char *prefix = str_printf("backup/%s/data/", out->label);
    if (ok) {
        /* largest first: the workers then end together, not one of them alone on a last 1 GB
         * file while the other waits */
        qsort(list.files, (size_t)list.n_files, sizeof(FileEntry), larger_first);
        /* pg_control last, as pg_basebackup does: for a backup of a standby, its minimum recovery
         * point is where the restored copy becomes consistent */
        for (int i = 0; i < list.n_files - 1; i++)
            if (strcmp(list.files[i].path, "global/pg_control") == 0) {
                FileEntry t = list.files[i];
                list.files[i] = list.files[list.n_files - 1];
                list.files[list.n_files - 1] = t;
                break;
            }
        CopyJob j = {.data_dir = cfg->pg_data_dir, .repo = r, .prefix = prefix, .compress = o->compress,
                     .level = o->level, .list = &list, .ref = ref, .ref_start = ref ? ref->info.start_lsn : 0,
                     .changes = changes, .check_pages = out->checksums_checked, .start_lsn = out->start_lsn,
                     .lsns_reliable = lsns_reliable};
#ifdef PGVIGIL_TEST_HOOKS
        j.crosscheck = changes && getenv("PGVIGIL_TEST_CROSSCHECK_SUMMARIES") != NULL;
#endif
        int nw = o->workers > 1 ? o->workers : 1;
        j.workers = xcalloc((size_t)nw, sizeof(CopyWorker));
        for (int i = 0; i < nw; i++) {
            j.workers[i].enc = obj_encoder_new();
            j.workers[i].chunk = xmalloc(COPY_CHUNK);
        }
        uint64_t total = 0;
        for (int i = 0; i < list.n_files; i++)
            total += list.files[i].listed > 0 ? (uint64_t)list.files[i].listed : 0;
        j.progress = progress_start("backup", total);
        ok = parallel_for(list.n_files - 1, nw, copy_file, &j, err) &&
             (list.n_files == 0 || copy_file(&j, 0, list.n_files - 1, err));
        progress_end(j.progress);
        for (int i = 0; i < nw; i++) {
            obj_encoder_free(j.workers[i].enc);
            free(j.workers[i].chunk);
        }
        free(j.workers);
    }
#ifdef PGVIGIL_TEST_HOOKS
    /* tests: hold the backup here, its files stored and no manifest yet, while the file exists */
    const char *pause = getenv("PGVIGIL_TEST_BACKUP_PAUSE_FILE");
    if (pause && access(pause, F_OK) == 0) {
        char *held = str_printf("%s.held", pause);
        file_write_atomic(held, "", 0, 0644, NULL);
        free(held);
    }
    while (pause && access(pause, F_OK) == 0)
        sleep_ms(100);
#endif
    /* always end the backup mode, even after a failure */
    Err stop_err = {{0}};
    /* not waiting for the archive there: PostgreSQL would wait for ever while the repository is
     * down; wait_for_wal below waits a bounded time, and fails at once on a repository error */
    PGresult *res = pg_query(&pg, "SELECT lsn::text, labelfile FROM pg_backup_stop(false)", 600000, &stop_err);
    if (res)
        switch_upstream_wal(&pg, cfg);
    pg_node_close(&pg);
    if (!res) {
        if (ok)
            err_set(err, "backup: pg_backup_stop: %s", stop_err.msg);
        ok = false;
    }
    char *label_file = NULL;
    if (res && PQntuples(res) == 1) {
        lsn_parse(PQgetvalue(res, 0, 0), &out->stop_lsn);
        label_file = str_dup(PQgetvalue(res, 0, 1));
        const char *tl = strstr(label_file, "START TIMELINE: ");
        out->timeline = tl ? atoi(tl + 16) : 0;
    }
    if (res)
        PQclear(res);
    if (ok && (!label_file || out->timeline <= 0)) {
        err_set(err, "backup: pg_backup_stop returned no usable backup label");
        ok = false;
    }
    iso_now(out->stop_time, sizeof(out->stop_time));
    out->seconds = (double)(mono_ms() - t0) / 1000.0;
    for (int i = 0; i < list.n_files; i++)
        if (!list.files[i].gone) {
            out->files++;
            out->bytes += list.files[i].size;
            out->stored += list.files[i].stored;
            out->read_bytes += list.files[i].read;
            out->checksum_errors += list.files[i].n_bad_pages;
        }
    /* the WAL from start to stop must be in the repository (pg_backup_stop switched to a new
     * segment on a primary; switch_upstream_wal asked a standby's primary to) */
    if (ok)
        ok = wait_for_wal(r, out, err);
    if (ok)
        ok = repo_sync(r, err) && files_all_there(r, prefix, &list, err);
    /* and the backup this one builds on (an expiry that ran without the lock, etcd being down) */
    if (ok && ref) {
        char *rkey = str_printf("backup/%s/manifest", ref->info.label);
        bool there = false;
        ok = r->ops->exists(r, rkey, &there, err);
        if (ok && !there) {
            err_set(err, "backup: %s, which this backup builds on, was removed while it ran; take it again",
                    ref->info.label);
            ok = false;
        }
        free(rkey);
    }
    /* the manifest last: only now is the backup complete */
    if (ok) {
        char *json = manifest_json(out, &list, label_file);
        ok = manifest_store(r, out->label, json, err);
        free(json);
    }
    free(label_file);
    free(prefix);
    list_free(&list);
    manifest_free(ref);
    if (changes) {
        wal_summary_free(changes);
        free(changes);
    }
    return ok;
}

bool backup_list(Repo *r, BackupInfo **out, int *n, Err *err)
{
    *out = NULL;
    *n = 0;
    RepoKeys k;
    if (!r->ops->list(r, "backup", &k, err))
        return false;
    bool ok = true;
    for (int i = 0; i < k.n && ok; i++) {
        char label[40];
        if (!manifest_key_label(k.keys[i], label, sizeof(label)))
            continue;
        Err me = {{0}};
        Manifest *m = manifest_load(r, label, &me);
        if (!m) {
            /* expired meanwhile, or damaged: verify names it; the others stay usable */
            log_warn("%s (left out)", me.msg);
            continue;
        }
        *out = xrealloc(*out, (size_t)(*n + 1) * sizeof(BackupInfo));
        (*out)[*n] = m->info;
        (*n)++;
        manifest_free(m);
    }
    repo_keys_free(&k);
    if (!ok) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return ok;
}

