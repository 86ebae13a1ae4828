/* Fuzz the DNS client's reading of answers: a fake name server on loopback (UDP, and TCP for a
 * truncated answer) answers the record query and the signed dynamic update with the input's
 * bytes, made to pass as an answer to that query (its ID, the answer bit). However broken the answer, a call returns within its bound and a failure is
 * one line naming the server. */
#include "common/common.h"
#include "common/log.h"
#include "config/config.h"
#include "fuzz_util.h"
#include "net/dns_update.h"

#include <pthread.h>
#include <signal.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int udp_fd, tcp_fd;
static char server[32];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *answer;         /* mu: a copy of the current input's answer */
static size_t answer_len;

/* The answer for a query: the input's bytes, at least a header long, with the query's ID and
 * the answer bit set. (Anything else is ignored as stale or forged and the client waits for its
 * whole timeout: tested in test_dns_update, far too slow to fuzz.) malloc'd. */
static uint8_t *answer_for(const uint8_t *query, size_t qlen, size_t *n)
{
    pthread_mutex_lock(&mu);
    *n = answer_len < 12 ? 12 : answer_len;
    uint8_t *out = xcalloc(1, *n + 1);
    memcpy(out, answer, answer_len);
    pthread_mutex_unlock(&mu);
    if (qlen >= 2)
        memcpy(out, query, 2);
    out[2] |= 0x80;
    return out;
}

static void *udp_main(void *arg)
{
    for (;;) {
        uint8_t q[4096];
        struct sockaddr_storage from;
        socklen_t flen = sizeof(from);
        ssize_t r = recvfrom(udp_fd, q, sizeof(q), 0, (struct sockaddr *)&from, &flen);
        if (r <= 0)
            continue;
        size_t n;
        uint8_t *out = answer_for(q, (size_t)r, &n);
        sendto(udp_fd, out, n, 0, (struct sockaddr *)&from, flen);
        free(out);
    }
    return NULL;
}

/* TCP: two-byte length, then the message, both ways. */
static void *tcp_main(void *arg)
{
    for (;;) {
        int fd = accept(tcp_fd, NULL, NULL);
        if (fd < 0)
            continue;
        uint8_t q[4096];
        size_t have = 0;
        while (have < 2 || have < 2 + (size_t)(q[0] << 8 | q[1])) {
            ssize_t r = recv(fd, q + have, sizeof(q) - have, 0);
            if (r <= 0 || (have += (size_t)r) == sizeof(q))
                break;
        }
        if (have > 2) {
            size_t n;
            uint8_t *out = answer_for(q + 2, have - 2, &n);
            uint8_t len[2] = {(uint8_t)(n >> 8), (uint8_t)n};
            if (fuzz_send_all(fd, len, 2))
                fuzz_send_all(fd, out, n > 0xffff ? 0xffff : n);
            free(out);
        }
        close(fd);
    }
    return NULL;
}

static void *with_signals_blocked(void *(*fn)(void *))
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);    /* threads inherit it: never interrupted */
    pthread_t th;
    FUZZ_CHECK(pthread_create(&th, NULL, fn, NULL) == 0);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    int port = 0;
    /* a UDP and a TCP socket on the same port number */
    for (int tries = 0; tries < 50; tries++) {
        tcp_fd = fuzz_listen_loopback(&port);
        udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (udp_fd >= 0 && bind(udp_fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            break;
        close(tcp_fd);
        close(udp_fd);
        udp_fd = -1;
    }
    FUZZ_CHECK(udp_fd >= 0);
    str_fmt(server, sizeof(server), "127.0.0.1:%d", port);
    with_signals_blocked(udp_main);
    with_signals_blocked(tcp_main);
    return 0;
}

/* Input: [flags] answer. Flags: bit 1 an update (else a query), bit 2 AAAA, bit 3 the
 * update's prerequisite is an old value (else absence). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    pthread_mutex_lock(&mu);
    free(answer);
    answer_len = size - 1;
    answer = xmalloc(answer_len + 1);
    memcpy(answer, data + 1, answer_len);
    pthread_mutex_unlock(&mu);

    bool v6 = flags & 4;
    DnsConfig cfg = {
        .server = server, .zone = "example.test.", .record = "db.example.test.",
        .address = v6 ? "::2" : "127.0.0.3", .ttl = 5,
        .tsig_key_name = "pgvigil", .tsig_secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
        .tsig_algorithm = "hmac-sha256", .timeout = 1,
    };
    Err err = {{0}};
    bool ok;
    int64_t t0 = fuzz_now_ms();
    if (flags & 2) {
        bool prereq_failed = false;
        ok = dns_update_once(&cfg, flags & 8 ? (v6 ? "::1" : "127.0.0.2") : NULL,
                             v6 ? "::2" : "127.0.0.3", &prereq_failed, &err);
        if (ok)
            FUZZ_CHECK(!prereq_failed);
    } else {
        char *addr = NULL;
        ok = dns_query_addr(&cfg, v6, &addr, &err);
        if (ok && addr)
            FUZZ_CHECK(strchr(addr, v6 ? ':' : '.') != NULL);
        free(addr);
    }
    /* one attempt over UDP, maybe one over TCP, each bounded by the timeout */
    FUZZ_CHECK(fuzz_now_ms() - t0 < 5 * 1000);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "%s: %s\n", ok ? "ok" : "failed", err.msg);
    if (!ok) {
        FUZZ_CHECK(err.msg[0] != '\0');
        FUZZ_CHECK(strchr(err.msg, '\n') == NULL);
    }
    return 0;
}
