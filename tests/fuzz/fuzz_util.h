/* Shared helpers of the libFuzzer targets: split one input into NUL-terminated parts, and a
 * check that turns a broken property into a crash libFuzzer reports with its input. */
#ifndef PGVIGIL_FUZZ_UTIL_H
#define PGVIGIL_FUZZ_UTIL_H

#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* Split data at each byte `sep` into at most max parts, each a malloc'd NUL-terminated copy
 * (missing parts are NULL). Returns the number of parts; free them with fuzz_parts_free. */
static inline int fuzz_split(const uint8_t *data, size_t size, uint8_t sep, char **parts, int max)
{
    int n = 0;
    size_t start = 0;
    for (int i = 0; i < max; i++)
        parts[i] = NULL;
    for (size_t i = 0; i <= size && n < max; i++) {
        if (i == size || (data[i] == sep && n < max - 1)) {
            char *p = xmalloc(i - start + 1);
            memcpy(p, data + start, i - start);
            p[i - start] = '\0';
            parts[n++] = p;
            start = i + 1;
        }
    }
    return n;
}

static inline void fuzz_parts_free(char **parts, int n)
{
    for (int i = 0; i < n; i++)
        free(parts[i]);
}

/* An input made of two byte streams, "client bytes 0xFF 0x00 server bytes" (no separator: all
 * client), after its first byte (the target's own flags). False for an empty input. */
static inline bool fuzz_two_sides(const uint8_t *data, size_t size, uint8_t *flags,
                                  const uint8_t **cli, size_t *ncli, const uint8_t **srv,
                                  size_t *nsrv)
{
    if (size < 1)
        return false;
    *flags = data[0];
    data++;
    size--;
    size_t split = size;
    for (size_t i = 0; i + 1 < size; i++) {
        if (data[i] == 0xFF && data[i + 1] == 0x00) {
            split = i;
            break;
        }
    }
    *cli = data;
    *ncli = split;
    *srv = data + (split < size ? split + 2 : size);
    *nsrv = size - (size_t)(*srv - data);
    return true;
}

/* A listening socket on 127.0.0.1 and a port the kernel chose. */
static inline int fuzz_listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    FUZZ_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 64) == 0 &&
               getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Socket calls of the targets' own threads. libFuzzer's timeout alarm (SIGALRM, every second)
 * interrupts blocking calls, so each one resumes after EINTR instead of reading it as an end or
 * a stall. */

static inline int64_t fuzz_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd has one of events, at most timeout_ms: true when it has. */
static inline bool fuzz_wait(int fd, short events, int timeout_ms)
{
    int64_t until = fuzz_now_ms() + timeout_ms;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int left = (int)(until - fuzz_now_ms());
        int n = poll(&p, 1, left > 0 ? left : 0);
        if (n == 1)
            return true;
        if (n == 0 || errno != EINTR)
            return false;
    }
}

/* A blocking TCP connection to 127.0.0.1:port, or -1 with errno set. Many sessions a second
 * leave loopback's local ports in TIME_WAIT: when none is free it waits for some to expire
 * (a limit of the harness, not of the code under test). */
static inline int fuzz_connect_loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int tries = 0; tries < 600; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
        if (rc != 0 && errno == EINTR) {
            /* the connection goes on in the background: wait for its outcome */
            int soerr = 0;
            socklen_t len = sizeof(soerr);
            if (fuzz_wait(fd, POLLOUT, 10000) &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
                rc = 0;
            else
                errno = soerr ? soerr : ETIMEDOUT;
        }
        if (rc == 0)
            return fd;
        int e = errno;
        close(fd);
        if (e != EADDRNOTAVAIL) {
            errno = e;
            return -1;
        }
        usleep(100 * 1000);
    }
    errno = EADDRNOTAVAIL;
    return -1;
}

/* Send all of p; false when the peer closed or reset first. */
static inline bool fuzz_send_all(int fd, const void *p, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t w = send(fd, (const char *)p + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        off += (size_t)w;
    }
    return true;
}

/* One recv: > 0 bytes, 0 at the end of the stream (or a reset), -1 when nothing came for
 * timeout_ms. */
static inline ssize_t fuzz_recv(int fd, void *buf, size_t cap, int timeout_ms)
{
    for (;;) {
        if (!fuzz_wait(fd, POLLIN, timeout_ms))
            return -1;
        ssize_t r = recv(fd, buf, cap, 0);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? 0 : r;
    }
}

#endif
