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
    ino_t ino;                        /* the mapped file, to notice it was deleted or replaced */
    int64_t deadline_ms;              /* the value to publish (kept while the file is missing) */
    bool warned;                      /* an error about the file was logged */
} CommitGuard;

/* Create (mode 0644) and map the file. An existing file keeps its deadline: the fence of an
 * earlier agent of this postgres may still act on it. False + err when it cannot be made; the
 * guard then retries on every commit_guard_check. */
bool commit_guard_open(CommitGuard *g, const char *path, Err *err);
/* Publish a deadline (CLOCK_MONOTONIC ms; 0 = none). */
void commit_guard_set(CommitGuard *g, int64_t deadline_ms);
/* Once a tick: make the file again when it was deleted or replaced (a /tmp cleaner), so that new
 * backends find it. */
void commit_guard_check(CommitGuard *g);
/* Unmap (the file stays, with its last deadline). */
void commit_guard_close(CommitGuard *g);

#endif
