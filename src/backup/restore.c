/* Restores (see base_backup.h): a backup's files, each put together from the backup and the
 * ones it builds on and checked, and the settings that make PostgreSQL recover from the
 * archive. */
#include "backup/base_backup.h"
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

typedef struct RestoreCtx {
    bool delta;
    atomic_int written, kept;
    Repo *repo;
    Manifest **chain;        /* the backup restored first, then those it builds on */
    int n_chain;
    const char *target_dir;
    json_t *files;           /* chain[0]'s file entries */
    Progress *progress;      /* on a terminal */
    int control;             /* index of global/pg_control in files (-1 none): written last */
} RestoreCtx;

/* The object of path in backup label, decoded and checked; its SHA-256 to sha when not NULL. */
static bool read_object(RestoreCtx *c, const char *label, const char *path, unsigned char **buf, size_t *n,
                        unsigned char *sha, Err *err)
{
    char *key = str_printf("backup/%s/data/%s", label, path);
    void *stored = NULL, *raw = NULL;
    size_t sn = 0, rn = 0;
    bool missing = false;
    bool ok = c->repo->ops->read_all(c->repo, key, &stored, &sn, &missing, err) &&
              obj_decode_hashed(c->repo->cipher, stored, sn, &raw, &rn, sha, err);
    free(stored);
    if (!ok)
        err_prefix(err, "%s: %s", c->repo->desc, key);
    free(key);
    *buf = raw;
    *n = rn;
    return ok;
}

/* The content of path as backup k of the chain has it (malloc'd). */
static bool put_together(RestoreCtx *c, int k, const char *path, unsigned char **buf, size_t *n, unsigned char *sha,
                         bool *sha_known, Err *err)
{
    const Manifest *m = c->chain[k];
    const json_t *e = manifest_file(m, path);
    *sha_known = false;
    if (!e) {
        /* a block-mode file the older backup did not have: it starts empty */
        *buf = xmalloc(1);
        *n = 0;
        return true;
    }
    const char *mode = manifest_file_mode(e);
    if (strcmp(mode, "whole") == 0) {
        /* the object is the whole file: its checked hash is the file's */
        *sha_known = true;
        return read_object(c, m->info.label, path, buf, n, sha, err);
    }
    if (k + 1 >= c->n_chain) {
        err_set(err, "backup %s: %s refers to an older backup, and %s is a full one", m->info.label, path,
                m->info.label);
        return false;
    }
    if (strcmp(mode, "ref") == 0)
        return put_together(c, k + 1, path, buf, n, sha, sha_known, err);
    if (strcmp(mode, "blocks") != 0) {
        err_set(err, "backup %s: %s: unknown mode \"%s\" in the manifest", m->info.label, path, mode);
        return false;
    }
    unsigned char *base = NULL, *blocks = NULL;
    size_t bn = 0, kn = 0;
    bool base_known = false;
    if (!put_together(c, k + 1, path, &base, &bn, sha, &base_known, err))
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

/* Delta: is the local copy already the backup's (same size and SHA-256)? */
static bool same_as_local(const char *dst, const json_t *e)
{
    const char *sha = json_string_value(json_object_get(e, "sha256"));
    struct stat st;
    if (!sha || !sha[0] || stat(dst, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size != json_integer_value(json_object_get(e, "size")))
        return false;
    size_t n = 0;
    char *local = file_read_all(dst, &n, NULL);
    if (!local)
        return false;
    unsigned char bin[32];
    char hex[65];
    sha256_buf(local, n, bin);
    hex_encode(bin, 32, hex);
    free(local);
    return strcmp(hex, sha) == 0;
}

/* Restore one file of the backup (one item of the parallel loop). */
static bool restore_one(RestoreCtx *c, const json_t *e, Err *err);

static bool restore_file(void *arg, int i, Err *err)
{
    RestoreCtx *c = arg;
    if (i == c->control)
        return true; /* after every other file */
    const json_t *e = json_array_get(c->files, (size_t)i);
    bool ok = restore_one(c, e, err);
    json_int_t size = json_integer_value(json_object_get(e, "size"));
    progress_add(c->progress, size > 0 ? (uint64_t)size : 0);
    return ok;
}

static bool restore_one(RestoreCtx *c, const json_t *e, Err *err)
{
    const char *path = json_string_value(json_object_get(e, "path"));
    const char *sha = json_string_value(json_object_get(e, "sha256"));
    unsigned char *buf = NULL;
    size_t n = 0;
    if (c->delta) {
        char *dst = str_printf("%s/%s", c->target_dir, path);
        bool same = same_as_local(dst, e);
        free(dst);
        if (same) {
            atomic_fetch_add(&c->kept, 1);
            return true;
        }
    }
    unsigned char bin[32];
    bool known = false;
    if (!put_together(c, 0, path, &buf, &n, bin, &known, err))
        return false;
    /* the whole file against the manifest, when it knows the whole file's hash (an object that
     * is the whole file was hashed as it was decoded) */
    bool same = (int64_t)n == json_integer_value(json_object_get(e, "size"));
    if (same && sha && sha[0]) {
        char hex[65];
        if (!known)
            sha256_buf(buf, n, bin);
        hex_encode(bin, 32, hex);
        same = strcmp(hex, sha) == 0;
    }
    if (!same) {
        err_set(err, "backup %s: %s put together is %zu bytes%s, the manifest says %lld bytes and SHA-256 %s",
                c->chain[0]->info.label, path, n, sha && sha[0] ? " with another SHA-256" : "",
                (long long)json_integer_value(json_object_get(e, "size")), sha && sha[0] ? sha : "(not known)");
        free(buf);
        return false;
    }
    char *dst = str_printf("%s/%s", c->target_dir, path);
    /* the target may be the server user's directory: never write through a link planted there */
    struct stat lst;
    if (c->delta && lstat(dst, &lst) == 0 && !S_ISREG(lst.st_mode))
        unlink(dst);
    int fd = open(dst, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (c->delta ? O_TRUNC : O_EXCL), 0600);
    const char *why = NULL;
    if (fd < 0)
        why = strerror(errno);
    else if (n > 0 && write(fd, buf, n) != (ssize_t)n)
        why = errno ? strerror(errno) : "short write";
    /* made durable all at once (sync_target), not one fsync per file */
    if (fd >= 0) {
        uid_t uid;
        gid_t gid;
        if (!why && proc_run_as(&uid, &gid) && fchown(fd, uid, gid) != 0)
            why = strerror(errno);
        close(fd);
    }
    free(buf);
    if (!why)
        atomic_fetch_add(&c->written, 1);
    else
        err_set(err, "cannot write %s: %s", dst, why);
    free(dst);
    return !why;
}

/* Delta: the directory must be a stopped data directory of the cluster the backup is of. */
static bool delta_target_ok(const Config *cfg, const char *dir, const Manifest *m, Err *err)
{
    /* the node's agent would start postgres in the middle of the restore */
    if (cfg->pid_file) {
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
    if (ready > 0) {
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
    if (delta && (!delta_target_ok(cfg, o->target_dir, chain[0], err) ||
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
        c.progress = progress_start("restore", total);
        ok = ok && parallel_for((int)json_array_size(c.files), o->workers, restore_file, &c, err);
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
            ok = restore_one(&c, ce, err) && sync_target(o->target_dir, err);
            progress_add(c.progress, (uint64_t)json_integer_value(json_object_get(ce, "size")));
        }
        progress_end(c.progress);
        counts->written = atomic_load(&c.written);
        counts->kept = atomic_load(&c.kept);
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
