/* Repository driver for a directory (local disk, NFS, a mounted volume). A write goes to a
 * temporary file beside its key, and is committed by fsync, rename, and fsync of the directory:
 * after a crash the key holds the old object or the new one, whole. */
#include "backup/repo.h"
#include "backup/file_sink.h"
#include "common/fileutil.h"
#include "common/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_MARK ".pgvigil-tmp."

typedef struct PosixRepo {
    Repo base;
    char *root;
    /* opened with the repository: syncfs reports a writeback error to the descriptors opened
     * before it happened, so this one sees every error of what the repository wrote lazily */
    int root_fd;
} PosixRepo;

struct RepoWriter {
    PosixRepo *repo;
    char *key;
    char *path;   /* final */
    char *tmp;
    int fd;
    uint64_t written;
    /* an object of 1 MB or more goes through a file sink (direct I/O where the file system
     * takes it: a backup writes gigabytes nobody reads soon) */
    FileSink sink;
    unsigned char *bounce;
};

#define BOUNCE_SIZE ((size_t)1 << 20)

static atomic_uint tmp_counter;

/* Keys are relative, without "." or ".." components: nothing outside the root. */
static bool key_ok(const char *key, Err *err, const char *desc)
{
    bool ok = !str_empty(key) && key[0] != '/';
    for (const char *p = key; ok && p && *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            ok = false;
        p += n;
        if (*p == '/')
            p++;
    }
    if (!ok)
        err_set(err, "%s: invalid key \"%s\"", desc, key ? key : "");
    return ok;
}

static char *key_path(const PosixRepo *r, const char *key)
{
    return str_printf("%s/%s", r->root, key);
}

static bool fsync_dir_of(const char *path, Err *err, const char *desc)
{
    char *dir = str_dup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool ok = fd >= 0 && fsync(fd) == 0;
    if (!ok)
        err_set(err, "%s: cannot sync directory %s: %s", desc, dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return ok;
}

/* Run as root, the agent keeps what it creates but lets postgresql.run_as's group read it (mode
 * 0750 directories, 0640 files): restore_command (pgvigil wal-fetch) runs as the server's user.
 * The server's user gets no write access, so it cannot plant links for root to follow. Every
 * directory from the root down to dir, opened without following links. (A no-op when not root.) */
static void hand_over(const PosixRepo *r, const char *dir)
{
    size_t root_len = strlen(r->root);
    char *p = str_dup(dir);
    for (char *c = p + root_len; c && *c;) {
        c = strchr(c + 1, '/');
        if (c)
            *c = '\0';
        int fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            proc_fchgrp_run_as(fd, 0750, NULL);
            close(fd);
        }
        if (c)
            *c = '/';
    }
    free(p);
}

static RepoWriter *posix_write_open(Repo *base, const char *key, Err *err)
{
    PosixRepo *r = (PosixRepo *)base;
    if (!key_ok(key, err, base->desc))
        return NULL;
    RepoWriter *w = xcalloc(1, sizeof(*w));
    w->repo = r;
    w->key = str_dup(key);
    w->path = key_path(r, key);
    w->tmp = str_printf("%s" TMP_MARK "%d.%u", w->path, (int)getpid(), atomic_fetch_add(&tmp_counter, 1));
    char *dir = str_dup(w->path);
    *strrchr(dir, '/') = '\0';
    bool made = dir_make_all(dir, 0750, err);
    if (made)
        hand_over(r, dir);
    free(dir);
    if (made)
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (made && w->fd >= 0)
        proc_fchgrp_run_as(w->fd, 0640, NULL);
    if (!made || w->fd < 0) {
        if (made)
            err_set(err, "%s: cannot create %s: %s", base->desc, w->tmp, strerror(errno));
        else
            err_prefix(err, "%s", base->desc);
        free(w->key);
        free(w->path);
        free(w->tmp);
        free(w);
        return NULL;
    }
    return w;
}

static bool posix_write(RepoWriter *w, const void *p, size_t n, Err *err)
{
    if (w->written == 0 && n >= FILE_SINK_DIRECT_MIN && !w->bounce) {
        w->bounce = xcalloc_aligned(1, BOUNCE_SIZE, FILE_SINK_ALIGN);
        file_sink_adopt(&w->sink, w->fd, w->tmp, n, w->bounce, BOUNCE_SIZE);
    }
    w->written += n;
    if (w->bounce) {
        if (file_sink_write(&w->sink, p, n, err))
            return true;
        err_prefix(err, "%s", w->repo->base.desc);
        return false;
    }
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(w->fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            err_set(err, "%s: writing %s: %s", w->repo->base.desc, w->key, k < 0 ? strerror(errno) : "no progress");
            return false;
        }
        c += k;
        n -= (size_t)k;
    }
    return true;
}

static void writer_free(RepoWriter *w)
{
    free(w->bounce);
    free(w->key);
    free(w->path);
    free(w->tmp);
    free(w);
}

static void posix_write_abort(RepoWriter *w)
{
    if (w->fd >= 0)
        close(w->fd);
    unlink(w->tmp);
    writer_free(w);
}

static bool posix_write_commit(RepoWriter *w, Err *err)
{
    const char *desc = w->repo->base.desc;
    if (fsync(w->fd) != 0) {
        err_set(err, "%s: syncing %s: %s", desc, w->key, strerror(errno));
        posix_write_abort(w);
        return false;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        err_set(err, "%s: closing %s: %s", desc, w->key, strerror(errno));
        posix_write_abort(w);
        return false;
    }
    w->fd = -1;
    if (rename(w->tmp, w->path) != 0) {
        err_set(err, "%s: storing %s: %s", desc, w->key, strerror(errno));
        posix_write_abort(w);
        return false;
    }
    bool ok = fsync_dir_of(w->path, err, desc);
    /* and the directory above, which may have just got this one (a new timeline's) */
    char *dir = str_dup(w->path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (strlen(dir) > strlen(w->repo->root))
            ok = ok && fsync_dir_of(dir, err, desc);
    }
    free(dir);
    writer_free(w);
    return ok;
}

/* Linked into place only where no file is (link(2) fails with EEXIST otherwise: atomic, unlike
 * a check before a rename), durable. */
static bool posix_write_commit_new(RepoWriter *w, bool *existed, Err *err)
{
    const char *desc = w->repo->base.desc;
    *existed = false;
    bool synced = fsync(w->fd) == 0;
    int en = errno;
    if (close(w->fd) != 0 && synced) {
        synced = false;
        en = errno;
    }
    w->fd = -1;
    if (!synced) {
        err_set(err, "%s: syncing %s: %s", desc, w->key, strerror(en));
        posix_write_abort(w);
        return false;
    }
    if (link(w->tmp, w->path) != 0) {
        en = errno;
        if (en == EPERM || en == ENOTSUP || en == EOPNOTSUPP || en == ENOSYS) {
            /* no hard links here (vfat, some network file systems): a check, then a rename */
            struct stat st;
            if (lstat(w->path, &st) == 0) {
                *existed = true;
                posix_write_abort(w);
                return true;
            }
            if (rename(w->tmp, w->path) == 0) {
                bool ok = fsync_dir_of(w->path, err, desc);
                writer_free(w);
                return ok;
            }
            en = errno;
        }
        *existed = en == EEXIST;
        if (!*existed)
            err_set(err, "%s: storing %s: %s", desc, w->key, strerror(en));
        posix_write_abort(w);
        return *existed;
    }
    unlink(w->tmp);
    bool ok = fsync_dir_of(w->path, err, desc);
    writer_free(w);
    return ok;
}

/* Renamed into place without fsync: whole or absent (or empty after a crash), never durable. */
static bool posix_write_commit_lazy(RepoWriter *w, Err *err)
{
    const char *desc = w->repo->base.desc;
    int rc = close(w->fd);
    w->fd = -1;
    if (rc != 0 || rename(w->tmp, w->path) != 0) {
        err_set(err, "%s: storing %s: %s", desc, w->key, strerror(errno));
        posix_write_abort(w);
        return false;
    }
    writer_free(w);
    return true;
}

static bool posix_read_all(Repo *base, const char *key, void **buf, size_t *n, bool *missing, Err *err)
{
    PosixRepo *r = (PosixRepo *)base;
    *missing = false;
    if (!key_ok(key, err, base->desc))
        return false;
    char *path = key_path(r, key);
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) {
        *missing = true;
        err_set(err, "%s: %s is missing", base->desc, key);
        free(path);
        return false;
    }
    Err e = {{0}};
    char *data = file_read_all(path, n, &e);
    free(path);
    if (!data) {
        err_set(err, "%s: reading %s: %s", base->desc, key, e.msg);
        return false;
    }
    *buf = data;
    return true;
}

static void keys_add(RepoKeys *k, int *cap, char *key)
{
    if (k->n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        k->keys = xrealloc(k->keys, (size_t)*cap * sizeof(char *));
    }
    k->keys[k->n++] = key;
}

static bool walk(const PosixRepo *r, const char *rel, RepoKeys *out, int *cap, Err *err)
{
    char *dir = rel[0] ? str_printf("%s/%s", r->root, rel) : str_dup(r->root);
    DIR *d = opendir(dir);
    if (!d) {
        bool gone = errno == ENOENT || errno == ENOTDIR;
        if (!gone)
            err_set(err, "%s: cannot list %s: %s", r->base.desc, dir, strerror(errno));
        free(dir);
        return gone;
    }
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strstr(e->d_name, TMP_MARK))
            continue;
        char *child = rel[0] ? str_printf("%s/%s", rel, e->d_name) : str_dup(e->d_name);
        char *full = str_printf("%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(full, &st) != 0) {
            free(full);
            free(child);
            continue; /* removed meanwhile */
        }
        free(full);
        if (S_ISDIR(st.st_mode)) {
            ok = walk(r, child, out, cap, err);
            free(child);
        } else if (S_ISREG(st.st_mode)) {
            keys_add(out, cap, child);
        } else {
            free(child);
        }
    }
    closedir(d);
    free(dir);
    return ok;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool posix_list(Repo *base, const char *prefix, RepoKeys *out, Err *err)
{
    PosixRepo *r = (PosixRepo *)base;
    memset(out, 0, sizeof(*out));
    char *rel = str_dup(prefix ? prefix : "");
    size_t len = strlen(rel);
    while (len > 0 && rel[len - 1] == '/')
        rel[--len] = '\0';
    if (rel[0] && !key_ok(rel, err, base->desc)) {
        free(rel);
        return false;
    }
    int cap = 0;
    bool ok = walk(r, rel, out, &cap, err);
    free(rel);
    if (!ok) {
        repo_keys_free(out);
        return false;
    }
    if (out->n > 1)
        qsort(out->keys, (size_t)out->n, sizeof(char *), cmp_str);
    return true;
}

static bool posix_remove(Repo *base, const char *key, Err *err)
{
    PosixRepo *r = (PosixRepo *)base;
    if (!key_ok(key, err, base->desc))
        return false;
    char *path = key_path(r, key);
    bool ok = unlink(path) == 0 || errno == ENOENT;
    if (!ok)
        err_set(err, "%s: removing %s: %s", base->desc, key, strerror(errno));
    free(path);
    return ok;
}

static bool posix_exists(Repo *base, const char *key, bool *exists, Err *err)
{
    PosixRepo *r = (PosixRepo *)base;
    if (!key_ok(key, err, base->desc))
        return false;
    char *path = key_path(r, key);
    struct stat st;
    int rc = stat(path, &st);
    free(path);
    if (rc != 0 && errno != ENOENT) {
        err_set(err, "%s: looking for %s: %s", base->desc, key, strerror(errno));
        return false;
    }
    *exists = rc == 0;
    return true;
}

/* One syncfs for everything written lazily (a backup's files): one journal commit instead of one
 * per file. It flushes whatever else is dirty on that file system too. */
static bool posix_sync_all(Repo *base, Err *err)
{
    PosixRepo *r = (PosixRepo *)base;
    if (r->root_fd < 0 || syncfs(r->root_fd) != 0) {
        err_set(err, "%s: syncing: %s", base->desc, r->root_fd < 0 ? "the directory could not be opened" : strerror(errno));
        return false;
    }
    return true;
}

static void posix_free(Repo *base)
{
    PosixRepo *r = (PosixRepo *)base;
    if (r->root_fd >= 0)
        close(r->root_fd);
    free(r->root);
    free(r->base.desc);
    free(r);
}

static const RepoOps posix_ops = {
    .write_open = posix_write_open,
    .write = posix_write,
    .write_commit = posix_write_commit,
    .write_abort = posix_write_abort,
    .write_commit_lazy = posix_write_commit_lazy,
    .write_commit_new = posix_write_commit_new,
    .sync_all = posix_sync_all,
    .read_all = posix_read_all,
    .list = posix_list,
    .remove = posix_remove,
    .exists = posix_exists,
    .free = posix_free,
};

Repo *repo_posix_new(const char *path, Err *err)
{
    if (str_empty(path) || path[0] != '/') {
        err_set(err, "backup.repository.path must be an absolute path (got \"%s\")", path ? path : "");
        return NULL;
    }
    char *root = str_dup(path);
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/')
        root[--len] = '\0';
    if (!dir_make_all(root, 0750, err)) {
        err_prefix(err, "repository %s", root);
        free(root);
        return NULL;
    }
    int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd >= 0)
        proc_fchgrp_run_as(rfd, 0750, NULL);
    PosixRepo *r = xcalloc(1, sizeof(*r));
    r->base.ops = &posix_ops;
    r->base.desc = str_printf("repository %s", root);
    r->root = root;
    r->root_fd = rfd;
    return &r->base;
}
