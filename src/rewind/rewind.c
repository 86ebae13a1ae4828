/* pgvigil's own rewind (see rewind.h): plan from the two timeline histories, the target's WAL
 * and both file lists, then change the target in an order that an interruption can only leave
 * marked as broken, never looking whole. */
#include "rewind/rewind.h"
#include "backup/wal_summary.h"
#include "common/fileutil.h"
#include "common/proc.h"
#include "pg/pg.h"
#include "rewind/control_file.h"
#include "rewind/source.h"
#include "rewind/target_wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLCKSZ 8192
#define RANGE_MAX_BYTES (1 << 20)

/* directories of the data directory whose files a rewind makes the source's; everything else
 * at the top (configuration, logs, markers, signal files, statistics, slots, temporary state)
 * stays the target's own, as pg_rewind leaves most of it */
static const char *const data_dirs[] = {"base", "global", "pg_commit_ts", "pg_logical", "pg_multixact",
                                        "pg_twophase", "pg_xact", NULL};

/* P_DROP: the target's replication slots, removed as pg_rewind removes them (a logical slot's
 * confirmed position belongs to the history thrown away); P_SLOTS: their directory, kept */
typedef enum PathKind { P_SKIP, P_WAL, P_REL, P_OTHER, P_CONTROL, P_SLOTS, P_DROP } PathKind;

static PathKind path_kind(const char *path)
{
    const char *slash = strchr(path, '/');
    size_t top = slash ? (size_t)(slash - path) : strlen(path);
    if (top == 6 && strncmp(path, "pg_wal", 6) == 0)
        return P_WAL;
    if (top == 11 && strncmp(path, "pg_replslot", 11) == 0)
        return slash ? P_DROP : P_SLOTS;
    bool known = false;
    for (int i = 0; data_dirs[i]; i++)
        known = known || (strlen(data_dirs[i]) == top && strncmp(path, data_dirs[i], top) == 0);
    if (!known)
        return P_SKIP;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strcmp(base, "pg_internal.init") == 0 || strncmp(base, "pgsql_tmp", 9) == 0 || strstr(path, "/pgsql_tmp"))
        return P_SKIP;
    if (strcmp(path, "global/pg_control") == 0)
        return P_CONTROL;
    WalRelKey k;
    uint32_t segno;
    return wal_relpath_parse(path, &k, &segno) ? P_REL : P_OTHER;
}

/* ---- the target's files */

static void list_add(SourceList *l, const char *path, int64_t size, bool dir)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->f = xrealloc(l->f, l->cap * sizeof(SourceFile));
    }
    l->f[l->n++] = (SourceFile){.path = str_dup(path), .size = size, .dir = dir};
}

static bool list_local(const char *root, const char *rel, SourceList *l, Err *err)
{
    char dir[4200];
    str_fmt(dir, sizeof(dir), "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d) {
        err_set(err, "%s: cannot list: %s", dir, strerror(errno));
        return false;
    }
    struct dirent *e;
    bool ok = true;
    while (ok && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[4200], full[4200];
        str_fmt(p, sizeof(p), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        str_fmt(full, sizeof(full), "%s/%s", root, p);
        struct stat st;
        if (lstat(full, &st) != 0)
            continue;
        bool isdir = S_ISDIR(st.st_mode);
        list_add(l, p, isdir ? 0 : (int64_t)st.st_size, isdir);
        if (isdir && path_kind(p) != P_SKIP && path_kind(p) != P_WAL)
            ok = list_local(root, p, l, err);
    }
    closedir(d);
    return ok;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(((const SourceFile *)a)->path, ((const SourceFile *)b)->path);
}

/* ---- the plan */

typedef struct Plan {
    FetchRange *ranges;
    size_t n_ranges, cap_ranges;
    char **create;            /* files (re)created empty before their ranges are written */
    size_t n_create, cap_create;
    char **mkdirs;
    size_t n_mkdirs, cap_mkdirs;
    char **remove;            /* files, then directories (deepest first) */
    size_t n_remove, cap_remove;
    char **remove_wal;        /* the target's own WAL from the fork on: removed last, so that a
                               * rewind stopped before can still be redone by pg_rewind */
    size_t n_remove_wal, cap_remove_wal;
    bool *remove_dir;
    struct { char *path; int64_t size; } *truncate;
    size_t n_truncate, cap_truncate;
} Plan;

static void push_str(char ***v, size_t *n, size_t *cap, const char *s)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        *v = xrealloc(*v, *cap * sizeof(char *));
    }
    (*v)[(*n)++] = str_dup(s);
}

static void add_range(Plan *p, const char *path, int64_t off, int64_t len)
{
    while (len > 0) {
        int64_t piece = len > RANGE_MAX_BYTES ? RANGE_MAX_BYTES : len;
        /* one range goes on where the previous one of the same file ends */
        FetchRange *last = p->n_ranges ? &p->ranges[p->n_ranges - 1] : NULL;
        if (last && last->path == path && last->off + last->len == off && last->len + piece <= RANGE_MAX_BYTES) {
            last->len += piece;
        } else {
            if (p->n_ranges == p->cap_ranges) {
                p->cap_ranges = p->cap_ranges ? 2 * p->cap_ranges : 256;
                p->ranges = xrealloc(p->ranges, p->cap_ranges * sizeof(FetchRange));
            }
            p->ranges[p->n_ranges++] = (FetchRange){.path = path, .off = off, .len = piece};
        }
        off += piece;
        len -= piece;
    }
}

static void plan_whole(Plan *p, const SourceFile *s, uint64_t *bytes, uint64_t *files)
{
    push_str(&p->create, &p->n_create, &p->cap_create, s->path);
    add_range(p, s->path, 0, s->size);
    *bytes += (uint64_t)s->size;
    (*files)++;
}

static void plan_remove(Plan *p, const char *path, bool dir)
{
    size_t before = p->n_remove;
    push_str(&p->remove, &p->n_remove, &p->cap_remove, path);
    if (p->n_remove > before) {
        p->remove_dir = xrealloc(p->remove_dir, p->cap_remove * sizeof(bool));
        p->remove_dir[p->n_remove - 1] = dir;
    }
}

/* A relation segment file both sides have: its size difference, and the blocks the target's
 * WAL changed (or every block from where it was created or cut). */
static void plan_relation(Plan *p, const SourceFile *s, const SourceFile *t, const WalSummary *sum, RewindStats *st)
{
    WalRelKey k;
    uint32_t segno;
    wal_relpath_parse(s->path, &k, &segno);
    if (wal_summary_db_copied(sum, k.spc, k.db)) {
        plan_whole(p, s, &st->whole_bytes, &st->whole_files);
        return;
    }
    int64_t common = s->size < t->size ? s->size : t->size;
    if (t->size > s->size) {
        if (p->n_truncate == p->cap_truncate) {
            p->cap_truncate = p->cap_truncate ? 2 * p->cap_truncate : 64;
            p->truncate = xrealloc(p->truncate, p->cap_truncate * sizeof(*p->truncate));
        }
        p->truncate[p->n_truncate].path = str_dup(s->path);
        p->truncate[p->n_truncate++].size = s->size;
        st->truncated++;
    }
    size_t ranges_before = p->n_ranges;
    const WalRelBlocks *r = wal_summary_find(sum, &k);
    uint64_t first = (uint64_t)segno * WAL_RELSEG_BLOCKS;
    int64_t limit_off = common;
    if (r && r->limit != WAL_SUMMARY_NO_LIMIT && r->limit < first + WAL_RELSEG_BLOCKS)
        limit_off = r->limit <= first ? 0 : (int64_t)(r->limit - first) * BLCKSZ;
#ifdef PGVIGIL_TEST_HOOKS
    /* the self-test of the tests' convergence check: a rewind that leaves the target's changed
     * blocks as they are must be caught */
    if (getenv("PGVIGIL_TEST_REWIND_SKIP_BLOCKS"))
        r = NULL;
#endif
    for (size_t i = 0; r && i < r->n; i++) {
        if (r->blocks[i] < first || r->blocks[i] >= first + WAL_RELSEG_BLOCKS)
            continue;
        int64_t off = (int64_t)(r->blocks[i] - first) * BLCKSZ;
        if (off >= common || off >= limit_off)
            continue;
        add_range(p, s->path, off, BLCKSZ);
        st->block_bytes += BLCKSZ;
        st->changed_blocks++;
    }
    if (limit_off < common) {
        add_range(p, s->path, limit_off, common - limit_off);
        st->block_bytes += (uint64_t)(common - limit_off);
    }
    st->block_ranges += p->n_ranges - ranges_before;
    if (s->size > t->size) {
        add_range(p, s->path, t->size, s->size - t->size);
        st->tail_bytes += (uint64_t)(s->size - t->size);
    }
}

static bool planned_copy(const Plan *p, const char *path)
{
    for (size_t i = 0; i < p->n_create; i++)
        if (strcmp(p->create[i], path) == 0)
            return true;
    return false;
}

static bool wal_name(const char *name, uint32_t *tli, uint64_t *segno, uint32_t seg_size, const char **suffix)
{
    unsigned t, hi, lo;
    if (strlen(name) < 24 || strspn(name, "0123456789ABCDEF") < 24 || sscanf(name, "%8X%8X%8X", &t, &hi, &lo) != 3)
        return false;
    *tli = t;
    *segno = (uint64_t)hi * (0x100000000ULL / seg_size) + lo;
    *suffix = name + 24;
    return true;
}

static bool history_name(const char *name)
{
    return strlen(name) == 16 && strspn(name, "0123456789ABCDEF") == 8 && strcmp(name + 8, ".history") == 0;
}

/* WAL: the target's segments from the fork's on (its own way) go, with their archive status;
 * so do history files the source does not have; the source's history files and its segments
 * from the fork's up to its position now come. */
static void plan_wal(Plan *p, const SourceList *src, const SourceList *tgt_wal, const TimelineHistory *sh,
                     uint64_t fork_segno, uint64_t now_segno, uint32_t seg_size, RewindStats *st)
{
    for (size_t i = 0; i < src->n; i++) {
        const SourceFile *s = &src->f[i];
        if (s->dir || strncmp(s->path, "pg_wal/", 7) != 0 || strchr(s->path + 7, '/'))
            continue;
        const char *name = s->path + 7;
        uint32_t tli;
        uint64_t segno;
        const char *suffix;
        if (history_name(name)) {
            /* always the source's: a target's history file of the same name may be another
             * promotion's (two sides promoted to the same number), which recovery would follow */
            plan_whole(p, s, &st->wal_bytes, &st->wal_files);
        } else if (wal_name(name, &tli, &segno, seg_size, &suffix) && !*suffix && segno >= fork_segno &&
                   segno <= now_segno && tli == timeline_of_segment(sh, segno * seg_size, seg_size)) {
            plan_whole(p, s, &st->wal_bytes, &st->wal_files);
        }
    }
    for (size_t i = 0; i < tgt_wal->n; i++) {
        const char *name = tgt_wal->f[i].path + 7;   /* after "pg_wal/" */
        const char *base = strncmp(name, "archive_status/", 15) == 0 ? name + 15 : name;
        uint32_t tli;
        uint64_t segno;
        const char *suffix;
        char spath[300];
        str_fmt(spath, sizeof(spath), "pg_wal/%s", base);
        if (tgt_wal->f[i].dir || planned_copy(p, tgt_wal->f[i].path))
            continue;   /* (a file of the same name that the source's copy replaces) */
        if (wal_name(base, &tli, &segno, seg_size, &suffix) && segno >= fork_segno &&
            (!*suffix || strcmp(suffix, ".partial") == 0 || strcmp(suffix, ".ready") == 0 ||
             strcmp(suffix, ".done") == 0 || strcmp(suffix, ".partial.ready") == 0 ||
             strcmp(suffix, ".partial.done") == 0)) {
            push_str(&p->remove_wal, &p->n_remove_wal, &p->cap_remove_wal, tgt_wal->f[i].path);
            st->removed++;
        } else if (base == name && history_name(base) && !source_list_find(src, spath)) {
            push_str(&p->remove_wal, &p->n_remove_wal, &p->cap_remove_wal, tgt_wal->f[i].path);
            st->removed++;
        }
    }
}

static void plan_free(Plan *p)
{
    free(p->ranges);
    for (size_t i = 0; i < p->n_create; i++)
        free(p->create[i]);
    free(p->create);
    for (size_t i = 0; i < p->n_mkdirs; i++)
        free(p->mkdirs[i]);
    free(p->mkdirs);
    for (size_t i = 0; i < p->n_remove; i++)
        free(p->remove[i]);
    free(p->remove);
    for (size_t i = 0; i < p->n_remove_wal; i++)
        free(p->remove_wal[i]);
    free(p->remove_wal);
    free(p->remove_dir);
    for (size_t i = 0; i < p->n_truncate; i++)
        free(p->truncate[i].path);
    free(p->truncate);
    memset(p, 0, sizeof(*p));
}

/* ---- carrying it out */

typedef struct Writer {
    const char *dd;
    char cur[4200];
    int fd;
    mode_t fmode;
    uint64_t bytes;
} Writer;

static bool write_sink(void *ctx, const FetchRange *r, const unsigned char *data, size_t n, bool missing, Err *err)
{
    Writer *w = ctx;
    char path[4200];
    str_fmt(path, sizeof(path), "%s/%s", w->dd, r->path);
    if (missing) {
        /* gone from the source since it was listed (a recycled WAL segment, a two-phase state
         * file, a dropped relation): so it goes here too, not left empty or stale */
        if (w->fd >= 0 && strcmp(w->cur, path) == 0) {
            close(w->fd);
            w->fd = -1;
            w->cur[0] = '\0';
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            err_set(err, "%s: cannot remove: %s", path, strerror(errno));
            return false;
        }
        return true;
    }
    if (w->fd < 0 || strcmp(w->cur, path) != 0) {
        if (w->fd >= 0)
            close(w->fd);
        w->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, w->fmode);
        if (w->fd < 0) {
            err_set(err, "%s: cannot open: %s", path, strerror(errno));
            return false;
        }
        str_copy(w->cur, sizeof(w->cur), path);
    }
    size_t done = 0;
    while (done < n) {
        ssize_t k = pwrite(w->fd, data + done, n - done, (off_t)(r->off + (int64_t)done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            err_set(err, "%s: cannot write: %s", path, strerror(errno));
            return false;
        }
        done += (size_t)k;
    }
    w->bytes += n;
    return true;
}

static int cmp_desc(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

static bool apply_plan(const char *dd, Plan *p, PGconn *c, mode_t fmode, mode_t dmode, RewindStats *st, Err *err)
{
    char path[4200];
    /* files first, then directories from the deepest */
    for (size_t i = 0; i < p->n_remove; i++) {
        if (p->remove_dir[i])
            continue;
        str_fmt(path, sizeof(path), "%s/%s", dd, p->remove[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            err_set(err, "%s: cannot remove: %s", path, strerror(errno));
            return false;
        }
    }
#ifdef PGVIGIL_TEST_HOOKS
    if (getenv("PGVIGIL_TEST_REWIND_FAIL_AFTER_REMOVE")) {
        err_set(err, "test hook: failing after the removals");
        return false;
    }
#endif
    if (p->n_remove > 1)   /* (an empty plan's list is NULL, which qsort must not get) */
        qsort(p->remove, p->n_remove, sizeof(char *), cmp_desc);
    for (size_t i = 0; i < p->n_remove; i++) {
        str_fmt(path, sizeof(path), "%s/%s", dd, p->remove[i]);
        struct stat sb;
        if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode) && !dir_remove_all(path, err))
            return false;
    }
    for (size_t i = 0; i < p->n_mkdirs; i++) {
        str_fmt(path, sizeof(path), "%s/%s", dd, p->mkdirs[i]);
        if (mkdir(path, dmode) != 0 && errno != EEXIST) {
            err_set(err, "%s: cannot create: %s", path, strerror(errno));
            return false;
        }
    }
    for (size_t i = 0; i < p->n_truncate; i++) {
        str_fmt(path, sizeof(path), "%s/%s", dd, p->truncate[i].path);
        if (truncate(path, (off_t)p->truncate[i].size) != 0) {
            err_set(err, "%s: cannot truncate: %s", path, strerror(errno));
            return false;
        }
    }
    for (size_t i = 0; i < p->n_create; i++) {
        str_fmt(path, sizeof(path), "%s/%s", dd, p->create[i]);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, fmode);
        if (fd < 0) {
            err_set(err, "%s: cannot create: %s", path, strerror(errno));
            return false;
        }
        close(fd);
    }
    Writer w = {.dd = dd, .fd = -1, .fmode = fmode};
    bool ok = source_fetch(c, p->ranges, p->n_ranges, write_sink, &w, err);
    if (w.fd >= 0)
        close(w.fd);
    st->fetched_bytes += w.bytes;
    return ok;
}

static bool remove_target_wal(const char *dd, const Plan *p, Err *err)
{
    char path[4200];
    for (size_t i = 0; i < p->n_remove_wal; i++) {
        str_fmt(path, sizeof(path), "%s/%s", dd, p->remove_wal[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            err_set(err, "%s: cannot remove: %s", path, strerror(errno));
            return false;
        }
    }
    return true;
}

static bool sync_fs_of(const char *dir, Err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || syncfs(fd) != 0) {
        err_set(err, "%s: cannot sync: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    close(fd);
    return true;
}

/* the data directory's file system, and pg_wal's (it may be a link to another) */
static bool sync_data_dir(const char *dd, Err *err)
{
    char wal[4200];
    str_fmt(wal, sizeof(wal), "%s/pg_wal", dd);
    return sync_fs_of(dd, err) && sync_fs_of(wal, err);
}

/* pg_controldata must read the written control file as we meant it */
static bool check_control(const char *pg_bin, const char *dd, Lsn min_recovery, Err *err)
{
    char prog[4200], want[LSN_BUFSZ + 64], lsn[LSN_BUFSZ];
    str_fmt(prog, sizeof(prog), "%s/pg_controldata", pg_bin);
    const char *argv[] = {prog, "-D", dd, NULL};
    ProcOpts o = {.timeout_ms = 30000, .env = (const char *const[]){"LC_ALL=C", NULL}};
    char *out = NULL;
    int rc = proc_run(argv, &o, &out, err);
    str_fmt(want, sizeof(want), "Minimum recovery ending location:     %s\n", lsn_format(min_recovery, lsn));
    bool ok = rc == 0 && out && !strstr(out, "WARNING") && strstr(out, "Database cluster state:               in archive recovery\n") &&
              strstr(out, want);
    if (!ok && rc == 0)
        err_set(err, "pg_controldata does not read the rewound control file as written");
    free(out);
    return ok;
}

void rewind_stats_format(const RewindStats *st, bool dry_run, char *buf, size_t sz)
{
    char f[LSN_BUFSZ], c[LSN_BUFSZ];
    uint64_t planned = st->block_bytes + st->tail_bytes + st->whole_bytes + st->wal_bytes;
    str_fmt(buf, sz,
            "%s %llu bytes: %llu changed block(s) in %llu range(s) (%llu bytes), %llu bytes of grown files, "
            "%llu whole file(s) (%llu bytes), %llu WAL file(s) (%llu bytes); %llu removed, %llu truncated; "
            "fork at %s on timeline %u, replay from the checkpoint at %s; %u segment(s) of its own WAL restored "
            "from the archive",
            dry_run ? "would copy" : "copied", (unsigned long long)(dry_run ? planned : st->fetched_bytes),
            (unsigned long long)st->changed_blocks, (unsigned long long)st->block_ranges,
            (unsigned long long)st->block_bytes, (unsigned long long)st->tail_bytes,
            (unsigned long long)st->whole_files, (unsigned long long)st->whole_bytes,
            (unsigned long long)st->wal_files, (unsigned long long)st->wal_bytes, (unsigned long long)st->removed,
            (unsigned long long)st->truncated, lsn_format(st->fork, f), st->common_tli, lsn_format(st->checkpoint, c),
            st->restored_segments);
}

/* ---- the whole */

typedef struct Ctx {
    const RewindOptions *o;
    RewindStats *st;
    PGconn *c;
    ControlFields tgt;
    TimelineHistory th, sh;
    SourceList src, tgt_files, tgt_wal;
    WalSummary sum;
    Plan plan;
    uint64_t now_segno;
    bool source_in_recovery;
    uint32_t source_recovery_tli;
    mode_t fmode;            /* of the files it writes: the data directory's group access */
} Ctx;

static bool read_target(Ctx *x, Err *err)
{
    const char *dd = x->o->data_dir;
    char path[4200];
    size_t n = 0;
    str_fmt(path, sizeof(path), "%s/global/pg_control", dd);
    unsigned char *img = (unsigned char *)file_read_all(path, &n, err);
    if (!img)
        return false;
    bool ok = control_parse(img, n, &x->tgt, err);
    free(img);
    if (!ok) {
        err_prefix(err, "%s: ", path);
        return false;
    }
    if (x->tgt.state != PGC_STATE_SHUT_DOWN && x->tgt.state != PGC_STATE_SHUT_DOWN_IN_RECOVERY) {
        err_set(err, "%s was not shut down cleanly (state %u)", dd, x->tgt.state);
        return false;
    }
    if (!x->tgt.wal_log_hints && x->tgt.data_checksum_version == 0) {
        err_set(err, "%s has neither wal_log_hints nor data checksums: changes to hint bits are not in its WAL", dd);
        return false;
    }
    struct stat sb;
    if (stat(dd, &sb) != 0 || sb.st_uid != geteuid()) {
        err_set(err, "%s is not owned by the user running the rewind (run it as the PostgreSQL user)", dd);
        return false;
    }
    str_fmt(path, sizeof(path), "%s/postmaster.pid", dd);
    if (file_exists(path)) {
        err_set(err, "%s exists: is postgres running?", path);
        return false;
    }
    str_fmt(path, sizeof(path), "%s/pg_tblspc", dd);
    if (!dir_is_empty_or_missing(path)) {
        err_set(err, "%s has tablespaces", dd);
        return false;
    }
    /* a standby that replayed onto a newer timeline than its last restartpoint's says so in its
     * minimum recovery point */
    uint32_t tli = x->tgt.timeline > x->tgt.min_recovery_tli ? x->tgt.timeline : x->tgt.min_recovery_tli;
    char *hist = NULL;
    if (tli > 1) {
        str_fmt(path, sizeof(path), "%s/pg_wal/%08X.history", dd, tli);
        hist = file_read_all(path, &n, err);
        if (!hist)
            return false;
    }
    ok = timeline_parse(tli, hist, &x->th, err);
    free(hist);
    return ok;
}

static bool read_source(Ctx *x, Err *err)
{
    x->c = source_connect(x->o->source, err);
    if (!x->c)
        return false;
    char *v = NULL;
    if (!source_value(x->c,
                      "SELECT concat_ws(' ', pg_is_in_recovery(), current_setting('full_page_writes'),"
                      " (SELECT system_identifier FROM pg_control_system()),"
                      " CASE WHEN pg_is_in_recovery() THEN GREATEST((SELECT timeline_id FROM pg_control_checkpoint()),"
                      " (SELECT min_recovery_end_timeline FROM pg_control_recovery()))"
                      " ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,"
                      " CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END,"
                      " COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), 0))",
                      &v, err))
        return false;
    char rec[8], fpw[8], lsn[LSN_BUFSZ];
    unsigned long long sysid = 0;
    unsigned tli = 0, received = 0;
    Lsn now = 0;
    bool ok = v && sscanf(v, "%7s %7s %llu %u %23s %u", rec, fpw, &sysid, &tli, lsn, &received) == 6 &&
              lsn_parse(lsn, &now);
    if (!ok)
        err_set(err, "source: unexpected answer \"%s\"", v ? v : "NULL");
    free(v);
    if (!ok)
        return false;
    x->source_in_recovery = strcmp(rec, "t") == 0;
    if (strcmp(fpw, "on") != 0) {
        err_set(err, "source: full_page_writes is %s", fpw);
        return false;
    }
    if (sysid != x->tgt.system_identifier) {
        err_set(err, "source: system identifier %llu, the target's is %llu", sysid,
                (unsigned long long)x->tgt.system_identifier);
        return false;
    }
    if (x->source_in_recovery && received > tli) {
        err_set(err, "source: a standby that received timeline %u but has not checkpointed it yet", received);
        return false;
    }
    x->st->source_tli = tli;
    x->now_segno = now / x->tgt.wal_segment_size;
    char *hist = NULL;
    if (tli > 1) {
        char path[64];
        size_t n;
        str_fmt(path, sizeof(path), "pg_wal/%08X.history", tli);
        hist = (char *)source_read_file(x->c, path, &n, err);
        if (!hist)
            return false;
    }
    ok = timeline_parse(tli, hist, &x->sh, err);
    free(hist);
    if (!ok)
        return false;
    /* the source's control file: the same layout, block and segment sizes as the target's */
    size_t n = 0;
    ControlFields sc;
    unsigned char *img = source_read_file(x->c, "global/pg_control", &n, err);
    if (!img)
        return false;
    ok = control_parse(img, n, &sc, err);
    free(img);
    if (!ok) {
        err_prefix(err, "source: global/pg_control: ");
        return false;
    }
    if (sc.wal_segment_size != x->tgt.wal_segment_size) {
        err_set(err, "source: WAL segments of %u bytes, the target's are %u", sc.wal_segment_size,
                x->tgt.wal_segment_size);
        return false;
    }
    if (!source_value(x->c, "SELECT count(*) FROM pg_ls_dir('pg_tblspc')", &v, err))
        return false;
    ok = v && strcmp(v, "0") == 0;
    free(v);
    if (!ok) {
        err_set(err, "source has tablespaces");
        return false;
    }
    x->source_recovery_tli = tli;
    return source_list(x->c, &x->src, err);
}

static void build_plan(Ctx *x)
{
    RewindStats *st = x->st;
    Plan *p = &x->plan;
    for (size_t i = 0; i < x->src.n; i++) {
        const SourceFile *s = &x->src.f[i];
        PathKind k = path_kind(s->path);
        if (k == P_SKIP || k == P_WAL || k == P_CONTROL || k == P_SLOTS || k == P_DROP)
            continue;
        const SourceFile *t = source_list_find(&x->tgt_files, s->path);
        if (s->dir) {
            if (!t || !t->dir)
                push_str(&p->mkdirs, &p->n_mkdirs, &p->cap_mkdirs, s->path);
            if (t && !t->dir) {
                plan_remove(p, t->path, false);
                st->removed++;
            }
            continue;
        }
        if (t && t->dir) {
            plan_remove(p, t->path, true);
            st->removed++;
            t = NULL;
        }
        if (k == P_REL && t)
            plan_relation(p, s, t, &x->sum, st);
        else
            plan_whole(p, s, &st->whole_bytes, &st->whole_files);
    }
    for (size_t i = 0; i < x->tgt_files.n; i++) {
        const SourceFile *t = &x->tgt_files.f[i];
        PathKind k = path_kind(t->path);
        if (k == P_SKIP || k == P_WAL || k == P_CONTROL || k == P_SLOTS)
            continue;
        if (k == P_DROP || !source_list_find(&x->src, t->path)) {
            plan_remove(p, t->path, t->dir);
            st->removed++;
        }
    }
    plan_wal(p, &x->src, &x->tgt_wal, &x->sh, st->fork / x->tgt.wal_segment_size, x->now_segno,
             x->tgt.wal_segment_size, st);
}

static bool plan_rewind(Ctx *x, Err *err)
{
    RewindStats *st = x->st;
    int idx = timeline_fork(&x->th, &x->sh, &st->fork);
    if (idx < 0) {
        err_set(err, "the source (timeline %u) and the target (timeline %u) share no timeline", st->source_tli,
                x->tgt.timeline);
        return false;
    }
    Lsn tgt_end = x->tgt.checkpoint > x->tgt.min_recovery_point ? x->tgt.checkpoint : x->tgt.min_recovery_point;
    if (st->fork == LSN_END || tgt_end < st->fork) {
        err_set(err, "the target has nothing after the fork: no rewind to do");
        return false;
    }
    st->common_tli = x->th.e[idx].tli;
    char wal[4200], waldump[4200];
    str_fmt(wal, sizeof(wal), "%s/pg_wal", x->o->data_dir);
    str_fmt(waldump, sizeof(waldump), "%s/pg_waldump", x->o->pg_bin);
    TargetWal tw = {.dir = wal, .restore_command = x->o->restore_command, .seg_size = x->tgt.wal_segment_size};
    bool found = target_last_checkpoint(&tw, waldump, st->common_tli, x->th.e[idx].begin, st->fork, &st->checkpoint,
                                        &st->redo, err);
    /* where the target's records must be read to: a standby's minimum recovery point is the end of
     * the last record it replayed; a checkpoint location is where its record starts, so that
     * record must be read whole (its end lies past its start) */
    Lsn need_end = x->tgt.min_recovery_point > x->tgt.checkpoint ? x->tgt.min_recovery_point : x->tgt.checkpoint + 1;
    found = found && target_changed_blocks(&tw, &x->th, st->redo, need_end, &x->sum, err);
    st->restored_segments = tw.restored;
    if (!found)
        return false;
    if (!list_local(x->o->data_dir, "", &x->tgt_files, err))
        return false;
    if (x->tgt_files.n > 1)
        qsort(x->tgt_files.f, x->tgt_files.n, sizeof(SourceFile), cmp_path);
    if (!list_local(x->o->data_dir, "pg_wal", &x->tgt_wal, err))
        return false;
    SourceList status = {0};
    bool ok = list_local(x->o->data_dir, "pg_wal/archive_status", &status, err);
    for (size_t i = 0; ok && i < status.n; i++)
        list_add(&x->tgt_wal, status.f[i].path, status.f[i].size, status.f[i].dir);
    source_list_free(&status);
    if (!ok)
        return false;
    build_plan(x);
    return true;
}

static bool finish_control(Ctx *x, Err *err)
{
    const char *dd = x->o->data_dir;
    RewindStats *st = x->st;
    char *v = NULL;
    if (!source_value(x->c,
                      "SELECT concat_ws(' ', pg_is_in_recovery(),"
                      " CASE WHEN pg_is_in_recovery() THEN GREATEST((SELECT timeline_id FROM pg_control_checkpoint()),"
                      " (SELECT min_recovery_end_timeline FROM pg_control_recovery()))"
                      " ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,"
                      " CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END)",
                      &v, err))
        return false;
    char rec[8], lsn[LSN_BUFSZ];
    unsigned tli = 0;
    bool ok = v && sscanf(v, "%7s %u %23s", rec, &tli, lsn) == 3 && lsn_parse(lsn, &st->min_recovery);
    free(v);
    if (!ok) {
        err_set(err, "source: no WAL position");
        return false;
    }
    /* a source promoted (or moved to another timeline) while it was copied from: the copy is
     * not of the history planned */
    if ((strcmp(rec, "t") == 0) != x->source_in_recovery || tli != x->source_recovery_tli) {
        err_set(err, "source: changed while copied from (in recovery: %s, timeline %u, planned for timeline %u)", rec,
                tli, x->source_recovery_tli);
        return false;
    }
    size_t n = 0;
    unsigned char *img = source_read_file(x->c, "global/pg_control", &n, err);
    if (!img)
        return false;
    ok = n == PG_CONTROL_FILE_BYTES && control_patch_for_rewind(img, n, st->min_recovery, st->source_tli, err);
    if (!ok && n != PG_CONTROL_FILE_BYTES)
        err_set(err, "source: global/pg_control has %zu bytes", n);
    char label[1024], path[4200];
    control_backup_label(st->redo, st->checkpoint, st->common_tli, x->tgt.wal_segment_size, label, sizeof(label));
    str_fmt(path, sizeof(path), "%s/backup_label", dd);
    ok = ok && file_write_atomic(path, label, strlen(label), (int)x->fmode, err);
    str_fmt(path, sizeof(path), "%s/global/pg_control", dd);
    ok = ok && file_write_atomic(path, (const char *)img, n, (int)x->fmode, err);
    free(img);
    return ok && sync_data_dir(dd, err) && check_control(x->o->pg_bin, dd, st->min_recovery, err);
}

static void ctx_free(Ctx *x)
{
    if (x->c)
        PQfinish(x->c);
    source_list_free(&x->src);
    source_list_free(&x->tgt_files);
    source_list_free(&x->tgt_wal);
    wal_summary_free(&x->sum);
    plan_free(&x->plan);
}

RewindResult block_rewind(const RewindOptions *o, RewindStats *st, Err *err)
{
    memset(st, 0, sizeof(*st));
    Ctx x = {.o = o, .st = st};
    char marker[4200];
    str_fmt(marker, sizeof(marker), "%s/%s", o->data_dir, PG_REWIND_FAILED_FILE);
    if (file_exists(marker)) {
        err_set(err, "%s exists: an earlier rewind did not finish; this directory must be rebuilt", marker);
        return REWIND_BROKEN;
    }
    if (!read_target(&x, err) || !read_source(&x, err) || !plan_rewind(&x, err)) {
        ctx_free(&x);
        return REWIND_NOT_DONE;
    }
    if (o->dry_run) {
        ctx_free(&x);
        return REWIND_DONE;
    }
    const char note[] = "pgvigil rewind did not finish\n";
    struct stat sb;
    mode_t dmode = 0700;
    x.fmode = 0600;
    if (stat(o->data_dir, &sb) == 0 && (sb.st_mode & 0070)) {
        x.fmode = 0640;
        dmode = 0750;
    }
    if (!file_write_atomic(marker, note, strlen(note), 0600, err)) {
        ctx_free(&x);
        return REWIND_NOT_DONE;
    }
    bool ok = apply_plan(o->data_dir, &x.plan, x.c, x.fmode, dmode, st, err) &&
              remove_target_wal(o->data_dir, &x.plan, err) && sync_data_dir(o->data_dir, err) &&
              finish_control(&x, err);
    ctx_free(&x);
    if (!ok)
        return REWIND_BROKEN;
    if (unlink(marker) != 0) {
        err_set(err, "%s: cannot remove: %s", marker, strerror(errno));
        return REWIND_BROKEN;
    }
    return REWIND_DONE;
}
