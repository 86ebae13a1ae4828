/* Fuzz the etcd client's reading of answers: a fake etcd on loopback answers every request of
 * one DCS call (range read, transaction, lease grant/renew/revoke, authentication, watch
 * stream) with the input's status and body. However broken the answer, the call must return
 * within its time bound, and a failure must come with a one-line message naming the host. */
#include "common/common.h"
#include "common/log.h"
#include "dcs/dcs.h"
#include "fuzz_util.h"

#include <pthread.h>
#include <signal.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CALL_TIMEOUT_MS 2000

static int port;
static char host[32];
static int listen_fd;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *body;        /* mu: the answer, a copy of the current input's */
static size_t body_len;
static int status;

/* Read one HTTP request (headers, then Content-Length bytes); false on a closed connection. */
static bool read_request(int fd)
{
    char buf[8192];
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have == sizeof(buf) - 1)
            return false;
        ssize_t r = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
        if (r <= 0)
            return false;
        have += (size_t)r;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head = (size_t)(end + 4 - buf), want = 0;
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    if (cl && cl < end)
        want = strtoul(cl + 17, NULL, 10);
    size_t got = have - head;
    while (got < want) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static void *server_main(void *arg)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);    /* blocking calls here are never interrupted */
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        if (read_request(fd)) {
            /* a copy: a call that gave up may leave this answer to outlive its input */
            pthread_mutex_lock(&mu);
            size_t n = body_len;
            uint8_t *out = xmalloc(n + 1);
            memcpy(out, body, n);
            char head[160];
            str_fmt(head, sizeof(head),
                    "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n", status, n);
            pthread_mutex_unlock(&mu);
            if (fuzz_send_all(fd, head, strlen(head)))
                fuzz_send_all(fd, out, n);
            free(out);
        }
        close(fd);
    }
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    listen_fd = fuzz_listen_loopback(&port);
    str_fmt(host, sizeof(host), "127.0.0.1:%d", port);
    pthread_t th;
    FUZZ_CHECK(pthread_create(&th, NULL, server_main, NULL) == 0);
    return 0;
}

/* Input: [operation][status] body. Operation: bits 0-3 which call, bit 4 with a user (the
 * authentication request gets the same answer). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int statuses[] = {200, 200, 200, 200, 400, 401, 404, 413, 500, 503};
    if (size < 2)
        return 0;
    int op = data[0] & 0x0f;
    bool with_user = data[0] & 0x10;
    pthread_mutex_lock(&mu);
    status = statuses[data[1] % ARRAY_LEN(statuses)];
    free(body);
    body_len = size - 2;
    body = xmalloc(body_len + 1);
    memcpy(body, data + 2, body_len);
    pthread_mutex_unlock(&mu);

    char *hosts[] = {host};
    Err err = {{0}};
    Dcs *d = dcs_etcd_new(hosts, 1, "/service/fuzz/", with_user ? "root" : NULL,
                          with_user ? "secret" : NULL, CALL_TIMEOUT_MS, &err);
    FUZZ_CHECK(d != NULL);
    bool ok = false, flag = false, timed_out_ok = false;
    int64_t t0 = fuzz_now_ms();
    switch (op) {
    case 0: {
        Cluster c;
        ok = d->ops->load(d, &c, &err);
        if (ok)
            FUZZ_CHECK(c.revision > 0);
        cluster_free(&c);
        break;
    }
    case 1:
        ok = d->ops->keepalive(d, 5, &flag, &err);
        if (ok)
            FUZZ_CHECK(d->ops->lease_id(d) != 0);
        if (ok)     /* a renewal, then a ttl change: a new lease and the keys moved to it */
            ok = d->ops->keepalive(d, 5, &flag, &err) && d->ops->keepalive(d, 7, &flag, &err);
        break;
    case 2:
        ok = d->ops->create(d, "leader", "node1", false, &flag, &err);
        break;
    case 3:
        ok = d->ops->put(d, "members/node1", "{}", false, &err);
        break;
    case 4:
        ok = d->ops->cas(d, "leader", "node1", "node2", false, &flag, &err);
        break;
    case 5: {
        int64_t rev = 0;
        ok = d->ops->cas_rev(d, "sync", 7, "{}", &flag, &rev, &err);
        if (ok && !flag)
            FUZZ_CHECK(rev == 0);
        break;
    }
    case 6:
        ok = d->ops->del(d, "leader", "node1", &flag, &err);
        break;
    case 7:
        ok = d->ops->revoke(d, &err);
        break;
    default:
        ok = d->ops->watch(d, 10, CALL_TIMEOUT_MS, &err);
        timed_out_ok = true;    /* false with no message: nothing changed in time */
        break;
    }
    /* each HTTP call is bounded; a call makes at most a handful (login, renewals, grant) */
    FUZZ_CHECK(fuzz_now_ms() - t0 < 8 * CALL_TIMEOUT_MS);
    if (!ok && !(timed_out_ok && err.msg[0] == '\0')) {
        FUZZ_CHECK(err.msg[0] != '\0');
        FUZZ_CHECK(strchr(err.msg, '\n') == NULL);
        FUZZ_CHECK(strstr(err.msg, host) != NULL);
    }
    dcs_free(d);
    return 0;
}
