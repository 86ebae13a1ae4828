/* Data pages of relation files, for block-level incremental backups: which files are made of
 * 8 kB pages whose header carries the LSN of their last WAL-logged change. */
#ifndef PGVIGIL_PAGES_H
#define PGVIGIL_PAGES_H

#include "common/common.h"
#include "common/lsn.h"

#define PAGE_SIZE_BYTES 8192

/* A main-fork relation file ("base/5/16384", "global/1262", "base/5/16384.1"), relative to the
 * data directory: its pages' LSNs tell which changed. Not the free space map (its changes are not
 * WAL-logged), the visibility map (a bit cleared by a heap change leaves its page LSN as it was)
 * or init forks: those are small and are compared whole. */
bool page_file_has_lsns(const char *rel);
/* pd_lsn of the page at p: two 32-bit halves, high first, in the machine's byte order */
Lsn page_lsn(const unsigned char *p);

#endif
