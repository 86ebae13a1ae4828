/* What the target's own WAL says for a rewind: the last checkpoint before the fork (recovery
 * starts again from there) and every block its records changed since (they are copied back
 * from the source). */
#ifndef PGVIGIL_REWIND_TARGET_WAL_H
#define PGVIGIL_REWIND_TARGET_WAL_H

#include "backup/wal_summary.h"
#include "common/common.h"
#include "common/lsn.h"
#include "rewind/timeline.h"

/* The target's WAL directory, and the restore_command (NULL: none) that fetches a segment it
 * no longer has (into the directory, under its own name: recovery replays it later). */
typedef struct TargetWal {
    const char *dir;
    const char *restore_command;
    uint32_t seg_size;
    unsigned restored;       /* segments fetched so far */
} TargetWal;

/* The last checkpoint record on timeline tli that starts before fork, read with pg_waldump
 * (waldump: its path), going back a segment at a time (restoring missing ones) as far as the
 * start of tli. False with err when there is none. */
bool target_last_checkpoint(TargetWal *w, const char *waldump, uint32_t tli, Lsn tli_begin, Lsn fork, Lsn *checkpoint,
                            Lsn *redo, Err *err);

/* The blocks changed by the records from the segment of from on, along the target's history h,
 * until its WAL ends; records must be there (or be restored) whole up to need_end, the end of
 * the last record the target's data files may hold changes of (else false with err). */
bool target_changed_blocks(TargetWal *w, const TimelineHistory *h, Lsn from, Lsn need_end, WalSummary *out,
                           Err *err);

/* The pg_wal file name of the segment starting at seg_start on timeline tli. */
void wal_segment_name(uint32_t tli, Lsn seg_start, uint32_t seg_size, char out[25]);

#endif
