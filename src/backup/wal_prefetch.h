/* WAL prefetching for restore_command. PostgreSQL asks for one segment at a time and replays it
 * before asking for the next, so a restore from a remote repository would wait for every
 * download in turn. When `pgvigil wal-fetch` has served a segment, it starts a background
 * process that fetches the next backup.prefetch segments of that timeline into a spool directory
 * beside the destination (pg_wal/pgvigil-prefetch/), each decoded, checked and renamed into place
 * whole; the next request finds its segment there and only renames it. Segments before the one
 * asked for are removed from the spool, the prefetcher stops at the first segment the repository
 * lacks (the end of the archive, for now), and one prefetcher runs per spool at a time. */
#ifndef PGVIGIL_WAL_PREFETCH_H
#define PGVIGIL_WAL_PREFETCH_H

#include "backup/repo.h"

#define WAL_PREFETCH_DIR "pgvigil-prefetch"

/* The spool beside dest (malloc'd): <dir of dest>/pgvigil-prefetch. */
char *wal_prefetch_spool(const char *dest);
/* name from the spool into dest (a rename): true when it was there. */
bool wal_prefetch_take(const char *spool, const char *name, const char *dest);
/* The segment after name on its timeline (out: 25 bytes); false for a name that is not one. */
bool wal_next_segment(const char *name, char *out, size_t sz);
/* Fetch up to count segments after name into the spool, and remove the spool's segments before
 * name; returns at once when another prefetcher holds the spool. */
void wal_prefetch_run(Repo *r, const char *spool, const char *name, int count);
/* Remove the spool (at the end of recovery). */
void wal_prefetch_clear(const char *spool);

#endif
