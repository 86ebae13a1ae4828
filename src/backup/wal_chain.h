/* The chain of WAL segments in the repository: which segments of which timelines are stored, how
 * timelines follow each other (their .history files), and how far a recovery can replay from a
 * given segment before it meets a missing one. Used by verify and by restore. WAL segments are
 * taken to be 16 MB (PostgreSQL's default). */
#ifndef PGVIGIL_WAL_CHAIN_H
#define PGVIGIL_WAL_CHAIN_H

#include "backup/repo.h"
#include "common/lsn.h"

#define WAL_SEG_BYTES (16ULL * 1024 * 1024)

typedef struct WalSeg {
    unsigned tli;
    uint64_t segno;
} WalSeg;

typedef struct WalChain {
    Repo *r;
    WalSeg *segs;            /* sorted by timeline, then segment */
    int n;
} WalChain;

bool wal_seg_parse(const char *name, WalSeg *s);
void wal_seg_name(unsigned tli, uint64_t segno, char *buf, size_t sz);

/* Every segment stored (by key name; nothing is read). */
bool wal_chain_load(Repo *r, WalChain *c, Err *err);
/* Build one by hand (verify adds only the segments that decode): add, then sort. */
void wal_chain_add(WalChain *c, WalSeg s);
void wal_chain_sort(WalChain *c);
void wal_chain_free(WalChain *c);
bool wal_chain_has(const WalChain *c, unsigned tli, uint64_t segno);
/* Where timeline tli+1 branched from tli: the segment it starts in (its history file). */
bool wal_chain_next_timeline(const WalChain *c, unsigned tli, uint64_t *start_segno);
/* From segment (tli, from) (stored), the last segment recovery reaches: contiguous segments,
 * following timeline switches. */
void wal_chain_reach(const WalChain *c, unsigned tli, uint64_t from, unsigned *end_tli, uint64_t *end_segno);
/* After a reach ending at (tli, segno): is a later segment stored on that timeline or a later
 * one, so that the end is a gap rather than the end of the archive? */
bool wal_chain_more_after(const WalChain *c, unsigned tli, uint64_t segno);

#endif
