/* Base backups and restores. A backup copies the data directory of a running server between
 * pg_backup_start and pg_backup_stop (non-exclusive, one session), file by file, in parallel,
 * each file stored as a checked object under backup/<label>/data/; its manifest (manifest.h) is
 * written last, so a backup without a manifest is never listed or restored. The WAL it needs
 * comes from the archive.
 *
 * Full backups store every file. Incremental ones (on the newest backup) and differential ones
 * (on the newest full one) store only what changed since the backup they build on started: an
 * unchanged file is a reference; of a relation file, only the changed 8 kB blocks are stored. The
 * WAL summaries the archive keeps (wal_summary.h) name those blocks, so only they are read; when
 * the summaries do not cover the interval, every file is read and a block counts as changed when
 * its page LSN is at or after that start (or it is new, or has no LSN yet). A page changed during
 * the backup is made right by replaying the WAL from this backup's start, as for a full backup.
 *
 * A restore puts each file together from the backup and those it builds on, checked, into an
 * empty directory, and sets PostgreSQL up to recover from the archive (wal-fetch) to the end or
 * to a target. */
#ifndef PGVIGIL_BASE_BACKUP_H
#define PGVIGIL_BASE_BACKUP_H

#include "backup/compress.h"
#include "backup/repo.h"
#include "common/lsn.h"
#include "config/config.h"

typedef struct BackupInfo {
    char label[40];          /* 20261205T020300F */
    char type[16];           /* "full", "incr", "diff" */
    char reference[40];      /* the backup it builds on ("" for a full one) */
    Lsn start_lsn, stop_lsn;
    int timeline;
    char start_time[32], stop_time[32];   /* ISO 8601, UTC */
    double seconds;
    int64_t files, bytes, stored;         /* data files, their size, stored size */
    int64_t read_bytes;                   /* read from the data directory */
    char changes_from[16];                /* incremental, differential: "wal-summaries" or "page-lsns" */
    char sysid[32];
    bool checksums_checked;               /* data checksums on: relation file pages were checked */
    int64_t checksum_errors;              /* pages whose checksum failed (copied as they were) */
} BackupInfo;

typedef struct BackupOptions {
    const char *type;        /* "full" (default), "incr" or "diff"; with no backup to build on, full */
    CompressKind compress;
    int level;
    int workers;
} BackupOptions;

/* Take a full backup of the server cfg describes (connects as its superuser). */
bool backup_take(const Config *cfg, Repo *r, const BackupOptions *o, BackupInfo *out, Err *err);
/* Complete backups (those with a manifest), oldest first. */
bool backup_list(Repo *r, BackupInfo **out, int *n, Err *err);

typedef struct RestoreOptions {
    const char *label;          /* NULL: the newest backup (ended before target_time or target_lsn
                                 * when one is set) */
    const char *target_dir;     /* must be empty or missing */
    const char *target_time;    /* recovery_target_time ("2026-12-05 02:03:00+00"), or NULL */
    const char *target_lsn;     /* recovery_target_lsn, or NULL */
    const char *target_xid;     /* recovery_target_xid, or NULL */
    const char *target_name;    /* recovery_target_name (a restore point), or NULL */
    bool exclusive;             /* stop just before the target instead of just after */
    bool delta;                 /* target_dir may be this cluster's stopped data directory: only
                                 * what differs from the backup is written, what the backup does
                                 * not have is removed, and pg_wal is emptied */
    bool by_agent;              /* delta by the node's own agent, which stopped postgres: neither its
                                 * lock nor WAL never archived (a diverged primary's, which its
                                 * divergence report kept) stops it */
    const char *wal_fetch_cmd;  /* the restore_command prefix: "/usr/bin/pgvigil wal-fetch -c /etc/n.yml" */
    bool files_only;            /* the files and backup_label only: the caller sets recovery up (the
                                 * agent, in the configuration it owns) */
    int workers;
} RestoreOptions;

typedef struct RestoreCounts {
    int written;                /* files written from the repository */
    int kept;                   /* delta: files already as the backup has them */
    int removed;                /* delta: files the backup does not have */
    int patched;                /* delta: of those written, files rewritten only in the regions
                                   that differed (region_checksums) */
    int64_t patched_bytes;      /* what those rewrites wrote */
    int64_t written_bytes;      /* what was written in all (files written whole, and patches) */
} RestoreCounts;

bool backup_restore(const Config *cfg, Repo *r, const RestoreOptions *o, BackupInfo *used, RestoreCounts *counts,
                    Err *err);

#endif
