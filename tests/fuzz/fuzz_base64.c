/* Fuzz the base64 codec that carries every etcd key and value: decoding arbitrary text never
 * reads or writes out of bounds, and whatever is encoded decodes back to the same bytes. */
#include "common/common.h"
#include "dcs/base64.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = xmalloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    size_t len = 0;
    char *dec = base64_decode(text, &len);
    if (dec) {
        FUZZ_CHECK(dec[len] == '\0');
        FUZZ_CHECK(len <= size);
        char *enc = base64_encode(dec, len);
        /* accepted text is canonical (padding required, no whitespace, no stray bits under
         * the padding): it is exactly the encoding of what it decodes to */
        FUZZ_CHECK(strcmp(enc, text) == 0);
        free(enc);
        free(dec);
    }
    free(text);

    char *enc = base64_encode(data, size);
    FUZZ_CHECK(strlen(enc) == (size + 2) / 3 * 4);
    dec = base64_decode(enc, &len);
    FUZZ_CHECK(dec != NULL && len == size && memcmp(dec, data, size) == 0);
    free(enc);
    free(dec);
    return 0;
}
