/* The agent's WAL archive service: it answers the pgvigil_archive server module (pgext/archive)
 * on a Unix socket, one request per WAL file ("ARCHIVE <name> <path>" -> "OK" / "ERR <why>"), and
 * replies OK only once the file is stored in the repository, hashed and durable. Worker threads
 * push in parallel, ahead of the requests: every file PostgreSQL has marked ready
 * (pg_wal/archive_status/<name>.ready) is queued, so under a heavy write load the archiver's next
 * request usually finds its file stored already. Runs apart from the HA loop; a slow or full
 * repository delays archiving, never a lease renewal. */
#ifndef PGVIGIL_ARCHIVE_SERVICE_H
#define PGVIGIL_ARCHIVE_SERVICE_H

#include "backup/compress.h"
#include "backup/repo.h"

#include <stdint.h>

typedef struct ArchiveService ArchiveService;

typedef struct ArchiveServiceConfig {
    const char *socket_path;   /* where the module connects */
    const char *data_dir;      /* the server's data directory (pg_wal inside) */
    Repo *repo;                /* taken over by the service; repo_open_driver's (the first push reads
                                  its cipher settings with the next two) */
    const char *encryption;    /* backup.encryption (NULL: none) */
    const char *encryption_key_file; /* backup.encryption_key_file (NULL: $PGVIGIL_BACKUP_KEY) */
    CompressKind compress;
    int level;
    int workers;               /* parallel pushes, >= 1 */
} ArchiveServiceConfig;

typedef struct ArchiveStats {
    uint64_t archived;         /* files stored (or found stored) since the start */
    uint64_t failures;         /* pushes that failed */
    uint64_t bytes_raw, bytes_stored;
    double last_archived_at;   /* wall clock of the last success, 0 none */
    char last_archived[64];    /* its name */
    char last_error[256];      /* the last failure ("" after a success) */
} ArchiveStats;

/* Bind the socket (owned by the server's user, mode 0600) and start the threads. */
ArchiveService *archive_service_start(const ArchiveServiceConfig *c, Err *err);
void archive_service_stats(ArchiveService *s, ArchiveStats *out);
/* How many WAL files of the server in data_dir wait to be archived (pg_wal/archive_status/
 * *.ready): the archive's backlog. With the primary's current position wal_lsn (0 unknown),
 * *lag_bytes (may be NULL) gets how much of its WAL is not in the repository yet: from the
 * start of the oldest segment waiting (or of the segment being written) to wal_lsn; -1 unknown. */
int archive_backlog(const char *data_dir, uint64_t wal_lsn, int64_t *lag_bytes);
/* Stop the threads (a push under way finishes first) and remove the socket. */
void archive_service_stop(ArchiveService *s);

#endif
