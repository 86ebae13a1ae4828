/* Stored object header, little-endian:
 *   0  magic "PGVOBJ01"      8
 *   8  compression           1   (CompressKind)
 *   9  cipher                1   (0: none)
 *  10  reserved              2
 *  12  header length         4   (56)
 *  16  raw size              8
 *  24  SHA-256 of raw       32
 * An encrypted object (cipher 1: AES-256-GCM) is that whole form sealed, behind a clear header:
 *   0  magic "PGVOBJ01"      8
 *   8  compression           1   (0: the real one is inside)
 *   9  cipher                1   (1)
 *  10  reserved              2
 *  12  header length         4   (16)
 *  16  nonce                12
 *  28  the object above, encrypted
 * n-16 tag                  16   (over the clear header too)
 */
#include "backup/obj.h"

#include <openssl/evp.h>

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void sha256_buf(const void *p, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

void hex_encode(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

bool obj_encode(const ObjCipher *c, CompressKind k, int level, const void *raw, size_t n, void **out, size_t *out_n,
                Err *err)
{
    return obj_encode_hashed(c, k, level, raw, n, NULL, out, out_n, err);
}

bool obj_encode_hashed(const ObjCipher *c, CompressKind k, int level, const void *raw, size_t n,
                       const unsigned char *sha256, void **out, size_t *out_n, Err *err)
{
    void *body = NULL;
    size_t body_n = 0;
    if (!compress_buf(k, level, raw, n, &body, &body_n, err))
        return false;
    /* encrypted: the plain form is built where its ciphertext goes, and sealed in place */
    size_t pre = c ? OBJ_SEALED_HEADER_LEN + CIPHER_NONCE_LEN : 0;
    size_t plain_n = OBJ_HEADER_LEN + body_n;
    size_t total = pre + plain_n + (c ? CIPHER_TAG_LEN : 0);
    unsigned char *buf = xmalloc(total);
    unsigned char *p = buf + pre;
    memset(p, 0, OBJ_HEADER_LEN);
    memcpy(p, OBJ_MAGIC, 8);
    p[8] = (unsigned char)k;
    p[9] = 0;
    put_u32(p + 12, OBJ_HEADER_LEN);
    put_u64(p + 16, (uint64_t)n);
    if (sha256)
        memcpy(p + 24, sha256, 32);
    else
        sha256_buf(raw, n, p + 24);
    memcpy(p + OBJ_HEADER_LEN, body, body_n);
    free(body);
    if (c) {
        memset(buf, 0, OBJ_SEALED_HEADER_LEN);
        memcpy(buf, OBJ_MAGIC, 8);
        buf[9] = OBJ_CIPHER_AES256GCM;
        put_u32(buf + 12, OBJ_SEALED_HEADER_LEN);
        if (!cipher_seal(c, buf, OBJ_SEALED_HEADER_LEN, p, plain_n, buf + OBJ_SEALED_HEADER_LEN, err)) {
            free(buf);
            return false;
        }
    }
    *out = buf;
    *out_n = total;
    return true;
}

/* The plain form of a stored object: stored itself (*owned NULL), or, encrypted, decrypted and
 * authenticated into *owned. */
static bool unseal(const ObjCipher *c, const void *stored, size_t n, const unsigned char **plain, size_t *plain_n,
                   unsigned char **owned, Err *err)
{
    const unsigned char *p = stored;
    *owned = NULL;
    if (n < OBJ_SEALED_HEADER_LEN || memcmp(p, OBJ_MAGIC, 8) != 0) {
        err_set(err, "not a pgvigil object (%s)", n < OBJ_SEALED_HEADER_LEN ? "too short" : "bad magic");
        return false;
    }
    if (p[9] == 0) {
        if (c) {
            err_set(err, "not encrypted, in an encrypted repository: refused (this repository's key did not write it)");
            return false;
        }
        *plain = p;
        *plain_n = n;
        return true;
    }
    if (p[9] != OBJ_CIPHER_AES256GCM || get_u32(p + 12) != OBJ_SEALED_HEADER_LEN || p[8] != 0) {
        err_set(err, "unsupported object format (header length %u, compression %u, cipher %u)", get_u32(p + 12), p[8],
                p[9]);
        return false;
    }
    if (!c) {
        err_set(err, "encrypted (aes-256-gcm), and backup.encryption is not set");
        return false;
    }
    if (n < OBJ_SEALED_HEADER_LEN + CIPHER_OVERHEAD) {
        err_set(err, "not a pgvigil object (too short)");
        return false;
    }
    size_t on = n - OBJ_SEALED_HEADER_LEN - CIPHER_OVERHEAD;
    unsigned char *out = xmalloc(on ? on : 1);
    if (!cipher_open(c, p, OBJ_SEALED_HEADER_LEN, p + OBJ_SEALED_HEADER_LEN, n - OBJ_SEALED_HEADER_LEN, out, err)) {
        free(out);
        return false;
    }
    *owned = out;
    *plain = out;
    *plain_n = on;
    return true;
}

static bool plain_header(const unsigned char *p, size_t n, ObjInfo *info, Err *err)
{
    if (n < OBJ_HEADER_LEN || memcmp(p, OBJ_MAGIC, 8) != 0) {
        err_set(err, "not a pgvigil object (%s)", n < OBJ_HEADER_LEN ? "too short" : "bad magic");
        return false;
    }
    if (get_u32(p + 12) != OBJ_HEADER_LEN || p[9] != 0 || p[8] > COMPRESS_GZIP) {
        err_set(err, "unsupported object format (header length %u, compression %u, cipher %u)", get_u32(p + 12),
                p[8], p[9]);
        return false;
    }
    info->compress = (CompressKind)p[8];
    info->raw_size = get_u64(p + 16);
    memcpy(info->sha256, p + 24, 32);
    return true;
}

bool obj_read_header(const ObjCipher *c, const void *stored, size_t n, ObjInfo *info, Err *err)
{
    const unsigned char *p = NULL;
    size_t pn = 0;
    unsigned char *owned = NULL;
    bool ok = unseal(c, stored, n, &p, &pn, &owned, err) && plain_header(p, pn, info, err);
    free(owned);
    return ok;
}

bool obj_decode(const ObjCipher *c, const void *stored, size_t n, void **raw, size_t *raw_n, Err *err)
{
    return obj_decode_hashed(c, stored, n, raw, raw_n, NULL, err);
}

bool obj_decode_hashed(const ObjCipher *c, const void *stored, size_t n, void **raw, size_t *raw_n,
                       unsigned char *sha256, Err *err)
{
    const unsigned char *p = NULL;
    size_t pn = 0;
    unsigned char *owned = NULL;
    ObjInfo info;
    if (!unseal(c, stored, n, &p, &pn, &owned, err) || !plain_header(p, pn, &info, err)) {
        free(owned);
        return false;
    }
    if (info.raw_size > (uint64_t)1 << 34) {
        err_set(err, "corrupt object header (raw size %llu)", (unsigned long long)info.raw_size);
        free(owned);
        return false;
    }
    void *out = NULL;
    bool ok = decompress_buf(info.compress, p + OBJ_HEADER_LEN, pn - OBJ_HEADER_LEN, (size_t)info.raw_size, &out, err);
    free(owned);
    if (!ok)
        return false;
    unsigned char sum[32];
    sha256_buf(out, (size_t)info.raw_size, sum);
    if (memcmp(sum, info.sha256, 32) != 0) {
        free(out);
        err_set(err, "checksum mismatch (content does not match its SHA-256)");
        return false;
    }
    if (sha256)
        memcpy(sha256, sum, 32);
    *raw = out;
    *raw_n = (size_t)info.raw_size;
    return true;
}
