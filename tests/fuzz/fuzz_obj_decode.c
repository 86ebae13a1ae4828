/* Fuzz the decoding of stored objects (what a damaged or hostile repository hands a restore):
 * no input reads or writes out of bounds, and the one-shot decoder and the streaming one agree:
 * both refuse it, or both give the same content, whatever the size of the pieces read (but for
 * a window too large for the streaming decoder's memory bound, below).
 * Input: one byte that picks the piece size, then the stored object (not encrypted). */
#include "common/common.h"
#include "backup/obj.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t piece = (size_t)data[0] * 37 + 1;
    const uint8_t *obj = data + 1;
    size_t n = size - 1;
    Err err = {{0}};
    /* a header that claims more than 16 MB: the one-shot decoder would allocate it (a real
     * object may be 1 GB); not what this target looks at */
    ObjInfo info;
    if (obj_read_header(NULL, obj, n, &info, &err) && info.raw_size > ((uint64_t)1 << 24))
        return 0;
    void *raw = NULL;
    size_t raw_n = 0;
    bool one = obj_decode(NULL, obj, n, &raw, &raw_n, &err);
    ObjDecoder *d = obj_decoder_new();
    bool begun = obj_decoder_begin(d, NULL, obj, n, &info, &err);
    bool streamed = begun;
    unsigned char *buf = begun ? xmalloc((size_t)info.raw_size + piece) : NULL;
    size_t total = 0, got = 0;
    while (streamed) {
        streamed = obj_decoder_read(d, buf + total, piece, &got, &err);
        if (!streamed || got == 0)
            break;
        total += got;
        FUZZ_CHECK(total <= info.raw_size);
    }
    /* the one exception: a zstd frame whose window the streaming decoder would need more than
     * its memory bound for (128 MB; pgvigil writes frames of a few MB, whose window is no larger),
     * where decoding in one piece needs no window at all */
    if (one && !streamed && strstr(err.msg, "too much memory")) {
        free(buf);
        obj_decoder_free(d);
        free(raw);
        return 0;
    }
    FUZZ_CHECK(one == streamed);
    if (one) {
        FUZZ_CHECK(total == raw_n);
        FUZZ_CHECK(memcmp(buf, raw, raw_n) == 0);
    }
    free(buf);
    obj_decoder_free(d);
    free(raw);
    return 0;
}
