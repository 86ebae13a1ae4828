/* WAL files in the repository: what the archive stores for each segment, timeline history file,
 * partial segment and backup history file PostgreSQL hands it, and how restore gets them back.
 * Keys: "wal/<timeline>/<file name>", the timeline being the name's first 8 hex digits. */
#ifndef PGVIGIL_WAL_ARCHIVE_H
#define PGVIGIL_WAL_ARCHIVE_H

#include "backup/compress.h"
#include "backup/repo.h"

typedef enum {
    WALFILE_NONE = 0,
    WALFILE_SEGMENT,   /* 000000010000000000000003 */
    WALFILE_PARTIAL,   /* 000000010000000000000003.partial (an old primary's last segment) */
    WALFILE_HISTORY,   /* 00000002.history */
    WALFILE_BACKUP,    /* 000000010000000000000003.00000028.backup */
} WalFileKind;

/* What kind of WAL file a name is (WALFILE_NONE: not one PostgreSQL archives). */
WalFileKind wal_file_kind(const char *name);
/* The repository key of a WAL file name; false for a name that is not one. */
bool wal_file_key(const char *name, char *key, size_t sz);

/* Read a WAL file of the server (malloc'd, NUL-terminated). The agent runs as root and the path
 * comes from the server's user: no link is followed, only a regular file (of that user, when one
 * is set) no larger than a WAL segment can be (1 GB) is read, and a FIFO cannot block. */
char *wal_file_read(const char *path, size_t *n, Err *err);

/* What a thread that pushes one WAL file after another keeps from one to the next: a read
 * buffer and an encoder (no fresh 16 MB buffers per segment). */
typedef struct WalPushBuffers WalPushBuffers;
WalPushBuffers *wal_push_buffers_new(void);
void wal_push_buffers_free(WalPushBuffers *b);

typedef struct WalPushResult {
    bool already;         /* an identical copy was stored before (PostgreSQL retried) */
    size_t raw_size, stored_size;
} WalPushResult;

/* Store the WAL file at path under its name: hashed, compressed, durable before it returns
 * true. A file stored before with the same content is fine (a retry, or a standby's copy of what
 * the primary stored); with other content nothing is replaced, and it is an error, except for a
 * standby's copy (standby: the server is in recovery), which is then only logged. */
bool wal_push(Repo *r, CompressKind k, int level, const char *path, const char *name, bool standby, WalPushResult *res,
              Err *err);
/* The same with a pushing thread's buffers (NULL: allocated for this push). */
bool wal_push_with(Repo *r, CompressKind k, int level, const char *path, const char *name, bool standby,
                   WalPushBuffers *b, WalPushResult *res, Err *err);
/* Restore the WAL file called name into dest (written whole, then renamed). *missing when
 * the repository has no such file (not an error for restore_command: the end of the archive);
 * *damaged when the stored copy fails its checks (nothing is written then). */
bool wal_fetch(Repo *r, const char *name, const char *dest, bool *missing, bool *damaged, Err *err);
/* The history file of timeline tli (> 1) from the repository, as text (malloc'd); *missing (and
 * false) when the repository has none. */
bool wal_history_read(Repo *r, int tli, char **text, bool *missing, Err *err);

#endif
