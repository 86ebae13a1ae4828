/* The stored form of one file in the repository: a fixed header (format version, compression,
 * raw size, SHA-256 of the raw content) followed by the compressed content. Decoding checks all
 * of it, so a truncated, bit-flipped or misnamed object is an error, never wrong data. */
#ifndef PGVIGIL_OBJ_H
#define PGVIGIL_OBJ_H

#include "backup/compress.h"
#include "common/common.h"

#define OBJ_MAGIC "PGVOBJ01"
#define OBJ_HEADER_LEN 56

typedef struct ObjInfo {
    CompressKind compress;
    uint64_t raw_size;
    unsigned char sha256[32];
} ObjInfo;

/* raw -> stored (malloc'd *out) */
bool obj_encode(CompressKind k, int level, const void *raw, size_t n, void **out, size_t *out_n, Err *err);
/* The header alone (what verify and duplicate checks need). */
bool obj_read_header(const void *stored, size_t n, ObjInfo *info, Err *err);
/* stored -> raw (malloc'd *raw), hash and size checked */
bool obj_decode(const void *stored, size_t n, void **raw, size_t *raw_n, Err *err);

void sha256_buf(const void *p, size_t n, unsigned char out[32]);
void hex_encode(const unsigned char *p, size_t n, char *out); /* out: 2n + 1 */

#endif
