/* PostgreSQL 15's control file, read and patched for a rewind (see control_file.h). */
#include "rewind/control_file.h"

#include <string.h>
#include <time.h>

/* byte offsets in PostgreSQL 15's ControlFileData (64-bit) */
#define OFF_SYSID 0
#define OFF_VERSION 8
#define OFF_STATE 16
#define OFF_CHECKPOINT 32
#define OFF_REDO 40
#define OFF_TLI 48
#define OFF_MIN_RECOVERY 136
#define OFF_MIN_RECOVERY_TLI 144
#define OFF_WAL_LOG_HINTS 176
#define OFF_BLCKSZ 216
#define OFF_RELSEG_SIZE 220
#define OFF_SEG_SIZE 228
#define OFF_CHECKSUM_VERSION 252
#define OFF_CRC 288

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t crc32c(const void *data, size_t n)
{
    if (!crc_table[1])
        crc_init();
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

bool control_parse(const unsigned char *img, size_t n, ControlFields *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    if (n < OFF_CRC + 4) {
        err_set(err, "control file too short (%zu bytes)", n);
        return false;
    }
    if (get32(img + OFF_VERSION) != PG15_CONTROL_VERSION) {
        err_set(err, "control file version %u, not PostgreSQL 15's %u", get32(img + OFF_VERSION), PG15_CONTROL_VERSION);
        return false;
    }
    if (crc32c(img, OFF_CRC) != get32(img + OFF_CRC)) {
        err_set(err, "control file checksum does not match");
        return false;
    }
    if (get32(img + OFF_BLCKSZ) != 8192) {
        err_set(err, "control file: block size %u, not 8192", get32(img + OFF_BLCKSZ));
        return false;
    }
    if (get32(img + OFF_RELSEG_SIZE) != 131072) {
        err_set(err, "control file: relation segments of %u blocks, not 131072", get32(img + OFF_RELSEG_SIZE));
        return false;
    }
    out->system_identifier = get64(img + OFF_SYSID);
    out->state = get32(img + OFF_STATE);
    out->checkpoint = get64(img + OFF_CHECKPOINT);
    out->redo = get64(img + OFF_REDO);
    out->timeline = get32(img + OFF_TLI);
    out->min_recovery_point = get64(img + OFF_MIN_RECOVERY);
    out->min_recovery_tli = get32(img + OFF_MIN_RECOVERY_TLI);
    out->wal_log_hints = img[OFF_WAL_LOG_HINTS] != 0;
    out->wal_segment_size = get32(img + OFF_SEG_SIZE);
    out->data_checksum_version = get32(img + OFF_CHECKSUM_VERSION);
    if (out->wal_segment_size < (1u << 20) || (out->wal_segment_size & (out->wal_segment_size - 1))) {
        err_set(err, "control file: WAL segment size %u is not a power of two of at least 1 MB", out->wal_segment_size);
        return false;
    }
    return true;
}

bool control_patch_for_rewind(unsigned char *img, size_t n, Lsn min_recovery, uint32_t tli, Err *err)
{
    ControlFields f;
    if (!control_parse(img, n, &f, err))
        return false;
    put32(img + OFF_STATE, PGC_STATE_IN_ARCHIVE_RECOVERY);
    put64(img + OFF_MIN_RECOVERY, min_recovery);
    put32(img + OFF_MIN_RECOVERY_TLI, tli);
    put32(img + OFF_CRC, crc32c(img, OFF_CRC));
    return true;
}

void control_backup_label(Lsn redo, Lsn checkpoint, uint32_t tli, uint32_t wal_segment_size, char *buf, size_t sz)
{
    char r[LSN_BUFSZ], c[LSN_BUFSZ], when[64];
    uint64_t segno = redo / wal_segment_size, per_xlogid = 0x100000000ULL / wal_segment_size;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
    str_fmt(buf, sz,
            "START WAL LOCATION: %s (file %08X%08X%08X)\n"
            "CHECKPOINT LOCATION: %s\n"
            "BACKUP METHOD: pgvigil_rewind\n"
            "BACKUP FROM: standby\n"
            "START TIME: %s\n"
            "START TIMELINE: %u\n",
            lsn_format(redo, r), tli, (unsigned)(segno / per_xlogid), (unsigned)(segno % per_xlogid),
            lsn_format(checkpoint, c), when, tli);
}
