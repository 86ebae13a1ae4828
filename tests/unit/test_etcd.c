/* Tests of the etcd client: against a fake HTTP server for malformed answers, errors and
 * timeouts, then against a real etcd (/usr/bin/etcd) started on loopback ports and killed after. */
#include "common/common.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "common/fileutil.h"
#include "common/timeutil.h"
#include "dcs/dcs.h"

#include "dcs_txn_checks.h"

#ifndef ETCD_BIN
#define ETCD_BIN "/usr/bin/etcd"
#endif
#define TIMEOUT_MS 3000

/* ---- helpers ---- */

/* A port nobody listens on right now (bound then closed). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static size_t collect(char *p, size_t size, size_t nmemb, void *ud)
{
    char **out = ud;
    size_t old = *out ? strlen(*out) : 0, n = size * nmemb;
    *out = xrealloc(*out, old + n + 1);
    memcpy(*out + old, p, n);
    (*out)[old + n] = '\0';
    return n;
}

/* Plain HTTP for test plumbing (health checks, enabling auth). body NULL: GET. Returns the
 * malloc'd answer or NULL; *status gets the HTTP status. */
static char *http(const char *url, const char *body, const char *auth, long *status)
{
    CURL *c = curl_easy_init();
    char *out = NULL;
    struct curl_slist *h = NULL;
    char *auth_hdr = NULL;
    if (auth) {
        auth_hdr = str_printf("Authorization: %s", auth);
        h = curl_slist_append(h, auth_hdr);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    *status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    else
        FREE_AND_NULL(out);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    free(auth_hdr);
    return out;
}

/* ---- a fake etcd: answers every request with the canned reply ---- */

typedef struct Fake {
    int fd;
    int port;
    pthread_t thread;
    pthread_mutex_t mu;
    volatile bool stop;
    int status;              /* canned reply */
    char *body;
    int delay_ms;
    char last_path[128];
    int requests;
} Fake;

static Fake fake;

static void fake_reply(int status, const char *body, int delay_ms)
{
    pthread_mutex_lock(&fake.mu);
    fake.status = status;
    free(fake.body);
    fake.body = str_dup(body);
    fake.delay_ms = delay_ms;
    pthread_mutex_unlock(&fake.mu);
}

/* Read one request (headers and Content-Length body); false when the peer went away. */
static bool fake_read_request(int c, char *path, size_t pathsz)
{
    char buf[65536];
    size_t len = 0;
    for (;;) {
        struct pollfd p = {.fd = c, .events = POLLIN};
        if (poll(&p, 1, 2000) <= 0)
            return false;
        ssize_t r = recv(c, buf + len, sizeof(buf) - 1 - len, 0);
        if (r <= 0)
            return false;
        len += (size_t)r;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        const char *cl = strcasestr(buf, "Content-Length:");
        size_t want = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
        if (len >= want || len == sizeof(buf) - 1)
            break;
    }
    const char *sp = strchr(buf, ' ');
    const char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
    if (sp && sp2)
        str_fmt(path, pathsz, "%.*s", (int)(sp2 - sp - 1), sp + 1);
    return true;
}

static void *fake_main(void *arg)
{
    while (!fake.stop) {
        struct pollfd p = {.fd = fake.fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept(fake.fd, NULL, NULL);
        if (c < 0)
            continue;
        char path[128] = "";
        if (fake_read_request(c, path, sizeof(path))) {
            pthread_mutex_lock(&fake.mu);
            int status = fake.status, delay = fake.delay_ms;
            char *body = str_dup(fake.body ? fake.body : "");
            str_copy(fake.last_path, sizeof(fake.last_path), path);
            fake.requests++;
            pthread_mutex_unlock(&fake.mu);
            for (int64_t until = mono_ms() + delay; !fake.stop && mono_ms() < until;)
                sleep_ms(10);
            char *resp = str_printf("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                                    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                                    status, strlen(body), body);
            ssize_t w = send(c, resp, strlen(resp), MSG_NOSIGNAL);
            (void)w;
            free(resp);
            free(body);
        }
        close(c);
    }
    return NULL;
}

static int fake_setup(void **state)
{
    memset(&fake, 0, sizeof(fake));
    pthread_mutex_init(&fake.mu, NULL);
    fake.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fake.fd < 0 || bind(fake.fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(fake.fd, 16) != 0 || getsockname(fake.fd, (struct sockaddr *)&a, &len) != 0) {
        fprintf(stderr, "fake etcd: cannot listen on 127.0.0.1: %s\n", strerror(errno));
        return -1;
    }
    fake.port = ntohs(a.sin_port);
    if (pthread_create(&fake.thread, NULL, fake_main, NULL) != 0)
        return -1;
    return 0;
}

static int fake_teardown(void **state)
{
    fake.stop = true;
    pthread_join(fake.thread, NULL);
    close(fake.fd);
    free(fake.body);
    pthread_mutex_destroy(&fake.mu);
    return 0;
}

static Dcs *fake_dcs(int timeout_ms)
{
    char host[64];
    str_fmt(host, sizeof(host), "127.0.0.1:%d", fake.port);
    char *hosts[] = {host};
    Err err = {{0}};
    Dcs *d = dcs_etcd_new(hosts, 1, "/service/fake/", NULL, NULL, timeout_ms, &err);
    if (!d)
        fail_msg("dcs_etcd_new: %s", err.msg);
    return d;
}

static void expect_msg(const Err *err, const char *fmt_suffix)
{
    char want[512];
    str_fmt(want, sizeof(want), "etcd 127.0.0.1:%d: %s", fake.port, fmt_suffix);
    assert_string_equal(err->msg, want);
}

static void test_fake_malformed_range(void **state)
{
    static const char *bad[] = {
        "{not json",
        "[1,2]",
        "",
        "{}",                                                          /* no header */
        "{\"header\":{\"revision\":\"abc\"}}",
        "{\"header\":{\"revision\":true}}",
        "{\"header\":{\"revision\":\"5\"},\"kvs\":{}}",
        "{\"header\":{\"revision\":\"5\"},\"kvs\":[7]}",
        "{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"!!\"}]}",
        "{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"L3NlcnZpY2UvZmFrZS9sZWFkZXI=\","
        "\"value\":3}]}",
        "{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"L3NlcnZpY2UvZmFrZS9sZWFkZXI=\","
        "\"mod_revision\":\"x1\"}]}",
    };
    Dcs *d = fake_dcs(TIMEOUT_MS);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        fake_reply(200, bad[i], 0);
        Err err = {{0}};
        Cluster c;
        bool ok = d->ops->load(d, &c, &err);
        cluster_free(&c);
        if (ok)
            fail_msg("accepted malformed range answer %s", bad[i]);
        expect_msg(&err, "malformed response to /v3/kv/range");
    }
    assert_string_equal(fake.last_path, "/v3/kv/range");

    /* well-formed: base64 decoded, prefix stripped, int64 strings parsed */
    fake_reply(200,
               "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3NlcnZpY2UvZmFrZS9sZWFkZXI=\","
               "\"value\":\"bm9kZTE=\",\"mod_revision\":\"40\",\"create_revision\":\"39\","
               "\"lease\":\"7587869186571364360\"}],\"count\":\"1\"}", 0);
    Err err = {{0}};
    Cluster c;
    assert_true(d->ops->load(d, &c, &err));
    assert_int_equal(c.revision, 42);
    assert_string_equal(c.leader, "node1");
    assert_int_equal(c.leader_mod_revision, 40);
    assert_true(c.leader_lease == 7587869186571364360LL);
    cluster_free(&c);
    dcs_free(d);
}

static void test_fake_http_errors(void **state)
{
    Dcs *d = fake_dcs(TIMEOUT_MS);
    Err err = {{0}};
    bool flag = true;

    fake_reply(400, "{\"error\":\"etcdserver: bad thing\",\"message\":\"etcdserver: bad thing\","
                    "\"code\":3}", 0);
    assert_false(d->ops->cas(d, "sync", "a", "b", false, &flag, &err));
    assert_false(flag);
    expect_msg(&err, "/v3/kv/txn: HTTP 400: etcdserver: bad thing");

    fake_reply(500, "oops\nsecond line\n", 0);
    assert_false(d->ops->put(d, "k", "v", false, &err));
    expect_msg(&err, "/v3/kv/put: HTTP 500: oops second line");

    fake_reply(404, "", 0);
    assert_false(d->ops->del_prefix(d, &err));
    expect_msg(&err, "/v3/kv/deleterange: HTTP 404: (empty answer)");

    /* wrong types in otherwise fine answers */
    fake_reply(200, "{\"succeeded\":\"yes\"}", 0);
    assert_false(d->ops->create(d, "leader", "a", false, &flag, &err));
    expect_msg(&err, "malformed response to /v3/kv/txn");
    fake_reply(200, "{\"deleted\":[]}", 0);
    assert_false(d->ops->del(d, "leader", NULL, &flag, &err));
    expect_msg(&err, "malformed response to /v3/kv/deleterange");
    fake_reply(200, "{\"ID\":[1],\"TTL\":\"10\"}", 0);
    assert_false(d->ops->keepalive(d, 10, &flag, &err));
    expect_msg(&err, "malformed response to /v3/lease/grant");
    fake_reply(200, "{\"ID\":\"0\",\"TTL\":\"10\"}", 0);
    assert_false(d->ops->keepalive(d, 10, &flag, &err));
    expect_msg(&err, "malformed response to /v3/lease/grant");

    /* a grant answer with its own error field (found by fuzz_etcd_answers: the message was
     * read after the answer was freed) */
    fake_reply(200, "{\"ID\":\"12\",\"TTL\":\"10\",\"error\":\"etcdserver: too many requests\"}", 0);
    assert_false(d->ops->keepalive(d, 10, &flag, &err));
    expect_msg(&err, "/v3/lease/grant: etcdserver: too many requests");

    /* a granted lease, then a keepalive answer of the wrong shape */
    fake_reply(200, "{\"ID\":\"12\",\"TTL\":\"10\"}", 0);
    assert_true(d->ops->keepalive(d, 10, &flag, &err));
    fake_reply(200, "{\"result\":\"x\"}", 0);
    assert_false(d->ops->keepalive(d, 10, &flag, &err));
    expect_msg(&err, "malformed response to /v3/lease/keepalive");
    /* TTL absent: the lease is gone, a new one is granted and *expired is set */
    fake_reply(200, "{\"result\":{\"ID\":\"12\"},\"ID\":\"13\",\"TTL\":\"10\"}", 0);
    assert_true(d->ops->keepalive(d, 10, &flag, &err));
    assert_true(flag);

    /* watch: garbage on the stream, an error object, a compaction */
    fake_reply(200, "garbage\n", 0);
    assert_false(d->ops->watch(d, 5, 2000, &err));
    expect_msg(&err, "malformed response to /v3/watch");
    fake_reply(200, "{\"error\":{\"grpc_code\":11,\"message\":\"required revision is a future "
                    "revision\"}}\n", 0);
    assert_false(d->ops->watch(d, 5, 2000, &err));
    expect_msg(&err, "/v3/watch: required revision is a future revision");
    fake_reply(200, "{\"result\":{\"created\":true}}\n{\"result\":{\"canceled\":true,"
                    "\"compact_revision\":\"9\"}}\n", 0);
    assert_true(d->ops->watch(d, 5, 2000, &err));
    fake_reply(200, "{\"result\":{\"created\":true}}\n{\"result\":{\"events\":[{\"kv\":{}}]}}", 0);
    assert_true(d->ops->watch(d, 5, 2000, &err));   /* last line without its newline */
    fake_reply(200, "{\"result\":{\"created\":true}}\n", 0);
    assert_false(d->ops->watch(d, 5, 2000, &err));
    expect_msg(&err, "/v3/watch: stream ended before any change");
    dcs_free(d);

    /* a login token that would break our request headers is refused */
    char host[64];
    str_fmt(host, sizeof(host), "127.0.0.1:%d", fake.port);
    char *hosts[] = {host};
    d = dcs_etcd_new(hosts, 1, "/service/fake/", "root", "pw", TIMEOUT_MS, &err);
    assert_non_null(d);
    fake_reply(200, "{\"token\":\"abc\\r\\nX-Injected: 1\"}", 0);
    assert_false(d->ops->put(d, "k", "v", false, &err));
    expect_msg(&err, "malformed response to /v3/auth/authenticate");
    dcs_free(d);
}

static void test_fake_timeout(void **state)
{
    Dcs *d = fake_dcs(300);
    Err err = {{0}};
    fake_reply(200, "{}", 2000);
    int64_t t0 = mono_ms();
    assert_false(d->ops->put(d, "k", "v", false, &err));
    int64_t took = mono_ms() - t0;
    /* the timeout's error, so the call ended before the server's answer (2 s later): an order
     * of events, where a bound in milliseconds would fail on a slow machine (valgrind) */
    expect_msg(&err, "/v3/kv/put: timed out after 300 ms");
    assert_true(took >= 250);
    dcs_etcd_set_timeout(d, 200);
    fake_reply(200, "{}", 2000);
    assert_false(d->ops->put(d, "k", "v", false, &err));
    expect_msg(&err, "/v3/kv/put: timed out after 200 ms");
    dcs_etcd_set_timeout(d, 300);

    /* a watch that times out is not an error; it never waits past its own timeout */
    fake_reply(200, "{}", 2000);
    t0 = mono_ms();
    assert_false(d->ops->watch(d, 1, 400, &err));
    took = mono_ms() - t0;
    assert_string_equal(err.msg, "");   /* ended by its timeout, not by the server's answer */
    assert_true(took >= 350);
    assert_false(d->ops->watch(d, 1, 0, &err));
    dcs_free(d);
}

static void test_bad_arguments(void **state)
{
    Err err = {{0}};
    char *hosts[] = {"127.0.0.1:1", ""};
    assert_null(dcs_etcd_new(hosts, 0, "/p/", NULL, NULL, 1000, &err));
    assert_non_null(strstr(err.msg, "no hosts"));
    assert_null(dcs_etcd_new(hosts, 2, "/p/", NULL, NULL, 1000, &err));
    assert_non_null(strstr(err.msg, "empty"));
    assert_null(dcs_etcd_new(hosts, 1, "", NULL, NULL, 1000, &err));
    assert_null(dcs_etcd_new(hosts, 1, "/p/", NULL, NULL, 0, &err));
    assert_non_null(strstr(err.msg, "timeout"));

    /* on_lease before any lease: refused locally, nothing sent */
    Dcs *d = dcs_etcd_new(hosts, 1, "/p/", NULL, NULL, 1000, &err);
    assert_non_null(d);
    bool created = true;
    assert_false(d->ops->create(d, "leader", "a", true, &created, &err));
    assert_false(created);
    assert_non_null(strstr(err.msg, "/p/leader"));
    assert_false(d->ops->keepalive(d, 0, &created, &err));
    dcs_free(d);
}

/* ---- a real etcd ---- */

typedef struct Etcd {
    pid_t pid;
    char dir[64];
    int client_port;
    char host[64];           /* "127.0.0.1:port" */
    char url[96];
} Etcd;

static Etcd etcd;

static void etcd_log_tail(void)
{
    char *path = str_printf("%s/etcd.log", etcd.dir);
    size_t len = 0;
    char *log = file_read_all(path, &len, NULL);
    if (log)
        fprintf(stderr, "---- etcd log (last 2000 bytes) ----\n%s\n",
                len > 2000 ? log + len - 2000 : log);
    free(log);
    free(path);
}

static int etcd_teardown(void **state)
{
    if (etcd.pid > 0) {
        kill(etcd.pid, SIGKILL);
        waitpid(etcd.pid, NULL, 0);
        etcd.pid = 0;
    }
    if (etcd.dir[0]) {
        Err err = {{0}};
        if (!dir_remove_all(etcd.dir, &err))
            fprintf(stderr, "cannot remove %s: %s\n", etcd.dir, err.msg);
        etcd.dir[0] = '\0';
    }
    return 0;
}

static int etcd_setup(void **state)
{
    memset(&etcd, 0, sizeof(etcd));
    if (access(ETCD_BIN, X_OK) != 0) {
        fprintf(stderr, "FAIL: %s not found: these tests need a real etcd "
                        "(apt-get install etcd-server)\n", ETCD_BIN);
        return -1;
    }
    int p1 = free_port(), p2 = free_port();
    for (int i = 0; i < 10 && p2 == p1; i++)
        p2 = free_port();
    if (p1 <= 0 || p2 <= 0 || p1 == p2) {
        fprintf(stderr, "FAIL: no free port on 127.0.0.1\n");
        return -1;
    }
    str_copy(etcd.dir, sizeof(etcd.dir), "/tmp/pgvigil-test-etcd-XXXXXX");
    if (!mkdtemp(etcd.dir)) {
        fprintf(stderr, "FAIL: mkdtemp: %s\n", strerror(errno));
        etcd.dir[0] = '\0';
        return -1;
    }
    etcd.client_port = p1;
    str_fmt(etcd.host, sizeof(etcd.host), "127.0.0.1:%d", p1);
    str_fmt(etcd.url, sizeof(etcd.url), "http://127.0.0.1:%d", p1);
    char *data = str_printf("%s/data", etcd.dir);
    char *log = str_printf("%s/etcd.log", etcd.dir);
    char *client = str_printf("http://127.0.0.1:%d", p1);
    char *peer = str_printf("http://127.0.0.1:%d", p2);
    char *cluster = str_printf("t=%s", peer);
    char *argv[] = {ETCD_BIN, "--name", "t", "--data-dir", data,
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", cluster,
                    /* short simple-token life so the re-authentication path is exercised */
                    "--auth-token-ttl", "1", NULL};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Dies with the test process even if that crashes before its teardown. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(ETCD_BIN, argv);
        _exit(127);
    }
    free(data);
    free(log);
    free(client);
    free(peer);
    free(cluster);
    if (pid < 0) {
        fprintf(stderr, "FAIL: fork: %s\n", strerror(errno));
        etcd_teardown(state);
        return -1;
    }
    etcd.pid = pid;

    char health[128];
    str_fmt(health, sizeof(health), "%s/health", etcd.url);
    for (int64_t deadline = mono_ms() + 30000; mono_ms() < deadline; sleep_ms(100)) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            etcd.pid = 0;
            fprintf(stderr, "FAIL: etcd exited during startup\n");
            etcd_log_tail();
            etcd_teardown(state);
            return -1;
        }
        long status;
        char *body = http(health, NULL, NULL, &status);
        bool up = status == 200 && body && strstr(body, "true");
        free(body);
        if (up)
            return 0;
    }
    fprintf(stderr, "FAIL: etcd did not become healthy on %s within 30 s\n", etcd.url);
    etcd_log_tail();
    etcd_teardown(state);
    return -1;
}

static Dcs *etcd_dcs(const char *prefix)
{
    char *hosts[] = {etcd.host};
    Err err = {{0}};
    Dcs *d = dcs_etcd_new(hosts, 1, prefix, NULL, NULL, TIMEOUT_MS, &err);
    if (!d)
        fail_msg("dcs_etcd_new: %s", err.msg);
    return d;
}

/* load() and fail the test on error; the caller cluster_frees. */
static void load_ok(Dcs *d, Cluster *c)
{
    Err err = {{0}};
    if (!d->ops->load(d, c, &err)) {
        cluster_free(c);
        fail_msg("load: %s", err.msg);
    }
}

/* call must pass `oe` as its Err *: failures show the call and etcd's message. */
#define OK(call)                                        \
    do {                                                \
        Err oe_ = {{0}};                                \
        Err *oe = &oe_;                                 \
        if (!(call))                                    \
            fail_msg("%s: %s", #call, oe_.msg);         \
    } while (0)

static void test_etcd_put_create_cas_del(void **state)
{
    Dcs *d = etcd_dcs("/service/kv/");
    Dcs *d2 = etcd_dcs("/service/kv/");
    Cluster c;
    bool flag;

    OK(d->ops->put(d, "history", "[[1,\"0/3000000\",\"é ü\"]]", false, oe));
    OK(d->ops->put(d, "initialize", "7300000000000000001", false, oe));
    load_ok(d2, &c);
    assert_string_equal(c.history_json, "[[1,\"0/3000000\",\"é ü\"]]");
    assert_true(c.initialized);
    assert_string_equal(c.sysid, "7300000000000000001");
    assert_true(c.revision > 1);
    cluster_free(&c);

    /* create-if-absent wins once */
    OK(d->ops->create(d, "leader", "node1", false, &flag, oe));
    assert_true(flag);
    OK(d2->ops->create(d2, "leader", "node2", false, &flag, oe));
    assert_false(flag);
    load_ok(d, &c);
    assert_string_equal(c.leader, "node1");
    int64_t leader_rev = c.leader_mod_revision;
    assert_true(leader_rev > 0);
    assert_int_equal(c.leader_lease, 0);
    cluster_free(&c);

    /* cas on value */
    OK(d2->ops->cas(d2, "leader", "node2", "node2", false, &flag, oe));
    assert_false(flag);
    OK(d2->ops->cas(d2, "leader", "node1", "node2", false, &flag, oe));
    assert_true(flag);
    OK(d->ops->cas(d, "leader", NULL, "node1", false, &flag, oe));   /* must be absent */
    assert_false(flag);
    load_ok(d, &c);
    assert_string_equal(c.leader, "node2");
    assert_true(c.leader_mod_revision > leader_rev);
    leader_rev = c.leader_mod_revision;
    cluster_free(&c);

    /* cas on mod revision */
    int64_t new_rev = -1;
    OK(d->ops->cas_rev(d, "leader", leader_rev - 1, "x", &flag, &new_rev, oe));
    assert_false(flag);
    assert_int_equal(new_rev, 0);
    OK(d->ops->cas_rev(d, "leader", leader_rev, "node3", &flag, &new_rev, oe));
    assert_true(flag);
    assert_true(new_rev > leader_rev);
    load_ok(d, &c);
    assert_int_equal(c.leader_mod_revision, new_rev);   /* the key's revision after the swap */
    cluster_free(&c);
    OK(d->ops->cas_rev(d, "leader", leader_rev, "node4", &flag, NULL, oe));
    assert_false(flag);
    OK(d->ops->cas_rev(d, "failover", 0, "{\"leader\":\"node3\"}", &flag, NULL, oe));
    assert_true(flag);
    OK(d->ops->cas_rev(d, "failover", 0, "{\"leader\":\"node3\"}", &flag, NULL, oe));
    assert_false(flag);
    load_ok(d, &c);
    assert_string_equal(c.leader, "node3");
    assert_true(c.failover.present);
    assert_string_equal(c.failover.leader, "node3");
    cluster_free(&c);

    /* delete only with the expected value */
    OK(d->ops->del(d, "leader", "node1", &flag, oe));
    assert_false(flag);
    OK(d->ops->del(d, "nothing", "x", &flag, oe));
    assert_false(flag);
    OK(d->ops->del(d, "leader", "node3", &flag, oe));
    assert_true(flag);
    OK(d->ops->del(d, "failover", NULL, &flag, oe));
    assert_true(flag);
    OK(d->ops->del(d, "failover", NULL, &flag, oe));
    assert_false(flag);
    load_ok(d, &c);
    assert_string_equal(c.leader, "");
    assert_false(c.failover.present);
    assert_true(c.initialized);
    cluster_free(&c);

    /* del_prefix stays inside the prefix: "/service/kv/" must not touch "/service/kv0" or
     * "/service/kvx/" */
    Dcs *near = etcd_dcs("/service/kvx/");
    OK(near->ops->put(near, "initialize", "1", false, oe));
    OK(d->ops->put(d, "members/node1", "{\"role\":\"replica\"}", false, oe));
    OK(d->ops->del_prefix(d, oe));
    load_ok(d, &c);
    assert_false(c.initialized);
    assert_int_equal(c.n_members, 0);
    assert_null(c.history_json);
    cluster_free(&c);
    load_ok(near, &c);
    assert_true(c.initialized);
    cluster_free(&c);
    OK(near->ops->del_prefix(near, oe));
    dcs_free(near);
    dcs_free(d2);
    dcs_free(d);
}

/* Wait (up to 10 s) until the leader key and every member are gone. */
static bool wait_gone(Dcs *d)
{
    for (int64_t deadline = mono_ms() + 10000; mono_ms() < deadline; sleep_ms(200)) {
        Cluster c;
        load_ok(d, &c);
        bool gone = c.leader[0] == '\0' && c.n_members == 0;
        cluster_free(&c);
        if (gone)
            return true;
    }
    return false;
}

static void test_etcd_get_txn(void **state)
{
    (void)state;
    Dcs *d = etcd_dcs("/service/txn/");
    Err err = {{0}};
    bool expired = false;
    assert_true(d->ops->keepalive(d, 10, &expired, &err));
    check_get_txn(d);
    dcs_free(d);
}

static void test_etcd_lease_expiry(void **state)
{
    Dcs *d = etcd_dcs("/service/lease/");
    Dcs *watcher = etcd_dcs("/service/lease/");
    Cluster c;
    bool flag = true;

    OK(d->ops->keepalive(d, 2, &flag, oe));
    assert_false(flag);
    OK(d->ops->create(d, "leader", "node1", true, &flag, oe));
    assert_true(flag);
    OK(d->ops->put(d, "members/node1", "{\"role\":\"primary\",\"state\":\"running\"}", true, oe));
    OK(d->ops->put(d, "config", "{\"ttl\":2}", false, oe));
    for (int i = 0; i < 3; i++) {   /* renewing keeps the keys past one TTL */
        sleep_ms(1000);
        OK(d->ops->keepalive(d, 2, &flag, oe));
        assert_false(flag);
    }
    load_ok(watcher, &c);
    assert_string_equal(c.leader, "node1");
    assert_int_equal(c.n_members, 1);
    assert_string_equal(c.members[0].role, "primary");
    assert_true(c.leader_lease != 0);
    int64_t old_lease = c.leader_lease;
    cluster_free(&c);

    /* stop renewing: the keys vanish, the config (no lease) stays */
    int64_t t0 = mono_ms();
    assert_true(wait_gone(watcher));
    assert_true(mono_ms() - t0 >= 1000);
    load_ok(watcher, &c);
    assert_true(c.has_config);
    cluster_free(&c);

    OK(d->ops->keepalive(d, 2, &flag, oe));
    assert_true(flag);
    OK(d->ops->keepalive(d, 2, &flag, oe));
    assert_false(flag);
    OK(d->ops->create(d, "leader", "node1", true, &flag, oe));
    assert_true(flag);
    load_ok(watcher, &c);
    assert_true(c.leader_lease != 0 && c.leader_lease != old_lease);
    cluster_free(&c);

    /* revoke: the keys go at once */
    OK(d->ops->revoke(d, oe));
    load_ok(watcher, &c);
    assert_string_equal(c.leader, "");
    cluster_free(&c);
    OK(d->ops->revoke(d, oe));   /* nothing left: no-op */
    OK(d->ops->del_prefix(d, oe));
    dcs_free(watcher);
    dcs_free(d);
}

static void test_etcd_ttl_change(void **state)
{
    Dcs *d = etcd_dcs("/service/ttl/");
    Cluster c;
    bool flag;
    OK(d->ops->keepalive(d, 2, &flag, oe));
    OK(d->ops->create(d, "leader", "node1", true, &flag, oe));
    OK(d->ops->put(d, "members/node1", "{\"role\":\"primary\"}", true, oe));
    load_ok(d, &c);
    int64_t lease2 = c.leader_lease;
    int64_t rev = c.leader_mod_revision;
    cluster_free(&c);

    /* the new ttl needs a new lease: the keys move to it, the old lease is revoked */
    OK(d->ops->keepalive(d, 6, &flag, oe));
    assert_false(flag);
    load_ok(d, &c);
    assert_string_equal(c.leader, "node1");
    assert_true(c.leader_lease != 0 && c.leader_lease != lease2);
    assert_true(c.leader_mod_revision > rev);
    assert_int_equal(c.n_members, 1);
    cluster_free(&c);

    /* older than the old ttl, younger than the new one: still there without renewal */
    sleep_ms(3500);
    load_ok(d, &c);
    assert_string_equal(c.leader, "node1");
    assert_int_equal(c.n_members, 1);
    cluster_free(&c);
    OK(d->ops->revoke(d, oe));
    OK(d->ops->del_prefix(d, oe));
    dcs_free(d);
}

typedef struct Writer {
    Dcs *d;                 /* used only by the writer thread while it runs */
    int delay_ms;
    bool ok;
    Err err;
} Writer;

static void *writer_main(void *arg)
{
    Writer *w = arg;
    sleep_ms(w->delay_ms);
    w->ok = w->d->ops->put(w->d, "history", "[]", false, &w->err);
    return NULL;
}

static void test_etcd_watch(void **state)
{
    Dcs *a = etcd_dcs("/service/watch/");
    Dcs *b = etcd_dcs("/service/watch/");
    Dcs *other = etcd_dcs("/service/watch2/");
    Cluster c;
    Err err = {{0}};
    load_ok(a, &c);
    int64_t rev = c.revision;
    cluster_free(&c);

    /* nothing changes: false after the timeout, no error. The upper bound is the point (an
     * agent waits on this watch between ticks, so it must end near its timeout), listed in the
     * README with the other bounds kept */
    int64_t t0 = mono_ms();
    assert_false(a->ops->watch(a, rev, 600, &err));
    int64_t took = mono_ms() - t0;
    assert_string_equal(err.msg, "");
    assert_true(took >= 550 && took < 2500);

    /* a change under another prefix does not wake us */
    OK(other->ops->put(other, "history", "[]", false, oe));
    assert_false(a->ops->watch(a, rev, 400, &err));
    assert_string_equal(err.msg, "");

    /* a change by a second handle, made while we wait: seen before the watch's own timeout */
    Writer w = {.d = b, .delay_ms = 300};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    t0 = mono_ms();
    bool seen = a->ops->watch(a, rev, 5000, &err);
    took = mono_ms() - t0;
    pthread_join(th, NULL);
    if (!w.ok)
        fail_msg("writer: %s", w.err.msg);
    assert_true(seen);
    assert_true(took >= 250 && took < 5000);

    /* a change made before the watch starts is seen at once (start_revision = after + 1), not
     * when the watch's timeout ends it */
    t0 = mono_ms();
    assert_true(a->ops->watch(a, rev, 5000, &err));
    assert_true(mono_ms() - t0 < 5000);

    /* the handle still works after an aborted stream */
    load_ok(a, &c);
    assert_true(c.revision > rev);
    assert_string_equal(c.history_json, "[]");
    rev = c.revision;
    cluster_free(&c);
    assert_false(a->ops->watch(a, rev, 300, &err));

    /* watches, whether they time out or see a change, leave the connection of the unary calls
     * open: reads and lease renewals after them open no new one */
    load_ok(a, &c);
    int64_t opened = dcs_etcd_connects(a);
    assert_true(opened >= 1);
    for (int i = 0; i < 3; i++) {
        rev = c.revision;
        cluster_free(&c);
        assert_false(a->ops->watch(a, rev, 200, &err));
        OK(b->ops->put(b, "history", i % 2 ? "[]" : "[[1]]", false, oe));
        assert_true(a->ops->watch(a, rev, 5000, &err));
        bool expired;
        OK(a->ops->keepalive(a, 5, &expired, oe));
        load_ok(a, &c);
    }
    cluster_free(&c);
    assert_int_equal(dcs_etcd_connects(a), opened);

    OK(a->ops->del_prefix(a, oe));
    OK(other->ops->del_prefix(other, oe));
    dcs_free(a);
    dcs_free(b);
    dcs_free(other);
}

static void test_etcd_unreachable(void **state)
{
    int dead = free_port(), dead2 = free_port();
    char h1[64], h2[64];
    str_fmt(h1, sizeof(h1), "127.0.0.1:%d", dead);
    str_fmt(h2, sizeof(h2), "127.0.0.1:%d", dead2);
    Err err = {{0}};
    char want[256];

    /* a refused connection fails at once: before the call's timeout (10 s) */
    char *one[] = {h1};
    Dcs *d = dcs_etcd_new(one, 1, "/service/down/", NULL, NULL, 10000, &err);
    assert_non_null(d);
    int64_t t0 = mono_ms();
    assert_false(d->ops->put(d, "k", "v", false, &err));
    assert_true(mono_ms() - t0 < 10000);
    str_fmt(want, sizeof(want), "etcd 127.0.0.1:%d: connection refused", dead);
    assert_string_equal(err.msg, want);
    Cluster c;
    assert_false(d->ops->load(d, &c, &err));
    cluster_free(&c);
    assert_string_equal(err.msg, want);
    assert_false(d->ops->watch(d, 1, 500, &err));
    assert_string_equal(err.msg, want);
    bool expired;
    assert_false(d->ops->keepalive(d, 5, &expired, &err));
    assert_string_equal(err.msg, want);
    dcs_free(d);

    /* every host is named when none answers */
    char *two[] = {h1, h2};
    d = dcs_etcd_new(two, 2, "/service/down/", NULL, NULL, 1000, &err);
    assert_false(d->ops->put(d, "k", "v", false, &err));
    str_fmt(want, sizeof(want), "etcd 127.0.0.1:%d: connection refused; "
                                "etcd 127.0.0.1:%d: connection refused", dead, dead2);
    assert_string_equal(err.msg, want);
    dcs_free(d);

    /* a dead host first, the live one next: it works, watches included */
    char *mixed[] = {h1, etcd.host};
    d = dcs_etcd_new(mixed, 2, "/service/down/", NULL, NULL, 1000, &err);
    OK(d->ops->put(d, "history", "[]", false, oe));
    load_ok(d, &c);
    assert_string_equal(c.history_json, "[]");
    int64_t rev = c.revision;
    cluster_free(&c);
    assert_true(d->ops->watch(d, rev - 1, 2000, &err));
    OK(d->ops->del_prefix(d, oe));
    dcs_free(d);
}

/* Last: turns authentication on, then off again. */
static void test_etcd_auth(void **state)
{
    static const struct {
        const char *path, *body;
    } enable[] = {
        {"/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"rootpw\"}"},
        {"/v3/auth/role/add", "{\"name\":\"root\"}"},
        {"/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}"},
        {"/v3/auth/enable", "{}"},
    };
    char url[160];
    long status;

    /* user/password against an etcd without auth: fine, no token */
    char *hosts[] = {etcd.host};
    Err err = {{0}};
    Dcs *d = dcs_etcd_new(hosts, 1, "/service/auth/", "root", "rootpw", TIMEOUT_MS, &err);
    OK(d->ops->put(d, "initialize", "1", false, oe));
    dcs_free(d);

    for (size_t i = 0; i < ARRAY_LEN(enable); i++) {
        str_fmt(url, sizeof(url), "%s%s", etcd.url, enable[i].path);
        free(http(url, enable[i].body, NULL, &status));
        if (status != 200)
            fail_msg("%s: HTTP %ld", enable[i].path, status);
    }

    Dcs *anon = etcd_dcs("/service/auth/");
    assert_false(anon->ops->put(anon, "k", "v", false, &err));
    assert_non_null(strstr(err.msg, "user name is empty"));
    dcs_free(anon);

    Dcs *bad = dcs_etcd_new(hosts, 1, "/service/auth/", "root", "wrong", TIMEOUT_MS, &err);
    assert_false(bad->ops->put(bad, "k", "v", false, &err));
    assert_non_null(strstr(err.msg, "authentication failed"));
    assert_null(strstr(err.msg, "wrong"));   /* never the password */
    dcs_free(bad);

    d = dcs_etcd_new(hosts, 1, "/service/auth/", "root", "rootpw", TIMEOUT_MS, &err);
    bool flag;
    OK(d->ops->keepalive(d, 30, &flag, oe));
    OK(d->ops->create(d, "leader", "node1", true, &flag, oe));
    assert_true(flag);
    Cluster c;
    load_ok(d, &c);
    assert_string_equal(c.leader, "node1");
    int64_t rev = c.revision;
    cluster_free(&c);
    /* the token (ttl 1 s) expires while idle: calls log in again */
    sleep_ms(2500);
    load_ok(d, &c);
    assert_string_equal(c.leader, "node1");
    cluster_free(&c);
    sleep_ms(2500);
    OK(d->ops->keepalive(d, 30, &flag, oe));
    assert_false(flag);
    sleep_ms(2500);
    OK(d->ops->put(d, "history", "[]", false, oe));
    sleep_ms(2500);
    if (!d->ops->watch(d, rev, 3000, &err))
        fail_msg("watch after the token expired: %s", err.msg[0] ? err.msg : "timed out");

    /* turn it off again with a token of our own */
    str_fmt(url, sizeof(url), "%s/v3/auth/authenticate", etcd.url);
    char *answer = http(url, "{\"name\":\"root\",\"password\":\"rootpw\"}", NULL, &status);
    assert_int_equal(status, 200);
    char *tok = strstr(answer, "\"token\":\"");
    assert_non_null(tok);
    tok += 9;
    *strchr(tok, '"') = '\0';
    str_fmt(url, sizeof(url), "%s/v3/auth/disable", etcd.url);
    free(http(url, "{}", tok, &status));
    free(answer);
    assert_int_equal(status, 200);
    OK(d->ops->revoke(d, oe));
    OK(d->ops->del_prefix(d, oe));
    dcs_free(d);
}

int main(void)
{
    /* The fake server may write to a socket the client already closed. */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest fake_tests[] = {
        cmocka_unit_test(test_fake_malformed_range),
        cmocka_unit_test(test_fake_http_errors),
        cmocka_unit_test(test_fake_timeout),
        cmocka_unit_test(test_bad_arguments),
    };
    const struct CMUnitTest etcd_tests[] = {
        cmocka_unit_test(test_etcd_put_create_cas_del),
        cmocka_unit_test(test_etcd_get_txn),
        cmocka_unit_test(test_etcd_lease_expiry),
        cmocka_unit_test(test_etcd_ttl_change),
        cmocka_unit_test(test_etcd_watch),
        cmocka_unit_test(test_etcd_unreachable),
        cmocka_unit_test(test_etcd_auth),
    };
    int failed = cmocka_run_group_tests_name("etcd client vs fake server", fake_tests, fake_setup,
                                             fake_teardown);
    failed += cmocka_run_group_tests_name("etcd client vs real etcd", etcd_tests, etcd_setup,
                                          etcd_teardown);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
