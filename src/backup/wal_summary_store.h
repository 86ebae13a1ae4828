/* WAL summaries in the repository (walsum/<timeline>/<segment name>, next to the segment's
 * wal/<timeline>/<segment name>), and the changes between two positions they describe. */
#ifndef PGVIGIL_WAL_SUMMARY_STORE_H
#define PGVIGIL_WAL_SUMMARY_STORE_H

#include "backup/repo.h"
#include "backup/wal_summary.h"
#include "common/lsn.h"

/* The repository key of a segment's summary; false when name is not a segment's. */
bool wal_summary_key(const char *segment_name, char *key, size_t sz);

/* Summarize the segment raw (n bytes) called name and store the summary. A segment that cannot
 * be summarized is only logged (incremental backups then read pages instead): false only when
 * the repository fails. */
bool wal_summary_store(Repo *r, const char *name, const unsigned char *raw, size_t n, Err *err);

/* Does the repository hold the summary of segment name? */
bool wal_summary_stored(Repo *r, const char *name, bool *exists, Err *err);

/* The blocks changed by the WAL of timeline tli from from up to to, put together from the
 * stored summaries; the segments not summarized yet (the one to lies in, usually) are read from
 * data_dir's pg_wal. NULL, with the reason in why, when something in between is missing or
 * unreadable: the caller then compares page LSNs instead. */
WalSummary *wal_changes_between(Repo *r, const char *data_dir, int tli, Lsn from, Lsn to, char *why, size_t why_sz);

#endif
