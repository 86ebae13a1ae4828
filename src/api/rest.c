/* The REST server: libmicrohttpd with a thread per connection, so a slow action (a switchover
 * waiting for its candidate) never delays health checks and never blocks the agent loop. */
#include "common/common.h"
#include "api/rest.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define REST_MAX_BODY (64 * 1024)
#define REST_CONNECTION_TIMEOUT 10 /* seconds */
#define REST_CONNECTION_LIMIT 256
#define REST_REALM "pgvigil"

struct RestServer {
    struct MHD_Daemon *daemon;
    RestBackend backend;
    char *auth_user;          /* NULL: unsafe methods need no auth */
    char *auth_pass;
    char listen[128];
    char start_error[256];    /* last libmicrohttpd message while starting */
    bool starting;
};

enum {
    M_GET = 1 << 0,
    M_HEAD = 1 << 1,
    M_OPTIONS = 1 << 2,
    M_POST = 1 << 3,
    M_PATCH = 1 << 4,
    M_PUT = 1 << 5,
    M_DELETE = 1 << 6,
    M_OTHER = 1 << 7,
};
#define M_UNSAFE (M_POST | M_PATCH | M_PUT | M_DELETE | M_OTHER)

typedef enum {
    ROUTE_HEALTH,
    ROUTE_PATRONI,
    ROUTE_CLUSTER,
    ROUTE_HISTORY,
    ROUTE_CONFIG,
    ROUTE_METRICS,
    ROUTE_SWITCHOVER,
    ROUTE_FAILOVER,
    ROUTE_RESTART,
    ROUTE_REINITIALIZE,
    ROUTE_RELOAD,
    ROUTE_RESCUE,
    ROUTE_AA_DDL_LOCK,
    ROUTE_AA_DDL_UNLOCK,
} RouteId;

typedef struct Route {
    const char *path;
    RouteId id;
    unsigned methods;
} Route;

static const Route routes[] = {
    {"/patroni", ROUTE_PATRONI, M_GET | M_HEAD | M_OPTIONS},
    {"/cluster", ROUTE_CLUSTER, M_GET | M_HEAD | M_OPTIONS},
    {"/history", ROUTE_HISTORY, M_GET | M_HEAD | M_OPTIONS},
    {"/config", ROUTE_CONFIG, M_GET | M_HEAD | M_OPTIONS | M_PATCH},
    {"/metrics", ROUTE_METRICS, M_GET | M_HEAD | M_OPTIONS},
    {"/switchover", ROUTE_SWITCHOVER, M_POST | M_OPTIONS},
    {"/failover", ROUTE_FAILOVER, M_POST | M_OPTIONS},
    {"/restart", ROUTE_RESTART, M_POST | M_OPTIONS},
    {"/reinitialize", ROUTE_REINITIALIZE, M_POST | M_OPTIONS},
    {"/reload", ROUTE_RELOAD, M_POST | M_OPTIONS},
    {"/rescue", ROUTE_RESCUE, M_POST | M_OPTIONS},
    {"/aa/ddl_lock", ROUTE_AA_DDL_LOCK, M_POST | M_OPTIONS},
    {"/aa/ddl_unlock", ROUTE_AA_DDL_UNLOCK, M_POST | M_OPTIONS},
};
static const Route health_route = {NULL, ROUTE_HEALTH, M_GET | M_HEAD | M_OPTIONS};

/* Per-request state, created on the first callback and freed when MHD completes the request. */
typedef struct Req {
    char path[128];           /* normalized path ("" when too long to be any of ours) */
    unsigned method;
    const Route *route;       /* NULL: unknown path */
    char *body;
    size_t len, cap;
    bool too_large;
} Req;

static unsigned method_bit(const char *m)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"GET", M_GET},     {"HEAD", M_HEAD}, {"OPTIONS", M_OPTIONS}, {"POST", M_POST},
                 {"PATCH", M_PATCH}, {"PUT", M_PUT},   {"DELETE", M_DELETE}};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (strcmp(m, names[i].name) == 0)
            return names[i].bit;
    return M_OTHER;
}

static void allow_header(unsigned methods, char *buf, size_t sz)
{
    static const char *names[] = {"GET", "HEAD", "OPTIONS", "POST", "PATCH", "PUT", "DELETE"};
    buf[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        if (!(methods & (1u << i)))
            continue;
        if (!str_fmt(buf + used, sz - used, "%s%s", used ? ", " : "", names[i]))
            return;
        used += strlen(buf + used);
    }
}

/* Strip trailing slashes but keep "/" itself. */
static void normalize_path(const char *url, char *out, size_t sz)
{
    if (!str_copy(out, sz, url)) {
        out[0] = '\0';
        return;
    }
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
}

static const Route *find_route(const char *path)
{
    static const NodeStatus probe; /* any status: 404 only depends on the path */
    if (rest_health_code(path, NULL, &probe) != 404)
        return &health_route;
    for (size_t i = 0; i < ARRAY_LEN(routes); i++)
        if (strcmp(routes[i].path, path) == 0)
            return &routes[i];
    return NULL;
}

/* ---- responses ---- */

static bool looks_like_json(const char *s)
{
    while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
        s++;
    return *s == '{' || *s == '[';
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned code, const char *ctype,
                               const char *body, const char *allow)
{
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    if (ctype && len > 0)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result r = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return r;
}

static char *error_json(const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s ? s : str_dup("{\"error\":\"internal error\"}");
}

static enum MHD_Result respond_error(struct MHD_Connection *conn, unsigned code, const char *msg,
                                     const char *allow)
{
    char *body = error_json(msg);
    enum MHD_Result r = respond(conn, code, "application/json", body, allow);
    free(body);
    return r;
}

/* A backend action's answer: JSON or plain text, by its first character. */
static enum MHD_Result respond_action(struct MHD_Connection *conn, int code, char *body)
{
    if (code < 100 || code > 599)
        code = 500;
    const char *ctype = body && looks_like_json(body) ? "application/json" : "text/plain; charset=utf-8";
    enum MHD_Result r = respond(conn, (unsigned)code, ctype, body, NULL);
    free(body);
    return r;
}

static void peer_address(struct MHD_Connection *conn, char *buf, size_t sz)
{
    str_copy(buf, sz, "?");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
                  (socklen_t)sz);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf,
                  (socklen_t)sz);
}

static void log_unsafe(struct MHD_Connection *conn, const char *method, const char *url,
                       unsigned code)
{
    char peer[INET6_ADDRSTRLEN + 1];
    peer_address(conn, peer, sizeof(peer));
    /* the path is the client's (decoded) text: keep it short and on one line */
    char path[128], verb[16];
    if (!str_copy(path, sizeof(path), url))
        str_copy(path + sizeof(path) - 4, 4, "...");
    str_copy(verb, sizeof(verb), method);
    for (char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            *p = '?';
    log_info("rest: %s %s from %s: %u", verb, path, peer, code);
}

/* ---- auth ---- */

/* Compare in time that depends only on the expected value's length. */
static bool equal_const_time(const char *given, const char *expected)
{
    size_t gl = strlen(given), el = strlen(expected);
    volatile unsigned char diff = (unsigned char)(gl != el);
    for (size_t i = 0; i < el; i++) {
        unsigned char g = i < gl ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)expected[i]);
    }
    return diff == 0;
}

static bool authorized(const RestServer *srv, struct MHD_Connection *conn)
{
    if (!srv->auth_user)
        return true;
    char *pass = NULL;
    char *user = MHD_basic_auth_get_username_password(conn, &pass);
    bool ok = false;
    if (user && pass) {
        bool u = equal_const_time(user, srv->auth_user);
        bool p = equal_const_time(pass, srv->auth_pass ? srv->auth_pass : "");
        ok = u && p;
    }
    if (pass) {
        explicit_bzero(pass, strlen(pass));
        MHD_free(pass);
    }
    if (user)
        MHD_free(user);
    return ok;
}

static enum MHD_Result respond_unauthorized(struct MHD_Connection *conn)
{
    char *body = error_json("authentication required");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    free(body);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result r = MHD_queue_basic_auth_fail_response(conn, REST_REALM, resp);
    MHD_destroy_response(resp);
    return r;
}

/* ---- request bodies ---- */

/* Parse the body as a JSON object; an empty body reads as {}. On failure *msg says why. */
static json_t *body_object(const Req *req, const char **msg)
{
    size_t i = 0;
    while (i < req->len && (req->body[i] == ' ' || req->body[i] == '\n' || req->body[i] == '\r' ||
                            req->body[i] == '\t'))
        i++;
    if (i == req->len)
        return json_object();
    json_error_t jerr;
    json_t *j = json_loadb(req->body, req->len, 0, &jerr);
    if (!j) {
        *msg = "invalid JSON body";
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *msg = "JSON body must be an object";
        return NULL;
    }
    return j;
}

/* Optional string member: absent or null -> NULL; other types fail. */
static bool member_string(json_t *o, const char *key, const char **out)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v))
        return false;
    *out = json_string_value(v);
    if ((*out)[0] == '\0')
        *out = NULL;
    return true;
}

/* ---- handlers ---- */

static void snapshot(const RestServer *srv, NodeStatus *st)
{
    memset(st, 0, sizeof(*st));
    st->lag_bytes = -1;
    if (srv->backend.get_status)
        srv->backend.get_status(srv->backend.ctx, st);
    /* the backend copies fixed arrays; make sure they end */
    st->name[sizeof(st->name) - 1] = st->scope[sizeof(st->scope) - 1] = '\0';
    st->role[sizeof(st->role) - 1] = st->state[sizeof(st->state) - 1] = '\0';
    st->sysid[sizeof(st->sysid) - 1] = st->leader_name[sizeof(st->leader_name) - 1] = '\0';
}

/* Rebuild the query string from MHD's decoded arguments, percent-encoding again so that
 * rest_health_code sees one canonical form. */
typedef struct QueryBuf {
    char buf[2048];
    size_t len;
    bool overflow;
} QueryBuf;

static void query_raw(QueryBuf *q, const char *s, size_t n)
{
    if (q->overflow || q->len + n >= sizeof(q->buf)) {
        q->overflow = true;
        return;
    }
    memcpy(q->buf + q->len, s, n);
    q->len += n;
    q->buf[q->len] = '\0';
}

static void query_put(QueryBuf *q, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            query_raw(q, (const char *)p, 1);
        } else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            query_raw(q, esc, 3);
        }
    }
}

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    QueryBuf *q = cls;
    if (q->len > 0)
        query_raw(q, "&", 1);
    query_put(q, key ? key : "");
    if (value) {
        query_raw(q, "=", 1);
        query_put(q, value);
    }
    return q->overflow ? MHD_NO : MHD_YES;
}

static enum MHD_Result handle_health(RestServer *srv, struct MHD_Connection *conn, Req *req)
{
    /* liveness means "the HTTP thread answers": it must not wait on the agent's lock */
    if (strcmp(req->path, "/liveness") == 0)
        return respond(conn, MHD_HTTP_OK, NULL, NULL, NULL);
    QueryBuf *q = xcalloc(1, sizeof(*q));
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_arg, q);
    NodeStatus st;
    snapshot(srv, &st);
    /* an over-long query can't be checked faithfully: fail the check rather than pass it */
    int code = q->overflow ? MHD_HTTP_SERVICE_UNAVAILABLE : rest_health_code(req->path, q->buf, &st);
    free(q);
    if (req->method != M_GET)
        return respond(conn, (unsigned)code, NULL, NULL, NULL);
    char *body = rest_status_json(&st);
    enum MHD_Result r = respond(conn, (unsigned)code, "application/json", body, NULL);
    free(body);
    return r;
}

static enum MHD_Result handle_document(RestServer *srv, struct MHD_Connection *conn, Req *req,
                                       char *(*fn)(void *ctx), const char *what)
{
    char *doc = fn ? fn(srv->backend.ctx) : NULL;
    if (!doc) {
        char msg[64];
        str_fmt(msg, sizeof(msg), "%s is not available", what);
        return respond_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, msg, NULL);
    }
    enum MHD_Result r = respond(conn, MHD_HTTP_OK, "application/json",
                                req->method == M_GET ? doc : NULL, NULL);
    free(doc);
    return r;
}

static enum MHD_Result handle_get(RestServer *srv, struct MHD_Connection *conn, Req *req)
{
    NodeStatus st;
    switch (req->route->id) {
    case ROUTE_PATRONI: {
        snapshot(srv, &st);
        char *body = req->method == M_GET ? rest_status_json(&st) : NULL;
        enum MHD_Result r = respond(conn, MHD_HTTP_OK, "application/json", body, NULL);
        free(body);
        return r;
    }
    case ROUTE_METRICS: {
        snapshot(srv, &st);
        char *body = req->method == M_GET ? rest_metrics_text(&st) : NULL;
        enum MHD_Result r =
            respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, NULL);
        free(body);
        return r;
    }
    case ROUTE_CLUSTER:
        return handle_document(srv, conn, req, srv->backend.cluster_json, "cluster");
    case ROUTE_HISTORY:
        return handle_document(srv, conn, req, srv->backend.history_json, "history");
    case ROUTE_CONFIG:
        return handle_document(srv, conn, req, srv->backend.config_json, "config");
    default:
        return respond_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error", NULL);
    }
}

/* Run one action; returns the HTTP code answered (for the log). */
static unsigned handle_action(RestServer *srv, struct MHD_Connection *conn, Req *req,
                              enum MHD_Result *result)
{
    const RestBackend *b = &srv->backend;
    const char *msg = NULL;
    unsigned code = MHD_HTTP_BAD_REQUEST;
    json_t *o = body_object(req, &msg);
    if (!o)
        goto bad;

    char *out = NULL;
    int rc;
    switch (req->route->id) {
    case ROUTE_SWITCHOVER:
    case ROUTE_FAILOVER: {
        bool failover = req->route->id == ROUTE_FAILOVER;
        const char *leader, *candidate;
        if (!member_string(o, "leader", &leader) || !member_string(o, "candidate", &candidate)) {
            msg = "leader and candidate must be strings";
            goto bad;
        }
        if (!leader && !member_string(o, "master", &leader)) { /* Patroni's old name */
            msg = "leader and candidate must be strings";
            goto bad;
        }
        if (json_object_get(o, "scheduled_at") && !json_is_null(json_object_get(o, "scheduled_at"))) {
            msg = "scheduled switchovers are not supported";
            goto bad;
        }
        if (failover && !candidate) {
            msg = "failover needs a candidate";
            goto bad;
        }
        if (!b->switchover)
            goto unsupported;
        rc = b->switchover(b->ctx, leader, candidate, failover, &out);
        break;
    }
    case ROUTE_RESTART: {
        if (json_object_get(o, "schedule") || json_object_get(o, "postgres_version")) {
            msg = "scheduled or version-conditional restarts are not supported";
            goto bad;
        }
        json_t *role = json_object_get(o, "role");
        json_t *pending = json_object_get(o, "restart_pending");
        if ((role && !json_is_string(role)) || (pending && !json_is_boolean(pending))) {
            msg = "role must be a string and restart_pending a boolean";
            goto bad;
        }
        if (role || json_is_true(pending)) {
            NodeStatus st;
            snapshot(srv, &st);
            const char *want = role ? json_string_value(role) : NULL;
            if (want && strcmp(want, "master") == 0)
                want = "primary";
            if ((want && strcmp(want, st.role) != 0) || (json_is_true(pending) && !st.pending_restart)) {
                code = MHD_HTTP_SERVICE_UNAVAILABLE;
                msg = "restart conditions are not satisfied";
                goto bad;
            }
        }
        if (!b->restart)
            goto unsupported;
        rc = b->restart(b->ctx, &out);
        break;
    }
    case ROUTE_REINITIALIZE: {
        json_t *force = json_object_get(o, "force");
        if (force && !json_is_boolean(force)) {
            msg = "force must be a boolean";
            goto bad;
        }
        if (!b->reinitialize)
            goto unsupported;
        rc = b->reinitialize(b->ctx, json_is_true(force), &out);
        break;
    }
    case ROUTE_RELOAD:
        if (!b->reload)
            goto unsupported;
        rc = b->reload(b->ctx, &out);
        break;
    case ROUTE_RESCUE: {
        const char *t = json_string_value(json_object_get(o, "target_time"));
        if (!t || !t[0] || strlen(t) > 64 || strpbrk(t, "'\\\n")) {
            msg = "target_time: expected a timestamp, e.g. \"2026-12-05 11:00:00+00\"";
            goto bad;
        }
        if (!b->rescue)
            goto unsupported;
        rc = b->rescue(b->ctx, t, &out);
        break;
    }
    case ROUTE_AA_DDL_LOCK:
    case ROUTE_AA_DDL_UNLOCK: {
        json_t *pid = json_object_get(o, "pid"), *t = json_object_get(o, "timeout_ms");
        const char *lsn = json_string_value(json_object_get(o, "lsn"));
        bool lock = req->route->id == ROUTE_AA_DDL_LOCK;
        if (!json_is_integer(pid) || json_integer_value(pid) <= 0 || json_integer_value(pid) > INT32_MAX) {
            msg = "pid: expected a backend's process id";
            goto bad;
        }
        if (lock && (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > 3600000)) {
            msg = "timeout_ms: expected milliseconds (0 to 3600000)";
            goto bad;
        }
        if (!lock && (!lsn || strlen(lsn) > 20)) {
            msg = "lsn: expected the commit's end, e.g. \"0/3000060\"";
            goto bad;
        }
        if (lock ? !b->aa_ddl_lock : !b->aa_ddl_unlock)
            goto unsupported;
        rc = lock ? b->aa_ddl_lock(b->ctx, (int)json_integer_value(pid), (int)json_integer_value(t), &out)
                  : b->aa_ddl_unlock(b->ctx, (int)json_integer_value(pid), lsn, &out);
        break;
    }
    case ROUTE_CONFIG:
        if (req->len == 0 || json_object_size(o) == 0) {
            msg = "PATCH /config needs a non-empty JSON object";
            goto bad;
        }
        if (!b->patch_config)
            goto unsupported;
        rc = b->patch_config(b->ctx, req->body, &out); /* the client's text, unchanged */
        break;
    default:
        msg = "internal error";
        code = MHD_HTTP_INTERNAL_SERVER_ERROR;
        goto bad;
    }
    json_decref(o);
    if (rc < 100 || rc > 599)
        rc = 500;
    *result = respond_action(conn, rc, out);
    return (unsigned)rc;

unsupported:
    code = MHD_HTTP_NOT_IMPLEMENTED;
    msg = "not supported by this node";
bad:
    json_decref(o);
    *result = respond_error(conn, code, msg, NULL);
    return code;
}

/* Checks made as soon as the headers are in, before any body is read: path, method, auth and
 * declared size. Returns 0 to go on reading the body, or the code of the answer it queued. */
static unsigned check_request(RestServer *srv, struct MHD_Connection *conn, Req *req,
                              enum MHD_Result *result)
{
    char allow[64];
    if (!req->route) {
        *result = respond_error(conn, MHD_HTTP_NOT_FOUND, "not found", NULL);
        return MHD_HTTP_NOT_FOUND;
    }
    if (!(req->route->methods & req->method)) {
        allow_header(req->route->methods, allow, sizeof(allow));
        *result = respond_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", allow);
        return MHD_HTTP_METHOD_NOT_ALLOWED;
    }
    if ((req->method & M_UNSAFE) && !authorized(srv, conn)) {
        *result = respond_unauthorized(conn);
        return MHD_HTTP_UNAUTHORIZED;
    }
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno != 0 || n > REST_MAX_BODY) {
            req->too_large = true;
            *result = respond_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large", NULL);
            return MHD_HTTP_CONTENT_TOO_LARGE;
        }
    }
    return 0;
}

static enum MHD_Result dispatch(RestServer *srv, struct MHD_Connection *conn, Req *req,
                                const char *method, const char *url)
{
    enum MHD_Result r;
    unsigned code;
    if (req->too_large) {
        r = respond_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large", NULL);
        code = MHD_HTTP_CONTENT_TOO_LARGE;
    } else if (req->method == M_OPTIONS && req->route->id != ROUTE_HEALTH) {
        char allow[64];
        allow_header(req->route->methods, allow, sizeof(allow));
        return respond(conn, MHD_HTTP_OK, NULL, NULL, allow);
    } else if (req->route->id == ROUTE_HEALTH) {
        return handle_health(srv, conn, req);
    } else if (req->method & (M_GET | M_HEAD)) {
        return handle_get(srv, conn, req);
    } else {
        code = handle_action(srv, conn, req, &r);
    }
    if (req->method & M_UNSAFE)
        log_unsafe(conn, method, url, code);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    RestServer *srv = cls;
    Req *req = *con_cls;
    if (!req) {
        req = xcalloc(1, sizeof(*req));
        *con_cls = req;
        normalize_path(url, req->path, sizeof(req->path));
        req->method = method_bit(method);
        req->route = req->path[0] ? find_route(req->path) : NULL;
        enum MHD_Result r = MHD_YES;
        unsigned code = check_request(srv, conn, req, &r);
        if (code != 0 && (req->method & M_UNSAFE))
            log_unsafe(conn, method, url, code);
        return r;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->too_large || req->len + n > REST_MAX_BODY) {
            /* chunked bodies have no declared size: drop the rest and answer 413 at the end */
            req->too_large = true;
            return MHD_YES;
        }
        if (req->len + n + 1 > req->cap) {
            req->cap = req->len + n + 1 > 2 * req->cap ? req->len + n + 1 : 2 * req->cap;
            req->body = xrealloc(req->body, req->cap);
        }
        memcpy(req->body + req->len, upload_data, n);
        req->len += n;
        req->body[req->len] = '\0';
        return MHD_YES;
    }
    if (!req->body)
        req->body = str_dup("");
    return dispatch(srv, conn, req, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    Req *req = *con_cls;
    if (!req)
        return;
    free(req->body);
    free(req);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    RestServer *srv = cls;
    char line[256];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    if (srv->starting)
        str_copy(srv->start_error, sizeof(srv->start_error), line);
    log_debug("rest: libmicrohttpd: %s", line);
}

/* ---- start / stop ---- */

/* "host:port", "[v6]:port", "*:port", ":port". Port 0 picks a free port (tests). */
static bool parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *sslen,
                         Err *err)
{
    const char *colon = strrchr(listen, ':');
    if (!colon) {
        err_set(err, "restapi.listen %s: expected host:port", listen);
        return false;
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 0 || port > 65535) {
        err_set(err, "restapi.listen %s: invalid port", listen);
        return false;
    }
    char host[256];
    size_t hlen = (size_t)(colon - listen);
    if (hlen >= sizeof(host)) {
        err_set(err, "restapi.listen %s: host name too long", listen);
        return false;
    }
    memcpy(host, listen, hlen);
    host[hlen] = '\0';
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }

    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (host[0] == '\0' || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0) {
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        int rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc != 0 || !res) {
            err_set(err, "restapi.listen %s: %s", listen, rc ? gai_strerror(rc) : "no address");
            if (res)
                freeaddrinfo(res);
            return false;
        }
        memcpy(ss, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
    }
    if (ss->ss_family == AF_INET) {
        v4->sin_port = htons((uint16_t)port);
        *sslen = sizeof(*v4);
    } else {
        v6->sin6_port = htons((uint16_t)port);
        *sslen = sizeof(*v6);
    }
    return true;
}

/* libmicrohttpd only says "failed"; bind a probe socket the same way to learn why. */
static int probe_bind(const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int one = 1, e = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, 1) != 0)
        e = errno;
    close(fd);
    return e;
}

RestServer *rest_start(const char *listen, const RestBackend *backend, const char *auth_user,
                       const char *auth_pass, Err *err)
{
    if (str_empty(listen)) {
        err_set(err, "restapi.listen: not set");
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (!parse_listen(listen, &ss, &sslen, err))
        return NULL;

    RestServer *srv = xcalloc(1, sizeof(*srv));
    if (backend)
        srv->backend = *backend;
    if (!str_empty(auth_user)) {
        srv->auth_user = str_dup(auth_user);
        srv->auth_pass = str_dup(auth_pass ? auth_pass : "");
    }
    str_copy(srv->listen, sizeof(srv->listen), listen);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_AUTO | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    srv->starting = true;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv, /* first, or MHD logs the rest itself */
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)REST_CONNECTION_TIMEOUT,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)REST_CONNECTION_LIMIT,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_END);
    srv->starting = false;
    if (!srv->daemon) {
        int e = probe_bind(&ss, sslen);
        if (e != 0) {
            char buf[128];
            const char *s = strerror_r(e, buf, sizeof(buf));
            char msg[128];
            str_copy(msg, sizeof(msg), s);
            if (msg[0] >= 'A' && msg[0] <= 'Z')
                msg[0] = (char)(msg[0] - 'A' + 'a');
            err_set(err, "restapi.listen %s: %s", listen, msg);
        } else {
            err_set(err, "restapi.listen %s: cannot start the HTTP server: %s", listen,
                    srv->start_error[0] ? srv->start_error : "unknown error");
        }
        rest_stop(srv);
        return NULL;
    }
    log_info("rest: listening on %s (port %d)", listen, rest_port(srv));
    return srv;
}

int rest_port(const RestServer *srv)
{
    if (!srv || !srv->daemon)
        return -1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return di ? (int)di->port : -1;
}

void rest_stop(RestServer *srv)
{
    if (!srv)
        return;
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    free(srv->auth_user);
    if (srv->auth_pass) {
        explicit_bzero(srv->auth_pass, strlen(srv->auth_pass));
        free(srv->auth_pass);
    }
    free(srv);
}
