/* PostgreSQL 15's control file (global/pg_control), read and patched for a rewound data
 * directory, and the backup_label that sends its recovery back to a checkpoint before the fork.
 *
 * Only the fields a rewind needs are read, at their PostgreSQL 15 offsets on a 64-bit
 * little-endian machine (pg_control_version 1300); anything else is refused, and the rewind
 * checks the written file with pg_controldata before relying on it. */
#ifndef PGVIGIL_REWIND_CONTROL_FILE_H
#define PGVIGIL_REWIND_CONTROL_FILE_H

#include "common/common.h"
#include "common/lsn.h"

#include <stdint.h>

#define PG_CONTROL_FILE_BYTES 8192
#define PG15_CONTROL_VERSION 1300u

/* PostgreSQL's DBState values */
enum {
    PGC_STATE_SHUT_DOWN = 1,
    PGC_STATE_SHUT_DOWN_IN_RECOVERY = 2,
    PGC_STATE_IN_ARCHIVE_RECOVERY = 5,
    PGC_STATE_IN_PRODUCTION = 6,
};

typedef struct ControlFields {
    uint64_t system_identifier;
    uint32_t state;
    Lsn checkpoint;            /* the latest checkpoint record */
    Lsn redo;                  /* its redo point */
    uint32_t timeline;         /* its timeline */
    Lsn min_recovery_point;
    uint32_t min_recovery_tli;
    bool wal_log_hints;
    uint32_t data_checksum_version;
    uint32_t wal_segment_size;
} ControlFields;

/* CRC-32C (Castagnoli), as PostgreSQL checks its control file and WAL records. */
uint32_t crc32c(const void *data, size_t n);

/* The fields of a control file image (at least PG15_CONTROL_BYTES long); false with err when it
 * is not a PostgreSQL 15 control file or its checksum does not match. */
bool control_parse(const unsigned char *img, size_t n, ControlFields *out, Err *err);

/* Make a source's control file image that of a rewound directory: in archive recovery, which
 * must replay at least up to min_recovery (on timeline tli) before it is consistent. */
bool control_patch_for_rewind(unsigned char *img, size_t n, Lsn min_recovery, uint32_t tli, Err *err);

/* The backup_label of a rewound directory: replay from the checkpoint at checkpoint (redo
 * point redo, timeline tli); "BACKUP FROM: standby" makes the control file's minimum recovery
 * point its end. */
void control_backup_label(Lsn redo, Lsn checkpoint, uint32_t tli, uint32_t wal_segment_size, char *buf, size_t sz);

#endif
