/* Verify a repository: every object's hash, every backup against its manifest and the WAL it
 * needs, gaps in the WAL of each timeline, and how far each backup can be restored. */
#ifndef PGVIGIL_VERIFY_H
#define PGVIGIL_VERIFY_H

#include "backup/repo.h"

#include <stdio.h>

typedef struct VerifyReport {
    uint64_t objects, bytes, wal_files;
    int backups, restorable, gaps;
    int problems;            /* each printed as "problem: ..." (0: all good) */
} VerifyReport;

/* Prints one line per backup and per problem to out, then a summary. False + err only when the
 * repository cannot be listed at all. */
bool backup_verify(Repo *r, FILE *out, VerifyReport *rep, Err *err);

#endif
