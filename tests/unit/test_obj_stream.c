/* Objects written and read in pieces: streaming compression against the one-shot form for every
 * kind, the encoder and decoder (checksums, sizes, encryption, damage found), objects from
 * before XXH3-128 (SHA-256 in the header) still read, page checks in pieces, and the file sink's
 * direct I/O with unaligned input and tails. */
#include "backup/checksum.h"
#include "backup/compress.h"
#include "backup/compress_stream.h"
#include "backup/file_sink.h"
#include "backup/obj.h"
#include "backup/page_checksum.h"
#include "common/common.h"
#include "common/fileutil.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

static unsigned char *sample(size_t n, unsigned seed)
{
    unsigned char *p = xmalloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        /* half compressible runs, half noise */
        x = x * 1103515245u + 12345u;
        p[i] = (i / 4096) % 2 ? (unsigned char)(x >> 24) : (unsigned char)(i / 97);
    }
    return p;
}

static const CompressKind kinds[] = {COMPRESS_NONE, COMPRESS_ZSTD, COMPRESS_LZ4, COMPRESS_GZIP};

/* streamed in pieces of `piece` bytes: the one-shot decoder reads it, and the streaming one
 * gives back the same bytes whatever the output chunk */
static void test_compress_stream_round_trips(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 8191, 300000};
    const size_t pieces[] = {1000, 65536, 1 << 20};
    Compressor *z = compressor_new();
    Decompressor *d = decompressor_new();
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++)
        for (size_t si = 0; si < ARRAY_LEN(sizes); si++)
            for (size_t pi = 0; pi < ARRAY_LEN(pieces); pi++) {
                size_t n = sizes[si], piece = pieces[pi];
                unsigned char *raw = sample(n, (unsigned)(k + si));
                Err err = {{0}};
                StrBuf out = {0};
                assert_true(compressor_begin(z, kinds[k], compress_default_level(kinds[k]), &err));
                /* an empty piece first (an empty file's read, a block list with no block) */
                assert_true(compressor_feed(z, raw, 0, false, &out, &err));
                for (size_t off = 0; off < n; off += piece)
                    assert_true(compressor_feed(z, raw + off, n - off < piece ? n - off : piece, false, &out, &err));
                assert_true(compressor_feed(z, NULL, 0, true, &out, &err));
                void *back = NULL;
                assert_true(decompress_buf(kinds[k], out.s ? out.s : "", out.len, n, &back, &err));
                assert_memory_equal(back, raw, n);
                free(back);
                /* streaming back, in chunks of 777 bytes */
                unsigned char *again = xmalloc(n + 1);
                size_t total = 0, got = 0;
                assert_true(decompressor_begin(d, kinds[k], out.s ? out.s : "", out.len, &err));
                do {
                    assert_true(decompressor_read(d, again + total, n + 1 - total < 777 ? n + 1 - total : 777, &got, &err));
                    total += got;
                } while (got > 0 && total <= n);
                assert_int_equal(total, n);
                assert_memory_equal(again, raw, n);
                free(again);
                strbuf_free(&out);
                free(raw);
            }
    compressor_free(z);
    decompressor_free(d);
}

/* read everything out of d; false on the first error */
static bool drain(Decompressor *d, Err *err)
{
    unsigned char buf[4096];
    size_t got = 0;
    do {
        if (!decompressor_read(d, buf, sizeof(buf), &got, err))
            return false;
    } while (got > 0);
    return true;
}

/* a stream cut short, or followed by bytes, is corrupt for every kind that has an end */
static void test_decompress_stream_damage(void **state)
{
    (void)state;
    size_t n = 200000;
    unsigned char *raw = sample(n, 3);
    Decompressor *d = decompressor_new();
    for (size_t k = 1; k < ARRAY_LEN(kinds); k++) {
        void *c = NULL;
        size_t cn = 0;
        Err err = {{0}};
        assert_true(compress_buf(kinds[k], compress_default_level(kinds[k]), raw, n, &c, &cn, &err));
        assert_true(decompressor_begin(d, kinds[k], c, cn, &err));
        assert_true(drain(d, &err));
        /* cut short */
        assert_true(decompressor_begin(d, kinds[k], c, cn - 5, &err));
        assert_false(drain(d, &err));
        assert_non_null(strstr(err.msg, "corrupt"));
        /* trailing bytes */
        unsigned char *longer = xmalloc(cn + 8);
        memcpy(longer, c, cn);
        memset(longer + cn, 0x5a, 8);
        err.msg[0] = '\0';
        assert_true(decompressor_begin(d, kinds[k], longer, cn + 8, &err));
        assert_false(drain(d, &err));
        assert_non_null(strstr(err.msg, "corrupt"));
        free(longer);
        free(c);
    }
    decompressor_free(d);
    free(raw);
}

/* encoder -> one-shot decode and decoder; damage and a wrong size are found */
static void test_encoder_decoder(void **state)
{
    (void)state;
    size_t n = 3 * 1000 * 1000 + 17;
    unsigned char *raw = sample(n, 9);
    Err err = {{0}};
    ObjCipher *cipher = obj_cipher_new("a key for the stream test", 25, (const unsigned char *)"0123456789abcdef0123456789abcdef",
                                       1000, &err);
    assert_non_null(cipher);
    ObjEncoder *e = obj_encoder_new();
    ObjDecoder *d = obj_decoder_new();
    for (int enc = 0; enc < 2; enc++)
        for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
            const ObjCipher *c = enc ? cipher : NULL;
            assert_true(obj_encoder_begin(e, c, kinds[k], compress_default_level(kinds[k]), &err));
            for (size_t off = 0; off < n; off += 1 << 20)
                assert_true(obj_encoder_feed(e, raw + off, n - off < (1 << 20) ? n - off : 1 << 20, &err));
            const void *obj = NULL;
            size_t on = 0;
            ChecksumKind kind;
            unsigned char sum[CHECKSUM_MAX_LEN], want[CHECKSUM_MAX_LEN];
            assert_true(obj_encoder_finish(e, &obj, &on, &kind, sum, &err));
            assert_int_equal(kind, CHECKSUM_NEW);
            checksum_buf(kind, raw, n, want);
            assert_memory_equal(sum, want, CHECKSUM_MAX_LEN);
            unsigned char *stored = xmalloc(on);
            memcpy(stored, obj, on);
            /* the one-shot decoder reads it */
            void *back = NULL;
            size_t bn = 0;
            ObjInfo info;
            assert_true(obj_decode_hashed(c, stored, on, &back, &bn, &info, &err));
            assert_int_equal(bn, n);
            assert_memory_equal(back, raw, n);
            assert_memory_equal(info.sum, want, CHECKSUM_MAX_LEN);
            free(back);
            /* the streaming one too, in chunks */
            assert_true(obj_decoder_begin(d, c, stored, on, &info, &err));
            assert_int_equal(info.raw_size, n);
            unsigned char *again = xmalloc(n);
            size_t total = 0, got = 0;
            do {
                assert_true(obj_decoder_read(d, again + total, n - total < 65536 ? n - total : 65536, &got, &err));
                total += got;
            } while (got > 0);
            assert_int_equal(total, n);
            assert_memory_equal(again, raw, n);
            free(again);
            if (!c && kinds[k] == COMPRESS_NONE) {
                /* a flipped content byte: every piece reads, the end says the checksum differs */
                stored[OBJ_HEADER_LEN + n / 2] ^= 1;
                unsigned char buf[65536];
                assert_true(obj_decoder_begin(d, NULL, stored, on, &info, &err));
                bool ok = true;
                do
                    ok = obj_decoder_read(d, buf, sizeof(buf), &got, &err);
                while (ok && got > 0);
                assert_false(ok);
                assert_non_null(strstr(err.msg, "checksum mismatch"));
                stored[OBJ_HEADER_LEN + n / 2] ^= 1;
                /* a header that claims one byte more */
                stored[16] = (unsigned char)(stored[16] + 1);
                assert_true(obj_decoder_begin(d, NULL, stored, on, &info, &err));
                do
                    ok = obj_decoder_read(d, buf, sizeof(buf), &got, &err);
                while (ok && got > 0);
                assert_false(ok);
                assert_non_null(strstr(err.msg, "bytes of content"));
            }
            free(stored);
        }
    /* an encoder dropped half-way and begun again leaks nothing (valgrind) */
    assert_true(obj_encoder_begin(e, NULL, COMPRESS_ZSTD, 3, &err));
    assert_true(obj_encoder_feed(e, raw, 1000, &err));
    obj_encoder_free(e);
    obj_decoder_free(d);
    obj_cipher_free(cipher);
    free(raw);
}

/* an object written before XXH3-128: checksum kind 0 and a SHA-256 in its header */
static void test_sha256_objects_still_read(void **state)
{
    (void)state;
    size_t n = 5000;
    unsigned char *raw = sample(n, 5);
    unsigned char *obj = xcalloc(OBJ_HEADER_LEN + n, 1);
    memcpy(obj, OBJ_MAGIC, 8);
    obj[8] = COMPRESS_NONE;
    obj[12] = OBJ_HEADER_LEN;
    for (int i = 0; i < 8; i++)
        obj[16 + i] = (unsigned char)((uint64_t)n >> (8 * i));
    checksum_buf(CHECKSUM_SHA256, raw, n, obj + 24);
    memcpy(obj + OBJ_HEADER_LEN, raw, n);
    void *back = NULL;
    size_t bn = 0;
    ObjInfo info;
    Err err = {{0}};
    assert_true(obj_decode_hashed(NULL, obj, OBJ_HEADER_LEN + n, &back, &bn, &info, &err));
    assert_int_equal(info.sum_kind, CHECKSUM_SHA256);
    assert_memory_equal(back, raw, n);
    free(back);
    char hex[CHECKSUM_HEX_LEN];
    checksum_hex(info.sum_kind, info.sum, hex);
    assert_int_equal(strlen(hex), 64);
    ChecksumKind k;
    assert_true(checksum_kind_of_hex(hex, &k));
    assert_int_equal(k, CHECKSUM_SHA256);
    /* one byte of it changed: refused */
    obj[OBJ_HEADER_LEN + 7] ^= 0x10;
    assert_false(obj_decode_hashed(NULL, obj, OBJ_HEADER_LEN + n, &back, &bn, &info, &err));
    assert_non_null(strstr(err.msg, "sha256"));
    /* an unknown checksum kind: refused */
    obj[OBJ_HEADER_LEN + 7] ^= 0x10;
    obj[10] = 7;
    assert_false(obj_decode_hashed(NULL, obj, OBJ_HEADER_LEN + n, &back, &bn, &info, &err));
    assert_non_null(strstr(err.msg, "unsupported object format"));
    free(obj);
    free(raw);
}

static void test_checksum_kinds(void **state)
{
    (void)state;
    ChecksumKind k;
    assert_true(checksum_kind_of_hex("00112233445566778899aabbccddeeff", &k));
    assert_int_equal(k, CHECKSUM_XXH128);
    assert_false(checksum_kind_of_hex("", &k));
    assert_false(checksum_kind_of_hex("0011", &k));
    assert_false(checksum_kind_of_hex("00112233445566778899aabbccddeefg", &k));
    /* running and one-shot agree, for both kinds */
    unsigned char *raw = sample(100000, 1);
    for (int kind = 0; kind < 2; kind++) {
        Checksum c;
        unsigned char a[CHECKSUM_MAX_LEN], b[CHECKSUM_MAX_LEN];
        checksum_init(&c, (ChecksumKind)kind);
        checksum_update(&c, raw, 12345);
        checksum_update(&c, raw + 12345, 100000 - 12345);
        checksum_final(&c, a);
        checksum_buf((ChecksumKind)kind, raw, 100000, b);
        assert_memory_equal(a, b, CHECKSUM_MAX_LEN);
        raw[500] ^= 1;
        checksum_buf((ChecksumKind)kind, raw, 100000, b);
        assert_memory_not_equal(a, b, CHECKSUM_MAX_LEN);
        raw[500] ^= 1;
    }
    free(raw);
}

/* the file sink: aligned and unaligned input, a tail, small files; the file holds exactly what
 * was written, whatever path it took */
static void test_file_sink(void **state)
{
    (void)state;
    char dir[] = "/var/tmp/pgvigil-test-sink.XXXXXX";
    assert_non_null(mkdtemp(dir));
    size_t n = 3 * (1 << 20) + 4096 * 3 + 123;
    unsigned char *raw = sample(n, 11);
    unsigned char *bounce = xcalloc_aligned(1, 1 << 20, FILE_SINK_ALIGN);
    const size_t steps[] = {1 << 20, 4096 * 5 + 7, 100};
    for (size_t si = 0; si < ARRAY_LEN(steps); si++) {
        for (int small = 0; small < 2; small++) {
            char *path = str_printf("%s/f%zu-%d", dir, si, small);
            size_t len = small ? 5000 : n;
            FileSink s;
            Err err = {{0}};
            assert_true(file_sink_open(&s, path, O_WRONLY | O_CREAT | O_EXCL, 0600, len, bounce, 1 << 20, &err));
            if (small)
                assert_false(s.direct);
            else if (!s.direct)
                print_message("(no direct I/O on this file system: the buffered path only)\n");
            /* from an aligned copy for the first step size, unaligned (raw + 1) otherwise */
            unsigned char *src = raw;
            unsigned char *aligned = NULL;
            if (si == 0) {
                aligned = xcalloc_aligned(1, (n + 4095) / 4096 * 4096, FILE_SINK_ALIGN);
                memcpy(aligned, raw, n);
                src = aligned;
            }
            for (size_t off = 0; off < len; off += steps[si])
                assert_true(file_sink_write(&s, src + off, len - off < steps[si] ? len - off : steps[si], &err));
            assert_true(file_sink_close(&s, &err));
            size_t got = 0;
            char *back = file_read_all(path, &got, &err);
            assert_non_null(back);
            assert_int_equal(got, len);
            assert_memory_equal(back, raw, len);
            free(back);
            free(aligned);
            unlink(path);
            free(path);
        }
    }
    /* tmpfs (no direct I/O before Linux 6.6): a new file opens all the same */
    char *shm = str_printf("/dev/shm/pgvigil-test-sink.%d", (int)getpid());
    FileSink s;
    Err err = {{0}};
    if (file_sink_open(&s, shm, O_WRONLY | O_CREAT | O_EXCL, 0600, n, bounce, 1 << 20, &err)) {
        assert_true(file_sink_write(&s, raw, n, &err));
        assert_true(file_sink_close(&s, &err));
        size_t got = 0;
        char *back = file_read_all(shm, &got, &err);
        assert_non_null(back);
        assert_int_equal(got, n);
        assert_memory_equal(back, raw, n);
        free(back);
        unlink(shm);
    } else {
        print_message("(no /dev/shm: %s)\n", err.msg);
    }
    free(shm);
    free(bounce);
    free(raw);
    assert_true(dir_remove_all(dir, &err));
}

/* a page made valid for block blkno of a relation fork */
static void make_page(unsigned char *p, uint32_t blkno, unsigned seed)
{
    memset(p, 0, 8192);
    for (size_t i = 24; i < 8192; i++)
        p[i] = (unsigned char)(i * seed);
    p[12] = 0x20; /* pd_lower */
    p[14] = 0x00; /* pd_upper 0x1000 */
    p[15] = 0x10;
    uint16_t sum = page_checksum(p, blkno);
    memcpy(p + 8, &sum, 2);
}

/* checking a file in pieces finds the same bad blocks as checking it whole */
static void test_page_check_pieces(void **state)
{
    (void)state;
    size_t pages = 300;
    unsigned char *data = xmalloc(pages * 8192);
    for (size_t b = 0; b < pages; b++)
        make_page(data + b * 8192, (uint32_t)b, (unsigned)b + 1);
    data[7 * 8192 + 100] ^= 1;
    data[130 * 8192 + 100] ^= 1;
    data[299 * 8192 + 100] ^= 1;
    uint32_t *whole = NULL, *pieces = NULL;
    /* a bad page is read again from the file before it counts: the file holds the same pages */
    char dir[] = "/tmp/pgvigil-test-pages.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *base = str_printf("%s/base/5", dir);
    Err err = {{0}};
    assert_true(dir_make_all(base, 0700, &err));
    char *file = str_printf("%s/16384", base);
    assert_true(file_write_atomic(file, (const char *)data, pages * 8192, 0600, &err));
    int nw = page_check_file(dir, "base/5/16384", data, pages * 8192, UINT64_MAX, &whole);
    PageCheckRun r;
    page_check_begin(&r, dir, "base/5/16384", UINT64_MAX);
    for (size_t off = 0; off < pages; off += 128)
        page_check_pages(&r, data + off * 8192, pages - off < 128 ? pages - off : 128, (uint32_t)off, NULL);
    int np = page_check_end(&r, &pieces);
    assert_int_equal(nw, 3);
    assert_int_equal(np, 3);
    assert_memory_equal(whole, pieces, 3 * sizeof(uint32_t));
    assert_int_equal(pieces[0], 7);
    assert_int_equal(pieces[1], 130);
    assert_int_equal(pieces[2], 299);
    free(whole);
    free(pieces);
    free(file);
    free(base);
    free(data);
    assert_true(dir_remove_all(dir, &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compress_stream_round_trips),
        cmocka_unit_test(test_decompress_stream_damage),
        cmocka_unit_test(test_encoder_decoder),
        cmocka_unit_test(test_sha256_objects_still_read),
        cmocka_unit_test(test_checksum_kinds),
        cmocka_unit_test(test_file_sink),
        cmocka_unit_test(test_page_check_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
