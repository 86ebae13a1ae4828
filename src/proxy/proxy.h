/* pgvigil proxy: stateless routing of client connections to the cluster's current primary or
 * healthy replicas, driven by an etcd watch. One control thread reads etcd and publishes
 * immutable route snapshots; worker threads (one epoll loop each, SO_REUSEPORT listeners) move
 * bytes and close connections to a node the moment it stops being what they were routed to.
 * Files: proxy_main.c (command, control thread), proxy_snapshot.c (snapshot from the cluster,
 * pure), proxy_worker.c (event loop), proxy_pg.c (protocol bits), proxy_cancel.c (cancel keys),
 * proxy_admin.c (/health, /metrics). */
#ifndef PGVIGIL_PROXY_H
#define PGVIGIL_PROXY_H

#include "common/common.h"
#include "config/config.h"
#include "dcs/cluster.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

/* A member a connection may go to. */
typedef struct ProxyBackend {
    char name[NAME_MAX_LEN];
    char host[128];
    int port;                       /* its PostgreSQL port */
    struct sockaddr_storage addr;   /* host resolved, port = PostgreSQL port */
    socklen_t addr_len;             /* 0 when the host did not resolve */
    bool is_primary;                /* holds the leader key and runs as primary */
    bool replica;                   /* a running replica (not the leader) */
    bool eligible;                  /* replica usable for new read-only connections (lag, tags) */
    int64_t lag;                    /* bytes behind the leader, -1 unknown */
} ProxyBackend;

/* What the workers route by. Immutable once published; freed with its last reference. */
typedef struct ProxySnapshot {
    atomic_int refs;
    uint64_t version;               /* increases with every published snapshot */
    uint64_t primary_gen;           /* changes whenever the primary changes or goes away */
    int primary;                    /* index in backends, -1 when none may take writes */
    ProxyBackend *backends;         /* every member with a usable address */
    int n_backends;
    bool etcd_ok;                   /* etcd answered within the lease TTL */
    char leader[NAME_MAX_LEN];      /* the leader key as read ("" none) */
    /* write_leader routes (an active-active group): per route, the backend its writes go to
     * (-1 none: no leader, a handover under way, or not a write_leader route) and a generation
     * that changes whenever that target changes; NULL when the proxy has no such route */
    int *route_leader;
    /* ... and the backend holding the route's lead even while it hands the lead over (-1
     * none): its connections stay open (a planned switchover lets the transactions in flight
     * end) until another backend holds the lead; the generation follows the holder */
    int *route_holder;
    uint64_t *route_gen;
    int n_routes;
} ProxySnapshot;

/* Build a snapshot from one etcd read (pure apart from name resolution, which the caller may
 * skip with resolve=false: then addresses are numeric-only). etcd_ok=false drops the primary. */
ProxySnapshot *proxy_snapshot_build(const Cluster *c, int64_t max_lag, bool etcd_ok, bool resolve);
/* Two sites (site.peer in the proxy's file): one snapshot of both. Writes go to the primary of
 * the site that is not a standby cluster; when both sites claim one, to neither (a client never
 * writes to two sites). Reads go to the primary site's replicas only (the standby site's lag is
 * against another primary). Takes ownership of own and peer (peer may be NULL: own returned). */
ProxySnapshot *proxy_snapshot_merge(ProxySnapshot *own, bool own_standby, ProxySnapshot *peer, bool peer_standby);
/* An active-active group (c->aa): each write_leader route of pc gets its location's write
 * leader, or the group's when the location has none; none while a handover is under way or
 * etcd is not ok. Generations are left 0 (publish() numbers them). */
void proxy_snapshot_set_leaders(ProxySnapshot *s, const Cluster *c, const ProxyConfig *pc);
/* A copy with its own arrays (refs 1). */
ProxySnapshot *proxy_snapshot_clone(const ProxySnapshot *s);
/* Same routing content (primary identity and address, backends and eligibility)? */
bool proxy_snapshot_same(const ProxySnapshot *a, const ProxySnapshot *b);
void proxy_snapshot_ref(ProxySnapshot *s);
void proxy_snapshot_unref(ProxySnapshot *s);     /* NULL ok */
/* Index of a backend by name, -1 when absent. */
int proxy_snapshot_find(const ProxySnapshot *s, const char *name);
/* Parse "postgres://[user@]host:port/db" (host may be [v6]); false when malformed. */
bool proxy_parse_conn_url(const char *url, char *host, size_t hsz, int *port);

/* Counters of one route in one worker. Each worker counts in its own copy, on its own cache
 * lines, so two workers never write the same line for every read; the admin port sums them. */
typedef struct RouteStats {
    _Alignas(64) atomic_uint_fast64_t accepted;
    atomic_int_fast64_t active;         /* connected to a backend */
    atomic_int_fast64_t held;           /* waiting for a backend */
    atomic_uint_fast64_t bytes_in;      /* client -> backend */
    atomic_uint_fast64_t bytes_out;     /* backend -> client */
    atomic_uint_fast64_t closed_on_change; /* closed because their backend changed role */
    atomic_uint_fast64_t hold_timeouts;
    atomic_uint_fast64_t connect_failures;
    atomic_uint_fast64_t cancels;
} RouteStats;

typedef struct ProxyWorker ProxyWorker;

typedef struct Proxy {
    Config *cfg;
    const ProxyConfig *pc;
    RouteStats *stats;              /* [worker * n_routes + route]: see proxy_route_stat */
    ProxyWorker **workers;
    int n_workers;
    pthread_mutex_t snap_mu;
    ProxySnapshot *snap;            /* snap_mu: the current snapshot */
    atomic_int stop;
    atomic_llong etcd_last_ok_ms;   /* monotonic time of the last etcd answer */
    atomic_int etcd_ok;
} Proxy;

/* One counter of route r summed over the workers; off is offsetof(RouteStats, field). */
long long proxy_route_stat(Proxy *p, int r, size_t off);

/* Current snapshot with a reference taken (never NULL once the proxy runs). */
ProxySnapshot *proxy_current(Proxy *p);

/* proxy_worker.c */
ProxyWorker *proxy_worker_new(Proxy *p, int index, Err *err);  /* binds its listeners */
bool proxy_worker_start(ProxyWorker *w, Err *err);
void proxy_worker_notify(ProxyWorker *w);       /* a new snapshot is out */
uint64_t proxy_worker_acked(ProxyWorker *w);    /* last snapshot version it has applied */
void proxy_worker_stop(ProxyWorker *w);         /* wakes, joins, closes everything, frees */

/* proxy_admin.c: GET /health, /metrics on pc->admin_listen. */
typedef struct ProxyAdmin ProxyAdmin;
ProxyAdmin *proxy_admin_start(Proxy *p, const char *listen, Err *err);
void proxy_admin_stop(ProxyAdmin *a);           /* NULL ok */
char *proxy_metrics_text(Proxy *p);             /* caller frees */

#endif
