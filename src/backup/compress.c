/* Whole-buffer compression with the Debian libraries: libzstd, liblz4 (frame format), zlib
 * (gzip wrapper). */
#include "backup/compress.h"

#include <lz4frame.h>
#include <zlib.h>
#include <zstd.h>

static const char *const names[] = {"none", "zstd", "lz4", "gzip"};

bool compress_kind_parse(const char *name, CompressKind *out)
{
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (name && strcmp(name, names[i]) == 0) {
            *out = (CompressKind)i;
            return true;
        }
    return false;
}

const char *compress_kind_name(CompressKind k)
{
    return (size_t)k < ARRAY_LEN(names) ? names[k] : "unknown";
}

int compress_default_level(CompressKind k)
{
    switch (k) {
    case COMPRESS_ZSTD:
        return 3;
    case COMPRESS_LZ4:
        return 1;
    case COMPRESS_GZIP:
        return 6;
    default:
        return 0;
    }
}

bool compress_level_ok(CompressKind k, int level)
{
    switch (k) {
    case COMPRESS_ZSTD:
        return level >= 1 && level <= ZSTD_maxCLevel();
    case COMPRESS_LZ4:
        return level >= 1 && level <= LZ4F_compressionLevel_max();
    case COMPRESS_GZIP:
        return level >= 1 && level <= 9;
    default:
        return level == 0;
    }
}

static bool gzip_buf(int level, const void *in, size_t n, void **out, size_t *out_n, Err *err)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* 15 + 16: a gzip header and trailer (CRC-32) around the deflate stream */
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        err_set(err, "gzip: cannot start compression");
        return false;
    }
    size_t cap = deflateBound(&z, (uLong)n);
    unsigned char *buf = xmalloc(cap ? cap : 1);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(buf);
        err_set(err, "gzip: compression failed (%d)", rc);
        return false;
    }
    *out = buf;
    *out_n = z.total_out;
    return true;
}

static bool gunzip_buf(const void *in, size_t n, size_t raw_n, void **out, Err *err)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 15 + 16) != Z_OK) {
        err_set(err, "gzip: cannot start decompression");
        return false;
    }
    unsigned char *buf = xmalloc(raw_n + 1);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)(raw_n + 1); /* one more: a longer stream shows as too long */
    int rc = inflate(&z, Z_FINISH);
    size_t got = z.total_out;
    bool trailing = z.avail_in != 0;
    inflateEnd(&z);
    /* a stream followed by anything is corrupt, as the streaming decoder says too */
    if (rc != Z_STREAM_END || got != raw_n || trailing) {
        free(buf);
        err_set(err, "gzip: corrupt data (%s)",
                rc != Z_STREAM_END ? "stream does not end" : trailing ? "data after the end of the stream" : "wrong size");
        return false;
    }
    *out = buf;
    return true;
}

bool compress_buf(CompressKind k, int level, const void *in, size_t n, void **out, size_t *out_n, Err *err)
{
    switch (k) {
    case COMPRESS_NONE: {
        void *buf = xmalloc(n ? n : 1);
        memcpy(buf, in, n);
        *out = buf;
        *out_n = n;
        return true;
    }
    case COMPRESS_ZSTD: {
        size_t cap = ZSTD_compressBound(n);
        void *buf = xmalloc(cap);
        size_t r = ZSTD_compress(buf, cap, in, n, level);
        if (ZSTD_isError(r)) {
            free(buf);
            err_set(err, "zstd: %s", ZSTD_getErrorName(r));
            return false;
        }
        *out = buf;
        *out_n = r;
        return true;
    }
    case COMPRESS_LZ4: {
        LZ4F_preferences_t prefs;
        memset(&prefs, 0, sizeof(prefs));
        prefs.compressionLevel = level;
        prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
        size_t cap = LZ4F_compressFrameBound(n, &prefs);
        void *buf = xmalloc(cap);
        size_t r = LZ4F_compressFrame(buf, cap, in, n, &prefs);
        if (LZ4F_isError(r)) {
            free(buf);
            err_set(err, "lz4: %s", LZ4F_getErrorName(r));
            return false;
        }
        *out = buf;
        *out_n = r;
        return true;
    }
    case COMPRESS_GZIP:
        return gzip_buf(level, in, n, out, out_n, err);
    }
    err_set(err, "unknown compression %d", (int)k);
    return false;
}

bool decompress_buf(CompressKind k, const void *in, size_t n, size_t raw_n, void **out, Err *err)
{
    switch (k) {
    case COMPRESS_NONE: {
        if (n != raw_n) {
            err_set(err, "stored size %zu, expected %zu", n, raw_n);
            return false;
        }
        void *buf = xmalloc(n ? n : 1);
        memcpy(buf, in, n);
        *out = buf;
        return true;
    }
    case COMPRESS_ZSTD: {
        /* the first frame's header (a stream written in pieces has one frame per piece) */
        unsigned long long content = ZSTD_getFrameContentSize(in, n);
        if (content == ZSTD_CONTENTSIZE_ERROR || (content != ZSTD_CONTENTSIZE_UNKNOWN && content > raw_n)) {
            err_set(err, "zstd: corrupt data (frame header)");
            return false;
        }
        void *buf = xmalloc(raw_n ? raw_n : 1);
        size_t r = ZSTD_decompress(buf, raw_n, in, n);
        if (ZSTD_isError(r) || r != raw_n) {
            free(buf);
            err_set(err, "zstd: corrupt data (%s)", ZSTD_isError(r) ? ZSTD_getErrorName(r) : "wrong size");
            return false;
        }
        *out = buf;
        return true;
    }
    case COMPRESS_LZ4: {
        LZ4F_dctx *d = NULL;
        if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION))) {
            err_set(err, "lz4: cannot start decompression");
            return false;
        }
        unsigned char *buf = xmalloc(raw_n + 1);
        size_t got = 0, used_total = 0;
        size_t r = 1;
        while (r != 0 && used_total < n && got <= raw_n) {
            size_t dst = raw_n + 1 - got, src = n - used_total;
            r = LZ4F_decompress(d, buf + got, &dst, (const char *)in + used_total, &src, NULL);
            if (LZ4F_isError(r))
                break;
            got += dst;
            used_total += src;
            if (dst == 0 && src == 0)
                break;
        }
        LZ4F_freeDecompressionContext(d);
        if (LZ4F_isError(r) || r != 0 || got != raw_n || used_total != n) {
            free(buf);
            err_set(err, "lz4: corrupt data (%s)",
                    LZ4F_isError(r) ? LZ4F_getErrorName(r) : used_total != n && r == 0 ? "data after the end of the frame"
                                                                                     : "wrong size or truncated");
            return false;
        }
        *out = buf;
        return true;
    }
    case COMPRESS_GZIP:
        return gunzip_buf(in, n, raw_n, out, err);
    }
    err_set(err, "unknown compression %d", (int)k);
    return false;
}
