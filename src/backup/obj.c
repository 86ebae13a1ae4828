/* Stored object header, little-endian:
 *   0  magic "PGVOBJ01"      8
 *   8  compression           1   (CompressKind)
 *   9  cipher                1   (0: none)
 *  10  reserved              2
 *  12  header length         4   (56)
 *  16  raw size              8
 *  24  SHA-256 of raw       32
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

bool obj_encode(CompressKind k, int level, const void *raw, size_t n, void **out, size_t *out_n, Err *err)
{
    void *body = NULL;
    size_t body_n = 0;
    if (!compress_buf(k, level, raw, n, &body, &body_n, err))
        return false;
    unsigned char *buf = xmalloc(OBJ_HEADER_LEN + body_n);
    memset(buf, 0, OBJ_HEADER_LEN);
    memcpy(buf, OBJ_MAGIC, 8);
    buf[8] = (unsigned char)k;
    buf[9] = 0;
    put_u32(buf + 12, OBJ_HEADER_LEN);
    put_u64(buf + 16, (uint64_t)n);
    sha256_buf(raw, n, buf + 24);
    memcpy(buf + OBJ_HEADER_LEN, body, body_n);
    free(body);
    *out = buf;
    *out_n = OBJ_HEADER_LEN + body_n;
    return true;
}

bool obj_read_header(const void *stored, size_t n, ObjInfo *info, Err *err)
{
    const unsigned char *p = stored;
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

bool obj_decode(const void *stored, size_t n, void **raw, size_t *raw_n, Err *err)
{
    ObjInfo info;
    if (!obj_read_header(stored, n, &info, err))
        return false;
    if (info.raw_size > (uint64_t)1 << 34) {
        err_set(err, "corrupt object header (raw size %llu)", (unsigned long long)info.raw_size);
        return false;
    }
    void *out = NULL;
    if (!decompress_buf(info.compress, (const unsigned char *)stored + OBJ_HEADER_LEN, n - OBJ_HEADER_LEN,
                        (size_t)info.raw_size, &out, err))
        return false;
    unsigned char sum[32];
    sha256_buf(out, (size_t)info.raw_size, sum);
    if (memcmp(sum, info.sha256, 32) != 0) {
        free(out);
        err_set(err, "checksum mismatch (content does not match its SHA-256)");
        return false;
    }
    *raw = out;
    *raw_n = (size_t)info.raw_size;
    return true;
}
