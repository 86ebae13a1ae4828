/* The lease file, written by the agent: a shared mapping the agent stores the deadline into with
 * one aligned 8-byte store, so a backend reading it concurrently never sees half a value. */
#include "ha/commit_guard.h"
#include "common/log.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int64_t published(const CommitGuard *g)
{
    int64_t d = g->deadline_ms;
    if (g->inherited_ms != 0 && (d == 0 || g->inherited_ms < d))
        d = g->inherited_ms;
    return d;
}

static void store_into(volatile LeaseFileLayout *m, int64_t deadline, uint64_t gen)
{
    if (!m)
        return;
    atomic_store_explicit((_Atomic uint64_t *)&m->lease_gen, gen, memory_order_release);
    atomic_store_explicit((_Atomic int64_t *)&m->deadline_ms, deadline, memory_order_release);
}

static void store(CommitGuard *g)
{
    int64_t d = published(g);
    store_into(g->map, d, g->lease_gen);
    store_into(g->old_map, d, g->lease_gen);
}

/* Open the file for writing, replacing one this process does not own or others may write. */
static int open_own(const char *path, struct stat *st, Err *err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 && errno == ELOOP && attempt == 0 && unlink(path) == 0)
            continue; /* a symbolic link: replaced by a file of ours */
        if (fd < 0) {
            err_set(err, "commit guard: cannot open %s: %s", path, strerror(errno));
            return -1;
        }
        if (fstat(fd, st) == 0 && st->st_uid == geteuid() && S_ISREG(st->st_mode) && !(st->st_mode & 022))
            return fd;
        close(fd);
        if (attempt == 0 && unlink(path) == 0)
            continue;
        err_set(err, "commit guard: %s is not a regular file of this user's, writable by it alone", path);
        return -1;
    }
    return -1;
}

/* Map the file at g->path; on success *out is the new mapping and *fresh says it was made now. */
static bool map_file(CommitGuard *g, volatile LeaseFileLayout **out, ino_t *ino, bool *fresh, Err *err)
{
    struct stat st;
    int fd = open_own(g->path, &st, err);
    if (fd < 0)
        return false;
    /* a new (or short) file gets the layout first */
    *fresh = st.st_size < (off_t)sizeof(LeaseFileLayout);
    if (*fresh) {
        LeaseFileLayout init;
        memset(&init, 0, sizeof(init));
        memcpy(init.magic, LEASE_FILE_MAGIC, LEASE_FILE_MAGIC_LEN);
        init.deadline_ms = published(g);
        init.lease_gen = g->lease_gen;
        if (pwrite(fd, &init, sizeof(init), 0) != (ssize_t)sizeof(init)) {
            err_set(err, "commit guard: cannot write %s: %s", g->path, strerror(errno));
            close(fd);
            return false;
        }
    }
    void *p = mmap(NULL, sizeof(LeaseFileLayout), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        err_set(err, "commit guard: cannot map %s: %s", g->path, strerror(errno));
        return false;
    }
    volatile LeaseFileLayout *m = p;
    if (memcmp((const void *)m->magic, LEASE_FILE_MAGIC, LEASE_FILE_MAGIC_LEN) != 0) {
        /* another version's file: this layout from now on (the module checks the magic) */
        store_into(m, published(g), g->lease_gen);
        memcpy((void *)m->magic, LEASE_FILE_MAGIC, LEASE_FILE_MAGIC_LEN);
        *fresh = true;
    }
    *out = m;
    *ino = st.st_ino;
    return true;
}

static void unmap(volatile LeaseFileLayout **m)
{
    if (*m)
        munmap((void *)*m, sizeof(LeaseFileLayout));
    *m = NULL;
}

bool commit_guard_open(CommitGuard *g, const char *path, uint64_t lease_gen, Err *err)
{
    memset(g, 0, sizeof(*g));
    g->path = str_dup(path);
    g->lease_gen = lease_gen;
    bool fresh = false;
    if (!map_file(g, &g->map, &g->ino, &fresh, err)) {
        g->warned = true;
        return false;
    }
    /* an earlier agent's fence may still act on the deadline it left */
    if (!fresh)
        g->inherited_ms = g->map->deadline_ms;
    store(g);
    return true;
}

void commit_guard_set(CommitGuard *g, int64_t deadline_ms)
{
    g->deadline_ms = deadline_ms;
    store(g);
}

void commit_guard_new_lease(CommitGuard *g, uint64_t lease_gen)
{
    g->lease_gen = lease_gen;
    store(g);
}

void commit_guard_forget_inherited(CommitGuard *g)
{
    if (g->inherited_ms == 0)
        return;
    g->inherited_ms = 0;
    store(g);
}

void commit_guard_check(CommitGuard *g)
{
    if (!g->path)
        return;
    struct stat st;
    if (g->map && stat(g->path, &st) == 0 && st.st_ino == g->ino)
        return;
    Err err = {{0}};
    volatile LeaseFileLayout *m = NULL;
    ino_t ino = 0;
    bool fresh = false;
    if (!map_file(g, &m, &ino, &fresh, &err)) {
        /* keep the old mapping: backends that read it go on seeing this agent's deadlines */
        if (!g->warned)
            log_error("%s (commits of this node's postgres are guarded through the old file until it can be made)",
                      err.msg);
        g->warned = true;
        return;
    }
    unmap(&g->old_map);
    g->old_map = g->map;
    g->map = m;
    g->ino = ino;
    store(g);
    if (g->warned)
        log_info("commit guard: %s is in place again", g->path);
    g->warned = false;
}

void commit_guard_close(CommitGuard *g)
{
    unmap(&g->map);
    unmap(&g->old_map);
    free(g->path);
    g->path = NULL;
}
