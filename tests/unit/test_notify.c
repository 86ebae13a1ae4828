/* Event notifications against a recording HTTP server (libmicrohttpd) on 127.0.0.1: webhook body
 * and signature, retries with backoff, Pushover's form, the command hook, shutdown with a dead
 * or stalled receiver, and that notifier_send() never waits for the network. */
#include "common/common.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "notify/notify.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

/* ---- recording server ---- */

#define MAX_REQS 64

typedef struct Req {
    char *method, *url, *ctype, *event, *sig, *body;
} Req;

typedef struct Srv {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    Req reqs[MAX_REQS];
    int n;
    int statuses[8];   /* answer for request i (0: 200) */
    int delay_ms;      /* each answer waits this long (interrupted by stopping) */
    volatile int stopping;
} Srv;

typedef struct Upload {
    char *data;
    size_t len;
} Upload;

static char *dup_or_null(const char *s)
{
    return s ? str_dup(s) : NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    Srv *s = cls;
    Upload *u = *con_cls;
    if (!u) {
        *con_cls = xcalloc(1, sizeof(Upload));
        return MHD_YES;
    }
    if (*size) {
        u->data = xrealloc(u->data, u->len + *size + 1);
        memcpy(u->data + u->len, data, *size);
        u->len += *size;
        u->data[u->len] = '\0';
        *size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&s->mu);
    int i = s->n;
    if (s->n < MAX_REQS) {
        Req *r = &s->reqs[s->n++];
        r->method = str_dup(method);
        r->url = str_dup(url);
        r->ctype = dup_or_null(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"));
        r->event = dup_or_null(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Pgvigil-Event"));
        r->sig = dup_or_null(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Pgvigil-Signature"));
        r->body = str_dup(u->data ? u->data : "");
    }
    int status = i < (int)ARRAY_LEN(s->statuses) && s->statuses[i] ? s->statuses[i] : 200;
    int delay = s->delay_ms;
    pthread_mutex_unlock(&s->mu);
    for (int64_t end = mono_ms() + delay; mono_ms() < end && !s->stopping;)
        sleep_ms(10);
    static const char answer[] = "{\"status\":1}";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(answer), (void *)answer, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    Upload *u = *con_cls;
    if (u) {
        free(u->data);
        free(u);
        *con_cls = NULL;
    }
}

static Srv *srv_start(void)
{
    Srv *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                MHD_USE_AUTO | MHD_USE_ITC,
                            0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                            (const struct sockaddr *)&a, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                            s, MHD_OPTION_END);
    assert_non_null(s->d);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(di);
    s->port = di->port;
    assert_true(s->port > 0);
    return s;
}

static void srv_stop(Srv *s)
{
    s->stopping = 1;
    MHD_stop_daemon(s->d);
    for (int i = 0; i < s->n; i++) {
        Req *r = &s->reqs[i];
        free(r->method);
        free(r->url);
        free(r->ctype);
        free(r->event);
        free(r->sig);
        free(r->body);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int srv_count(Srv *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- helpers ---- */

/* A port nobody listens on right now (bound then closed). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Wait up to ms for at least `delivered` successful and `failed` given-up deliveries. */
static bool wait_stats(Notifier *n, uint64_t delivered, uint64_t failed, int ms)
{
    int64_t end = mono_ms() + ms;
    for (;;) {
        NotifyStats st;
        notifier_stats(n, &st);
        if (st.delivered >= delivered && st.failed >= failed)
            return true;
        if (mono_ms() > end)
            return false;
        sleep_ms(10);
    }
}

static NotifyConfig base_config(void)
{
    NotifyConfig c = {.max_attempts = 6, .timeout = 5};
    return c;
}

static char *hmac_hex(const char *key, const char *msg)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg,
                         strlen(msg), md, &len));
    char *hex = xmalloc(2 * len + 1);
    for (unsigned int i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* "a=1&b=2" (values URL-encoded) -> JSON object of decoded strings. */
static json_t *parse_form(const char *body)
{
    json_t *o = json_object();
    char *copy = str_dup(body);
    char *save = NULL;
    for (char *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        assert_non_null(eq);
        *eq = '\0';
        int len = 0;
        char *val = curl_easy_unescape(NULL, eq + 1, 0, &len);
        assert_non_null(val);
        json_object_set_new(o, kv, json_string(val));
        curl_free(val);
    }
    free(copy);
    return o;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return str_dup(buf);
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        str_fmt(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* ---- pure helpers ---- */

static void test_signature_vector(void **state)
{
    char *sig = notify_signature("key", "The quick brown fox jumps over the lazy dog");
    assert_string_equal(sig, "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    free(sig);
    /* RFC 4231 test case 2 */
    sig = notify_signature("Jefe", "what do ya want for nothing?");
    assert_string_equal(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    free(sig);
}

static void test_url_redact(void **state)
{
    struct {
        const char *in, *out;
    } cases[] = {
        {"https://user:pw@hooks.example.com:8443/p/x?token=abc#f", "https://***@hooks.example.com:8443/p/x?..."},
        {"http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"},
        {"http://host", "http://host"},
        {"http://a@b@host/x#frag", "http://***@host/x"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *r = notify_url_redact(cases[i].in);
        assert_string_equal(r, cases[i].out);
        free(r);
    }
}

static void test_bad_config(void **state)
{
    Err err = {.msg = ""};
    NotifyConfig c = base_config();
    c.webhook_url = "ftp://example.com/hook";
    assert_null(notifier_new(&c, "demo", "node1", &err));
    assert_string_equal(err.msg, "notify.webhook.url: expected an http:// or https:// URL, got "
                                 "\"ftp://example.com/hook\"");
    c = base_config();
    c.pushover_url = "file:///etc/passwd";
    c.pushover_token = "t";
    c.pushover_user = "u";
    assert_null(notifier_new(&c, "demo", "node1", &err));
    assert_string_equal(err.msg, "notify.pushover.url: expected an http:// or https:// URL, got "
                                 "\"file:///etc/passwd\"");
}

static void test_no_sinks(void **state)
{
    Err err = {.msg = ""};
    NotifyConfig c = base_config();
    Notifier *n = notifier_new(&c, "demo", "node1", &err);
    assert_non_null(n);
    notifier_send(n, EV_FAILOVER, NULL, "dropped: no sink");
    NotifyStats st;
    notifier_stats(n, &st);
    assert_int_equal(st.pending, 0);
    notifier_free(n, 1000);
    notifier_free(NULL, 0);
    notifier_send(NULL, EV_FAILOVER, NULL, "x");
    assert_non_null(n = notifier_new(NULL, NULL, NULL, &err));
    notifier_free(n, 0);
}

/* ---- webhook ---- */

static void test_webhook_body_and_signature(void **state)
{
    Srv *s = srv_start();
    char url[128];
    str_fmt(url, sizeof(url), "http://127.0.0.1:%d/hook", s->port);
    NotifyConfig c = base_config();
    c.webhook_url = url;
    c.webhook_secret = "s3cret";
    Err err = {.msg = ""};
    Notifier *n = notifier_new(&c, "demo", "node1", &err);
    assert_non_null(n);
    notifier_send(n, EV_FAILOVER, "node2", "node2 promoted: leader key expired");
    notifier_send(n, EV_LEASE_LOST, NULL, "bad \xff byte \"quoted\"");
    assert_true(wait_stats(n, 2, 0, 5000));
    notifier_free(n, 1000);
    assert_int_equal(srv_count(s), 2);

    Req *r = &s->reqs[0];
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->url, "/hook");
    assert_string_equal(r->ctype, "application/json");
    assert_string_equal(r->event, "failover");
    char *hex = hmac_hex("s3cret", r->body);
    char *want = str_printf("sha256=%s", hex);
    assert_non_null(r->sig);
    assert_string_equal(r->sig, want);
    free(hex);
    free(want);

    json_error_t jerr;
    json_t *doc = json_loads(r->body, 0, &jerr);
    assert_non_null(doc);
    assert_string_equal(jstr(doc, "event"), "failover");
    assert_string_equal(jstr(doc, "cluster"), "demo");
    assert_string_equal(jstr(doc, "node"), "node1");
    assert_string_equal(jstr(doc, "member"), "node2");
    assert_string_equal(jstr(doc, "message"), "node2 promoted: leader key expired");
    const char *t = jstr(doc, "time");
    assert_non_null(t);
    /* 2026-11-22T10:00:00.123Z */
    assert_int_equal(strlen(t), 24);
    assert_true(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
    struct tm tm = {0};
    assert_non_null(strptime(t, "%Y-%m-%dT%H:%M:%S", &tm));
    assert_true(llabs((long long)timegm(&tm) - (long long)time(NULL)) < 60);
    const char *id0 = jstr(doc, "id");
    assert_non_null(id0);
    assert_int_equal(strncmp(id0, "node1-", 6), 0);

    Req *r1 = &s->reqs[1];
    assert_string_equal(r1->event, "lease_lost");
    json_t *doc1 = json_loads(r1->body, 0, &jerr);
    assert_non_null(doc1);
    assert_true(json_is_null(json_object_get(doc1, "member")));
    assert_string_equal(jstr(doc1, "message"), "bad ? byte \"quoted\"");
    assert_string_not_equal(jstr(doc1, "id"), id0);
    json_decref(doc);
    json_decref(doc1);
    srv_stop(s);
}

static void test_webhook_no_secret_no_signature(void **state)
{
    Srv *s = srv_start();
    char url[128];
    str_fmt(url, sizeof(url), "http://127.0.0.1:%d/", s->port);
    NotifyConfig c = base_config();
    c.webhook_url = url;
    Notifier *n = notifier_new(&c, "demo", "node1", NULL);
    assert_non_null(n);
    notifier_send(n, EV_MEMBER_DOWN, "node3", "node3 is gone");
    assert_true(wait_stats(n, 1, 0, 5000));
    notifier_free(n, 1000);
    assert_int_equal(srv_count(s), 1);
    assert_null(s->reqs[0].sig);
    assert_string_equal(s->reqs[0].event, "member_down");
    srv_stop(s);
}

static void test_webhook_retries(void **state)
{
    Srv *s = srv_start();
    s->statuses[0] = 500;
    s->statuses[1] = 500;
    char url[128];
    str_fmt(url, sizeof(url), "http://127.0.0.1:%d/hook", s->port);
    NotifyConfig c = base_config();
    c.webhook_url = url;
    Notifier *n = notifier_new(&c, "demo", "node1", NULL);
    assert_non_null(n);
    int64_t t0 = mono_ms();
    notifier_send(n, EV_SWITCHOVER, "node2", "planned");
    assert_true(wait_stats(n, 1, 0, 6000));
    int64_t took = mono_ms() - t0;
    /* backoff 0.5 s then 1 s */
    assert_true(took >= 1400);
    sleep_ms(200);
    NotifyStats st;
    notifier_stats(n, &st);
    assert_int_equal(st.attempts, 3);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.pending, 0);
    notifier_free(n, 1000);
    assert_int_equal(srv_count(s), 3);
    /* the same event each time */
    assert_string_equal(s->reqs[0].body, s->reqs[2].body);
    srv_stop(s);
}

static void test_webhook_gives_up(void **state)
{
    Srv *s = srv_start();
    for (size_t i = 0; i < ARRAY_LEN(s->statuses); i++)
        s->statuses[i] = 503;
    char url[128];
    str_fmt(url, sizeof(url), "http://127.0.0.1:%d/hook", s->port);
    NotifyConfig c = base_config();
    c.webhook_url = url;
    c.max_attempts = 2;
    Notifier *n = notifier_new(&c, "demo", "node1", NULL);
    assert_non_null(n);
    notifier_send(n, EV_FAILOVER, NULL, "x");
    notifier_send(n, EV_MEMBER_REJOINED, "node2", "y");
    assert_true(wait_stats(n, 0, 2, 5000));
    NotifyStats st;
    notifier_stats(n, &st);
    assert_int_equal(st.attempts, 4);
    assert_int_equal(st.delivered, 0);
    notifier_free(n, 1000);
    assert_int_equal(srv_count(s), 4);
    /* order within the sink: both attempts of the first event, then the second */
    assert_string_equal(s->reqs[0].event, "failover");
    assert_string_equal(s->reqs[1].event, "failover");
    assert_string_equal(s->reqs[2].event, "member_rejoined");
    srv_stop(s);
}

static void test_server_down_free_is_prompt(void **state)
{
    char url[128];
    str_fmt(url, sizeof(url), "http://127.0.0.1:%d/hook", free_port());
    NotifyConfig c = base_config();
    c.webhook_url = url;
    Notifier *n = notifier_new(&c, "demo", "node1", NULL);
    assert_non_null(n);
    notifier_send(n, EV_FAILOVER, NULL, "nobody listens");
    int64_t end = mono_ms() + 3000;
    NotifyStats st;
    do {
        sleep_ms(10);
        notifier_stats(n, &st);
    } while (st.attempts < 1 && mono_ms() < end);
    assert_int_equal(st.attempts, 1);
    assert_int_equal(st.pending, 1);
    /* a bound that is the point (agent shutdown must not wait on a dead receiver), listed in the
     * README: within 1 s of the 200 ms grace, where the retries would go on for 15 s */
    int64_t t0 = mono_ms();
    notifier_free(n, 200);
    int64_t took = mono_ms() - t0;
    assert_true(took < 1000);
}

/* notifier_send() only queues: a receiver that takes seconds to answer costs it nothing, the
 * queue is bounded, and notifier_free() aborts the stalled attempt soon after its grace. */
static void test_send_does_not_block(void **state)
{
    Srv *s = srv_start();
    s->delay_ms = 4000;
    char url[128];
    str_fmt(url, sizeof(url), "http://127.0.0.1:%d/hook", s->port);
    NotifyConfig c = base_config();
    c.webhook_url = url;
    c.timeout = 10;
    Notifier *n = notifier_new(&c, "demo", "node1", NULL);
    assert_non_null(n);
    int64_t answer_at = mono_ms() + s->delay_ms;   /* the receiver answers no earlier than this */
    notifier_send(n, EV_FAILOVER, NULL, "first");
    int64_t end = mono_ms() + 30000;
    while (srv_count(s) < 1 && mono_ms() < end)
        sleep_ms(10);
    assert_int_equal(srv_count(s), 1); /* the receiver now stalls */

    /* Orders of events, not numbers of milliseconds: every send returns while the first
     * delivery is still stalled (nothing delivered yet), and free returns before the stalled
     * receiver would have answered, so it aborted the attempt */
    for (int i = 0; i < 299; i++)
        notifier_send(n, EV_LAG_HIGH, "node2", "lag");
    NotifyStats st;
    notifier_stats(n, &st);
    assert_int_equal(st.events, 300);
    assert_int_equal(st.pending, 256);
    assert_int_equal(st.dropped, 300 - 256);
    assert_int_equal(st.delivered, 0);

    notifier_free(n, 0);
    assert_true(mono_ms() < answer_at);
    srv_stop(s);
}

/* ---- pushover ---- */

static void test_pushover_form(void **state)
{
    Srv *s = srv_start();
    char url[128];
    str_fmt(url, sizeof(url), "http://127.0.0.1:%d/1/messages.json", s->port);
    NotifyConfig c = base_config();
    c.pushover_url = url;
    c.pushover_token = "tok123";
    c.pushover_user = "usr456";
    Notifier *n = notifier_new(&c, "demo", "node1", NULL);
    assert_non_null(n);
    notifier_send(n, EV_FAILOVER, "node1", "a & b = c +%\xc3\xbc");
    notifier_send(n, EV_LAG_HIGH, "node2", "");
    assert_true(wait_stats(n, 2, 0, 5000));
    notifier_free(n, 1000);
    assert_int_equal(srv_count(s), 2);

    Req *r = &s->reqs[0];
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->url, "/1/messages.json");
    assert_string_equal(r->ctype, "application/x-www-form-urlencoded");
    json_t *f = parse_form(r->body);
    assert_string_equal(jstr(f, "token"), "tok123");
    assert_string_equal(jstr(f, "user"), "usr456");
    assert_string_equal(jstr(f, "title"), "pgvigil demo: failover");
    assert_string_equal(jstr(f, "message"), "a & b = c +%\xc3\xbc");
    assert_string_equal(jstr(f, "priority"), "1");
    const char *ts = jstr(f, "timestamp");
    assert_non_null(ts);
    assert_true(llabs(atoll(ts) - (long long)time(NULL)) < 60);
    json_decref(f);

    f = parse_form(s->reqs[1].body);
    assert_string_equal(jstr(f, "title"), "pgvigil demo: lag_high");
    assert_string_equal(jstr(f, "message"), "lag_high"); /* Pushover refuses an empty one */
    assert_string_equal(jstr(f, "priority"), "0");
    json_decref(f);
    srv_stop(s);
}

/* ---- command ---- */

static void test_command_env(void **state)
{
    char dir[] = "/tmp/pgvigil-notify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *cmd = str_printf("printf '%%s\\n' \"$PGVIGIL_EVENT\" \"$PGVIGIL_CLUSTER\" \"$PGVIGIL_NODE\" "
                           "\"$PGVIGIL_MEMBER\" \"$PGVIGIL_MESSAGE\" >> %s/out && "
                           "printf '%%s' \"$PGVIGIL_JSON\" > %s/json.$PGVIGIL_EVENT",
                           dir, dir);
    NotifyConfig c = base_config();
    c.command = cmd;
    Notifier *n = notifier_new(&c, "demo", "node1", NULL);
    assert_non_null(n);
    notifier_send(n, EV_MEMBER_DOWN, "node3", "node3's key vanished");
    notifier_send(n, EV_LEASE_LOST, NULL, "demoted");
    assert_true(wait_stats(n, 2, 0, 5000));
    notifier_free(n, 1000);

    char path[512];
    str_fmt(path, sizeof(path), "%s/out", dir);
    char *out = read_text(path);
    assert_non_null(out);
    assert_string_equal(out, "member_down\ndemo\nnode1\nnode3\nnode3's key vanished\n"
                             "lease_lost\ndemo\nnode1\n\ndemoted\n");
    free(out);
    str_fmt(path, sizeof(path), "%s/json.member_down", dir);
    char *js = read_text(path);
    assert_non_null(js);
    json_t *doc = json_loads(js, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(jstr(doc, "event"), "member_down");
    assert_string_equal(jstr(doc, "member"), "node3");
    json_decref(doc);
    free(js);
    free(cmd);
    rm_tree(dir);
}

static void test_command_failure_and_timeout(void **state)
{
    NotifyConfig c = base_config();
    c.command = "echo boom >&2; exit 3";
    c.max_attempts = 1;
    Notifier *n = notifier_new(&c, "demo", "node1", NULL);
    assert_non_null(n);
    notifier_send(n, EV_FAILOVER, NULL, "x");
    assert_true(wait_stats(n, 0, 1, 5000));
    notifier_free(n, 0);

    /* a hook that hangs is killed with its process group after notify.timeout */
    char dir[] = "/tmp/pgvigil-notify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *cmd = str_printf("sleep 30 & echo $! > %s/pid; wait", dir);
    c.command = cmd;
    c.timeout = 1;
    n = notifier_new(&c, "demo", "node1", NULL);
    assert_non_null(n);
    /* killed at notify.timeout: not before it, and well before the hook would end (30 s); the
     * upper bound (timeout + 3 s) is the point, listed in the README */
    int64_t t0 = mono_ms();
    notifier_send(n, EV_FAILOVER, NULL, "x");
    assert_true(wait_stats(n, 0, 1, 20000));
    int64_t took = mono_ms() - t0;
    assert_true(took >= 900 && took < 4000);
    notifier_free(n, 0);
    char path[512];
    str_fmt(path, sizeof(path), "%s/pid", dir);
    char *pidtxt = read_text(path);
    assert_non_null(pidtxt);
    pid_t pid = (pid_t)atoi(pidtxt);
    free(pidtxt);
    assert_true(pid > 0);
    /* gone, or a zombie waiting for init */
    bool dead = false;
    for (int i = 0; i < 100 && !dead; i++) {
        char stat[64];
        str_fmt(stat, sizeof(stat), "/proc/%d/stat", (int)pid);
        char *st = read_text(stat);
        const char *close = st ? strrchr(st, ')') : NULL;
        dead = !st || (close && close[2] == 'Z');
        free(st);
        if (!dead)
            sleep_ms(10);
    }
    assert_true(dead);
    free(cmd);
    rm_tree(dir);
}

/* A sink that keeps failing does not hold back the others. */
static void test_sinks_are_independent(void **state)
{
    char dir[] = "/tmp/pgvigil-notify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char url[128];
    str_fmt(url, sizeof(url), "http://127.0.0.1:%d/hook", free_port());
    char *cmd = str_printf("echo \"$PGVIGIL_EVENT\" >> %s/out", dir);
    NotifyConfig c = base_config();
    c.webhook_url = url;
    c.command = cmd;
    Notifier *n = notifier_new(&c, "demo", "node1", NULL);
    assert_non_null(n);
    notifier_send(n, EV_FAILOVER, NULL, "1");
    notifier_send(n, EV_MEMBER_DOWN, "node2", "2");
    notifier_send(n, EV_MEMBER_REJOINED, "node2", "3");
    /* the command sink delivers all three while the webhook's three are still pending (its
     * retries go on for about 15 s): an order of events, not a time limit */
    assert_true(wait_stats(n, 3, 0, 10000));
    NotifyStats st;
    notifier_stats(n, &st);
    assert_int_equal(st.pending, 3); /* the webhook's, still retrying */
    notifier_free(n, 0);
    char path[512];
    str_fmt(path, sizeof(path), "%s/out", dir);
    char *out = read_text(path);
    assert_non_null(out);
    assert_string_equal(out, "failover\nmember_down\nmember_rejoined\n");
    free(out);
    free(cmd);
    rm_tree(dir);
}

int main(void)
{
    /* the test server may write to a socket the client already closed */
    signal(SIGPIPE, SIG_IGN);
    log_set_level(getenv("TEST_NOTIFY_VERBOSE") ? LOG_DEBUG : LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature_vector),
        cmocka_unit_test(test_url_redact),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_no_sinks),
        cmocka_unit_test(test_webhook_body_and_signature),
        cmocka_unit_test(test_webhook_no_secret_no_signature),
        cmocka_unit_test(test_webhook_retries),
        cmocka_unit_test(test_webhook_gives_up),
        cmocka_unit_test(test_server_down_free_is_prompt),
        cmocka_unit_test(test_send_does_not_block),
        cmocka_unit_test(test_pushover_form),
        cmocka_unit_test(test_command_env),
        cmocka_unit_test(test_command_failure_and_timeout),
        cmocka_unit_test(test_sinks_are_independent),
    };
    int failed = cmocka_run_group_tests_name("notify", tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
