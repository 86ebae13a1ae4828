/* Fuzz the proxy's reading of PostgreSQL protocol bytes: the first packet of a connection and
 * the scan of both directions for BackendKeyData, fed in chunks of sizes taken from the input
 * (the proxy sees whatever recv returns). Client bytes are untrusted. */
#include "common/common.h"
#include "fuzz_util.h"
#include "proxy/proxy_pg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Input: [1 byte chunk size seed][client bytes] 0xFF 0x00 [server bytes] */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t flags;
    const uint8_t *cli, *srv;
    size_t ncli, nsrv;
    if (!fuzz_two_sides(data, size, &flags, &cli, &ncli, &srv, &nsrv))
        return 0;
    size_t chunk = (size_t)(flags % 17) + 1;

    uint32_t pid = 0, key = 0;
    PgFirst f = pg_first_packet(cli, ncli, &pid, &key);
    if (f == PGF_CANCEL)
        FUZZ_CHECK(ncli >= PG_CANCEL_LEN);
    if (ncli < 8)
        FUZZ_CHECK(f == PGF_NEED_MORE);

    /* the client's bytes and the server's, interleaved chunk by chunk */
    PgKeyScan s;
    memset(&s, 0, sizeof(s));
    size_t ci = 0, si = 0;
    while (ci < ncli || si < nsrv) {
        size_t k = ncli - ci < chunk ? ncli - ci : chunk;
        pg_keyscan_client(&s, cli + ci, k);
        ci += k;
        k = nsrv - si < chunk ? nsrv - si : chunk;
        pg_keyscan_server(&s, srv + si, k);
        si += k;
        FUZZ_CHECK(s.chave < sizeof(s.chdr));
        FUZZ_CHECK(s.shave <= sizeof(s.shdr));
        FUZZ_CHECK(s.owed >= 0);
        if (s.found)
            FUZZ_CHECK(s.done);
    }

    unsigned char buf[256];
    char msg[300];
    size_t mlen = ncli < sizeof(msg) - 1 ? ncli : sizeof(msg) - 1;
    memcpy(msg, cli, mlen);
    msg[mlen] = '\0';
    size_t n = pg_error_response(buf, sizeof(buf), msg);
    FUZZ_CHECK(n <= sizeof(buf));
    if (n > 0)
        FUZZ_CHECK(buf[0] == 'E');
    return 0;
}
