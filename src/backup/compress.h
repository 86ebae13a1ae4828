/* Compression of what the repository stores: zstd (the default), lz4, gzip or none, on whole
 * buffers (a WAL segment, a block run of a data file). */
#ifndef PGVIGIL_COMPRESS_H
#define PGVIGIL_COMPRESS_H

#include "common/common.h"

typedef enum {
    COMPRESS_NONE = 0,
    COMPRESS_ZSTD = 1,
    COMPRESS_LZ4 = 2,
    COMPRESS_GZIP = 3,
} CompressKind;

/* "zstd", "lz4", "gzip", "none"; false for anything else */
bool compress_kind_parse(const char *name, CompressKind *out);
const char *compress_kind_name(CompressKind k);
/* The level a kind uses when none is set, and the range it accepts. */
int compress_default_level(CompressKind k);
bool compress_level_ok(CompressKind k, int level);

/* Compress n bytes into a malloc'd buffer (*out, *out_n). */
bool compress_buf(CompressKind k, int level, const void *in, size_t n, void **out, size_t *out_n, Err *err);
/* Decompress into a malloc'd buffer that must come out exactly raw_n bytes long (the size
 * recorded when it was stored): anything else is corruption. */
bool decompress_buf(CompressKind k, const void *in, size_t n, size_t raw_n, void **out, Err *err);

#endif
