/* etcd v3 client over the HTTP/JSON gateway (libcurl + jansson): range reads, transactions,
 * one lease per handle shared by every on-lease key, and watches bounded by a timeout. */
#include "common/common.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "dcs/base64.h"
#include "dcs/dcs.h"

/* Threading: a handle owns one curl easy handle and its lease state, so a Dcs must be used from
 * one thread at a time; separate handles may be used from separate threads.
 *
 * Time: every HTTP call is bounded by timeout_ms (connect and transfer). When a host cannot be
 * reached the next one is tried with a fresh budget, so one operation may take up to
 * n_hosts * timeout_ms; a request that reached a host and then failed is not replayed elsewhere
 * (except "no leader" answers, HTTP 503), because it may have been applied. */

#define ETCD_MAX_BODY ((size_t)64 << 20)   /* refuse larger answers rather than eat memory */
#define ETCD_MSG_MAX 200                   /* chars of etcd's own error text kept in messages */

typedef struct EtcdDcs {
    Dcs base;
    char **hosts;           /* as configured ("127.0.0.1:2379"): used in messages */
    char **urls;            /* "http://127.0.0.1:2379" */
    int n_hosts;
    int cur;                /* the host that answered last: tried first */
    char *user, *password;  /* NULL: no authentication */
    char *token;            /* auth token for token_host; "" when etcd has auth disabled */
    int token_host;
    int timeout_ms;
    CURL *curl;             /* unary calls: reused across calls for keep-alive */
    CURL *watch_curl;       /* watches only: a watch ends by aborting its stream, which closes
                             * the connection; on its own handle that never costs the next
                             * lease renewal a reconnect */
    int64_t connects;       /* connections opened by unary calls (dcs_etcd_connects) */
    char errbuf[CURL_ERROR_SIZE];
    char *key_b64;          /* the prefix ... */
    char *range_end_b64;    /* ... and the end of its range, base64 */
    int64_t lease;          /* our lease, 0 before the first keepalive */
    int lease_ttl;          /* ttl it was granted with (seconds) */
    int64_t old_lease;      /* after a ttl change: the lease whose keys still move to `lease` */
} EtcdDcs;

/* A growing response body. */
typedef struct Buf {
    char *data;
    size_t len, cap;
    bool too_big;
} Buf;

/* Outcome of one call against one host. */
typedef enum { CALL_OK, CALL_UNREACHABLE, CALL_FAILED } CallResult;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static EtcdDcs *etcd_of(Dcs *d)
{
    return (EtcdDcs *)d;
}

static bool buf_append(Buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > ETCD_MAX_BODY) {
        b->too_big = true;
        return false;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

static size_t buf_write(char *p, size_t size, size_t nmemb, void *ud)
{
    size_t n = size * nmemb;
    return buf_append(ud, p, n) ? n : 0;
}

/* Copy etcd's (or a proxy's) message into out as one short printable line. */
static void one_line(char *out, size_t sz, const char *msg, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < sz && o < ETCD_MSG_MAX; i++) {
        unsigned char c = (unsigned char)msg[i];
        out[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    if (o == 0)
        str_copy(out, sz, "(empty answer)");
}

/* The error text of an etcd answer: {"error":"..","message":"..","code":N} for unary calls,
 * {"error":{"message":..,...}} inside streams. Falls back to the raw body. */
static void error_text(json_t *j, const char *body, size_t len, char *out, size_t sz)
{
    const char *msg = NULL;
    if (json_is_object(j)) {
        json_t *e = json_object_get(j, "error");
        msg = json_string_value(json_object_get(j, "message"));
        if (!msg)
            msg = json_string_value(e);
        if (!msg && json_is_object(e))
            msg = json_string_value(json_object_get(e, "message"));
    }
    if (msg)
        one_line(out, sz, msg, strlen(msg));
    else
        one_line(out, sz, body ? body : "", body ? len : 0);
}

static bool is_auth_error(const char *msg)
{
    return strstr(msg, "invalid auth token") || strstr(msg, "user name is empty");
}

/* Lowercase the first letter so library messages read like ours. */
static void lower_first(char *s)
{
    if (s[0] >= 'A' && s[0] <= 'Z')
        s[0] = (char)(s[0] - 'A' + 'a');
}

/* One POST to one host. Returns curl's code; *unreachable tells whether the request certainly
 * never reached etcd (so another host may be tried); why describes a failure. */
static CURLcode etcd_post(EtcdDcs *e, CURL *c, int h, const char *path, const char *body,
                          long timeout_ms, curl_write_callback cb, void *ud, long *status,
                          bool *unreachable, char *why, size_t whysz)
{
    char url[1024];
    *status = 0;
    *unreachable = false;
    why[0] = '\0';
    if (!str_fmt(url, sizeof(url), "%s%s", e->urls[h], path)) {
        str_copy(why, whysz, "url too long");
        return CURLE_URL_MALFORMAT;
    }
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Expect:");   /* no 100-continue round trip */
    char *auth = NULL;
    if (!str_empty(e->token) && e->token_host == h) {
        auth = str_printf("Authorization: %s", e->token);
        hdr = curl_slist_append(hdr, auth);
    }
    long connect_ms = timeout_ms < e->timeout_ms ? timeout_ms : e->timeout_ms;
    e->errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ud);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    CURLcode rc = curl_easy_perform(c);
    long opened = 0;
    if (c == e->curl && curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &opened) == CURLE_OK)
        e->connects += opened;
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdr);
    free(auth);

    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        return rc;
    }
    long sent = 0;
    curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &sent);
    *unreachable = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                   rc == CURLE_COULDNT_RESOLVE_PROXY || sent == 0;
    if (rc == CURLE_COULDNT_CONNECT) {
        long os_errno = 0;
        curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
        if (os_errno) {
            char eb[128];
            str_copy(why, whysz, strerror_r((int)os_errno, eb, sizeof(eb)));
        } else {
            str_copy(why, whysz, "could not connect");
        }
    } else if (rc == CURLE_COULDNT_RESOLVE_HOST) {
        str_copy(why, whysz, "could not resolve host");
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        str_fmt(why, whysz, "timed out after %ld ms", timeout_ms);
    } else if (rc == CURLE_WRITE_ERROR && cb == buf_write && ((Buf *)ud)->too_big) {
        str_fmt(why, whysz, "answer larger than %zu bytes", ETCD_MAX_BODY);
    } else {
        str_copy(why, whysz, e->errbuf[0] ? e->errbuf : curl_easy_strerror(rc));
        size_t n = strlen(why);
        while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
            why[--n] = '\0';
    }
    lower_first(why);
    return rc;
}

static json_t *parse_object(const char *text, size_t len)
{
    if (!text || len == 0)
        return NULL;
    json_t *j = json_loadb(text, len, 0, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static bool etcd_authenticate(EtcdDcs *e, int h, CallResult *res, Err *err);

/* POST text to path on host h, authenticating first when needed. On CALL_OK *out is the parsed
 * answer (caller decrefs). err is set on every other result. */
static CallResult etcd_call_host(EtcdDcs *e, int h, const char *path, const char *text,
                                 json_t **out, Err *err)
{
    *out = NULL;
    for (int attempt = 0;; attempt++) {
        CallResult res;
        if (e->user && (!e->token || e->token_host != h) && !etcd_authenticate(e, h, &res, err))
            return res;
        Buf b = {0};
        long status;
        bool unreachable;
        char why[256];
        CURLcode rc = etcd_post(e, e->curl, h, path, text, e->timeout_ms, buf_write, &b, &status,
                                &unreachable, why, sizeof(why));
        if (rc != CURLE_OK) {
            free(b.data);
            if (unreachable) {
                err_set(err, "etcd %s: %s", e->hosts[h], why);
                return CALL_UNREACHABLE;
            }
            err_set(err, "etcd %s: %s: %s", e->hosts[h], path, why);
            return CALL_FAILED;
        }
        json_t *j = parse_object(b.data, b.len);
        if (status == 200) {
            free(b.data);
            if (!j) {
                err_set(err, "etcd %s: malformed response to %s", e->hosts[h], path);
                return CALL_FAILED;
            }
            *out = j;
            return CALL_OK;
        }
        char msg[ETCD_MSG_MAX + 1];
        error_text(j, b.data, b.len, msg, sizeof(msg));
        json_decref(j);
        free(b.data);
        if (e->user && attempt == 0 && is_auth_error(msg)) {
            FREE_AND_NULL(e->token);   /* expired or from another member: log in again */
            continue;
        }
        err_set(err, "etcd %s: %s: HTTP %ld: %s", e->hosts[h], path, status, msg);
        /* 503 is etcd's "no leader"/"unavailable": this member cannot serve, another may. */
        return status == 503 ? CALL_UNREACHABLE : CALL_FAILED;
    }
}

/* A token goes into an HTTP header: no control characters (a line break would start another
 * header), nothing but ASCII. */
static bool is_header_safe(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    }
    return true;
}

/* Get a token from host h. etcd with auth disabled answers an error we accept: no token. */
static bool etcd_authenticate(EtcdDcs *e, int h, CallResult *res, Err *err)
{
    static const char path[] = "/v3/auth/authenticate";
    FREE_AND_NULL(e->token);
    json_t *req = json_pack("{s:s, s:s}", "name", e->user, "password",
                            e->password ? e->password : "");
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    Buf b = {0};
    long status;
    bool unreachable;
    char why[256];
    CURLcode rc = etcd_post(e, e->curl, h, path, text, e->timeout_ms, buf_write, &b, &status, &unreachable,
                            why, sizeof(why));
    free(text);   /* holds the password: never logged or kept */
    if (rc != CURLE_OK) {
        free(b.data);
        if (unreachable) {
            err_set(err, "etcd %s: %s", e->hosts[h], why);
            *res = CALL_UNREACHABLE;
        } else {
            err_set(err, "etcd %s: %s: %s", e->hosts[h], path, why);
            *res = CALL_FAILED;
        }
        return false;
    }
    json_t *j = parse_object(b.data, b.len);
    bool ok = false;
    if (status == 200) {
        const char *tok = json_string_value(json_object_get(j, "token"));
        if (tok && *tok && is_header_safe(tok)) {
            e->token = str_dup(tok);
            e->token_host = h;
            ok = true;
        } else {
            err_set(err, "etcd %s: malformed response to %s", e->hosts[h], path);
        }
    } else {
        char msg[ETCD_MSG_MAX + 1];
        error_text(j, b.data, b.len, msg, sizeof(msg));
        if (strstr(msg, "authentication is not enabled")) {
            e->token = str_dup("");
            e->token_host = h;
            ok = true;
        } else {
            err_set(err, "etcd %s: %s as user \"%s\": HTTP %ld: %s", e->hosts[h], path, e->user,
                    status, msg);
        }
    }
    json_decref(j);
    free(b.data);
    *res = ok ? CALL_OK : (status == 503 ? CALL_UNREACHABLE : CALL_FAILED);
    return ok;
}

/* POST req (stolen) to path, trying the hosts in turn from the last good one while they cannot
 * be reached. Returns the answer (caller decrefs) or NULL with err set. */
static json_t *etcd_call(EtcdDcs *e, const char *path, json_t *req, Err *err)
{
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!text) {
        err_set(err, "etcd: %s: cannot encode the request", path);
        return NULL;
    }
    char tried[sizeof(err->msg)] = "";
    for (int i = 0; i < e->n_hosts; i++) {
        int h = (e->cur + i) % e->n_hosts;
        json_t *out;
        Err herr = {{0}};
        CallResult r = etcd_call_host(e, h, path, text, &out, &herr);
        if (r == CALL_OK) {
            if (i > 0)
                log_warn("etcd: now using %s (%s)", e->hosts[h], tried);
            e->cur = h;
            free(text);
            return out;
        }
        if (r == CALL_FAILED) {
            free(text);
            err_set(err, "%s", herr.msg);
            return NULL;
        }
        size_t n = strlen(tried);
        str_fmt(tried + n, sizeof(tried) - n, "%s%s", n ? "; " : "", herr.msg);
    }
    free(text);
    err_set(err, "%s", tried);
    return NULL;
}

static bool malformed(EtcdDcs *e, const char *path, Err *err)
{
    err_set(err, "etcd %s: malformed response to %s", e->hosts[e->cur], path);
    return false;
}

/* int64 that etcd sends as a JSON string (or a number); absent means 0 (zero values are
 * omitted). False when present with another shape. */
static bool get_i64(json_t *obj, const char *name, int64_t *out)
{
    json_t *v = json_object_get(obj, name);
    *out = 0;
    if (!v)
        return true;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    const char *s = json_string_value(v);
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = x;
    return true;
}

static bool get_bool(json_t *obj, const char *name, bool *out)
{
    json_t *v = json_object_get(obj, name);
    *out = false;
    if (!v)
        return true;
    if (!json_is_boolean(v))
        return false;
    *out = json_is_true(v);
    return true;
}

/* Base64 byte string field; absent means empty. *out is malloc'd. */
static bool get_b64(json_t *obj, const char *name, char **out, size_t *len)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (!v) {
        *out = str_dup("");
        if (len)
            *len = 0;
        return true;
    }
    const char *s = json_string_value(v);
    if (!s)
        return false;
    *out = base64_decode(s, len);
    return *out != NULL;
}

static char *b64_str(const char *s)
{
    return base64_encode(s, strlen(s));
}

static char *b64_key(EtcdDcs *e, const char *key)
{
    char *full = str_printf("%s%s", e->base.prefix, key ? key : "");
    char *b = b64_str(full);
    free(full);
    return b;
}

static char *id_str(int64_t id)
{
    return str_printf("%lld", (long long)id);
}

/* {"request_put":{"key":..,"value":..,"lease":".."}} with the lease left out when 0. */
static json_t *put_op(EtcdDcs *e, const char *key, const char *value, int64_t lease)
{
    char *k = b64_key(e, key), *v = b64_str(value ? value : "");
    json_t *put = json_pack("{s:s, s:s}", "key", k, "value", v);
    free(k);
    free(v);
    if (lease) {
        char *l = id_str(lease);
        json_object_set_new(put, "lease", json_string(l));
        free(l);
    }
    return json_pack("{s:o}", "request_put", put);
}

/* A transaction of the compares and operations in two JSON arrays (stolen). *revision (may be
 * NULL) gets the store's revision after it: a put that succeeded wrote its key at it. */
static bool etcd_txn_arrays(EtcdDcs *e, json_t *compares, json_t *ops, bool *succeeded, int64_t *revision,
                            Err *err)
{
    static const char path[] = "/v3/kv/txn";
    *succeeded = false;
    json_t *req = json_pack("{s:o, s:o}", "compare", compares, "success", ops);
    json_t *res = etcd_call(e, path, req, err);
    if (!res)
        return false;
    bool ok = get_bool(res, "succeeded", succeeded);   /* absent: false */
    if (ok && revision) {
        json_t *header = json_object_get(res, "header");
        ok = json_is_object(header) && get_i64(header, "revision", revision) && *revision > 0;
    }
    json_decref(res);
    return ok ? true : malformed(e, path, err);
}

/* A one-compare, one-operation transaction (compare and op are stolen). */
static bool etcd_txn(EtcdDcs *e, json_t *compare, json_t *op, bool *succeeded, int64_t *revision,
                     Err *err)
{
    return etcd_txn_arrays(e, json_pack("[o]", compare), json_pack("[o]", op), succeeded, revision, err);
}

static json_t *compare_create_absent(EtcdDcs *e, const char *key)
{
    char *k = b64_key(e, key);
    json_t *c = json_pack("{s:s, s:s, s:s, s:s}", "key", k, "target", "CREATE", "result", "EQUAL",
                          "create_revision", "0");
    free(k);
    return c;
}

static json_t *compare_value(EtcdDcs *e, const char *key, const char *value)
{
    char *k = b64_key(e, key), *v = b64_str(value);
    json_t *c = json_pack("{s:s, s:s, s:s, s:s}", "key", k, "target", "VALUE", "result", "EQUAL",
                          "value", v);
    free(k);
    free(v);
    return c;
}

static json_t *compare_mod(EtcdDcs *e, const char *key, int64_t mod_revision)
{
    char *k = b64_key(e, key), *r = id_str(mod_revision);
    json_t *c = json_pack("{s:s, s:s, s:s, s:s}", "key", k, "target", "MOD", "result", "EQUAL",
                          "mod_revision", r);
    free(k);
    free(r);
    return c;
}

static bool write_lease(EtcdDcs *e, bool on_lease, const char *key, int64_t *lease, Err *err)
{
    *lease = on_lease ? e->lease : 0;
    if (on_lease && !e->lease) {
        err_set(err, "etcd: cannot write %s%s on a lease: no lease granted yet (keepalive first)",
                e->base.prefix, key);
        return false;
    }
    return true;
}

static void kvs_free(DcsKv *kvs, int n)
{
    for (int i = 0; i < n; i++) {
        free(kvs[i].key);
        free(kvs[i].value);
    }
    free(kvs);
}

/* One range read of the prefix. *kvs_out (keys relative to the prefix, values decoded) is
 * owned by the caller (kvs_free). */
static bool etcd_range(EtcdDcs *e, DcsKv **kvs_out, int *n_out, int64_t *revision, Err *err)
{
    static const char path[] = "/v3/kv/range";
    *kvs_out = NULL;
    *n_out = 0;
    json_t *req = json_pack("{s:s, s:s}", "key", e->key_b64, "range_end", e->range_end_b64);
    json_t *res = etcd_call(e, path, req, err);
    if (!res)
        return false;
    json_t *header = json_object_get(res, "header");
    json_t *arr = json_object_get(res, "kvs");
    if (!json_is_object(header) || !get_i64(header, "revision", revision) || *revision <= 0 ||
        (arr && !json_is_array(arr))) {
        json_decref(res);
        return malformed(e, path, err);
    }
    size_t plen = strlen(e->base.prefix);
    size_t n = json_array_size(arr);
    DcsKv *kvs = xcalloc(n + 1, sizeof(*kvs));
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *kv = json_array_get(arr, i);
        char *key = NULL, *value = NULL;
        size_t klen = 0;
        DcsKv *o = &kvs[k];
        if (!json_is_object(kv) || !get_b64(kv, "key", &key, &klen) ||
            !get_b64(kv, "value", &value, NULL) ||
            !get_i64(kv, "mod_revision", &o->mod_revision) ||
            !get_i64(kv, "create_revision", &o->create_revision) ||
            !get_i64(kv, "lease", &o->lease)) {
            free(key);
            free(value);
            kvs_free(kvs, k);
            json_decref(res);
            return malformed(e, path, err);
        }
        /* A key with a NUL byte cannot be one of ours; the range guarantees the prefix. */
        if (klen != strlen(key) || klen < plen || memcmp(key, e->base.prefix, plen) != 0) {
            free(key);
            free(value);
            continue;
        }
        o->key = str_dup(key + plen);
        o->value = value;
        free(key);
        k++;
    }
    json_decref(res);
    *kvs_out = kvs;
    *n_out = k;
    return true;
}

/* Leaves `out` initialized (cluster_free it) whether or not the read succeeds. */
static bool etcd_load(Dcs *d, Cluster *out, Err *err)
{
    EtcdDcs *e = etcd_of(d);
    DcsKv *kvs;
    int n;
    int64_t rev;
    if (!etcd_range(e, &kvs, &n, &rev, err)) {
        cluster_init(out);
        return false;
    }
    bool ok = cluster_from_kvs(kvs, n, rev, out, err);
    kvs_free(kvs, n);
    return ok;
}

static bool lease_grant(EtcdDcs *e, int ttl, int64_t *id, Err *err)
{
    static const char path[] = "/v3/lease/grant";
    *id = 0;
    json_t *res = etcd_call(e, path, json_pack("{s:I}", "TTL", (json_int_t)ttl), err);
    if (!res)
        return false;
    /* LeaseGrantResponse carries its own "error" field; copied, as res is freed below */
    const char *error_field = json_string_value(json_object_get(res, "error"));
    char error[ETCD_MSG_MAX + 1] = "";
    bool has_error = error_field && *error_field;
    if (has_error)
        one_line(error, sizeof(error), error_field, strlen(error_field));
    bool ok = get_i64(res, "ID", id) && *id != 0;
    int64_t granted = 0;
    if (ok && get_i64(res, "TTL", &granted) && granted > ttl)
        /* etcd's floor is 1.5 election timeouts; our deadlines stay on the shorter ttl (safe),
         * but the cluster fails over only once the longer one has passed */
        log_warn("etcd %s granted a %lld s lease for ttl %d (its minimum: 1.5 x --election-timeout); "
                 "failover takes %lld s", e->hosts[e->cur], (long long)granted, ttl, (long long)granted);
    json_decref(res);
    if (has_error || !ok)
        *id = 0;    /* no lease to renew: the next keepalive asks for a new one */
    if (has_error) {
        err_set(err, "etcd %s: %s: %s", e->hosts[e->cur], path, error);
        return false;
    }
    return ok ? true : malformed(e, path, err);
}

/* Renew lease id once. *alive is false when etcd no longer knows it (TTL absent or 0). */
static bool lease_renew(EtcdDcs *e, int64_t id, bool *alive, Err *err)
{
    static const char path[] = "/v3/lease/keepalive";
    *alive = false;
    char *ids = id_str(id);
    json_t *res = etcd_call(e, path, json_pack("{s:s}", "ID", ids), err);
    free(ids);
    if (!res)
        return false;
    json_t *result = json_object_get(res, "result");
    int64_t ttl;
    if (json_object_get(res, "error")) {
        char msg[ETCD_MSG_MAX + 1];
        error_text(res, NULL, 0, msg, sizeof(msg));
        json_decref(res);
        err_set(err, "etcd %s: %s: %s", e->hosts[e->cur], path, msg);
        return false;
    }
    bool ok = json_is_object(result) && get_i64(result, "TTL", &ttl);
    json_decref(res);
    if (!ok)
        return malformed(e, path, err);
    *alive = ttl > 0;
    return true;
}

/* Revoke lease id; a lease etcd no longer knows counts as revoked. */
static bool lease_revoke(EtcdDcs *e, int64_t id, Err *err)
{
    Err lerr = {{0}};
    char *ids = id_str(id);
    json_t *res = etcd_call(e, "/v3/lease/revoke", json_pack("{s:s}", "ID", ids), &lerr);
    free(ids);
    if (res) {
        json_decref(res);
        return true;
    }
    if (strstr(lerr.msg, "lease not found"))
        return true;
    err_set(err, "%s", lerr.msg);
    return false;
}

/* After a ttl change: move every key under the prefix still on old_lease to the new lease
 * (each only if unchanged since read), then revoke the old lease. Until this completes the old
 * lease keeps being renewed, so no key is ever on an unrenewed lease. */
static bool lease_migrate(EtcdDcs *e, Err *err)
{
    DcsKv *kvs;
    int n;
    int64_t rev;
    if (!etcd_range(e, &kvs, &n, &rev, err))
        return false;
    bool ok = true;
    for (int i = 0; ok && i < n; i++) {
        if (kvs[i].lease != e->old_lease)
            continue;
        bool moved;
        ok = etcd_txn(e, compare_mod(e, kvs[i].key, kvs[i].mod_revision),
                      put_op(e, kvs[i].key, kvs[i].value, e->lease), &moved, NULL, err);
    }
    kvs_free(kvs, n);
    if (ok && (ok = lease_revoke(e, e->old_lease, err)))
        e->old_lease = 0;
    return ok;
}

static bool etcd_keepalive(Dcs *d, int ttl, bool *expired, Err *err)
{
    EtcdDcs *e = etcd_of(d);
    bool alive;
    if (expired)
        *expired = false;
    if (ttl <= 0) {
        err_set(err, "etcd: invalid lease ttl %d", ttl);
        return false;
    }
    if (e->lease) {
        if (!lease_renew(e, e->lease, &alive, err))
            return false;
        if (!alive) {
            e->lease = 0;
            if (expired)
                *expired = true;
        }
    }
    if (e->old_lease) {
        if (!lease_renew(e, e->old_lease, &alive, err))
            return false;
        if (!alive) {
            e->old_lease = 0;
            if (expired)
                *expired = true;
        }
    }
    if (!e->lease) {
        if (!lease_grant(e, ttl, &e->lease, err))
            return false;
        e->lease_ttl = ttl;
        /* Keys still on the old lease stay there; nothing is renewing it any more. */
        e->old_lease = 0;
    } else if (ttl != e->lease_ttl && !e->old_lease) {
        /* A lease's TTL is fixed at grant: a new ttl needs a new lease and our keys on it. */
        int64_t fresh;
        if (!lease_grant(e, ttl, &fresh, err))
            return false;
        e->old_lease = e->lease;
        e->lease = fresh;
        e->lease_ttl = ttl;
    }
    return e->old_lease ? lease_migrate(e, err) : true;
}

static bool etcd_create(Dcs *d, const char *key, const char *value, bool on_lease, bool *created,
                        Err *err)
{
    EtcdDcs *e = etcd_of(d);
    bool ok_created = false;
    int64_t lease;
    if (created)
        *created = false;
    if (!write_lease(e, on_lease, key, &lease, err))
        return false;
    bool ok = etcd_txn(e, compare_create_absent(e, key), put_op(e, key, value, lease),
                       &ok_created, NULL, err);
    if (created)
        *created = ok_created;
    return ok;
}

static bool etcd_put(Dcs *d, const char *key, const char *value, bool on_lease, Err *err)
{
    static const char path[] = "/v3/kv/put";
    EtcdDcs *e = etcd_of(d);
    int64_t lease;
    if (!write_lease(e, on_lease, key, &lease, err))
        return false;
    json_t *op = put_op(e, key, value, lease);
    json_t *req = json_incref(json_object_get(op, "request_put"));
    json_decref(op);
    json_t *res = etcd_call(e, path, req, err);
    if (!res)
        return false;
    json_decref(res);
    return true;
}

static bool etcd_cas(Dcs *d, const char *key, const char *expected, const char *value,
                     bool on_lease, bool *swapped, Err *err)
{
    if (!expected)
        return etcd_create(d, key, value, on_lease, swapped, err);
    EtcdDcs *e = etcd_of(d);
    bool ok_swapped = false;
    int64_t lease;
    if (swapped)
        *swapped = false;
    if (!write_lease(e, on_lease, key, &lease, err))
        return false;
    bool ok = etcd_txn(e, compare_value(e, key, expected), put_op(e, key, value, lease),
                       &ok_swapped, NULL, err);
    if (swapped)
        *swapped = ok_swapped;
    return ok;
}

static bool etcd_cas_rev(Dcs *d, const char *key, int64_t mod_revision, const char *value,
                         bool *swapped, int64_t *new_revision, Err *err)
{
    EtcdDcs *e = etcd_of(d);
    bool ok_swapped = false;
    int64_t rev = 0;
    /* mod_revision 0 matches only an absent key: etcd compares an absent key as revision 0. */
    bool ok = etcd_txn(e, compare_mod(e, key, mod_revision), put_op(e, key, value, 0),
                       &ok_swapped, &rev, err);
    if (swapped)
        *swapped = ok_swapped;
    if (new_revision)
        *new_revision = ok && ok_swapped ? rev : 0;
    return ok;
}

static bool etcd_get(Dcs *d, const char *key, char **value, int64_t *mod_revision, int64_t *lease, Err *err)
{
    static const char path[] = "/v3/kv/range";
    EtcdDcs *e = etcd_of(d);
    *value = NULL;
    if (mod_revision)
        *mod_revision = 0;
    if (lease)
        *lease = 0;
    char *k = b64_key(e, key);
    json_t *res = etcd_call(e, path, json_pack("{s:s}", "key", k), err);
    free(k);
    if (!res)
        return false;
    json_t *arr = json_object_get(res, "kvs");
    json_t *kv = json_array_get(arr, 0);
    int64_t mod = 0, ls = 0;
    bool ok = !arr || (json_is_array(arr) && (json_array_size(arr) == 0 ||
                                              (get_b64(kv, "value", value, NULL) &&
                                               get_i64(kv, "mod_revision", &mod) && get_i64(kv, "lease", &ls))));
    json_decref(res);
    if (!ok) {
        free(*value);
        *value = NULL;
        return malformed(e, path, err);
    }
    if (mod_revision)
        *mod_revision = mod;
    if (lease)
        *lease = ls;
    return true;
}

static bool etcd_txn_ops(Dcs *d, const DcsCmp *cmps, int n_cmps, const DcsOp *ops, int n_ops, bool *succeeded,
                         Err *err)
{
    EtcdDcs *e = etcd_of(d);
    *succeeded = false;
    json_t *c = json_array(), *o = json_array();
    for (int i = 0; i < n_cmps; i++)
        json_array_append_new(c, compare_mod(e, cmps[i].key, cmps[i].mod_revision));
    for (int i = 0; i < n_ops; i++) {
        int64_t lease = 0;
        if (ops[i].value && !write_lease(e, ops[i].on_lease, ops[i].key, &lease, err)) {
            json_decref(c);
            json_decref(o);
            return false;
        }
        if (ops[i].value) {
            json_array_append_new(o, put_op(e, ops[i].key, ops[i].value, lease));
        } else {
            char *k = b64_key(e, ops[i].key);
            json_array_append_new(o, json_pack("{s:{s:s}}", "request_delete_range", "key", k));
            free(k);
        }
    }
    return etcd_txn_arrays(e, c, o, succeeded, NULL, err);
}

static bool etcd_del(Dcs *d, const char *key, const char *expected, bool *deleted, Err *err)
{
    static const char path[] = "/v3/kv/deleterange";
    EtcdDcs *e = etcd_of(d);
    if (deleted)
        *deleted = false;
    char *k = b64_key(e, key);
    json_t *del = json_pack("{s:s}", "key", k);
    free(k);
    if (expected) {
        /* A VALUE compare on an absent key fails, so success means it existed and is gone. */
        bool ok_deleted = false;
        bool ok = etcd_txn(e, compare_value(e, key, expected),
                           json_pack("{s:o}", "request_delete_range", del), &ok_deleted, NULL, err);
        if (deleted)
            *deleted = ok_deleted;
        return ok;
    }
    json_t *res = etcd_call(e, path, del, err);
    if (!res)
        return false;
    int64_t n;
    bool ok = get_i64(res, "deleted", &n);
    json_decref(res);
    if (!ok)
        return malformed(e, path, err);
    if (deleted)
        *deleted = n > 0;
    return true;
}

static bool etcd_del_prefix(Dcs *d, Err *err)
{
    EtcdDcs *e = etcd_of(d);
    json_t *req = json_pack("{s:s, s:s}", "key", e->key_b64, "range_end", e->range_end_b64);
    json_t *res = etcd_call(e, "/v3/kv/deleterange", req, err);
    if (!res)
        return false;
    json_decref(res);
    return true;
}

/* State of one watch stream: the gateway writes one JSON object per line. */
typedef struct WatchState {
    Buf buf;
    bool seen;              /* an event (or a compaction: history lost, reload) */
    bool failed;
    bool auth_failed;
    char why[ETCD_MSG_MAX + 64];
} WatchState;

/* Handle one line of the stream; false stops the transfer. */
static bool watch_line(WatchState *w, const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\r' || line[i] == '\t'))
        i++;
    if (i == len)
        return true;
    json_t *j = parse_object(line + i, len - i);
    if (!j) {
        w->failed = true;
        str_copy(w->why, sizeof(w->why), "malformed response to /v3/watch");
        return false;
    }
    json_t *result = json_object_get(j, "result");
    bool canceled = false, ok = true;
    int64_t compact = 0;
    if (json_object_get(j, "error") || !json_is_object(result) ||
        !get_bool(result, "canceled", &canceled) ||
        !get_i64(result, "compact_revision", &compact)) {
        char msg[ETCD_MSG_MAX + 1];
        if (json_object_get(j, "error")) {
            error_text(j, NULL, 0, msg, sizeof(msg));
            str_fmt(w->why, sizeof(w->why), "/v3/watch: %s", msg);
            w->auth_failed = is_auth_error(msg);
        } else {
            str_copy(w->why, sizeof(w->why), "malformed response to /v3/watch");
        }
        w->failed = true;
        ok = false;
    } else if (json_array_size(json_object_get(result, "events")) > 0 || compact > 0) {
        w->seen = true;
        ok = false;
    } else if (canceled) {
        const char *reason = json_string_value(json_object_get(result, "cancel_reason"));
        char msg[ETCD_MSG_MAX + 1];
        one_line(msg, sizeof(msg), reason ? reason : "", reason ? strlen(reason) : 0);
        str_fmt(w->why, sizeof(w->why), "/v3/watch: canceled: %s", msg);
        w->auth_failed = is_auth_error(msg);
        w->failed = true;
        ok = false;
    }
    json_decref(j);
    return ok;
}

static size_t watch_write(char *p, size_t size, size_t nmemb, void *ud)
{
    WatchState *w = ud;
    size_t n = size * nmemb;
    if (!buf_append(&w->buf, p, n)) {
        w->failed = true;
        str_copy(w->why, sizeof(w->why), "/v3/watch: answer too large");
        return 0;
    }
    char *nl;
    while ((nl = memchr(w->buf.data, '\n', w->buf.len)) != NULL) {
        size_t line_len = (size_t)(nl - w->buf.data);
        if (!watch_line(w, w->buf.data, line_len))
            return 0;   /* abort the transfer: decided */
        memmove(w->buf.data, nl + 1, w->buf.len - line_len - 1);
        w->buf.len -= line_len + 1;
        w->buf.data[w->buf.len] = '\0';
    }
    return n;
}

static bool etcd_watch(Dcs *d, int64_t after_rev, int timeout_ms, Err *err)
{
    static const char path[] = "/v3/watch";
    EtcdDcs *e = etcd_of(d);
    if (err)
        err->msg[0] = '\0';
    if (timeout_ms <= 0)
        return false;
    int64_t deadline = mono_ms() + timeout_ms;
    char *start = id_str(after_rev + 1);
    json_t *req = json_pack("{s:{s:s, s:s, s:s}}", "create_request", "key", e->key_b64,
                            "range_end", e->range_end_b64, "start_revision", start);
    free(start);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char tried[sizeof(err->msg)] = "";
    bool reauthed = false;

    for (int i = 0; i < e->n_hosts; i++) {
        int h = (e->cur + i) % e->n_hosts;
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            break;
        CallResult res;
        Err herr = {{0}};
        if (e->user && (!e->token || e->token_host != h) &&
            !etcd_authenticate(e, h, &res, &herr)) {
            if (res == CALL_UNREACHABLE) {
                size_t n = strlen(tried);
                str_fmt(tried + n, sizeof(tried) - n, "%s%s", n ? "; " : "", herr.msg);
                continue;
            }
            free(text);
            err_set(err, "%s", herr.msg);
            return false;
        }
        WatchState w = {0};
        long status;
        bool unreachable;
        char why[256];
        CURLcode rc = etcd_post(e, e->watch_curl, h, path, text, (long)left, watch_write, &w, &status,
                                &unreachable, why, sizeof(why));
        if (w.seen) {
            e->cur = h;
            free(w.buf.data);
            free(text);
            return true;
        }
        if (w.failed) {
            free(w.buf.data);
            if (w.auth_failed && e->user && !reauthed) {
                reauthed = true;
                FREE_AND_NULL(e->token);
                i--;   /* same host, after logging in again */
                continue;
            }
            free(text);
            err_set(err, "etcd %s: %s", e->hosts[h], w.why);
            return false;
        }
        if (rc == CURLE_OPERATION_TIMEDOUT && !unreachable) {
            e->cur = h;
            free(w.buf.data);
            free(text);
            return false;   /* nothing changed in time: not an error */
        }
        if (rc != CURLE_OK && unreachable) {
            free(w.buf.data);
            size_t n = strlen(tried);
            str_fmt(tried + n, sizeof(tried) - n, "%setcd %s: %s", n ? "; " : "", e->hosts[h],
                    why);
            continue;
        }
        if (rc != CURLE_OK) {
            err_set(err, "etcd %s: %s: %s", e->hosts[h], path, why);
        } else if (status != 200) {
            char msg[ETCD_MSG_MAX + 1];
            json_t *j = parse_object(w.buf.data, w.buf.len);
            error_text(j, w.buf.data, w.buf.len, msg, sizeof(msg));
            json_decref(j);
            err_set(err, "etcd %s: %s: HTTP %ld: %s", e->hosts[h], path, status, msg);
        } else if (w.buf.len > 0 && !watch_line(&w, w.buf.data, w.buf.len) && w.seen) {
            free(w.buf.data);   /* a last line without its newline */
            free(text);
            return true;
        } else {
            err_set(err, "etcd %s: %s: %s", e->hosts[h], path,
                    w.failed ? w.why : "stream ended before any change");
        }
        free(w.buf.data);
        free(text);
        return false;
    }
    free(text);
    if (tried[0])
        err_set(err, "%s", tried);
    else
        err_set(err, "etcd: %s: timed out after %d ms before reaching any host", path, timeout_ms);
    return false;
}

static bool etcd_revoke(Dcs *d, Err *err)
{
    EtcdDcs *e = etcd_of(d);
    if (e->old_lease) {
        if (!lease_revoke(e, e->old_lease, err))
            return false;
        e->old_lease = 0;
    }
    if (e->lease) {
        if (!lease_revoke(e, e->lease, err))
            return false;
        e->lease = 0;
    }
    return true;
}

/* Does not revoke the lease (a crashed agent cannot either): call revoke first to release
 * the leader key at once on a clean shutdown. */
static int64_t etcd_lease_id(Dcs *d)
{
    return ((EtcdDcs *)d)->lease;
}

static void etcd_free(Dcs *d)
{
    EtcdDcs *e = etcd_of(d);
    if (e->curl)
        curl_easy_cleanup(e->curl);
    if (e->watch_curl)
        curl_easy_cleanup(e->watch_curl);
    for (int i = 0; i < e->n_hosts; i++) {
        free(e->hosts[i]);
        free(e->urls[i]);
    }
    free(e->hosts);
    free(e->urls);
    free(e->user);
    free(e->password);
    free(e->token);
    free(e->key_b64);
    free(e->range_end_b64);
    free(d->prefix);
    free(e);
}

static const DcsOps etcd_ops = {
    .load = etcd_load,
    .keepalive = etcd_keepalive,
    .create = etcd_create,
    .put = etcd_put,
    .cas = etcd_cas,
    .cas_rev = etcd_cas_rev,
    .get = etcd_get,
    .txn = etcd_txn_ops,
    .del = etcd_del,
    .del_prefix = etcd_del_prefix,
    .watch = etcd_watch,
    .revoke = etcd_revoke,
    .lease_id = etcd_lease_id,
    .free = etcd_free,
};

/* The end of the range of every key starting with prefix: the prefix with its last byte plus
 * one (bytes 0xff carry over); "\0" (every key >= prefix) when all bytes are 0xff. */
static char *range_end_b64(const char *prefix)
{
    size_t n = strlen(prefix);
    unsigned char *end = xmalloc(n + 1);
    memcpy(end, prefix, n);
    while (n > 0 && end[n - 1] == 0xff)
        n--;
    char *b;
    if (n == 0) {
        b = base64_encode("", 1);
    } else {
        end[n - 1]++;
        b = base64_encode(end, n);
    }
    free(end);
    return b;
}

/* Both handles of a Dcs share its error buffer: it is used from one thread at a time. */
static void set_handle_options(EtcdDcs *e, CURL *c)
{
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, e->errbuf);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");   /* never through an http_proxy from the environment */
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "pgvigil/" PGVIGIL_VERSION);
}

Dcs *dcs_etcd_new(char *const *hosts, int n_hosts, const char *prefix, const char *user,
                  const char *password, int timeout_ms, Err *err)
{
    if (!hosts || n_hosts <= 0) {
        err_set(err, "etcd: no hosts configured");
        return NULL;
    }
    for (int i = 0; i < n_hosts; i++) {
        if (str_empty(hosts[i])) {
            err_set(err, "etcd: host %d is empty", i + 1);
            return NULL;
        }
    }
    if (str_empty(prefix)) {
        err_set(err, "etcd: empty key prefix");
        return NULL;
    }
    if (timeout_ms <= 0) {
        err_set(err, "etcd: invalid timeout %d ms", timeout_ms);
        return NULL;
    }
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        err_set(err, "etcd: libcurl initialization failed: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    CURL *c = curl_easy_init(), *wc = curl_easy_init();
    if (!c || !wc) {
        if (c)
            curl_easy_cleanup(c);
        if (wc)
            curl_easy_cleanup(wc);
        err_set(err, "etcd: libcurl initialization failed");
        return NULL;
    }

    EtcdDcs *e = xcalloc(1, sizeof(*e));
    e->base.ops = &etcd_ops;
    e->base.prefix = str_dup(prefix);
    e->curl = c;
    e->watch_curl = wc;
    e->n_hosts = n_hosts;
    e->hosts = xcalloc((size_t)n_hosts, sizeof(char *));
    e->urls = xcalloc((size_t)n_hosts, sizeof(char *));
    for (int i = 0; i < n_hosts; i++) {
        const char *h = hosts[i];
        size_t len = strlen(h);
        while (len > 1 && h[len - 1] == '/')
            len--;
        e->hosts[i] = str_printf("%.*s", (int)len, h);
        e->urls[i] = strstr(e->hosts[i], "://") ? str_dup(e->hosts[i])
                                                : str_printf("http://%s", e->hosts[i]);
    }
    if (!str_empty(user)) {
        e->user = str_dup(user);
        e->password = str_dup(password ? password : "");
    }
    e->timeout_ms = timeout_ms;
    e->key_b64 = b64_str(prefix);
    e->range_end_b64 = range_end_b64(prefix);

    set_handle_options(e, c);
    set_handle_options(e, wc);
    return &e->base;
}

int64_t dcs_etcd_connects(Dcs *d)
{
    return d && d->ops == &etcd_ops ? etcd_of(d)->connects : 0;
}

void dcs_etcd_set_timeout(Dcs *d, int timeout_ms)
{
    if (d && d->ops == &etcd_ops && timeout_ms > 0)
        etcd_of(d)->timeout_ms = timeout_ms;
}
