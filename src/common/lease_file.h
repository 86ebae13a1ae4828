/* The lease file: how an agent tells its PostgreSQL server, through the pgvigil_guard extension
 * (pgext/guard), until when it may acknowledge commits. The agent keeps it mapped and stores the
 * fence's deadline there every time it changes; each backend maps it read-only and compares the
 * deadline with the clock at commit time. Shared by the agent and the server extension, so it
 * holds only the layout: no function, no allocation.
 *
 * The deadline is CLOCK_BOOTTIME time in milliseconds, the clock of the fencing process (a
 * monotonic clock that also counts a suspended machine): past it the fence kills postgres, and
 * the guard refuses to commit or to acknowledge. 0 means no deadline: the agent is not the
 * leader and postgres is not a primary, or the agent stopped cleanly.
 *
 * lease_gen changes whenever the agent holds a new lease (a restart, or a lease that expired
 * and was granted anew): a commit held past the deadline is released only if the same lease
 * was renewed, which proves no other node was promoted meanwhile. */
#ifndef PGVIGIL_LEASE_FILE_H
#define PGVIGIL_LEASE_FILE_H

#include <stdint.h>

#define LEASE_FILE_MAGIC "PGVIGIL\002"   /* 8 bytes, the layout's version in the last one */
#define LEASE_FILE_MAGIC_LEN 8

typedef struct LeaseFileLayout {
    char magic[LEASE_FILE_MAGIC_LEN];
    /* each written and read as one aligned 8-byte word: never torn on the 64-bit machines
     * pgvigil runs on */
    int64_t deadline_ms;
    uint64_t lease_gen;
} LeaseFileLayout;

/* the server parameter naming the file (set by the agent in postgresql.conf) */
#define LEASE_FILE_GUC "pgvigil_guard.lease_file"
/* the library shared_preload_libraries loads */
#define LEASE_GUARD_LIBRARY "pgvigil_guard"

#endif
