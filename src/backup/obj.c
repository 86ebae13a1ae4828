/* Stored object header, little-endian:
 *   0  magic "PGVOBJ01"      8
 *   8  compression           1   (CompressKind)
 *   9  cipher                1   (0: none)
 *  10  checksum kind         1   (ChecksumKind: 0 SHA-256, 1 XXH3-128)
 *  11  reserved              1
 *  12  header length         4   (56)
 *  16  raw size              8
 *  24  checksum of raw      32   (XXH3-128: 16 bytes, then zeros)
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

#include "backup/compress_stream.h"
#include "common/strbuf.h"

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

void hex_encode(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The plain header of an object of n raw bytes with checksum sum, at p. */
static void put_header(unsigned char *p, CompressKind k, uint64_t n, ChecksumKind kind, const unsigned char *sum)
{
    memset(p, 0, OBJ_HEADER_LEN);
    memcpy(p, OBJ_MAGIC, 8);
    p[8] = (unsigned char)k;
    p[9] = 0;
    p[10] = (unsigned char)kind;
    put_u32(p + 12, OBJ_HEADER_LEN);
    put_u64(p + 16, n);
    memcpy(p + 24, sum, CHECKSUM_MAX_LEN);
}

/* Encrypted: the plain form at buf + pre (plain_n bytes) is sealed in place behind the clear
 * header, its tag after it. */
static bool seal(const ObjCipher *c, unsigned char *buf, size_t plain_n, Err *err)
{
    memset(buf, 0, OBJ_SEALED_HEADER_LEN);
    memcpy(buf, OBJ_MAGIC, 8);
    buf[9] = OBJ_CIPHER_AES256GCM;
    put_u32(buf + 12, OBJ_SEALED_HEADER_LEN);
    return cipher_seal(c, buf, OBJ_SEALED_HEADER_LEN, buf + OBJ_SEALED_HEADER_LEN + CIPHER_NONCE_LEN, plain_n,
                       buf + OBJ_SEALED_HEADER_LEN, err);
}

bool obj_encode(const ObjCipher *c, CompressKind k, int level, const void *raw, size_t n, void **out, size_t *out_n,
                Err *err)
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
    unsigned char sum[CHECKSUM_MAX_LEN];
    checksum_buf(CHECKSUM_NEW, raw, n, sum);
    put_header(buf + pre, k, n, CHECKSUM_NEW, sum);
    memcpy(buf + pre + OBJ_HEADER_LEN, body, body_n);
    free(body);
    if (c && !seal(c, buf, plain_n, err)) {
        free(buf);
        return false;
    }
    *out = buf;
    *out_n = total;
    return true;
}

struct ObjEncoder {
    const ObjCipher *cipher;
    CompressKind kind;
    Compressor *z;
    Checksum sum;
    bool summing;
    uint64_t raw;
    StrBuf out;     /* the stored form, built in place: room for the headers, then the content */
};

ObjEncoder *obj_encoder_new(void)
{
    ObjEncoder *e = xcalloc(1, sizeof(*e));
    e->z = compressor_new();
    return e;
}

void obj_encoder_free(ObjEncoder *e)
{
    if (!e)
        return;
    if (e->summing) {
        unsigned char drop[CHECKSUM_MAX_LEN];
        checksum_final(&e->sum, drop);
    }
    compressor_free(e->z);
    strbuf_free(&e->out);
    free(e);
}

static size_t encoder_pre(const ObjEncoder *e)
{
    return (e->cipher ? OBJ_SEALED_HEADER_LEN + CIPHER_NONCE_LEN : 0) + OBJ_HEADER_LEN;
}

bool obj_encoder_begin(ObjEncoder *e, const ObjCipher *c, CompressKind k, int level, Err *err)
{
    if (e->summing) {
        unsigned char drop[CHECKSUM_MAX_LEN];
        checksum_final(&e->sum, drop);
        e->summing = false;
    }
    e->cipher = c;
    e->kind = k;
    e->raw = 0;
    e->out.len = 0;
    /* kept for the next object, unless a very large one left it huge (largest files first:
     * the rest are smaller) */
    if (e->out.cap > ((size_t)64 << 20))
        strbuf_free(&e->out);
    size_t pre = encoder_pre(e);
    memset(strbuf_space(&e->out, pre), 0, pre);
    strbuf_grew(&e->out, pre);
    if (!compressor_begin(e->z, k, level, err))
        return false;
    checksum_init(&e->sum, CHECKSUM_NEW);
    e->summing = true;
    return true;
}

bool obj_encoder_feed(ObjEncoder *e, const void *raw, size_t n, Err *err)
{
    checksum_update(&e->sum, raw, n);
    e->raw += n;
    return compressor_feed(e->z, raw, n, false, &e->out, err);
}

bool obj_encoder_finish(ObjEncoder *e, const void **out, size_t *out_n, ChecksumKind *kind,
                        unsigned char sum[CHECKSUM_MAX_LEN], Err *err)
{
    if (!compressor_feed(e->z, NULL, 0, true, &e->out, err))
        return false;
    checksum_final(&e->sum, sum);
    e->summing = false;
    *kind = CHECKSUM_NEW;
    size_t pre = e->cipher ? OBJ_SEALED_HEADER_LEN + CIPHER_NONCE_LEN : 0;
    unsigned char *buf = (unsigned char *)e->out.s;
    put_header(buf + pre, e->kind, e->raw, CHECKSUM_NEW, sum);
    size_t plain_n = e->out.len - pre;
    if (e->cipher) {
        memset(strbuf_space(&e->out, CIPHER_TAG_LEN), 0, CIPHER_TAG_LEN);
        strbuf_grew(&e->out, CIPHER_TAG_LEN);
        buf = (unsigned char *)e->out.s;
        if (!seal(e->cipher, buf, plain_n, err))
            return false;
    }
    *out = buf;
    *out_n = e->out.len;
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
    if (get_u32(p + 12) != OBJ_HEADER_LEN || p[9] != 0 || p[8] > COMPRESS_GZIP || checksum_len(p[10]) == 0) {
        err_set(err, "unsupported object format (header length %u, compression %u, cipher %u, checksum %u)",
                get_u32(p + 12), p[8], p[9], p[10]);
        return false;
    }
    info->compress = (CompressKind)p[8];
    info->raw_size = get_u64(p + 16);
    info->sum_kind = (ChecksumKind)p[10];
    memcpy(info->sum, p + 24, CHECKSUM_MAX_LEN);
    if (info->raw_size > (uint64_t)1 << 34) {
        err_set(err, "corrupt object header (raw size %llu)", (unsigned long long)info->raw_size);
        return false;
    }
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

static bool sum_matches(const ObjInfo *info, const unsigned char *sum, Err *err)
{
    if (memcmp(sum, info->sum, CHECKSUM_MAX_LEN) != 0) {
        err_set(err, "checksum mismatch (content does not match its %s)", checksum_kind_name(info->sum_kind));
        return false;
    }
    return true;
}

bool obj_decode(const ObjCipher *c, const void *stored, size_t n, void **raw, size_t *raw_n, Err *err)
{
    return obj_decode_hashed(c, stored, n, raw, raw_n, NULL, err);
}

bool obj_decode_hashed(const ObjCipher *c, const void *stored, size_t n, void **raw, size_t *raw_n, ObjInfo *info_out,
                       Err *err)
{
    const unsigned char *p = NULL;
    size_t pn = 0;
    unsigned char *owned = NULL;
    ObjInfo info;
    if (!unseal(c, stored, n, &p, &pn, &owned, err) || !plain_header(p, pn, &info, err)) {
        free(owned);
        return false;
    }
    void *out = NULL;
    bool ok = decompress_buf(info.compress, p + OBJ_HEADER_LEN, pn - OBJ_HEADER_LEN, (size_t)info.raw_size, &out, err);
    free(owned);
    if (!ok)
        return false;
    unsigned char sum[CHECKSUM_MAX_LEN];
    checksum_buf(info.sum_kind, out, (size_t)info.raw_size, sum);
    if (!sum_matches(&info, sum, err)) {
        free(out);
        return false;
    }
    if (info_out)
        *info_out = info;
    *raw = out;
    *raw_n = (size_t)info.raw_size;
    return true;
}

struct ObjDecoder {
    Decompressor *z;
    unsigned char *owned;   /* the decrypted plain form of an encrypted object */
    ObjInfo info;
    Checksum sum;
    bool summing;
    uint64_t got;
};

ObjDecoder *obj_decoder_new(void)
{
    ObjDecoder *d = xcalloc(1, sizeof(*d));
    d->z = decompressor_new();
    return d;
}

static void decoder_reset(ObjDecoder *d)
{
    if (d->summing) {
        unsigned char drop[CHECKSUM_MAX_LEN];
        checksum_final(&d->sum, drop);
        d->summing = false;
    }
    FREE_AND_NULL(d->owned);
}

void obj_decoder_free(ObjDecoder *d)
{
    if (!d)
        return;
    decoder_reset(d);
    decompressor_free(d->z);
    free(d);
}

bool obj_decoder_begin(ObjDecoder *d, const ObjCipher *c, const void *stored, size_t n, ObjInfo *info, Err *err)
{
    decoder_reset(d);
    const unsigned char *p = NULL;
    size_t pn = 0;
    if (!unseal(c, stored, n, &p, &pn, &d->owned, err) || !plain_header(p, pn, &d->info, err) ||
        !decompressor_begin(d->z, d->info.compress, p + OBJ_HEADER_LEN, pn - OBJ_HEADER_LEN, err))
        return false;
    checksum_init(&d->sum, d->info.sum_kind);
    d->summing = true;
    d->got = 0;
    if (info)
        *info = d->info;
    return true;
}

bool obj_decoder_read(ObjDecoder *d, void *buf, size_t cap, size_t *got, Err *err)
{
    if (!d->summing) {
        err_set(err, "object read past its end");
        return false;
    }
    if (!decompressor_read(d->z, buf, cap, got, err))
        return false;
    d->got += *got;
    if (d->got > d->info.raw_size) {
        err_set(err, "corrupt object (more content than its %llu bytes)", (unsigned long long)d->info.raw_size);
        return false;
    }
    if (*got > 0) {
        checksum_update(&d->sum, buf, *got);
        return true;
    }
    unsigned char sum[CHECKSUM_MAX_LEN];
    checksum_final(&d->sum, sum);
    d->summing = false;
    FREE_AND_NULL(d->owned);
    if (d->got != d->info.raw_size) {
        err_set(err, "corrupt object (%llu bytes of content, its header says %llu)", (unsigned long long)d->got,
                (unsigned long long)d->info.raw_size);
        return false;
    }
    return sum_matches(&d->info, sum, err);
}
