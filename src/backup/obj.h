/* The stored form of one file in the repository: a fixed header (format version, compression,
 * raw size, checksum of the raw content: backup/checksum.h) followed by the compressed content. Decoding checks all
 * of it, so a truncated, bit-flipped or misnamed object is an error, never wrong data. In an
 * encrypted repository (a cipher, backup/cipher.h) that whole form, header included, is sealed
 * with AES-256-GCM: only a short clear header says so, and the checksum of the content is not
 * visible without the key. A whole file can be encoded as it is read and decoded as it is
 * written (ObjEncoder, ObjDecoder), never all in memory. */
#ifndef PGVIGIL_OBJ_H
#define PGVIGIL_OBJ_H

#include "backup/checksum.h"
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
    ChecksumKind sum_kind;
    unsigned char sum[CHECKSUM_MAX_LEN]; /* checksum_len(sum_kind) bytes, zeros after */
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
/* The same, with the header (its checksum checked against the content) to info when not NULL,
 * so that a file is not hashed twice. */
bool obj_decode_hashed(const ObjCipher *c, const void *stored, size_t n, void **raw, size_t *raw_n,
                       ObjInfo *info, Err *err);

/* An object written as its content comes: begin, feed (as often as needed), finish. One encoder
 * per worker, reused from one object to the next. */
typedef struct ObjEncoder ObjEncoder;
ObjEncoder *obj_encoder_new(void);
void obj_encoder_free(ObjEncoder *e);
bool obj_encoder_begin(ObjEncoder *e, const ObjCipher *c, CompressKind k, int level, Err *err);
bool obj_encoder_feed(ObjEncoder *e, const void *raw, size_t n, Err *err);
/* The stored form (*out, owned by e until its next begin) and the content's checksum. */
bool obj_encoder_finish(ObjEncoder *e, const void **out, size_t *out_n, ChecksumKind *kind,
                        unsigned char sum[CHECKSUM_MAX_LEN], Err *err);

/* An object read out in pieces: begin on the stored form (kept by the caller until the end;
 * the header is checked, an encrypted object is authenticated and decrypted whole, which is
 * its compressed size), then read until *got is 0: by then the size and the checksum of
 * everything read were checked, and the last read fails when they are wrong (so a caller that
 * writes the pieces somewhere must treat that place as damaged on failure). */
typedef struct ObjDecoder ObjDecoder;
ObjDecoder *obj_decoder_new(void);
void obj_decoder_free(ObjDecoder *d);
bool obj_decoder_begin(ObjDecoder *d, const ObjCipher *c, const void *stored, size_t n, ObjInfo *info, Err *err);
bool obj_decoder_read(ObjDecoder *d, void *buf, size_t cap, size_t *got, Err *err);

void hex_encode(const unsigned char *p, size_t n, char *out); /* out: 2n + 1 */

#endif
