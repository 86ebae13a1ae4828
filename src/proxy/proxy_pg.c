/* PostgreSQL protocol facts for the proxy: first packet, BackendKeyData, ErrorResponse. */
#include "common/common.h"
#include "proxy/proxy_pg.h"

#define PG_PROTOCOL_3 196608u
#define KEYSCAN_LIMIT 65536u    /* BackendKeyData comes within the first few hundred bytes */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

PgFirst pg_first_packet(const unsigned char *buf, size_t len, uint32_t *pid, uint32_t *key)
{
    if (len < 8)
        return PGF_NEED_MORE;
    if (be32(buf) != PG_CANCEL_LEN || be32(buf + 4) != PG_CANCEL_CODE)
        return PGF_OTHER;
    if (len < PG_CANCEL_LEN)
        return PGF_NEED_MORE;
    *pid = be32(buf + 8);
    *key = be32(buf + 12);
    return PGF_CANCEL;
}

void pg_keyscan_client(PgKeyScan *s, const unsigned char *p, size_t n)
{
    while (n > 0 && !s->done && !s->client_done) {
        if (s->cskip > 0) {
            size_t k = n < s->cskip ? n : s->cskip;
            s->cskip -= (uint32_t)k;
            p += k;
            n -= k;
            continue;
        }
        size_t k = sizeof(s->chdr) - s->chave;
        if (k > n)
            k = n;
        memcpy(s->chdr + s->chave, p, k);
        s->chave += k;
        p += k;
        n -= k;
        if (s->chave < sizeof(s->chdr))
            return;
        s->chave = 0;
        uint32_t len = be32(s->chdr), code = be32(s->chdr + 4);
        if (len == 8 && (code == PG_SSL_CODE || code == PG_GSSENC_CODE)) {
            s->owed++;
        } else if (code == PG_PROTOCOL_3 && len > 8 && len < 10000) {
            s->cskip = len - 8;
            s->client_done = true;      /* from here on the client speaks in messages */
        } else {
            s->done = true;             /* cancel, old protocol or garbage: nothing to learn */
        }
    }
}

void pg_keyscan_server(PgKeyScan *s, const unsigned char *p, size_t n)
{
    s->scanned += (uint32_t)(n > KEYSCAN_LIMIT ? KEYSCAN_LIMIT : n);
    if (s->scanned >= KEYSCAN_LIMIT)
        s->done = true;
    while (n > 0 && !s->done) {
        if (s->owed > 0) {
            /* the one-byte answer to SSLRequest/GSSENCRequest */
            if (*p != 'N') {
                s->done = true;     /* 'S'/'G': encrypted from here on; 'E': refused */
                return;
            }
            s->owed--;
            p++;
            n--;
            continue;
        }
        if (!s->client_done) {
            s->done = true;         /* the server talks before any startup packet: odd */
            return;
        }
        if (s->sskip > 0) {
            size_t k = n < s->sskip ? n : s->sskip;
            s->sskip -= (uint32_t)k;
            p += k;
            n -= k;
            continue;
        }
        size_t want = 5;
        if (s->shave >= 5 && s->shdr[0] == 'K' && be32(s->shdr + 1) == 12)
            want = 13;
        size_t k = want - s->shave;
        if (k > n)
            k = n;
        memcpy(s->shdr + s->shave, p, k);
        s->shave += k;
        p += k;
        n -= k;
        if (s->shave < want)
            continue;
        uint32_t len = be32(s->shdr + 1);
        if (want == 13) {
            s->pid = be32(s->shdr + 5);
            s->key = be32(s->shdr + 9);
            s->found = true;
            s->done = true;
            return;
        }
        if (s->shdr[0] == 'K' && len == 12)
            continue;               /* read its 8 bytes of body next */
        if (s->shdr[0] == 'Z' || s->shdr[0] == 'E' || s->shdr[0] == 'K' || len < 4) {
            s->done = true;
            return;
        }
        s->shave = 0;
        s->sskip = len - 4;
    }
}

size_t pg_error_response(unsigned char *buf, size_t sz, const char *message)
{
    static const char *const fields[] = {"SFATAL", "VFATAL", "C57P03"};
    size_t need = 1 + 4 + 1;
    for (size_t i = 0; i < ARRAY_LEN(fields); i++)
        need += strlen(fields[i]) + 1;
    size_t mlen = strlen(message);
    need += 1 + mlen + 1;
    if (need > sz)
        return 0;
    size_t o = 0;
    buf[o++] = 'E';
    put_be32(buf + o, (uint32_t)(need - 1));
    o += 4;
    for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
        size_t l = strlen(fields[i]) + 1;
        memcpy(buf + o, fields[i], l);
        o += l;
    }
    buf[o++] = 'M';
    memcpy(buf + o, message, mlen + 1);
    o += mlen + 1;
    buf[o++] = '\0';
    return o;
}
