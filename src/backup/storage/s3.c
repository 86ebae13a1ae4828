/* Repository driver for an S3-compatible object store, over libcurl, each request signed with
 * AWS Signature Version 4 (backup/s3_sign.c). A write is buffered in memory; its commit stores it
 * with one PUT, or, once it grew past part_size, as a multipart upload (CreateMultipartUpload,
 * an UploadPart per full part as the data comes, the last part and CompleteMultipartUpload at
 * commit; AbortMultipartUpload on any failure). S3 makes an object visible only when its PUT or
 * its CompleteMultipartUpload succeeds, whole: a commit is all or nothing, like the POSIX
 * driver's rename. The repository is used by several threads at once (the archive service's
 * workers): each request takes a curl handle from a small pool, which keeps its connections. */
#include "backup/repo.h"
#include "backup/s3_sign.h"
#include "common/strbuf.h"
#include "common/timeutil.h"

#include <curl/curl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX 8
#define DEFAULT_PART_SIZE ((size_t)16 * 1024 * 1024)
#define MAX_ATTEMPTS 3

typedef struct S3Repo {
    Repo base;
    char *scheme;        /* "http" or "https" */
    char *host;          /* the endpoint's host[:port] */
    char *bucket;
    char *region;
    bool host_style;
    char *access_key;
    char *secret_key;
    size_t part_size;
    pthread_mutex_t lock;
    CURL *idle[POOL_MAX];
    int n_idle;
} S3Repo;

struct RepoWriter {
    S3Repo *repo;
    char *key;
    char *buf;
    size_t len, cap;
    char *upload_id;     /* a multipart upload was started */
    char **etags;        /* one per part uploaded */
    int n_parts;
};

typedef struct Request {
    const char *method;
    const char *key;           /* NULL: the bucket */
    const S3Pair *params;
    int n_params;
    const void *body;
    size_t body_len;
    const char *content_type;
    const char *range;         /* a Range header (not signed) */
    bool if_none_match;        /* If-None-Match: * (not signed): only where no object is */
} Request;

typedef struct Response {
    long status;
    StrBuf body;               /* always NUL-terminated once something came */
    char *etag;
    CURLcode cc;
    char curl_err[CURL_ERROR_SIZE];
} Response;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- the curl handle pool ---- */

static CURL *handle_take(S3Repo *r)
{
    CURL *h = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->n_idle > 0)
        h = r->idle[--r->n_idle];
    pthread_mutex_unlock(&r->lock);
    if (h)
        curl_easy_reset(h);   /* keeps its live connections */
    else
        h = curl_easy_init();
    return h;
}

static void handle_give(S3Repo *r, CURL *h)
{
    pthread_mutex_lock(&r->lock);
    if (r->n_idle < POOL_MAX) {
        r->idle[r->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    if (h)
        curl_easy_cleanup(h);
}

/* ---- responses ---- */

static bool resp_add(Response *rs, const char *p, size_t n)
{
    if (n > SIZE_MAX / 2 - rs->body.len)
        return false;
    strbuf_add(&rs->body, p, n);
    return true;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    size_t n = size * nmemb;
    return resp_add(ud, p, n) ? n : 0;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    Response *rs = ud;
    size_t n = size * nmemb;
    if (n > 5 && strncasecmp(p, "ETag:", 5) == 0) {
        const char *v = p + 5;
        const char *end = p + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        free(rs->etag);
        rs->etag = xmalloc((size_t)(end - v) + 1);
        memcpy(rs->etag, v, (size_t)(end - v));
        rs->etag[end - v] = '\0';
    }
    return n;
}

static void resp_free(Response *rs)
{
    strbuf_free(&rs->body);
    free(rs->etag);
    memset(rs, 0, sizeof(*rs));
}

/* ---- the little XML S3 answers with ---- */

static void utf8_add(StrBuf *out, unsigned long cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    strbuf_add(out, u, n);
}

/* The text of an element, its entities decoded (caller frees). */
static char *xml_unescape(const char *p, size_t n)
{
    StrBuf out = {0};
    static const struct { const char *ent; char c; } named[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''},
    };
    for (size_t i = 0; i < n;) {
        bool done = false;
        if (p[i] == '&') {
            for (size_t k = 0; k < ARRAY_LEN(named) && !done; k++) {
                size_t l = strlen(named[k].ent);
                if (i + l <= n && memcmp(p + i, named[k].ent, l) == 0) {
                    strbuf_addc(&out, named[k].c);
                    i += l;
                    done = true;
                }
            }
            if (!done && i + 3 < n && p[i + 1] == '#') {
                bool hexa = p[i + 2] == 'x' || p[i + 2] == 'X';
                size_t j = i + (hexa ? 3 : 2);
                unsigned long cp = 0;
                size_t digits = 0;
                while (j < n && digits < 8 && (hexa ? strchr("0123456789abcdefABCDEF", p[j]) != NULL
                                                     : (p[j] >= '0' && p[j] <= '9')) && p[j]) {
                    char c = p[j];
                    cp = cp * (hexa ? 16 : 10) +
                         (unsigned long)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
                    j++;
                    digits++;
                }
                if (digits > 0 && j < n && p[j] == ';' && cp > 0 && cp <= 0x10FFFF) {
                    utf8_add(&out, cp);
                    i = j + 1;
                    done = true;
                }
            }
        }
        if (!done)
            strbuf_addc(&out, p[i++]);
    }
    return strbuf_take(&out);
}

/* The next <tag>text</tag> at or after *pos in xml; NULL when there is none. */
static char *xml_next(const char *xml, const char *tag, const char **pos)
{
    if (!xml)
        return NULL;
    char open[64], close[64];
    str_fmt(open, sizeof(open), "<%s>", tag);
    str_fmt(close, sizeof(close), "</%s>", tag);
    const char *from = pos && *pos ? *pos : xml;
    const char *a = strstr(from, open);
    if (!a)
        return NULL;
    a += strlen(open);
    const char *b = strstr(a, close);
    if (!b)
        return NULL;
    if (pos)
        *pos = b + strlen(close);
    return xml_unescape(a, (size_t)(b - a));
}

static char *xml_get(const char *xml, const char *tag)
{
    return xml_next(xml, tag, NULL);
}

static void xml_escape_add(StrBuf *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': strbuf_adds(out, "&amp;"); break;
        case '<': strbuf_adds(out, "&lt;"); break;
        case '>': strbuf_adds(out, "&gt;"); break;
        default: strbuf_addc(out, *s); break;
        }
    }
}

/* ---- requests ---- */

static bool transient(const Response *rs)
{
    if (rs->cc != CURLE_OK)
        return rs->cc == CURLE_COULDNT_CONNECT || rs->cc == CURLE_OPERATION_TIMEDOUT || rs->cc == CURLE_SEND_ERROR ||
               rs->cc == CURLE_RECV_ERROR || rs->cc == CURLE_GOT_NOTHING || rs->cc == CURLE_PARTIAL_FILE;
    return rs->status == 500 || rs->status == 502 || rs->status == 503 || rs->status == 504;
}

/* One attempt: sign with the time now, send, collect the answer. False only when the request
 * could not be built (rs->cc tells a transport failure, rs->status the HTTP answer). */
static bool attempt(S3Repo *r, const Request *rq, const char *payload_hash, Response *rs, Err *err)
{
    char *path;
    char *host;
    if (r->host_style) {
        host = str_printf("%s.%s", r->bucket, r->host);
        path = str_printf("/%s", rq->key ? rq->key : "");
    } else {
        host = str_dup(r->host);
        path = rq->key ? str_printf("/%s/%s", r->bucket, rq->key) : str_printf("/%s", r->bucket);
    }
    char amz_date[17];
    s3_amz_date(time(NULL), amz_date);
    const S3Pair signed_hdrs[] = {
        {"host", host},
        {"x-amz-content-sha256", payload_hash},
        {"x-amz-date", amz_date},
    };
    S3SignRequest sr = {
        .method = rq->method, .path = path, .params = rq->params, .n_params = rq->n_params,
        .headers = signed_hdrs, .n_headers = (int)ARRAY_LEN(signed_hdrs), .payload_hash = payload_hash,
        .amz_date = amz_date, .region = r->region, .service = "s3",
        .access_key = r->access_key, .secret_key = r->secret_key,
    };
    S3Signature sig;
    if (!s3_sign(&sr, &sig, err)) {
        free(host);
        free(path);
        return false;
    }
    char *uri = s3_canonical_uri(path);
    char *query = s3_canonical_query(rq->params, rq->n_params);
    char *url = str_printf("%s://%s%s%s%s", r->scheme, host, uri, query[0] ? "?" : "", query);
    free(uri);
    free(query);
    free(path);

    struct curl_slist *hl = NULL;
    char *lines[7];
    int nl = 0;
    lines[nl++] = str_printf("Host: %s", host);
    lines[nl++] = str_printf("x-amz-content-sha256: %s", payload_hash);
    lines[nl++] = str_printf("x-amz-date: %s", amz_date);
    lines[nl++] = str_printf("Authorization: %s", sig.authorization);
    lines[nl++] = rq->range           ? str_printf("Range: %s", rq->range)
                  : rq->content_type ? str_printf("Content-Type: %s", rq->content_type)
                                     : str_dup("Content-Type:");   /* none */
    lines[nl++] = str_dup("Expect:");
    if (rq->if_none_match)
        lines[nl++] = str_dup("If-None-Match: *");
    for (int i = 0; i < nl; i++)
        hl = curl_slist_append(hl, lines[i]);
    s3_signature_free(&sig);
    free(host);

    CURL *h = handle_take(r);
    if (!h || !hl) {
        err_set(err, "%s: cannot set up a request", r->base.desc);
        for (int i = 0; i < nl; i++)
            free(lines[i]);
        curl_slist_free_all(hl);
        free(url);
        if (h)
            curl_easy_cleanup(h);
        return false;
    }
    rs->curl_err[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);   /* stalled for a minute: give up */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, rs->curl_err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, rs);
    if (strcmp(rq->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(rq->method, "PUT") == 0 || strcmp(rq->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? (const char *)rq->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        if (strcmp(rq->method, "PUT") == 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    } else if (strcmp(rq->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    rs->cc = curl_easy_perform(h);
    if (rs->cc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
    handle_give(r, h);
    curl_slist_free_all(hl);
    for (int i = 0; i < nl; i++)
        free(lines[i]);
    free(url);
    return true;
}

static bool idempotent(const char *method)
{
    return strcmp(method, "POST") != 0;
}

/* Send a request, again after a transport failure or a 5xx (up to MAX_ATTEMPTS, idempotent
 * requests only). True when an answer came: rs->status is the HTTP status. */
static bool perform(S3Repo *r, const Request *rq, Response *rs, Err *err)
{
    char payload_hash[S3_SHA256_HEX_LEN + 1];
    s3_sha256_hex(rq->body, rq->body_len, payload_hash);
    for (int i = 0;; i++) {
        resp_free(rs);
        if (!attempt(r, rq, payload_hash, rs, err))
            return false;
        if (i + 1 >= MAX_ATTEMPTS || !idempotent(rq->method) || !transient(rs))
            break;
        usleep((useconds_t)(200000 * (i + 1) * (i + 1)));   /* 0.2 s, then 0.8 s */
    }
    return true;
}

/* "repository s3://bkt@host: PUT wal/...: 403 SignatureDoesNotMatch: The request signature ..." */
static void fail(S3Repo *r, Err *err, const char *method, const char *what, const Response *rs)
{
    const char *desc = r->base.desc;
    if (rs->cc != CURLE_OK) {
        err_set(err, "%s: %s %s: %s", desc, method, what, rs->curl_err[0] ? rs->curl_err : curl_easy_strerror(rs->cc));
        return;
    }
    char *code = xml_get(rs->body.s, "Code");
    char *msg = xml_get(rs->body.s, "Message");
    if (code && msg)
        err_set(err, "%s: %s %s: %ld %s: %s", desc, method, what, rs->status, code, msg);
    else if (code)
        err_set(err, "%s: %s %s: %ld %s", desc, method, what, rs->status, code);
    else
        err_set(err, "%s: %s %s: HTTP %ld%s", desc, method, what, rs->status,
                rs->status == 403 ? " Forbidden" : rs->status == 404 ? " Not Found" : "");
    free(code);
    free(msg);
}

static bool ok_status(const Response *rs)
{
    return rs->cc == CURLE_OK && rs->status >= 200 && rs->status < 300;
}

static bool request(S3Repo *r, const Request *rq, const char *what, Response *rs, Err *err)
{
    if (!perform(r, rq, rs, err))
        return false;
    if (ok_status(rs))
        return true;
    fail(r, err, rq->method, what, rs);
    return false;
}

static bool check_key(S3Repo *r, const char *key, Err *err)
{
    if (repo_key_valid(key))
        return true;
    err_set(err, "%s: invalid key \"%s\"", r->base.desc, key ? key : "");
    return false;
}

/* ---- writes ---- */

static RepoWriter *s3_write_open(Repo *base, const char *key, Err *err)
{
    S3Repo *r = (S3Repo *)base;
    if (!check_key(r, key, err))
        return NULL;
    RepoWriter *w = xcalloc(1, sizeof(*w));
    w->repo = r;
    w->key = str_dup(key);
    return w;
}

static void writer_free(RepoWriter *w)
{
    for (int i = 0; i < w->n_parts; i++)
        free(w->etags[i]);
    free(w->etags);
    free(w->upload_id);
    free(w->buf);
    free(w->key);
    free(w);
}

static bool upload_start(RepoWriter *w, Err *err)
{
    S3Repo *r = w->repo;
    const S3Pair q[] = {{"uploads", NULL}};
    Request rq = {.method = "POST", .key = w->key, .params = q, .n_params = 1, .content_type = "application/octet-stream"};
    Response rs = {0};
    char *what = str_printf("%s (CreateMultipartUpload)", w->key);
    bool ok = request(r, &rq, what, &rs, err);
    if (ok) {
        w->upload_id = xml_get(rs.body.s, "UploadId");
        if (str_empty(w->upload_id)) {
            FREE_AND_NULL(w->upload_id);
            err_set(err, "%s: POST %s: no UploadId in the answer", r->base.desc, what);
            ok = false;
        }
    }
    free(what);
    resp_free(&rs);
    return ok;
}

static bool upload_part(RepoWriter *w, const char *p, size_t n, Err *err)
{
    S3Repo *r = w->repo;
    char num[16];
    str_fmt(num, sizeof(num), "%d", w->n_parts + 1);
    const S3Pair q[] = {{"partNumber", num}, {"uploadId", w->upload_id}};
    Request rq = {.method = "PUT", .key = w->key, .params = q, .n_params = 2, .body = p, .body_len = n,
                  .content_type = "application/octet-stream"};
    Response rs = {0};
    char *what = str_printf("%s (part %s)", w->key, num);
    bool ok = request(r, &rq, what, &rs, err);
    if (ok && str_empty(rs.etag)) {
        err_set(err, "%s: PUT %s: no ETag in the answer", r->base.desc, what);
        ok = false;
    }
    if (ok) {
        w->etags = xrealloc(w->etags, (size_t)(w->n_parts + 1) * sizeof(char *));
        w->etags[w->n_parts++] = rs.etag;
        rs.etag = NULL;
    }
    free(what);
    resp_free(&rs);
    return ok;
}

static void upload_abort(RepoWriter *w)
{
    if (!w->upload_id)
        return;
    const S3Pair q[] = {{"uploadId", w->upload_id}};
    Request rq = {.method = "DELETE", .key = w->key, .params = q, .n_params = 1};
    Response rs = {0};
    Err e = {{0}};
    perform(w->repo, &rq, &rs, &e);   /* best effort: a leftover upload is never an object */
    resp_free(&rs);
    FREE_AND_NULL(w->upload_id);
}

static bool upload_complete(RepoWriter *w, Err *err)
{
    S3Repo *r = w->repo;
    StrBuf body = {0};
    strbuf_adds(&body, "<CompleteMultipartUpload>");
    for (int i = 0; i < w->n_parts; i++) {
        char num[16];
        str_fmt(num, sizeof(num), "%d", i + 1);
        strbuf_adds(&body, "<Part><PartNumber>");
        strbuf_adds(&body, num);
        strbuf_adds(&body, "</PartNumber><ETag>");
        xml_escape_add(&body, w->etags[i]);
        strbuf_adds(&body, "</ETag></Part>");
    }
    strbuf_adds(&body, "</CompleteMultipartUpload>");
    const S3Pair q[] = {{"uploadId", w->upload_id}};
    Request rq = {.method = "POST", .key = w->key, .params = q, .n_params = 1, .body = body.s,
                  .body_len = body.len, .content_type = "application/xml"};
    Response rs = {0};
    char *what = str_printf("%s (CompleteMultipartUpload of %d parts)", w->key, w->n_parts);
    bool ok = request(r, &rq, what, &rs, err);
    /* S3 may answer 200 and then an error in the body */
    if (ok && rs.body.s && strstr(rs.body.s, "<Error>")) {
        fail(r, err, "POST", what, &rs);
        ok = false;
    }
    free(what);
    resp_free(&rs);
    strbuf_free(&body);
    return ok;
}

static bool s3_write(RepoWriter *w, const void *p, size_t n, Err *err)
{
    size_t part = w->repo->part_size;
    if (n > SIZE_MAX / 2 - w->len) {
        err_set(err, "%s: writing %s: too large", w->repo->base.desc, w->key);
        return false;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 65536;
        while (cap < w->len + n)
            cap *= 2;
        w->buf = xrealloc(w->buf, cap);
        w->cap = cap;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    /* more than a part: send the full ones, keep the rest (the last part is sent at commit) */
    size_t off = 0;
    while (w->len - off > part) {
        if (!w->upload_id && !upload_start(w, err))
            return false;
        if (!upload_part(w, w->buf + off, part, err))
            return false;
        off += part;
    }
    if (off > 0) {
        memmove(w->buf, w->buf + off, w->len - off);
        w->len -= off;
    }
    return true;
}

static void s3_write_abort(RepoWriter *w)
{
    upload_abort(w);
    writer_free(w);
}

static bool s3_write_commit(RepoWriter *w, Err *err)
{
    S3Repo *r = w->repo;
    bool ok;
    if (!w->upload_id) {
        Request rq = {.method = "PUT", .key = w->key, .body = w->buf, .body_len = w->len,
                      .content_type = "application/octet-stream"};
        Response rs = {0};
        ok = request(r, &rq, w->key, &rs, err);
        resp_free(&rs);
    } else {
        ok = (w->len == 0 || upload_part(w, w->buf, w->len, err)) && upload_complete(w, err);
    }
    if (!ok) {
        s3_write_abort(w);
        return false;
    }
    FREE_AND_NULL(w->upload_id);
    writer_free(w);
    return true;
}

/* One PUT that only creates: 412 Precondition Failed when the key holds an object (AWS S3 and
 * MinIO honour If-None-Match on PUT; a server that ignores it overwrites, which the caller then
 * sees when it reads the object back). */
static bool s3_exists(Repo *base, const char *key, bool *exists, Err *err);

static bool s3_write_commit_new(RepoWriter *w, bool *existed, Err *err)
{
    S3Repo *r = w->repo;
    *existed = false;
    if (w->upload_id) {
        err_set(err, "%s: %s is too large to be created only where none is", r->base.desc, w->key);
        s3_write_abort(w);
        return false;
    }
    Request rq = {.method = "PUT", .key = w->key, .body = w->buf, .body_len = w->len,
                  .content_type = "application/octet-stream", .if_none_match = true};
    bool ok = false;
    for (int attempt_no = 0;; attempt_no++) {
        Response rs = {0};
        ok = perform(r, &rq, &rs, err);
        long status = ok && rs.cc == CURLE_OK ? rs.status : 0;
        if (ok && status == 409 && attempt_no < 5) {
            /* ConditionalRequestConflict: another conditional PUT of this key is under way */
            resp_free(&rs);
            sleep_ms(100 << attempt_no);
            continue;
        }
        if (ok && status == 501) {
            /* no conditional PUT here: a check, then a plain PUT (the caller reads it back) */
            resp_free(&rs);
            bool there = false;
            ok = s3_exists(&r->base, w->key, &there, err);
            *existed = ok && there;
            rq.if_none_match = false;
            if (ok && !there) {
                Response plain = {0};
                ok = request(r, &rq, w->key, &plain, err);
                resp_free(&plain);
            }
            break;
        }
        if (ok && status == 412)
            *existed = true;
        else if (ok && !ok_status(&rs)) {
            fail(r, err, rq.method, w->key, &rs);
            ok = false;
        }
        resp_free(&rs);
        break;
    }
    writer_free(w);
    return ok;
}

/* ---- reads ---- */

static bool s3_read_all(Repo *base, const char *key, void **buf, size_t *n, bool *missing, Err *err)
{
    S3Repo *r = (S3Repo *)base;
    *missing = false;
    if (!check_key(r, key, err))
        return false;
    Request rq = {.method = "GET", .key = key};
    Response rs = {0};
    if (!perform(r, &rq, &rs, err))
        return false;
    if (ok_status(&rs)) {
        *n = rs.body.len;
        *buf = rs.body.s ? rs.body.s : xcalloc(1, 1);
        rs.body.s = NULL;
        resp_free(&rs);
        return true;
    }
    char *code = rs.cc == CURLE_OK ? xml_get(rs.body.s, "Code") : NULL;
    if (rs.cc == CURLE_OK && rs.status == 404 && !(code && strcmp(code, "NoSuchBucket") == 0)) {
        *missing = true;
        err_set(err, "%s: %s is missing", base->desc, key);
    } else {
        fail(r, err, "GET", key, &rs);
    }
    free(code);
    resp_free(&rs);
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool s3_list(Repo *base, const char *prefix, RepoKeys *out, Err *err)
{
    S3Repo *r = (S3Repo *)base;
    memset(out, 0, sizeof(*out));
    /* like a directory: "wal/00000001" lists the keys under "wal/00000001/" */
    char *rel = str_dup(prefix ? prefix : "");
    size_t len = strlen(rel);
    while (len > 0 && rel[len - 1] == '/')
        rel[--len] = '\0';
    if (rel[0] && !check_key(r, rel, err)) {
        free(rel);
        return false;
    }
    char *pfx = rel[0] ? str_printf("%s/", rel) : str_dup("");
    free(rel);
    char *token = NULL;
    int cap = 0;
    bool ok = true;
    char *what = str_printf("list of \"%s\"", pfx);
    const char *max_keys = NULL;
#ifdef PGVIGIL_TEST_HOOKS
    /* the tests' small pages, so that continuation tokens are used on a small repository */
    max_keys = getenv("PGVIGIL_TEST_S3_MAX_KEYS");
#endif
    for (;;) {
        S3Pair q[4] = {{"list-type", "2"}};
        int nq = 1;
        if (max_keys)
            q[nq++] = (S3Pair){"max-keys", max_keys};
        if (pfx[0])
            q[nq++] = (S3Pair){"prefix", pfx};
        if (token)
            q[nq++] = (S3Pair){"continuation-token", token};
        Request rq = {.method = "GET", .params = q, .n_params = nq};
        Response rs = {0};
        ok = request(r, &rq, what, &rs, err);
        FREE_AND_NULL(token);
        if (!ok) {
            resp_free(&rs);
            break;
        }
        const char *pos = NULL;
        char *k;
        while ((k = xml_next(rs.body.s, "Key", &pos)) != NULL) {
            if (out->n == cap) {
                cap = cap ? cap * 2 : 256;
                out->keys = xrealloc(out->keys, (size_t)cap * sizeof(char *));
            }
            out->keys[out->n++] = k;
        }
        char *truncated = xml_get(rs.body.s, "IsTruncated");
        bool more = truncated && strcmp(truncated, "true") == 0;
        free(truncated);
        if (more) {
            token = xml_get(rs.body.s, "NextContinuationToken");
            if (str_empty(token)) {
                err_set(err, "%s: GET %s: a truncated answer without NextContinuationToken", base->desc, what);
                ok = false;
            }
        }
        resp_free(&rs);
        if (!more || !ok)
            break;
    }
    free(token);
    free(what);
    free(pfx);
    if (!ok) {
        repo_keys_free(out);
        return false;
    }
    if (out->n > 1)
        qsort(out->keys, (size_t)out->n, sizeof(char *), cmp_str);
    /* a key listed on two pages (a server whose continuation does not follow key order) once */
    int kept = 0;
    for (int i = 0; i < out->n; i++) {
        if (kept > 0 && strcmp(out->keys[kept - 1], out->keys[i]) == 0)
            free(out->keys[i]);
        else
            out->keys[kept++] = out->keys[i];
    }
    out->n = kept;
    return true;
}

static bool s3_remove(Repo *base, const char *key, Err *err)
{
    S3Repo *r = (S3Repo *)base;
    if (!check_key(r, key, err))
        return false;
    Request rq = {.method = "DELETE", .key = key};
    Response rs = {0};
    bool ok = perform(r, &rq, &rs, err);
    if (ok && !ok_status(&rs) && !(rs.cc == CURLE_OK && rs.status == 404)) {
        fail(r, err, "DELETE", key, &rs);
        ok = false;
    }
    resp_free(&rs);
    return ok;
}

static bool s3_exists(Repo *base, const char *key, bool *exists, Err *err)
{
    S3Repo *r = (S3Repo *)base;
    if (!check_key(r, key, err))
        return false;
    Request rq = {.method = "HEAD", .key = key};
    Response rs = {0};
    if (!perform(r, &rq, &rs, err))
        return false;
    bool ok = true;
    if (ok_status(&rs)) {
        *exists = true;
    } else if (rs.cc == CURLE_OK && rs.status == 404) {
        *exists = false;
    } else if (rs.cc != CURLE_OK) {
        fail(r, err, "HEAD", key, &rs);
        ok = false;
    } else {
        /* a HEAD answer has no body, so no error code: ask for one byte to learn it */
        Request get = {.method = "GET", .key = key, .range = "bytes=0-0"};
        Response gs = {0};
        if (perform(r, &get, &gs, NULL) && ok_status(&gs)) {
            *exists = true;
        } else if (gs.cc == CURLE_OK && gs.status != 0 && gs.body.s && strstr(gs.body.s, "<Code>")) {
            fail(r, err, "HEAD", key, &gs);
            ok = false;
        } else {
            fail(r, err, "HEAD", key, &rs);
            ok = false;
        }
        resp_free(&gs);
    }
    resp_free(&rs);
    return ok;
}

static void s3_free(Repo *base)
{
    S3Repo *r = (S3Repo *)base;
    for (int i = 0; i < r->n_idle; i++)
        curl_easy_cleanup(r->idle[i]);
    pthread_mutex_destroy(&r->lock);
    free(r->scheme);
    free(r->host);
    free(r->bucket);
    free(r->region);
    free(r->access_key);
    if (r->secret_key) {
        memset(r->secret_key, 0, strlen(r->secret_key));
        free(r->secret_key);
    }
    free(r->base.desc);
    free(r);
}

static const RepoOps s3_ops = {
    .write_open = s3_write_open,
    .write = s3_write,
    .write_commit = s3_write_commit,
    .write_commit_new = s3_write_commit_new,
    .write_abort = s3_write_abort,
    .read_all = s3_read_all,
    .list = s3_list,
    .remove = s3_remove,
    .exists = s3_exists,
    .free = s3_free,
};

Repo *repo_s3_new(const S3RepoConfig *c, Err *err)
{
    const char *e = c->endpoint ? c->endpoint : "";
    const char *scheme = strncmp(e, "http://", 7) == 0 ? "http" : strncmp(e, "https://", 8) == 0 ? "https" : NULL;
    const char *hp = scheme ? e + strlen(scheme) + 3 : NULL;
    size_t hl = hp ? strcspn(hp, "/") : 0;
    if (!scheme || hl == 0 || strspn(hp + hl, "/") != strlen(hp + hl)) {
        err_set(err, "backup.repository.s3_endpoint: expected http://host[:port] or https://host[:port], got \"%s\"", e);
        return NULL;
    }
    if (str_empty(c->bucket) || strchr(c->bucket, '/')) {
        err_set(err, "backup.repository.s3_bucket: invalid bucket \"%s\"", c->bucket ? c->bucket : "");
        return NULL;
    }
    if (str_empty(c->access_key) || str_empty(c->secret_key)) {
        err_set(err, "backup.repository.%s: required for an s3 repository", str_empty(c->access_key) ? "s3_key" : "s3_secret");
        return NULL;
    }
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        err_set(err, "repository s3://%s: cannot initialise libcurl: %s", c->bucket, curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    S3Repo *r = xcalloc(1, sizeof(*r));
    r->base.ops = &s3_ops;
    r->scheme = str_dup(scheme);
    r->host = xmalloc(hl + 1);
    memcpy(r->host, hp, hl);
    r->host[hl] = '\0';
    r->bucket = str_dup(c->bucket);
    r->region = str_dup(str_empty(c->region) ? "us-east-1" : c->region);
    r->host_style = c->host_style;
    r->access_key = str_dup(c->access_key);
    r->secret_key = str_dup(c->secret_key);
    r->part_size = c->part_size ? c->part_size : DEFAULT_PART_SIZE;
    pthread_mutex_init(&r->lock, NULL);
    r->base.desc = str_printf("repository s3://%s@%s", r->bucket, r->host);
    return &r->base;
}
