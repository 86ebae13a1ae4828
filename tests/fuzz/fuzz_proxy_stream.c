/* Fuzz the proxy end to end: a real worker thread with a postgres route and a tcp route, both
 * to a fake backend on loopback. Each input is what a client sends and what the server answers.
 * Whatever the bytes, the proxy must not crash, and a session must be byte-transparent: the
 * backend receives exactly the client's bytes and the client exactly the server's, then the
 * end of the stream. A CancelRequest on the postgres route must reach the backend as its own
 * 16-byte connection (the key is unknown here, so it goes to every member); a session shorter
 * than the 8 bytes that tell a startup packet never reaches the backend, and the client must
 * only see the connection closed. */
#include "common/common.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "dcs/cluster.h"
#include "fuzz_util.h"
#include "proxy/proxy.h"
#include "proxy/proxy_pg.h"

#include <signal.h>
#include <sys/mman.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WAIT_MS 10000   /* far above any latency on loopback; a stall is a finding */

static Proxy proxy;
static int pg_port, tcp_port, backend_port;
static int backend_fd;

/* What the fake backend is to answer, and what it received (one session at a time). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static uint8_t *answer;      /* a copy of the current input's server bytes */
static size_t answer_len;
static bool server_closes_first;    /* shutdown(SHUT_WR) right after the answer */
static uint8_t *received;
static size_t received_len, received_cap;
static int sessions_accepted, sessions_done;

static int free_port(void)
{
    int port;
    close(fuzz_listen_loopback(&port));
    return port;
}

/* The fake server: answers at once, then reads until the proxy passes on the client's end. */
static void *backend_main(void *arg)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);    /* blocking calls here are never interrupted */
    for (;;) {
        int fd = accept(backend_fd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&mu);
        size_t n = answer_len;
        uint8_t *out = xmalloc(n + 1);
        memcpy(out, answer, n);
        bool shut = server_closes_first;
        sessions_accepted++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        fuzz_send_all(fd, out, n);
        free(out);
        if (shut)
            shutdown(fd, SHUT_WR);
        uint8_t buf[4096];
        ssize_t r;
        size_t mine = 0;
        while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {
            pthread_mutex_lock(&mu);
            if (received_len + (size_t)r > received_cap) {
                received_cap = (received_len + (size_t)r) * 2;
                received = xrealloc(received, received_cap);
            }
            memcpy(received + received_len, buf, (size_t)r);
            received_len += (size_t)r;
            mine += (size_t)r;
            /* like PostgreSQL, close a CancelRequest's connection once it is in */
            uint32_t pid, key;
            bool cancel = mine >= PG_CANCEL_LEN && mine == received_len &&
                          pg_first_packet(received, mine, &pid, &key) == PGF_CANCEL;
            pthread_mutex_unlock(&mu);
            if (cancel)
                break;
        }
        close(fd);
        pthread_mutex_lock(&mu);
        sessions_done++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

static char *write_config(int to_port)
{
    char *yml = str_printf("scope: fuzz\n"
                           "etcd3:\n  host: 127.0.0.1:1\n"
                           "proxy:\n  workers: 1\n  connect_wait: 5\n  connect_timeout: 2\n"
                           "  routes:\n"
                           "    - name: pg\n      listen: 127.0.0.1:%d\n      role: primary\n"
                           "    - name: tcp\n      listen: 127.0.0.1:%d\n      role: primary\n"
                           "      protocol: tcp\n      target_port: %d\n",
                           pg_port, tcp_port, to_port);
    int fd = memfd_create("proxy.yml", 0);
    FUZZ_CHECK(fd >= 0 && write(fd, yml, strlen(yml)) == (ssize_t)strlen(yml));
    free(yml);
    return str_printf("/proc/self/fd/%d", fd);
}

/* A snapshot whose primary is the fake backend. */
static ProxySnapshot *snapshot_to(int to_port)
{
    char *member = str_printf("{\"conn_url\":\"postgres://127.0.0.1:%d/postgres\",\"role\":\"primary\","
                              "\"state\":\"running\",\"timeline\":1}", to_port);
    DcsKv kvs[] = {
        {.key = "leader", .value = "n1", .mod_revision = 1},
        {.key = "members/n1", .value = member, .mod_revision = 2},
    };
    Cluster c;
    Err err = {{0}};
    FUZZ_CHECK(cluster_from_kvs(kvs, 2, 2, &c, &err));
    ProxySnapshot *s = proxy_snapshot_build(&c, 1 << 20, true, false);
    cluster_free(&c);
    free(member);
    FUZZ_CHECK(s->primary >= 0);
    s->version = 1;
    s->primary_gen = 1;
    return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    backend_fd = fuzz_listen_loopback(&backend_port);
    pg_port = free_port();
    tcp_port = free_port();
    char *path = write_config(backend_port);
    Err err = {{0}};
    proxy.cfg = config_load_proxy(path, &err);
    if (!proxy.cfg) {
        fprintf(stderr, "fuzz_proxy_stream: %s\n", err.msg);
        exit(1);
    }
    free(path);
    proxy.pc = &proxy.cfg->proxy;
    proxy.stats = xcalloc_aligned((size_t)proxy.pc->n_routes, sizeof(RouteStats), _Alignof(RouteStats));
    pthread_mutex_init(&proxy.snap_mu, NULL);
    proxy.snap = snapshot_to(backend_port);
    atomic_store(&proxy.etcd_ok, 1);
    proxy.workers = xcalloc(1, sizeof(ProxyWorker *));
    proxy.workers[0] = proxy_worker_new(&proxy, 0, &err);
    if (!proxy.workers[0] || !proxy_worker_start(proxy.workers[0], &err)) {
        fprintf(stderr, "fuzz_proxy_stream: %s\n", err.msg);
        exit(1);
    }
    proxy.n_workers = 1;
    pthread_t th;
    FUZZ_CHECK(pthread_create(&th, NULL, backend_main, NULL) == 0);
    return 0;
}

/* Wait (mu held) until *counter passes before, at most WAIT_MS. */
static bool wait_past(const int *counter, int before)
{
    int64_t until = mono_ms() + WAIT_MS;
    while (*counter == before && mono_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    return *counter != before;
}

/* On a stall: the proxy's counters and the ports involved. No fork here: a child holding
 * copies of the worker's sockets would keep closed ones in its epoll set. With
 * FUZZ_STALL_PAUSE=N the process then waits N seconds (to look at it from outside). */
static void dump_state(void)
{
    char *m = proxy_metrics_text(&proxy);
    fprintf(stderr, "%sports: pg %d, tcp %d, backend %d\n", m, pg_port, tcp_port, backend_port);
    free(m);
    const char *pause = getenv("FUZZ_STALL_PAUSE");
    if (pause)
        sleep_ms(atoi(pause) * 1000LL);
}

static int connect_to(int port)
{
    int fd = fuzz_connect_loopback(port);
    if (fd < 0) {
        fprintf(stderr, "fuzz_proxy_stream: connect to port %d: %s\n", port, strerror(errno));
        dump_state();
        abort();
    }
    return fd;
}

/* Read into buf until want bytes (or the end of the stream when want is SIZE_MAX). Returns
 * the count, or aborts when nothing happens for WAIT_MS. */
static size_t read_until(int fd, uint8_t *buf, size_t cap, size_t want, bool *eof)
{
    size_t got = 0;
    *eof = false;
    while (got < want) {
        uint8_t scratch[4096];
        uint8_t *to = got < cap ? buf + got : scratch;
        size_t room = got < cap ? cap - got : sizeof(scratch);
        ssize_t r = fuzz_recv(fd, to, room, WAIT_MS);
        if (r < 0) {
            fprintf(stderr, "fuzz_proxy_stream: the proxy stalled (%zu bytes read)\n", got);
            dump_state();
            abort();
        }
        if (r == 0) {
            *eof = true;
            break;
        }
        got += (size_t)r;
    }
    return got;
}

/* Input: [flags] client bytes 0xFF 0x00 server bytes. Flags: bit 0 the tcp route (else the
 * postgres one), bit 1 the server ends its side right after its answer (else the client first) */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t flags;
    const uint8_t *cli, *srv;
    size_t ncli, nsrv;
    if (!fuzz_two_sides(data, size, &flags, &cli, &ncli, &srv, &nsrv))
        return 0;
    bool tcp = flags & 1;
    bool server_first = flags & 2;

    uint32_t pid, key;
    PgFirst first = pg_first_packet(cli, ncli, &pid, &key);
    bool reaches_backend = tcp || first == PGF_OTHER;
    bool cancel = !tcp && first == PGF_CANCEL;
    size_t expect_len = reaches_backend ? ncli : cancel ? PG_CANCEL_LEN : 0;

    pthread_mutex_lock(&mu);
    free(answer);
    answer = xmalloc(nsrv + 1);
    memcpy(answer, srv, nsrv);
    answer_len = nsrv;
    server_closes_first = server_first;
    received_len = 0;
    int accepted_before = sessions_accepted, done_before = sessions_done;
    pthread_mutex_unlock(&mu);

    int fd = connect_to(tcp ? tcp_port : pg_port);
    (void)fuzz_send_all(fd, cli, ncli);    /* the proxy may close first (a cancel, say) */
    uint8_t *got = xmalloc(nsrv + 1);
    bool eof = false;
    size_t n = 0;
    if (reaches_backend) {
        /* the whole answer first: the session is open by then, so our end of the stream is
         * passed on rather than taken for a client that gave up waiting */
        n = read_until(fd, got, nsrv, nsrv, &eof);
        FUZZ_CHECK(n == nsrv && memcmp(got, srv, nsrv) == 0);
        pthread_mutex_lock(&mu);
        FUZZ_CHECK(wait_past(&sessions_accepted, accepted_before));
        pthread_mutex_unlock(&mu);
    }
    shutdown(fd, SHUT_WR);
    uint8_t tail[64];
    size_t extra = read_until(fd, tail, sizeof(tail), SIZE_MAX, &eof);
    if (reaches_backend)
        FUZZ_CHECK(extra == 0);     /* nothing after the server's bytes but the end */
    close(fd);
    free(got);

    if (reaches_backend || cancel) {
        pthread_mutex_lock(&mu);
        FUZZ_CHECK(wait_past(&sessions_done, done_before));
        FUZZ_CHECK(received_len == expect_len &&
                   (expect_len == 0 || memcmp(received, cli, expect_len) == 0));
        pthread_mutex_unlock(&mu);
    }
    return 0;
}
