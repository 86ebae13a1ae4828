/* The proxy's admin port: GET /health (200 while etcd answers, with the current primary) and
 * GET /metrics (Prometheus text: connections, bytes, generation, held connections). */
#include "common/common.h"
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>

struct ProxyAdmin {
    Proxy *p;
    struct MHD_Daemon *d;
};

static void buf_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...) PRINTF_LIKE(4, 5);
static void buf_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        *cap *= 2;
        *buf = xrealloc(*buf, *cap);
    }
}

long long proxy_route_stat(Proxy *p, int r, size_t off)
{
    long long sum = 0;
    for (int w = 0; w < p->pc->workers; w++) {
        const char *field = (const char *)&p->stats[w * p->pc->n_routes + r] + off;
        if (off == offsetof(RouteStats, active) || off == offsetof(RouteStats, held))
            sum += (long long)atomic_load((const atomic_int_fast64_t *)(const void *)field);
        else
            sum += (long long)atomic_load((const atomic_uint_fast64_t *)(const void *)field);
    }
    return sum;
}

char *proxy_metrics_text(Proxy *p)
{
    size_t cap = 4096, len = 0;
    char *b = xmalloc(cap);
    b[0] = '\0';
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } counters[] = {
        {"pgvigil_proxy_connections_accepted_total", "counter", "Client connections accepted.",
         offsetof(RouteStats, accepted)},
        {"pgvigil_proxy_connections_active", "gauge", "Connections open to a backend.", offsetof(RouteStats, active)},
        {"pgvigil_proxy_connections_held", "gauge", "Connections waiting for a backend.", offsetof(RouteStats, held)},
        {"pgvigil_proxy_bytes_in_total", "counter", "Bytes from clients to backends.", offsetof(RouteStats, bytes_in)},
        {"pgvigil_proxy_bytes_out_total", "counter", "Bytes from backends to clients.", offsetof(RouteStats, bytes_out)},
        {"pgvigil_proxy_closed_on_change_total", "counter", "Connections closed because their backend changed role.",
         offsetof(RouteStats, closed_on_change)},
        {"pgvigil_proxy_hold_timeouts_total", "counter", "Connections refused after waiting connect_wait.",
         offsetof(RouteStats, hold_timeouts)},
        {"pgvigil_proxy_connect_failures_total", "counter", "Failed backend connection attempts.",
         offsetof(RouteStats, connect_failures)},
        {"pgvigil_proxy_cancel_requests_total", "counter", "Cancel requests forwarded.", offsetof(RouteStats, cancels)},
    };
    for (size_t k = 0; k < ARRAY_LEN(counters); k++) {
        buf_add(&b, &len, &cap, "# HELP %s %s\n# TYPE %s %s\n", counters[k].name, counters[k].help, counters[k].name,
                counters[k].type);
        for (int r = 0; r < p->pc->n_routes; r++) {
            long long v = proxy_route_stat(p, r, counters[k].off);
            buf_add(&b, &len, &cap, "%s{route=\"%s\"} %lld\n", counters[k].name, p->pc->routes[r].name, v);
        }
    }
    ProxySnapshot *s = proxy_current(p);
    int eligible = 0;
    for (int i = 0; i < s->n_backends; i++)
        eligible += s->backends[i].eligible;
    buf_add(&b, &len, &cap,
            "# HELP pgvigil_proxy_primary_generation Changes whenever the primary changes.\n"
            "# TYPE pgvigil_proxy_primary_generation gauge\npgvigil_proxy_primary_generation %llu\n"
            "# HELP pgvigil_proxy_has_primary 1 while read-write routes have a primary.\n"
            "# TYPE pgvigil_proxy_has_primary gauge\npgvigil_proxy_has_primary %d\n"
            "# HELP pgvigil_proxy_eligible_replicas Replicas taking new read-only connections.\n"
            "# TYPE pgvigil_proxy_eligible_replicas gauge\npgvigil_proxy_eligible_replicas %d\n"
            "# HELP pgvigil_proxy_etcd_ok 1 while etcd answered within the lease TTL.\n"
            "# TYPE pgvigil_proxy_etcd_ok gauge\npgvigil_proxy_etcd_ok %d\n",
            (unsigned long long)s->primary_gen, s->primary >= 0, eligible, atomic_load(&p->etcd_ok) ? 1 : 0);
    proxy_snapshot_unref(s);
    return b;
}

static char *health_json(Proxy *p, bool *ok)
{
    ProxySnapshot *s = proxy_current(p);
    json_t *o = json_object();
    *ok = atomic_load(&p->etcd_ok) != 0;
    json_object_set_new(o, "status", json_string(*ok ? "ok" : "etcd unreachable"));
    json_object_set_new(o, "etcd", json_boolean(*ok));
    json_object_set_new(o, "primary", s->primary >= 0 ? json_string(s->backends[s->primary].name) : json_null());
    json_object_set_new(o, "generation", json_integer((json_int_t)s->primary_gen));
    json_t *reps = json_array();
    for (int i = 0; i < s->n_backends; i++)
        if (s->backends[i].eligible)
            json_array_append_new(reps, json_string(s->backends[i].name));
    json_object_set_new(o, "replicas", reps);
    json_t *routes = json_array();
    for (int r = 0; r < p->pc->n_routes; r++) {
        json_t *ro = json_object();
        json_object_set_new(ro, "name", json_string(p->pc->routes[r].name));
        json_object_set_new(ro, "listen", json_string(p->pc->routes[r].listen));
        json_object_set_new(ro, "active", json_integer((json_int_t)proxy_route_stat(p, r, offsetof(RouteStats, active))));
        json_object_set_new(ro, "held", json_integer((json_int_t)proxy_route_stat(p, r, offsetof(RouteStats, held))));
        json_array_append_new(routes, ro);
    }
    json_object_set_new(o, "routes", routes);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    proxy_snapshot_unref(s);
    return text;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, char *body, const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
    ProxyAdmin *a = cls;
    if (*state == NULL) {
        *state = a;             /* headers only so far: wait for the body (ignored) */
        return MHD_YES;
    }
    if (upload_size && *upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, str_dup("method not allowed\n"), "text/plain");
    if (strcmp(url, "/metrics") == 0)
        return reply(conn, MHD_HTTP_OK, proxy_metrics_text(a->p), "text/plain; version=0.0.4");
    if (strcmp(url, "/health") == 0 || strcmp(url, "/") == 0) {
        bool ok;
        char *body = health_json(a->p, &ok);
        return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body, "application/json");
    }
    return reply(conn, MHD_HTTP_NOT_FOUND, str_dup("not found\n"), "text/plain");
}

static void quiet_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    (void)fmt;
    (void)ap;
}

ProxyAdmin *proxy_admin_start(Proxy *p, const char *listen, Err *err)
{
    char *host = NULL;
    int port;
    if (!config_split_hostport(listen, &host, &port, err))
        return NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        err_set(err, "proxy.admin_listen: expected a numeric address, got \"%s\"", host);
        free(host);
        return NULL;
    }
    free(host);
    ProxyAdmin *a = xcalloc(1, sizeof(*a));
    a->p = p;
    a->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER, quiet_log, NULL,
                            MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
    if (!a->d) {
        err_set(err, "proxy.admin_listen: cannot listen on %s (address in use?)", listen);
        free(a);
        return NULL;
    }
    return a;
}

void proxy_admin_stop(ProxyAdmin *a)
{
    if (!a)
        return;
    MHD_stop_daemon(a->d);
    free(a);
}
