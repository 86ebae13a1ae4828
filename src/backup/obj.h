/* The stored form of one file in the repository: a fixed header (format version, compression,
 * raw size, SHA-256 of the raw content) followed by the compressed content. Decoding checks all
 * of it, so a truncated, bit-flipped or misnamed object is an error, never wrong data. In an
 * encrypted repository (a cipher, backup/cipher.h) that whole form, header included, is sealed
 * with AES-256-GCM: only a short clear header says so, and the SHA-256 of the content is not
 * visible without the key. */
#ifndef PGVIGIL_OBJ_H
#define PGVIGIL_OBJ_H

#include "backup/cipher.h"
#include "backup/compress.h"
#include "common/common.h"

#define OBJ_MAGIC "PGVOBJ01"
#define OBJ_HEADER_LEN 56
#define OBJ_SEALED_HEADER_LEN 16     /* the clear header of an encrypted object */
#define OBJ_CIPHER_AES256GCM 1

typedef struct ObjInfo {
    CompressKind compress;
    uint64_t raw_size;
    unsigned char sha256[32];
} ObjInfo;

/* c: the repository's cipher (Repo.cipher), NULL when it is not encrypted. With one, only objects
 * it encrypted are accepted; without, no encrypted object is. */
/* raw -> stored (malloc'd *out) */
bool obj_encode(const ObjCipher *c, CompressKind k, int level, const void *raw, size_t n, void **out, size_t *out_n,
                Err *err);
/* The header (what duplicate checks need). An encrypted object is decrypted and authenticated
 * whole for it. */
bool obj_read_header(const ObjCipher *c, const void *stored, size_t n, ObjInfo *info, Err *err);
/* stored -> raw (malloc'd *raw), hash and size checked */
bool obj_decode(const ObjCipher *c, const void *stored, size_t n, void **raw, size_t *raw_n, Err *err);
/* The same, with the SHA-256 of raw known already (encode: the caller hashed it; NULL: hashed
 * here) or wanted (decode: the checked hash goes to sha256 when not NULL), so that a file is
 * hashed once. */
bool obj_encode_hashed(const ObjCipher *c, CompressKind k, int level, const void *raw, size_t n,
                       const unsigned char *sha256, void **out, size_t *out_n, Err *err);
bool obj_decode_hashed(const ObjCipher *c, const void *stored, size_t n, void **raw, size_t *raw_n,
                       unsigned char *sha256, Err *err);

void sha256_buf(const void *p, size_t n, unsigned char out[32]);
void hex_encode(const unsigned char *p, size_t n, char *out); /* out: 2n + 1 */

#endif
