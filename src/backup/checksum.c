/* XXH3-128 from Debian's libxxhash, SHA-256 from OpenSSL. */
#include "backup/checksum.h"

#include "backup/obj.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <xxhash.h>

static const char *const names[] = {"sha256", "xxh128"};

static void *state_or_die(void *p)
{
    if (!p) {
        fputs("pgvigil: out of memory\n", stderr);
        abort();
    }
    return p;
}

const char *checksum_kind_name(ChecksumKind k)
{
    return (size_t)k < ARRAY_LEN(names) ? names[k] : "unknown";
}

bool checksum_kind_parse(const char *name, ChecksumKind *out)
{
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (name && strcmp(name, names[i]) == 0) {
            *out = (ChecksumKind)i;
            return true;
        }
    return false;
}

size_t checksum_len(ChecksumKind k)
{
    switch (k) {
    case CHECKSUM_SHA256:
        return 32;
    case CHECKSUM_XXH128:
        return 16;
    }
    return 0;
}

bool checksum_kind_of_hex(const char *hex, ChecksumKind *out)
{
    size_t n = hex ? strlen(hex) : 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)hex[i]))
            return false;
    for (size_t k = 0; k < ARRAY_LEN(names); k++)
        if (n > 0 && n == 2 * checksum_len((ChecksumKind)k)) {
            *out = (ChecksumKind)k;
            return true;
        }
    return false;
}

void checksum_init(Checksum *c, ChecksumKind k)
{
    c->kind = k;
    if (k == CHECKSUM_XXH128) {
        XXH3_state_t *s = state_or_die(XXH3_createState());
        XXH3_128bits_reset(s);
        c->state = s;
    } else {
        EVP_MD_CTX *m = state_or_die(EVP_MD_CTX_new());
        if (EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1)
            state_or_die(NULL);
        c->state = m;
    }
}

void checksum_update(Checksum *c, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (c->kind == CHECKSUM_XXH128)
        XXH3_128bits_update(c->state, p, n);
    else
        EVP_DigestUpdate(c->state, p, n);
}

void checksum_final(Checksum *c, unsigned char out[CHECKSUM_MAX_LEN])
{
    memset(out, 0, CHECKSUM_MAX_LEN);
    if (c->kind == CHECKSUM_XXH128) {
        XXH128_canonical_t canon;
        XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(c->state));
        memcpy(out, canon.digest, sizeof(canon.digest));
        XXH3_freeState(c->state);
    } else {
        unsigned int len = CHECKSUM_MAX_LEN;
        EVP_DigestFinal_ex(c->state, out, &len);
        EVP_MD_CTX_free(c->state);
    }
    c->state = NULL;
}

void checksum_buf(ChecksumKind k, const void *p, size_t n, unsigned char out[CHECKSUM_MAX_LEN])
{
    memset(out, 0, CHECKSUM_MAX_LEN);
    if (k == CHECKSUM_XXH128) {
        XXH128_canonical_t canon;
        XXH128_canonicalFromHash(&canon, XXH3_128bits(p, n));
        memcpy(out, canon.digest, sizeof(canon.digest));
    } else {
        unsigned int len = CHECKSUM_MAX_LEN;
        EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
    }
}

void checksum_hex(ChecksumKind k, const unsigned char sum[CHECKSUM_MAX_LEN], char out[CHECKSUM_HEX_LEN])
{
    hex_encode(sum, checksum_len(k), out);
}

void checksum_region_hex(const void *p, size_t n, char *out)
{
    XXH64_canonical_t canon; /* big-endian: the hash's digits, most significant first */
    XXH64_canonicalFromHash(&canon, XXH3_64bits(p, n));
    hex_encode(canon.digest, sizeof(canon.digest), out);
}
