/* The REST server over real sockets on 127.0.0.1: routing, auth, bodies, malformed input, with
 * a test backend that answers canned values and records the calls it gets. */
#include "common/common.h"
#include "api/rest.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

/* ---- test backend ---- */

typedef struct TestBackend {
    pthread_mutex_t mu;
    NodeStatus status;
    const char *cluster_doc;     /* NULL: cluster_json returns NULL (503) */
    int switchover_calls;
    int switchover_started;      /* calls that began (a slow one is started before it counts as a call) */
    char leader[64], candidate[64]; /* "(null)" when NULL was passed */
    bool is_failover;
    int switchover_delay_ms;
    int restart_calls, reinit_calls, reload_calls, patch_calls;
    bool reinit_force;
    char *patch_body;
} TestBackend;

static void tb_get_status(void *ctx, NodeStatus *out)
{
    TestBackend *b = ctx;
    pthread_mutex_lock(&b->mu);
    *out = b->status;
    pthread_mutex_unlock(&b->mu);
}

static char *tb_cluster(void *ctx)
{
    TestBackend *b = ctx;
    return b->cluster_doc ? str_dup(b->cluster_doc) : NULL;
}

static char *tb_history(void *ctx)
{
    return str_dup("[[1,50331808,\"no recovery target specified\",\"2024-01-01T00:00:00+00:00\",\"node1\"]]");
}

static char *tb_null_doc(void *ctx)
{
    return NULL;
}

static int tb_switchover(void *ctx, const char *leader, const char *candidate, bool is_failover,
                         char **body)
{
    TestBackend *b = ctx;
    pthread_mutex_lock(&b->mu);
    b->switchover_started++;
    pthread_mutex_unlock(&b->mu);
    if (b->switchover_delay_ms)
        sleep_ms(b->switchover_delay_ms);
    pthread_mutex_lock(&b->mu);
    b->switchover_calls++;
    str_copy(b->leader, sizeof(b->leader), leader ? leader : "(null)");
    str_copy(b->candidate, sizeof(b->candidate), candidate ? candidate : "(null)");
    b->is_failover = is_failover;
    pthread_mutex_unlock(&b->mu);
    *body = str_printf("Successfully %s over to \"%s\"", is_failover ? "failed" : "switched",
                       candidate ? candidate : "?");
    return 200;
}

static int tb_restart(void *ctx, char **body)
{
    TestBackend *b = ctx;
    pthread_mutex_lock(&b->mu);
    b->restart_calls++;
    pthread_mutex_unlock(&b->mu);
    *body = str_dup("restarted successfully");
    return 200;
}

static int tb_reinit(void *ctx, bool force, char **body)
{
    TestBackend *b = ctx;
    pthread_mutex_lock(&b->mu);
    b->reinit_calls++;
    b->reinit_force = force;
    pthread_mutex_unlock(&b->mu);
    *body = NULL;
    return 503;
}

static int tb_reload(void *ctx, char **body)
{
    TestBackend *b = ctx;
    pthread_mutex_lock(&b->mu);
    b->reload_calls++;
    pthread_mutex_unlock(&b->mu);
    *body = str_dup("{\"reloaded\":true}");
    return 202;
}

static int tb_patch(void *ctx, const char *patch, char **body)
{
    TestBackend *b = ctx;
    pthread_mutex_lock(&b->mu);
    b->patch_calls++;
    free(b->patch_body);
    b->patch_body = str_dup(patch);
    pthread_mutex_unlock(&b->mu);
    *body = str_dup("{\"ttl\":20,\"loop_wait\":1}");
    return 200;
}

static void set_primary(TestBackend *b)
{
    pthread_mutex_lock(&b->mu);
    NodeStatus *st = &b->status;
    memset(st, 0, sizeof(*st));
    str_copy(st->name, sizeof(st->name), "node1");
    str_copy(st->scope, sizeof(st->scope), "demo");
    str_copy(st->role, sizeof(st->role), "primary");
    str_copy(st->state, sizeof(st->state), "running");
    str_copy(st->leader_name, sizeof(st->leader_name), "node1");
    st->pg_running = st->is_leader = st->dcs_ok = true;
    st->wal_lsn = 0x3000060;
    st->timeline = 2;
    st->server_version = 150004;
    st->tags.failover_priority = 1;
    st->failovers = 1;
    pthread_mutex_unlock(&b->mu);
}

static void set_replica(TestBackend *b, int64_t lag)
{
    set_primary(b);
    pthread_mutex_lock(&b->mu);
    NodeStatus *st = &b->status;
    str_copy(st->role, sizeof(st->role), "replica");
    str_copy(st->leader_name, sizeof(st->leader_name), "node2");
    st->is_leader = false;
    st->in_recovery = st->streaming = true;
    st->receive_lsn = st->replay_lsn = 0x3000000;
    st->lag_bytes = lag;
    pthread_mutex_unlock(&b->mu);
}

/* ---- fixture ---- */

typedef struct Fixture {
    TestBackend be;
    RestServer *srv;
    int port;
} Fixture;

static Fixture *fixture_new(const char *user, const char *pass)
{
    Fixture *f = xcalloc(1, sizeof(*f));
    pthread_mutex_init(&f->be.mu, NULL);
    f->be.cluster_doc = "{\"members\":[{\"name\":\"node1\",\"role\":\"leader\"}]}";
    set_primary(&f->be);
    RestBackend rb = {
        .ctx = &f->be,
        .get_status = tb_get_status,
        .cluster_json = tb_cluster,
        .history_json = tb_history,
        .config_json = tb_null_doc,
        .switchover = tb_switchover,
        .restart = tb_restart,
        .reinitialize = tb_reinit,
        .reload = tb_reload,
        .patch_config = tb_patch,
    };
    Err err = {{0}};
    f->srv = rest_start("127.0.0.1:0", &rb, user, pass, &err);
    if (!f->srv)
        print_error("rest_start: %s\n", err.msg);
    assert_non_null(f->srv);
    f->port = rest_port(f->srv);
    assert_true(f->port > 0);
    return f;
}

static int setup_auth(void **state)
{
    *state = fixture_new("admin", "s3cret:with colon");
    return 0;
}

static int setup_noauth(void **state)
{
    *state = fixture_new(NULL, NULL);
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    rest_stop(f->srv);
    free(f->be.patch_body);
    pthread_mutex_destroy(&f->be.mu);
    free(f);
    return 0;
}

/* ---- raw HTTP client ---- */

typedef struct Resp {
    int code;        /* 0: no status line (connection closed or timed out) */
    char *raw;
    const char *body;
    size_t body_len;
} Resp;

static void resp_free(Resp *r)
{
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the server may close early (413, 401); the response is still read */
        data += n;
        len -= (size_t)n;
    }
}

/* Read until EOF (requests say Connection: close) and split status, headers and body. */
static void read_resp(int fd, Resp *r)
{
    memset(r, 0, sizeof(*r));
    size_t cap = 4096, len = 0;
    r->raw = xmalloc(cap);
    for (;;) {
        if (len + 1024 >= cap)
            r->raw = xrealloc(r->raw, cap *= 2);
        ssize_t n = recv(fd, r->raw + len, cap - len - 1, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    r->raw[len] = '\0';
    if (sscanf(r->raw, "HTTP/1.%*d %d", &r->code) != 1)
        r->code = 0;
    char *sep = strstr(r->raw, "\r\n\r\n");
    r->body = sep ? sep + 4 : r->raw + len;
    r->body_len = (size_t)(r->raw + len - r->body);
}

static void raw_exchange(int port, const char *data, size_t len, Resp *r)
{
    int fd = connect_port(port);
    send_all(fd, data, len);
    read_resp(fd, r);
    close(fd);
}

static void b64(const char *in, char *out, size_t sz)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), w = 0;
    for (size_t i = 0; i < n && w + 5 < sz; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[w++] = tbl[(v >> 18) & 63];
        out[w++] = tbl[(v >> 12) & 63];
        out[w++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[w++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[w] = '\0';
}

/* One request; userpass "user:pass" adds Basic auth; body NULL sends no Content-Length. */
static void http(int port, const char *method, const char *target, const char *userpass,
                 const char *body, Resp *r)
{
    char auth[256] = "";
    if (userpass) {
        char enc[200];
        b64(userpass, enc, sizeof(enc));
        str_fmt(auth, sizeof(auth), "Authorization: Basic %s\r\n", enc);
    }
    char *req;
    if (body)
        req = str_printf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                         "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                         method, target, auth, strlen(body), body);
    else
        req = str_printf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n",
                         method, target, auth);
    raw_exchange(port, req, strlen(req), r);
    free(req);
}

static int get_code(int port, const char *target)
{
    Resp r;
    http(port, "GET", target, NULL, NULL, &r);
    int code = r.code;
    resp_free(&r);
    return code;
}

static bool has_header(const Resp *r, const char *name_value)
{
    /* headers end where the body starts */
    size_t hlen = (size_t)(r->body - r->raw);
    char *h = xmalloc(hlen + 1);
    memcpy(h, r->raw, hlen);
    h[hlen] = '\0';
    bool found = strcasestr(h, name_value) != NULL;
    free(h);
    return found;
}

/* ---- tests ---- */

static void test_health_by_status(void **state)
{
    Fixture *f = *state;
    Resp r;
    http(f->port, "GET", "/primary", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_true(has_header(&r, "Content-Type: application/json"));
    assert_non_null(strstr(r.body, "\"role\":\"primary\""));
    assert_non_null(strstr(r.body, "\"xlog\":{\"location\":50331744}"));
    resp_free(&r);
    assert_int_equal(get_code(f->port, "/"), 200);
    assert_int_equal(get_code(f->port, "/leader"), 200);
    assert_int_equal(get_code(f->port, "/replica"), 503);
    assert_int_equal(get_code(f->port, "/health"), 200);

    set_replica(&f->be, 2 * 1024 * 1024);
    http(f->port, "GET", "/primary", NULL, NULL, &r);
    assert_int_equal(r.code, 503);
    assert_non_null(strstr(r.body, "\"role\":\"replica\"")); /* 503 still carries the status */
    resp_free(&r);
    assert_int_equal(get_code(f->port, "/replica"), 200);
    assert_int_equal(get_code(f->port, "/replica?lag=1MB"), 503);
    assert_int_equal(get_code(f->port, "/replica?lag=4MB"), 200);
    assert_int_equal(get_code(f->port, "/replica?lag=4%20MB"), 200);
    assert_int_equal(get_code(f->port, "/read-only?lag=1MB"), 503);
    assert_int_equal(get_code(f->port, "/replica?tag_nofailover=false&lag=3MB"), 200);
    assert_int_equal(get_code(f->port, "/replica?tag_nofailover=true"), 503);
    assert_int_equal(get_code(f->port, "/async"), 200);
    assert_int_equal(get_code(f->port, "/sync"), 503);
    assert_int_equal(get_code(f->port, "/readiness"), 200);
    assert_int_equal(get_code(f->port, "/liveness"), 200);
    assert_int_equal(get_code(f->port, "/replica/"), 200);

    http(f->port, "GET", "/patroni", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.body, "\"patroni\":{\"version\":\"" PGVIGIL_VERSION
                                   "\",\"scope\":\"demo\",\"name\":\"node1\"}"));
    resp_free(&r);
}

static void test_head_and_options_have_no_body(void **state)
{
    Fixture *f = *state;
    Resp r;
    http(f->port, "HEAD", "/primary", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);
    http(f->port, "HEAD", "/replica", NULL, NULL, &r);
    assert_int_equal(r.code, 503);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);
    http(f->port, "OPTIONS", "/primary", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);
    http(f->port, "OPTIONS", "/replica?lag=1", NULL, NULL, &r);
    assert_int_equal(r.code, 503);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);
    http(f->port, "OPTIONS", "/switchover", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_true(has_header(&r, "Allow: OPTIONS, POST"));
    resp_free(&r);
    http(f->port, "HEAD", "/patroni", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);
}

static void test_not_found_and_wrong_method(void **state)
{
    Fixture *f = *state;
    Resp r;
    http(f->port, "GET", "/nope", NULL, NULL, &r);
    assert_int_equal(r.code, 404);
    assert_non_null(strstr(r.body, "\"error\""));
    resp_free(&r);
    http(f->port, "POST", "/nope", "admin:s3cret:with colon", "{}", &r);
    assert_int_equal(r.code, 404);
    resp_free(&r);
    http(f->port, "DELETE", "/primary", NULL, NULL, &r);
    assert_int_equal(r.code, 405);
    assert_true(has_header(&r, "Allow: GET, HEAD, OPTIONS"));
    resp_free(&r);
    http(f->port, "GET", "/switchover", NULL, NULL, &r);
    assert_int_equal(r.code, 405);
    resp_free(&r);
    http(f->port, "POST", "/patroni", NULL, "{}", &r);
    assert_int_equal(r.code, 405);
    resp_free(&r);
    http(f->port, "POST", "/%0aswitchover%0d%00", NULL, "{}", &r); /* logged on one line */
    assert_int_equal(r.code, 404);
    resp_free(&r);
    http(f->port, "BREW", "/primary", NULL, NULL, &r);
    assert_int_equal(r.code, 405);
    resp_free(&r);
    /* an absurdly long path is simply unknown */
    char *longpath = xmalloc(3000);
    memset(longpath, 'a', 2999);
    longpath[0] = '/';
    longpath[2999] = '\0';
    http(f->port, "GET", longpath, NULL, NULL, &r);
    assert_int_equal(r.code, 404);
    resp_free(&r);
    free(longpath);
    assert_int_equal(f->be.switchover_calls, 0);
}

static void test_documents(void **state)
{
    Fixture *f = *state;
    Resp r;
    http(f->port, "GET", "/cluster", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "{\"members\":[{\"name\":\"node1\",\"role\":\"leader\"}]}");
    resp_free(&r);
    http(f->port, "GET", "/history", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_true(r.body[0] == '[');
    resp_free(&r);
    http(f->port, "GET", "/config", NULL, NULL, &r);
    assert_int_equal(r.code, 503);
    assert_non_null(strstr(r.body, "{\"error\":"));
    resp_free(&r);
    f->be.cluster_doc = NULL;
    http(f->port, "GET", "/cluster", NULL, NULL, &r);
    assert_int_equal(r.code, 503);
    assert_non_null(strstr(r.body, "{\"error\":"));
    resp_free(&r);
}

static void test_switchover_auth(void **state)
{
    Fixture *f = *state;
    const char *body = "{\"leader\":\"node1\",\"candidate\":\"node2\"}";
    Resp r;
    http(f->port, "POST", "/switchover", NULL, body, &r);
    assert_int_equal(r.code, 401);
    assert_true(has_header(&r, "WWW-Authenticate: Basic realm="));
    resp_free(&r);
    http(f->port, "POST", "/switchover", "admin:wrong", body, &r);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    http(f->port, "POST", "/switchover", "admin:s3cret:with colo", body, &r);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    http(f->port, "POST", "/switchover", "admin:s3cret:with colonX", body, &r);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    http(f->port, "POST", "/switchover", "Admin:s3cret:with colon", body, &r);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    /* not even Basic */
    const char *bearer = "POST /switchover HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         "Authorization: Bearer abc\r\nContent-Length: 2\r\n\r\n{}";
    raw_exchange(f->port, bearer, strlen(bearer), &r);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    const char *badb64 = "POST /switchover HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         "Authorization: Basic !!!!\r\nContent-Length: 2\r\n\r\n{}";
    raw_exchange(f->port, badb64, strlen(badb64), &r);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    assert_int_equal(f->be.switchover_calls, 0);

    http(f->port, "POST", "/switchover", "admin:s3cret:with colon", body, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "Successfully switched over to \"node2\"");
    assert_true(has_header(&r, "Content-Type: text/plain"));
    resp_free(&r);
    assert_int_equal(f->be.switchover_calls, 1);
    assert_string_equal(f->be.leader, "node1");
    assert_string_equal(f->be.candidate, "node2");
    assert_false(f->be.is_failover);

    /* either side may be left out of a switchover */
    http(f->port, "POST", "/switchover", "admin:s3cret:with colon", "{\"leader\":\"node1\"}", &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    assert_string_equal(f->be.candidate, "(null)");
    http(f->port, "POST", "/switchover", "admin:s3cret:with colon", "", &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    assert_string_equal(f->be.leader, "(null)");
    assert_int_equal(f->be.switchover_calls, 3);

    /* read-only GETs never need auth */
    assert_int_equal(get_code(f->port, "/patroni"), 200);
    assert_int_equal(get_code(f->port, "/cluster"), 200);
    assert_int_equal(get_code(f->port, "/metrics"), 200);
}

static void test_failover(void **state)
{
    Fixture *f = *state;
    const char *auth = "admin:s3cret:with colon";
    Resp r;
    http(f->port, "POST", "/failover", auth, "{\"leader\":\"node1\"}", &r);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body, "candidate"));
    resp_free(&r);
    assert_int_equal(f->be.switchover_calls, 0);
    http(f->port, "POST", "/failover", auth, "{\"candidate\":\"node3\"}", &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    assert_int_equal(f->be.switchover_calls, 1);
    assert_true(f->be.is_failover);
    assert_string_equal(f->be.candidate, "node3");
    assert_string_equal(f->be.leader, "(null)");
}

static void test_invalid_bodies(void **state)
{
    Fixture *f = *state;
    const char *auth = "admin:s3cret:with colon";
    static const struct {
        const char *method, *path, *body, *error;
    } bad[] = {
        {"POST", "/switchover", "{bad", "{\"error\":\"invalid JSON body\"}"},
        {"POST", "/switchover", "{\"leader\":\"node1\"", "{\"error\":\"invalid JSON body\"}"},
        {"POST", "/switchover", "\"node1\"", "{\"error\":\"invalid JSON body\"}"},
        {"POST", "/switchover", "[1,2]", NULL},
        {"POST", "/switchover", "{\"leader\":5}", NULL},
        {"POST", "/switchover", "{\"candidate\":\"n2\",\"scheduled_at\":\"2030-01-01T00:00Z\"}", NULL},
        {"POST", "/failover", "{\"candidate\":[\"n2\"]}", NULL},
        {"POST", "/restart", "{\"schedule\":\"2030-01-01T00:00Z\"}", NULL},
        {"POST", "/restart", "{\"restart_pending\":\"yes\"}", NULL},
        {"POST", "/reinitialize", "{\"force\":\"yes\"}", NULL},
        {"POST", "/reload", "nope", "{\"error\":\"invalid JSON body\"}"},
        {"PATCH", "/config", "{\"ttl\":", "{\"error\":\"invalid JSON body\"}"},
        {"PATCH", "/config", "[]", NULL},
        {"PATCH", "/config", "{}", NULL},
        {"PATCH", "/config", "", NULL},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        Resp r;
        http(f->port, bad[i].method, bad[i].path, auth, bad[i].body, &r);
        if (r.code != 400)
            print_error("case %zu: %s %s %s -> %d\n", i, bad[i].method, bad[i].path, bad[i].body,
                        r.code);
        assert_int_equal(r.code, 400);
        assert_true(has_header(&r, "Content-Type: application/json"));
        if (bad[i].error)
            assert_string_equal(r.body, bad[i].error);
        else
            assert_non_null(strstr(r.body, "{\"error\":\""));
        resp_free(&r);
    }
    /* deep nesting is refused by the parser, not by the stack */
    size_t depth = 30000;
    char *deep = xmalloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    Resp d;
    http(f->port, "PATCH", "/config", auth, deep, &d);
    assert_int_equal(d.code, 400);
    resp_free(&d);
    deep[0] = '{';
    memcpy(deep + 1, "\"a\":", 4);
    http(f->port, "POST", "/switchover", auth, deep, &d);
    assert_int_equal(d.code, 400);
    resp_free(&d);
    free(deep);
    /* a NUL byte inside the body is not JSON either */
    const char nul[] = "POST /reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       "Authorization: Basic YWRtaW46czNjcmV0OndpdGggY29sb24=\r\n"
                       "Content-Length: 4\r\n\r\n{}\0}";
    Resp r;
    raw_exchange(f->port, nul, sizeof(nul) - 1, &r);
    assert_int_equal(r.code, 400);
    resp_free(&r);
    assert_int_equal(f->be.switchover_calls + f->be.restart_calls + f->be.reinit_calls +
                         f->be.reload_calls + f->be.patch_calls,
                     0);
}

static void test_oversized_body(void **state)
{
    Fixture *f = *state;
    Resp r;
    /* declared too large: answered from the headers alone, before any body is sent */
    const char *hdr = "POST /switchover HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Authorization: Basic YWRtaW46czNjcmV0OndpdGggY29sb24=\r\n"
                      "Content-Length: 100000\r\n\r\n";
    raw_exchange(f->port, hdr, strlen(hdr), &r);
    assert_int_equal(r.code, 413);
    resp_free(&r);
    const char *huge = "PATCH /config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       "Authorization: Basic YWRtaW46czNjcmV0OndpdGggY29sb24=\r\n"
                       "Content-Length: 99999999999999999999999999\r\n\r\n";
    raw_exchange(f->port, huge, strlen(huge), &r);
    assert_true(r.code == 413 || r.code == 400); /* MHD itself may reject the number */
    resp_free(&r);

    /* chunked, no declared size: read, dropped past 64 KiB, then 413 */
    size_t chunk = 16 * 1024, nchunks = 6;
    size_t cap = 512 + nchunks * (chunk + 16);
    char *req = xmalloc(cap);
    int n = snprintf(req, cap,
                     "PATCH /config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Authorization: Basic YWRtaW46czNjcmV0OndpdGggY29sb24=\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n");
    size_t len = (size_t)n;
    for (size_t i = 0; i < nchunks; i++) {
        len += (size_t)snprintf(req + len, cap - len, "%zx\r\n", chunk);
        memset(req + len, i == 0 ? '{' : ' ', chunk);
        len += chunk;
        memcpy(req + len, "\r\n", 2);
        len += 2;
    }
    memcpy(req + len, "0\r\n\r\n", 5);
    len += 5;
    raw_exchange(f->port, req, len, &r);
    assert_int_equal(r.code, 413);
    resp_free(&r);
    free(req);
    assert_int_equal(f->be.patch_calls + f->be.switchover_calls, 0);

    /* exactly at the limit is fine (and then valid JSON decides) */
    char *big = xmalloc(64 * 1024 + 1);
    memset(big, ' ', 64 * 1024);
    big[0] = '{';
    memcpy(big + 1, "\"ttl\":20", 8);
    big[64 * 1024 - 1] = '}';
    big[64 * 1024] = '\0';
    http(f->port, "PATCH", "/config", "admin:s3cret:with colon", big, &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    free(big);
    assert_int_equal(f->be.patch_calls, 1);
}

static void test_garbage_keeps_serving(void **state)
{
    Fixture *f = *state;
    static const char *junk[] = {
        "\x00\x01\x02\x03garbage\r\n\r\n",
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET /primary HTTP/9.9\r\n\r\n",
        "GET /primary HTTP/1.1\r\nNo-Colon-Header\r\n\r\n",
        "GET /primary HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        "POST /reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "\xff\xfe\xfd\xfc\r\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(junk); i++) {
        Resp r;
        size_t len = i == 0 ? 15 : strlen(junk[i]);
        int fd = connect_port(f->port);
        send_all(fd, junk[i], len);
        shutdown(fd, SHUT_WR);
        read_resp(fd, &r);
        close(fd);
        /* either MHD answers 4xx/5xx or it just closes */
        assert_true(r.code == 0 || r.code >= 400);
        resp_free(&r);
        assert_int_equal(get_code(f->port, "/primary"), 200);
    }
    /* truncated requests: the client goes away mid-line, mid-headers, mid-body */
    static const char *cut[] = {
        "GET /prim",
        "GET /primary HTTP/1.1\r\nHost: x",
        ("POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
         "Authorization: Basic YWRtaW46czNjcmV0OndpdGggY29sb24=\r\n\r\n{\"leader\""),
    };
    for (size_t i = 0; i < ARRAY_LEN(cut); i++) {
        int fd = connect_port(f->port);
        send_all(fd, cut[i], strlen(cut[i]));
        close(fd);
        assert_int_equal(get_code(f->port, "/primary"), 200);
    }
    /* headers larger than the connection memory */
    size_t hl = 40000;
    char *req = xmalloc(hl + 128);
    int n = snprintf(req, hl + 128, "GET /primary HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'x', hl);
    memcpy(req + n + hl, "\r\n\r\n", 5);
    Resp r;
    raw_exchange(f->port, req, strlen(req), &r);
    assert_true(r.code == 0 || r.code >= 400);
    resp_free(&r);
    free(req);
    /* and connections left idle don't take the server down */
    int idle[20];
    for (size_t i = 0; i < ARRAY_LEN(idle); i++) {
        idle[i] = connect_port(f->port);
        send_all(idle[i], "GET /pri", 8);
    }
    assert_int_equal(get_code(f->port, "/primary"), 200);
    for (size_t i = 0; i < ARRAY_LEN(idle); i++)
        close(idle[i]);
    assert_int_equal(f->be.switchover_calls, 0);
    assert_int_equal(get_code(f->port, "/health"), 200);
}

static void test_keepalive(void **state)
{
    Fixture *f = *state;
    /* two requests on one connection, the second closes */
    const char *two = "GET /primary HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /replica HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    Resp r;
    raw_exchange(f->port, two, strlen(two), &r);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.body, "HTTP/1.1 503"));
    resp_free(&r);
}

static void test_patch_config(void **state)
{
    Fixture *f = *state;
    const char *patch = "{\"ttl\": 20, \"postgresql\": {\"parameters\": {\"work_mem\": null}}}";
    Resp r;
    http(f->port, "PATCH", "/config", NULL, patch, &r);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    http(f->port, "PATCH", "/config", "admin:s3cret:with colon", patch, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "{\"ttl\":20,\"loop_wait\":1}");
    assert_true(has_header(&r, "Content-Type: application/json"));
    resp_free(&r);
    assert_int_equal(f->be.patch_calls, 1);
    assert_string_equal(f->be.patch_body, patch);
    http(f->port, "PUT", "/config", "admin:s3cret:with colon", patch, &r);
    assert_int_equal(r.code, 405);
    resp_free(&r);
}

static void test_other_actions(void **state)
{
    Fixture *f = *state;
    const char *auth = "admin:s3cret:with colon";
    Resp r;
    http(f->port, "POST", "/restart", auth, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "restarted successfully");
    resp_free(&r);
    assert_int_equal(f->be.restart_calls, 1);
    /* conditions Patroni supports: not pending -> 503 without restarting */
    http(f->port, "POST", "/restart", auth, "{\"restart_pending\":true}", &r);
    assert_int_equal(r.code, 503);
    resp_free(&r);
    http(f->port, "POST", "/restart", auth, "{\"role\":\"replica\"}", &r);
    assert_int_equal(r.code, 503);
    resp_free(&r);
    http(f->port, "POST", "/restart", auth, "{\"role\":\"master\"}", &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    assert_int_equal(f->be.restart_calls, 2);

    http(f->port, "POST", "/reinitialize", auth, "{\"force\":true}", &r);
    assert_int_equal(r.code, 503);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);
    assert_int_equal(f->be.reinit_calls, 1);
    assert_true(f->be.reinit_force);
    http(f->port, "POST", "/reinitialize", auth, "{}", &r);
    resp_free(&r);
    assert_false(f->be.reinit_force);

    http(f->port, "POST", "/reload", auth, NULL, &r);
    assert_int_equal(r.code, 202);
    assert_string_equal(r.body, "{\"reloaded\":true}");
    resp_free(&r);
    assert_int_equal(f->be.reload_calls, 1);
}

/* The DDL lock's routes: bodies checked before the backend is asked (this one has no group) */
static void test_aa_ddl_lock_routes(void **state)
{
    Fixture *f = *state;
    const char *auth = "admin:s3cret:with colon";
    Resp r;
    static const char *bad[][2] = {
        {"/aa/ddl_lock", "{\"timeout_ms\": 10}"},
        {"/aa/ddl_lock", "{\"pid\": 0, \"timeout_ms\": 10}"},
        {"/aa/ddl_lock", "{\"pid\": 12}"},
        {"/aa/ddl_lock", "{\"pid\": 12, \"timeout_ms\": -1}"},
        {"/aa/ddl_unlock", "{\"pid\": 12}"},
        {"/aa/ddl_unlock", "{\"pid\": \"12\", \"lsn\": \"0/1\"}"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        http(f->port, "POST", bad[i][0], auth, bad[i][1], &r);
        assert_int_equal(r.code, 400);
        resp_free(&r);
    }
    http(f->port, "POST", "/aa/ddl_lock", auth, "{\"pid\": 12, \"timeout_ms\": 10}", &r);
    assert_int_equal(r.code, 501);
    resp_free(&r);
    http(f->port, "POST", "/aa/ddl_unlock", NULL, "{\"pid\": 12, \"lsn\": \"0/1\"}", &r);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    http(f->port, "GET", "/aa/ddl_lock", NULL, NULL, &r);
    assert_int_equal(r.code, 405);
    resp_free(&r);
}

static void test_no_auth_configured(void **state)
{
    Fixture *f = *state;
    Resp r;
    http(f->port, "POST", "/reload", NULL, NULL, &r);
    assert_int_equal(r.code, 202);
    resp_free(&r);
    http(f->port, "POST", "/switchover", "any:thing", "{\"candidate\":\"node2\"}", &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    assert_int_equal(f->be.reload_calls, 1);
    assert_int_equal(f->be.switchover_calls, 1);
}

static void test_metrics(void **state)
{
    Fixture *f = *state;
    Resp r;
    http(f->port, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_true(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    static const char *want[] = {
        "# TYPE pgvigil_postgres_running gauge\n",
        "pgvigil_postgres_running{scope=\"demo\",name=\"node1\"} 1\n",
        "pgvigil_primary{scope=\"demo\",name=\"node1\"} 1\n",
        "pgvigil_replica{scope=\"demo\",name=\"node1\"} 0\n",
        "pgvigil_timeline{scope=\"demo\",name=\"node1\"} 2\n",
        "pgvigil_xlog_location{scope=\"demo\",name=\"node1\"} 50331744\n",
        "pgvigil_failovers_total{scope=\"demo\",name=\"node1\"} 1\n",
        "pgvigil_version{scope=\"demo\",name=\"node1\",version=\"" PGVIGIL_VERSION "\"} 1\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        if (!strstr(r.body, want[i]))
            print_error("missing %s", want[i]);
        assert_non_null(strstr(r.body, want[i]));
    }
    resp_free(&r);
}

typedef struct SlowCall {
    int port;
    int code;
} SlowCall;

static void *slow_switchover(void *arg)
{
    SlowCall *c = arg;
    Resp r;
    http(c->port, "POST", "/switchover", "admin:s3cret:with colon", "{\"candidate\":\"node2\"}", &r);
    c->code = r.code;
    resp_free(&r);
    return NULL;
}

static int backend_count(TestBackend *b, const int *counter)
{
    pthread_mutex_lock(&b->mu);
    int n = *counter;
    pthread_mutex_unlock(&b->mu);
    return n;
}

/* A slow action (a switchover waiting on its candidate) must not delay health checks: a health
 * check made while the switchover runs is answered before the switchover ends (an order of
 * events, not a number of milliseconds). */
static void test_slow_action_does_not_block(void **state)
{
    Fixture *f = *state;
    f->be.switchover_delay_ms = 3000;
    SlowCall call = {.port = f->port};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, slow_switchover, &call), 0);
    for (int i = 0; i < 3000 && backend_count(&f->be, &f->be.switchover_started) == 0; i++)
        sleep_ms(10);
    assert_int_equal(backend_count(&f->be, &f->be.switchover_started), 1);
    assert_int_equal(get_code(f->port, "/primary"), 200);
    assert_int_equal(backend_count(&f->be, &f->be.switchover_calls), 0);   /* still running */
    pthread_join(th, NULL);
    assert_int_equal(call.code, 200);
    assert_int_equal(f->be.switchover_calls, 1);
}

static void test_start_errors(void **state)
{
    Fixture *f = *state;
    RestBackend rb = {0};
    Err err = {{0}};
    char listen[64];
    str_fmt(listen, sizeof(listen), "127.0.0.1:%d", f->port);
    assert_null(rest_start(listen, &rb, NULL, NULL, &err));
    char want[128];
    str_fmt(want, sizeof(want), "restapi.listen 127.0.0.1:%d: address already in use", f->port);
    assert_string_equal(err.msg, want);

    static const struct {
        const char *listen, *msg;
    } bad[] = {
        {"nonsense", "restapi.listen nonsense: expected host:port"},
        {"127.0.0.1:99999", "restapi.listen 127.0.0.1:99999: invalid port"},
        {"127.0.0.1:", "restapi.listen 127.0.0.1:: invalid port"},
        {"127.0.0.1:80x", "restapi.listen 127.0.0.1:80x: invalid port"},
        {"", "restapi.listen: not set"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        memset(&err, 0, sizeof(err));
        assert_null(rest_start(bad[i].listen, &rb, NULL, NULL, &err));
        assert_string_equal(err.msg, bad[i].msg);
    }
    memset(&err, 0, sizeof(err));
    /* 192.0.2.1 (TEST-NET) is not a local address */
    assert_null(rest_start("192.0.2.1:0", &rb, NULL, NULL, &err));
    assert_string_equal(err.msg, "restapi.listen 192.0.2.1:0: cannot assign requested address");

    /* a backend with no callbacks still answers, with 503s */
    RestServer *srv = rest_start("127.0.0.1:0", &rb, NULL, NULL, &err);
    assert_non_null(srv);
    int port = rest_port(srv);
    assert_int_equal(get_code(port, "/primary"), 503);
    assert_int_equal(get_code(port, "/liveness"), 200);
    assert_int_equal(get_code(port, "/cluster"), 503);
    Resp r;
    http(port, "POST", "/reload", NULL, NULL, &r);
    assert_int_equal(r.code, 501);
    resp_free(&r);
    rest_stop(srv);
    rest_stop(NULL);
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_by_status, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_head_and_options_have_no_body, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_and_wrong_method, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_documents, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_switchover_auth, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_failover, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_bodies, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_body, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_keeps_serving, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_patch_config, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_other_actions, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_aa_ddl_lock_routes, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_no_auth_configured, setup_noauth, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_slow_action_does_not_block, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup_auth, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
