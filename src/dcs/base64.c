/* Standard base64 encoder and strict decoder: etcd's gateway sends keys and values as base64,
 * and a malformed value from the network must be rejected, never guessed at. */
#include "common/common.h"

#include "dcs/base64.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const void *data, size_t len)
{
    const unsigned char *in = data;
    size_t out_len = (len + 2) / 3 * 4;
    char *out = xmalloc(out_len + 1);
    size_t o = 0, i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

/* Value of one alphabet character, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

char *base64_decode(const char *text, size_t *len)
{
    if (!text)
        return NULL;
    size_t n = strlen(text);
    if (n % 4 != 0)
        return NULL;
    char *out = xmalloc(n / 4 * 3 + 1);
    size_t o = 0;

    for (size_t i = 0; i < n; i += 4) {
        const unsigned char *q = (const unsigned char *)text + i;
        bool last = i + 4 == n;
        int pad = 0;
        if (last && q[3] == '=')
            pad = q[2] == '=' ? 2 : 1;
        int v[4];
        for (int k = 0; k < 4 - pad; k++) {
            v[k] = b64_value(q[k]);
            if (v[k] < 0)
                goto bad;
        }
        uint32_t bits = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12;
        if (pad < 2)
            bits |= (uint32_t)v[2] << 6;
        if (pad < 1)
            bits |= (uint32_t)v[3];
        /* Non-canonical encodings (stray bits under the padding) are rejected. */
        if ((pad == 2 && (bits & 0xffff)) || (pad == 1 && (bits & 0xff)))
            goto bad;
        out[o++] = (char)(bits >> 16);
        if (pad < 2)
            out[o++] = (char)(bits >> 8 & 0xff);
        if (pad < 1)
            out[o++] = (char)(bits & 0xff);
    }
    out[o] = '\0';
    if (len)
        *len = o;
    return out;

bad:
    free(out);
    return NULL;
}
