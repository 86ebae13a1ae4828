/* The Patroni-compatible REST API served with libmicrohttpd. The agent supplies a backend
 * (status snapshot and actions); the HTTP layer never touches PostgreSQL or etcd itself. */
#ifndef PGVIGIL_REST_H
#define PGVIGIL_REST_H

#include "api/node_status.h"
#include "common/common.h"

typedef struct RestBackend {
    void *ctx;
    /* Copy the current snapshot. Called from the HTTP thread; must be thread-safe. */
    void (*get_status)(void *ctx, NodeStatus *out);
    /* JSON documents (malloc'd, caller frees), NULL -> 503 */
    char *(*cluster_json)(void *ctx);     /* GET /cluster */
    char *(*history_json)(void *ctx);     /* GET /history */
    char *(*config_json)(void *ctx);      /* GET /config */
    /* Actions: return an HTTP status and set *body to a malloc'd text (or NULL). */
    int (*switchover)(void *ctx, const char *leader, const char *candidate, bool is_failover,
                      char **body);
    int (*restart)(void *ctx, char **body);
    int (*reinitialize)(void *ctx, bool force, char **body);
    int (*reload)(void *ctx, char **body);
    /* POST /rescue {"target_time": "..."}: a delayed standby opened at that time (detached) */
    int (*rescue)(void *ctx, const char *target_time, char **body);
    int (*patch_config)(void *ctx, const char *patch_json, char **body);
    /* POST /aa/ddl_lock {"pid": N, "timeout_ms": T} (blocks until granted or T passed) and
     * POST /aa/ddl_unlock {"pid": N, "lsn": "X/Y"}: an active-active group's DDL lock for a
     * backend of this node */
    int (*aa_ddl_lock)(void *ctx, int pid, int timeout_ms, char **body);
    int (*aa_ddl_unlock)(void *ctx, int pid, const char *lsn, char **body);
} RestBackend;

typedef struct RestServer RestServer;

/* listen: "host:port". auth_user/auth_pass: Basic auth for unsafe methods (NULL = none).
 * Returns NULL with err naming the address on failure. */
RestServer *rest_start(const char *listen, const RestBackend *backend, const char *auth_user,
                       const char *auth_pass, Err *err);
void rest_stop(RestServer *srv);      /* NULL is a no-op */
/* The TCP port actually bound (useful with "127.0.0.1:0"), -1 when unknown. */
int rest_port(const RestServer *srv);

/* Pure status logic (rest_status.c), unit-tested with tables:
 * the HTTP code for a health-check path (no leading API prefix, e.g. "/replica") and raw
 * query string (may be NULL, e.g. "lag=1MB&tag_nofailover=false"). Returns 200 or 503, or 404
 * when path is not a health-check endpoint. */
int rest_health_code(const char *path, const char *query, const NodeStatus *st);
/* Body of GET /patroni and the health endpoints (Patroni's shape). Caller frees. */
char *rest_status_json(const NodeStatus *st);
/* Prometheus text exposition for GET /metrics. Caller frees. */
char *rest_metrics_text(const NodeStatus *st);

#endif
