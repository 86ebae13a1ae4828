/* pgvigil's own rewind: make a stopped data directory that went its own way after a fork (a
 * former primary) a copy of a running source server as of now, ready to follow it, by fetching
 * only what differs: the relation blocks the target's WAL changed since the last checkpoint
 * before the fork, relation files one side lacks or that changed size, the small non-relation
 * files, the source's timeline history files and its WAL from the fork on. PostgreSQL 15's
 * pg_rewind does the same but also copies every WAL file the source keeps.
 *
 * Recovery of the rewound directory starts at that checkpoint (backup_label) and must replay
 * the source's WAL at least up to the source's position when the copy ended (the control
 * file's minimum recovery point) before it opens: the same contract as pg_rewind's. */
#ifndef PGVIGIL_REWIND_REWIND_H
#define PGVIGIL_REWIND_REWIND_H

#include "common/common.h"
#include "common/lsn.h"

#include <stdint.h>

typedef struct RewindOptions {
    const char *data_dir;
    const char *source;      /* libpq connection string of the source server */
    const char *pg_bin;      /* directory of pg_waldump and pg_controldata */
    const char *restore_command; /* fetches WAL the target no longer has (NULL: none) */
    bool dry_run;            /* plan and print, change nothing */
} RewindOptions;

typedef struct RewindStats {
    Lsn fork, checkpoint, redo, min_recovery;
    uint32_t common_tli, source_tli;
    uint64_t changed_blocks;                 /* blocks the target's WAL changed since redo */
    uint64_t block_bytes, tail_bytes, whole_bytes, wal_bytes, fetched_bytes;
    uint64_t block_ranges, whole_files, wal_files, removed, truncated;
    unsigned restored_segments;              /* of the target's own WAL, by restore_command */
} RewindStats;

typedef enum RewindResult {
    REWIND_DONE,             /* rewound (or, with dry_run, planned) */
    REWIND_NOT_DONE,         /* nothing changed: this case is left to pg_rewind (err says why) */
    REWIND_BROKEN,           /* failed after the directory was changed: it is marked as such */
} RewindResult;

RewindResult block_rewind(const RewindOptions *o, RewindStats *st, Err *err);

/* One line: what was (or would be) copied and removed. */
void rewind_stats_format(const RewindStats *st, bool dry_run, char *buf, size_t sz);

#endif
