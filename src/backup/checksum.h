/* Content checksums of what the repository stores: XXH3-128 (xxh128) for everything written now,
 * SHA-256 for objects and manifests written before (still read and checked).
 *
 * Why not SHA-256 everywhere: hashing is the largest cost of a backup after compression (SHA-256
 * runs at about 1 GB/s per core even with the CPU's SHA extensions, XXH3 at over 5 GB/s), and
 * what the checksum guards against is damage (bit rot, truncation, a wrong or half-written file),
 * which a 128-bit hash catches as surely. PostgreSQL's own backup manifests default to CRC-32C
 * for the same reason. Against someone who can rewrite the repository, a digest next to the data
 * proves nothing anyway (they rewrite the manifest too): that is what an encrypted repository's
 * AES-256-GCM tags are for. */
#ifndef PGVIGIL_CHECKSUM_H
#define PGVIGIL_CHECKSUM_H

#include "common/common.h"

typedef enum {
    CHECKSUM_SHA256 = 0, /* the value 0: objects from before the header said */
    CHECKSUM_XXH128 = 1,
} ChecksumKind;

#define CHECKSUM_NEW CHECKSUM_XXH128 /* what new objects and backups use */
#define CHECKSUM_MAX_LEN 32
#define CHECKSUM_HEX_LEN (2 * CHECKSUM_MAX_LEN + 1)

/* "sha256", "xxh128" */
const char *checksum_kind_name(ChecksumKind k);
bool checksum_kind_parse(const char *name, ChecksumKind *out);
/* bytes of the checksum (32 or 16); 0 for an unknown kind */
size_t checksum_len(ChecksumKind k);

/* The kind of a hex checksum, by its length; false for anything else. */
bool checksum_kind_of_hex(const char *hex, ChecksumKind *out);

/* A running checksum: init, update as often as needed, final. */
typedef struct Checksum {
    ChecksumKind kind;
    void *state; /* EVP_MD_CTX or XXH3_state_t */
} Checksum;

void checksum_init(Checksum *c, ChecksumKind k);
void checksum_update(Checksum *c, const void *p, size_t n);
/* out: CHECKSUM_MAX_LEN bytes, the unused tail zeroed; frees the state */
void checksum_final(Checksum *c, unsigned char out[CHECKSUM_MAX_LEN]);
void checksum_buf(ChecksumKind k, const void *p, size_t n, unsigned char out[CHECKSUM_MAX_LEN]);
/* the checksum as lower-case hex (checksum_len(k) * 2 characters) */
void checksum_hex(ChecksumKind k, const unsigned char sum[CHECKSUM_MAX_LEN], char out[CHECKSUM_HEX_LEN]);

/* Per-region checksums of a large file, for a manifest: XXH3-64 of each CHECKSUM_REGION bytes
 * (the last region shorter), written as 16 hex digits each, one after the other. A delta
 * restore compares a local file region by region with them and rewrites only what differs. */
#define CHECKSUM_REGION ((size_t)1 << 20)
#define CHECKSUM_REGION_HEX 16
/* out: CHECKSUM_REGION_HEX + 1 */
void checksum_region_hex(const void *p, size_t n, char *out);

#endif
