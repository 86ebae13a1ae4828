/* WAL summaries: which relation blocks the WAL records of one segment change. The archive makes
 * one for every segment it stores (walsum/<timeline>/<segment name>), from the block references
 * in the records' headers, as PostgreSQL 17's WAL summarizer does. An incremental backup unites
 * the summaries from the start of the backup it builds on to its own start, and reads only those
 * blocks of the relation files instead of every file.
 *
 * A summary also holds what block references do not say:
 *   - a "limit" per relation fork: created (0) or truncated (to N blocks) in the segment; every
 *     block from the smallest limit on must be read again;
 *   - databases copied whole (CREATE DATABASE ... STRATEGY FILE_COPY): every file of them must
 *     be read again.
 * A record whose header crosses into the next segment is finished when the two summaries are
 * put together: the first keeps the start of the record ("carry"), the second the first bytes of
 * its continuation ("head").
 *
 * PostgreSQL 15's WAL format (page magic 0xD110, 8 kB pages), little-endian machines. */
#ifndef PGVIGIL_WAL_SUMMARY_H
#define PGVIGIL_WAL_SUMMARY_H

#include "common/common.h"

#include <stdint.h>

#define WAL_SUMMARY_NO_LIMIT UINT32_MAX
#define WAL_RELSEG_BLOCKS 131072u   /* blocks in one 1 GB relation segment file */

typedef struct WalRelKey {
    uint32_t spc, db, rel;   /* tablespace, database (0: shared) and relfilenode */
    uint32_t fork;           /* 0 main, 1 free space map, 2 visibility map, 3 init */
} WalRelKey;

typedef struct WalRelBlocks {
    WalRelKey key;
    uint32_t limit;          /* WAL_SUMMARY_NO_LIMIT, or the smallest size it was cut to */
    uint32_t *blocks;        /* sorted, no duplicates once finished */
    size_t n, cap;
} WalRelBlocks;

typedef struct WalDb {
    uint32_t spc, db;
} WalDb;

typedef struct WalSummary {
    uint64_t seg_start;      /* LSN of the first segment summarized */
    uint64_t end;            /* where the last one's records end (or the stop LSN) */
    bool complete;           /* the records cover the segment(s) to their end or the stop LSN */
    WalRelBlocks *rels;
    size_t n_rels, cap_rels;
    uint32_t *slots;         /* open-addressing index into rels (index + 1; 0 empty) */
    size_t n_slots;
    WalDb *whole_dbs;
    size_t n_whole_dbs;
    unsigned char *carry;    /* the start of the record the (last) segment ends in */
    uint32_t carry_len, carry_tot;
    unsigned char *head;     /* the first bytes of the record the (first) segment starts in */
    uint32_t head_len;
    uint64_t records;        /* records read */
} WalSummary;

/* Summarize one WAL segment (n bytes, starting at LSN seg_start) up to stop_lsn (0: the whole
 * segment). False, with err, for something that is not a PostgreSQL 15 WAL segment of that
 * position; a segment whose records end early (a file still being written) is summarized up to
 * there and has complete = false unless stop_lsn is reached. */
bool wal_summary_parse(const unsigned char *seg, size_t n, uint64_t seg_start, uint64_t stop_lsn, WalSummary *out,
                       Err *err);
void wal_summary_free(WalSummary *s);

/* Stored form (malloc'd), and back. */
unsigned char *wal_summary_serialize(const WalSummary *s, size_t *n);
bool wal_summary_deserialize(const void *p, size_t n, WalSummary *out, Err *err);

/* Add the summary of the next segment to acc (which then covers both): the record acc's last
 * segment ends in is completed with next's head. False when that record cannot be read. */
bool wal_summary_merge(WalSummary *acc, const WalSummary *next, Err *err);

/* The blocks of a relation fork (NULL: none changed and no limit). */
const WalRelBlocks *wal_summary_find(const WalSummary *s, const WalRelKey *k);
/* Was the database copied whole? */
bool wal_summary_db_copied(const WalSummary *s, uint32_t spc, uint32_t db);

/* A data directory path of a relation file ("base/5/16384_vm.2", "global/1262") as its relation
 * fork and segment number; false for any other file. */
bool wal_relpath_parse(const char *path, WalRelKey *k, uint32_t *segno);

#endif
