/* Timeline histories (pg_wal/<TLI>.history) and where two of them part: the fork point a
 * rewind goes back to. */
#ifndef PGVIGIL_REWIND_TIMELINE_H
#define PGVIGIL_REWIND_TIMELINE_H

#include "common/common.h"
#include "common/lsn.h"

#include <stdint.h>

#define TIMELINE_MAX_ENTRIES 256
#define LSN_END UINT64_MAX   /* the current timeline has no end yet */

typedef struct TimelineEntry {
    uint32_t tli;
    Lsn begin, end;          /* [begin, end) of the WAL on this timeline */
} TimelineEntry;

typedef struct TimelineHistory {
    TimelineEntry e[TIMELINE_MAX_ENTRIES];
    int n;
} TimelineHistory;

/* The history of timeline tli from the text of its history file (NULL or "" for timeline 1):
 * its ancestors, oldest first, then tli itself without an end. False with err on a malformed
 * file (a line that is not "parent-timeline<TAB>switch-point...", timelines not increasing,
 * switch points going back). */
bool timeline_parse(uint32_t tli, const char *text, TimelineHistory *out, Err *err);

/* Where the histories a and b part: the index of the last timeline they share (-1: none) and
 * the WAL position where one of them leaves it (LSN_END: they have not parted). */
int timeline_fork(const TimelineHistory *a, const TimelineHistory *b, Lsn *fork);

/* The timeline of history h that the WAL segment starting at seg_start is read from (the
 * newest one begun by then); 0 when none. */
uint32_t timeline_of_segment(const TimelineHistory *h, Lsn seg_start, uint32_t wal_segment_size);

#endif
