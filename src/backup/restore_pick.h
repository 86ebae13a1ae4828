/* Which backup a new replica restores: the newest one of the cluster (its system identifier)
 * from which recovery can follow the leader's timeline, as the leader's timeline history file
 * describes it. Pure: the history's text is read by the caller (wal_history_read). */
#ifndef PGVIGIL_RESTORE_PICK_H
#define PGVIGIL_RESTORE_PICK_H

#include "backup/base_backup.h"

#define TLI_HISTORY_MAX 256

/* One line of a timeline history file: timeline tli ended at `end`, where the next timeline of
 * the history forked from it. */
typedef struct TimelineFork {
    int tli;
    Lsn end;
} TimelineFork;

/* The entries of a timeline history file ("1<TAB>0/3000060<TAB>reason" lines, oldest first);
 * comment and blank lines are skipped. Returns the count, or -1 for a malformed line or more
 * than max entries. */
int timeline_history_parse(const char *text, TimelineFork *out, int max);

/* The newest backup (an index into b, which is oldest first) of system identifier sysid from
 * which recovery can follow timeline tli: one taken on tli itself, or on an ancestor timeline of
 * the history (hist, n_hist) that ended (its stop LSN) no later than where that timeline forked.
 * -1 when there is none, with why saying what there was. */
int backup_pick_for_timeline(const BackupInfo *b, int n, const char *sysid, int tli, const TimelineFork *hist,
                             int n_hist, char *why, size_t why_sz);

#endif
