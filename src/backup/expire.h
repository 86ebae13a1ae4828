/* Retention of backups and WAL (pgvigil backup expire). */
#ifndef PGVIGIL_EXPIRE_H
#define PGVIGIL_EXPIRE_H

#include "backup/repo.h"

#include <stdio.h>

typedef struct ExpirePolicy {
    int keep_full;    /* keep the newest N full backups (0: no count limit) */
    int keep_days;    /* keep what restores to any point of the last N days (0: no window) */
} ExpirePolicy;

typedef struct ExpireReport {
    int backups;      /* backups expired (or that would be, with dry_run) */
    int wal_files;    /* WAL files removed */
    int leftovers;    /* backups that never completed, whose files were removed */
} ExpireReport;

/* Keep what the policy says (always the newest backup, and every WAL file from the oldest kept
 * backup's start on, so each kept backup stays restorable to the end of the archive); remove the
 * rest, printing what goes. With neither limit set no backup or WAL is removed. The files of
 * backups that never completed (no manifest) are removed in any case: the caller holds the
 * cluster's backup lock. */
bool backup_expire(Repo *r, const ExpirePolicy *p, bool dry_run, FILE *out, ExpireReport *rep, Err *err);

#endif
