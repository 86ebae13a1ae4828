/* The agent's side of the commit guard: it publishes the fence's deadline in the lease file
 * (common/lease_file.h), which the pgvigil_guard server module (pgext/guard) reads at every
 * commit. A primary then neither commits nor acknowledges a commit past the deadline, even in
 * the milliseconds before the fencing process has killed it. */
#ifndef PGVIGIL_COMMIT_GUARD_H
#define PGVIGIL_COMMIT_GUARD_H

#include "common/common.h"
#include "common/lease_file.h"

#include <sys/types.h>

typedef struct CommitGuard {
    char *path;                       /* NULL: no guard */
    volatile LeaseFileLayout *map;    /* shared mapping of the file; NULL until it could be made */
    volatile LeaseFileLayout *old_map;/* the file it replaced: backends that mapped it still read it */
    ino_t ino;                        /* the mapped file, to notice it was deleted or replaced */
    int64_t deadline_ms;              /* what this agent wants published (0 = none) */
    uint64_t lease_gen;               /* this agent's lease generation */
    /* An earlier agent's deadline found in the file: its fence may still act on it, so what is
     * published is never later than it, until that fence is known to be gone. */
    int64_t inherited_ms;
    bool warned;                      /* an error about the file was logged */
} CommitGuard;

/* Create (mode 0644, owned by this process; a file of another owner or writable by others, or
 * a symbolic link, is replaced) and map the file. An existing deadline is inherited (see
 * inherited_ms). False + err when it cannot be made; the guard then retries on every
 * commit_guard_check. commit_guard_close frees it either way. */
bool commit_guard_open(CommitGuard *g, const char *path, uint64_t lease_gen, Err *err);
/* Publish a deadline (mono_ms time; 0 = none). */
void commit_guard_set(CommitGuard *g, int64_t deadline_ms);
/* A new lease: commits held under the old one are never acknowledged. */
void commit_guard_new_lease(CommitGuard *g, uint64_t lease_gen);
/* The earlier agent's fence is gone: publish this agent's deadline alone. */
void commit_guard_forget_inherited(CommitGuard *g);
/* Once a tick: make the file again when it was deleted or replaced (a /tmp cleaner), so that new
 * backends find it; the old mapping keeps being updated for the backends that read it. */
void commit_guard_check(CommitGuard *g);
/* Unmap (the file stays, with its last deadline). */
void commit_guard_close(CommitGuard *g);

#endif
