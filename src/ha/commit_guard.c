/* The lease file, written by the agent: a shared mapping the agent stores the deadline into with
 * one aligned 8-byte store, so a backend reading it concurrently never sees half a value. */
#include "ha/commit_guard.h"
#include "common/log.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void store_deadline(CommitGuard *g)
{
    if (g->map)
        atomic_store_explicit((_Atomic int64_t *)&g->map->deadline_ms, g->deadline_ms, memory_order_release);
}

static bool map_file(CommitGuard *g, Err *err)
{
    int fd = open(g->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        err_set(err, "commit guard: cannot open %s: %s", g->path, strerror(errno));
        return false;
    }
    struct stat st;
    /* a new (or short) file gets the layout first; an existing one keeps its deadline */
    bool fresh = fstat(fd, &st) == 0 && st.st_size < (off_t)sizeof(LeaseFileLayout);
    if (fresh) {
        LeaseFileLayout init;
        memset(&init, 0, sizeof(init));
        memcpy(init.magic, LEASE_FILE_MAGIC, LEASE_FILE_MAGIC_LEN);
        init.deadline_ms = g->deadline_ms;
        if (pwrite(fd, &init, sizeof(init), 0) != (ssize_t)sizeof(init) || fstat(fd, &st) != 0) {
            err_set(err, "commit guard: cannot write %s: %s", g->path, strerror(errno));
            close(fd);
            return false;
        }
    }
    fchmod(fd, 0644); /* postgres (another user) reads it */
    void *p = mmap(NULL, sizeof(LeaseFileLayout), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        err_set(err, "commit guard: cannot map %s: %s", g->path, strerror(errno));
        return false;
    }
    g->map = p;
    g->ino = st.st_ino;
    if (memcmp((const void *)g->map->magic, LEASE_FILE_MAGIC, LEASE_FILE_MAGIC_LEN) != 0) {
        /* another version's file: ours from now on (the module checks the magic) */
        memcpy((void *)g->map->magic, LEASE_FILE_MAGIC, LEASE_FILE_MAGIC_LEN);
        store_deadline(g);
    } else if (!fresh) {
        g->deadline_ms = g->map->deadline_ms;
    }
    return true;
}

static void unmap_file(CommitGuard *g)
{
    if (g->map)
        munmap((void *)g->map, sizeof(LeaseFileLayout));
    g->map = NULL;
}

bool commit_guard_open(CommitGuard *g, const char *path, Err *err)
{
    memset(g, 0, sizeof(*g));
    g->path = str_dup(path);
    if (map_file(g, err))
        return true;
    g->warned = true;
    return false;
}

void commit_guard_set(CommitGuard *g, int64_t deadline_ms)
{
    g->deadline_ms = deadline_ms;
    store_deadline(g);
}

void commit_guard_check(CommitGuard *g)
{
    if (!g->path)
        return;
    struct stat st;
    if (g->map && stat(g->path, &st) == 0 && st.st_ino == g->ino)
        return;
    int64_t keep = g->deadline_ms;
    unmap_file(g);
    Err err = {{0}};
    if (!map_file(g, &err)) {
        if (!g->warned)
            log_error("%s (commits of this node's postgres are not guarded until it can be made)", err.msg);
        g->warned = true;
        return;
    }
    /* this agent's deadline, not what a replaced file held */
    g->deadline_ms = keep;
    store_deadline(g);
    if (g->warned)
        log_info("commit guard: %s is in place again", g->path);
    g->warned = false;
}

void commit_guard_close(CommitGuard *g)
{
    unmap_file(g);
    free(g->path);
    g->path = NULL;
}
