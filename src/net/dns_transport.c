/* DNS transport: one query/answer exchange with the server, over UDP, then TCP when the
 * answer is truncated, bounded by a deadline and abortable through an fd. */
#include "common/common.h"
#include "net/dns_int.h"
#include "common/timeutil.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ldns/ldns.h>

/* ---- transport ---- */

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - mono_ms();
    return left > 0 ? (int)left : 0;
}

/* Wait until fd is ready for events, the deadline passes (0) or abort_fd fires (-1). */
static int wait_fd(int fd, short events, int64_t deadline, int abort_fd)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = abort_fd, .events = POLLIN}};
        int left = remaining_ms(deadline);
        if (left == 0)
            return 0;
        int n = poll(p, abort_fd >= 0 ? 2 : 1, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (abort_fd >= 0 && (p[1].revents & POLLIN)) {
            errno = ECANCELED;
            return -1;
        }
        if (n > 0)
            return 1;
    }
}

/* Is buf an answer to the message with this id? */
static bool is_reply(const uint8_t *buf, size_t len, uint16_t id)
{
    return len >= LDNS_HEADER_SIZE && LDNS_ID_WIRE(buf) == id && LDNS_QR_WIRE(buf);
}

static bool udp_exchange(const struct addrinfo *ai, const uint8_t *q, size_t qlen, uint16_t id,
                         int64_t deadline, int abort_fd, uint8_t *buf, size_t *len, const char *what,
                         int timeout_ms, Err *err)
{
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err_set(err, "%s: socket: %s", what, strerror(errno));
        return false;
    }
    bool ok = false;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 || send(fd, q, qlen, 0) != (ssize_t)qlen) {
        err_set(err, "%s: send: %s", what, strerror(errno));
        goto out;
    }
    for (;;) {
        int w = wait_fd(fd, POLLIN, deadline, abort_fd);
        if (w == 0) {
            err_set(err, "%s: no answer within %d s", what, timeout_ms / 1000);
            goto out;
        }
        ssize_t n = w < 0 ? -1 : recv(fd, buf, DNS_MAX_MSG, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0) {
            err_set(err, "%s: %s", what, errno == ECANCELED ? "cancelled" : strerror(errno));
            goto out;
        }
        if (is_reply(buf, (size_t)n, id)) {   /* anything else is stale or forged: keep waiting */
            *len = (size_t)n;
            ok = true;
            goto out;
        }
    }
out:
    close(fd);
    return ok;
}

/* Write or read exactly len bytes on a non-blocking stream socket before the deadline. */
static bool stream_io(int fd, bool writing, uint8_t *p, size_t len, int64_t deadline, int abort_fd)
{
    while (len > 0) {
        ssize_t n = writing ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0) {
            errno = ECONNRESET;
            return false;
        }
        if (errno != EAGAIN && errno != EINTR)
            return false;
        int w = wait_fd(fd, writing ? POLLOUT : POLLIN, deadline, abort_fd);
        if (w == 0)
            errno = ETIMEDOUT;
        if (w <= 0)
            return false;
    }
    return true;
}

static bool tcp_exchange(const struct addrinfo *ai, const uint8_t *q, size_t qlen, uint16_t id,
                         int64_t deadline, int abort_fd, uint8_t *buf, size_t *len, const char *what,
                         int timeout_ms, Err *err)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err_set(err, "%s: socket: %s", what, strerror(errno));
        return false;
    }
    bool ok = false;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            err_set(err, "%s: tcp connect: %s", what, strerror(errno));
            goto out;
        }
        int w = wait_fd(fd, POLLOUT, deadline, abort_fd);
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (w == 0) {
            err_set(err, "%s: tcp connect: no answer within %d s", what, timeout_ms / 1000);
            goto out;
        }
        if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            err_set(err, "%s: tcp connect: %s", what, strerror(w < 0 ? errno : soerr ? soerr : errno));
            goto out;
        }
    }
    uint8_t *msg = xmalloc(qlen + 2);
    msg[0] = (uint8_t)(qlen >> 8);
    msg[1] = (uint8_t)qlen;
    memcpy(msg + 2, q, qlen);
    bool sent = stream_io(fd, true, msg, qlen + 2, deadline, abort_fd);
    free(msg);
    uint8_t hdr[2];
    if (!sent || !stream_io(fd, false, hdr, 2, deadline, abort_fd) ||
        !stream_io(fd, false, buf, ((size_t)hdr[0] << 8) | hdr[1], deadline, abort_fd)) {
        if (errno == ETIMEDOUT)
            err_set(err, "%s: tcp: no answer within %d s", what, timeout_ms / 1000);
        else
            err_set(err, "%s: tcp: %s", what, errno == ECANCELED ? "cancelled" : strerror(errno));
        goto out;
    }
    *len = ((size_t)hdr[0] << 8) | hdr[1];
    if (!is_reply(buf, *len, id)) {
        err_set(err, "%s: tcp: the answer does not match the request", what);
        goto out;
    }
    ok = true;
out:
    close(fd);
    return ok;
}

/* Send wire message q (whose id is id) to the server and return the answer in *resp (malloc'd)
 * within t->timeout_ms overall. UDP first, TCP when the answer is truncated. what prefixes
 * errors ("dns.server 127.0.0.1:53"). */
bool dns_exchange(const DnsTarget *t, const uint8_t *q, size_t qlen, uint16_t id, int abort_fd,
                  const char *what, uint8_t **resp, size_t *resp_len, Err *err)
{
    *resp = NULL;
    int64_t deadline = mono_ms() + t->timeout_ms;
    char port[8];
    str_fmt(port, sizeof(port), "%d", t->port);
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    /* XXX: a host name is resolved with the blocking libc resolver, outside the deadline;
     * an IP address (the usual setting) never blocks here. */
    int gai = getaddrinfo(t->host, port, &hints, &ai);
    if (gai != 0) {
        err_set(err, "%s: cannot resolve \"%s\": %s", what, t->host, gai_strerror(gai));
        return false;
    }
    uint8_t *buf = xmalloc(DNS_MAX_MSG);
    size_t len = 0;
    bool ok = udp_exchange(ai, q, qlen, id, deadline, abort_fd, buf, &len, what, t->timeout_ms, err);
    if (ok && LDNS_TC_WIRE(buf))
        ok = tcp_exchange(ai, q, qlen, id, deadline, abort_fd, buf, &len, what, t->timeout_ms, err);
    freeaddrinfo(ai);
    if (!ok) {
        free(buf);
        return false;
    }
    *resp = buf;
    *resp_len = len;
    return true;
}

/* ---- messages ---- */

