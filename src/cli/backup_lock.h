/* The cluster's backup lock: pgvigil_backup_running in etcd, on a lease of its own that a thread
 * renews while the command runs, so that one backup (or expiry) runs at a time across the
 * cluster, scheduled or by hand. The agent's scheduled backups take the same key on the agent's
 * lease, then run `backup take --lock-held`. A command that dies leaves the key to expire with
 * its lease (30 s). */
#ifndef PGVIGIL_BACKUP_LOCK_H
#define PGVIGIL_BACKUP_LOCK_H

#include "common/common.h"
#include "config/config.h"

typedef struct BackupLock BackupLock;

/* Take it for what ("backup", "expire"). NULL with *busy when another command holds it (err
 * names who, since when); NULL without when etcd cannot be reached (err says why). */
BackupLock *backup_lock_take(const Config *cfg, const char *what, bool *busy, Err *err);
/* Record b as the cluster's newest complete backup (pgvigil_backup_newest, read by the agents
 * for their metrics), through l's etcd handle, or a new one when l is NULL. A failure is only
 * logged. */
struct BackupInfo;
void backup_record_newest(const Config *cfg, BackupLock *l, const struct BackupInfo *b);
/* Give it back (and stop renewing it). */
void backup_lock_release(BackupLock *l);

#endif
