/* `pgvigil proxy -c proxy.yml`: the control thread. It reads the cluster from etcd (a range
 * read, then a watch on the prefix, re-armed after every event or timeout), turns it into a
 * route snapshot and publishes it to the workers. A change of primary is published in two
 * steps: first "no primary" until every worker has closed its connections to the old one,
 * then the new primary, so no client is ever connected to both. */
#include "common/common.h"
#include "proxy/proxy.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "dcs/dcs.h"
#include "dcs/site_record.h"
#include "proxy/proxy_cancel.h"

#include <signal.h>
#include <sys/resource.h>

#define ACK_WAIT_MS 1000        /* bound on waiting for workers to drop the old primary */

static Proxy *g_proxy;

static void on_signal(int sig)
{
    (void)sig;
    if (g_proxy)
        atomic_store(&g_proxy->stop, 1);
}

ProxySnapshot *proxy_current(Proxy *p)
{
    pthread_mutex_lock(&p->snap_mu);
    ProxySnapshot *s = p->snap;
    proxy_snapshot_ref(s);
    pthread_mutex_unlock(&p->snap_mu);
    return s;
}

static void install(Proxy *p, ProxySnapshot *s)
{
    pthread_mutex_lock(&p->snap_mu);
    ProxySnapshot *old = p->snap;
    s->version = old ? old->version + 1 : 1;
    p->snap = s;
    pthread_mutex_unlock(&p->snap_mu);
    proxy_snapshot_unref(old);
    for (int i = 0; i < p->n_workers; i++)
        proxy_worker_notify(p->workers[i]);
}

static void wait_acks(Proxy *p, uint64_t version)
{
    int64_t until = mono_ms() + ACK_WAIT_MS;
    for (int i = 0; i < p->n_workers; i++)
        while (proxy_worker_acked(p->workers[i]) < version && mono_ms() < until)
            sleep_ms(1);
}

static const ProxyBackend *primary_of(const ProxySnapshot *s)
{
    return s && s->primary >= 0 ? &s->backends[s->primary] : NULL;
}

static bool same_backend(const ProxyBackend *a, const ProxyBackend *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a->name, b->name) == 0 && a->addr_len == b->addr_len && memcmp(&a->addr, &b->addr, a->addr_len) == 0;
}

static const ProxyBackend *route_leader_of(const ProxySnapshot *s, int r)
{
    return s && s->route_leader && r < s->n_routes && s->route_leader[r] >= 0 ? &s->backends[s->route_leader[r]]
                                                                              : NULL;
}

static const ProxyBackend *route_holder_of(const ProxySnapshot *s, int r)
{
    return s && s->route_holder && r < s->n_routes && s->route_holder[r] >= 0 ? &s->backends[s->route_holder[r]]
                                                                              : NULL;
}

/* The write_leader routes' generations in s, from cur's: one up where the target changed.
 * True when one moved from a leader straight to another; *left when one lost its leader. */
static bool number_leaders(ProxySnapshot *s, const ProxySnapshot *cur, const ProxyConfig *pc, bool *left)
{
    bool moved = false;
    *left = false;
    for (int r = 0; s->route_leader && r < s->n_routes; r++) {
        const ProxyBackend *was = route_holder_of(cur, r), *now = route_holder_of(s, r);
        s->route_gen[r] = cur && cur->route_gen && r < cur->n_routes ? cur->route_gen[r] : 1;
        if (pc->routes[r].role != ROUTE_WRITE_LEADER)
            continue;
        bool held_before = route_leader_of(cur, r) == NULL && was, held_now = route_leader_of(s, r) == NULL && now;
        if (same_backend(was, now)) {
            if (held_before != held_now)
                log_info("route %s: %s", pc->routes[r].name,
                         held_now ? "write leader handing over: new connections wait, open ones finish"
                                  : "the handover did not happen: writes go to the same leader");
            continue;
        }
        s->route_gen[r]++;
        moved = moved || (was && now);
        *left = *left || (was && !now);
        log_info("route %s: write leader %s -> %s", pc->routes[r].name, was ? was->name : "none",
                 now ? now->name : "none");
    }
    return moved;
}

/* Before s goes out: a snapshot like it in which the write_leader routes whose leader moved
 * (from cur's) have none, acknowledged by every worker, so no client is ever connected to two
 * write leaders of one route. */
static void publish_gap(Proxy *p, const ProxySnapshot *s, const ProxySnapshot *cur)
{
    /* (cur's routing, not s's: nothing else changes before the workers have acknowledged) */
    ProxySnapshot *gap = proxy_snapshot_clone(cur);
    for (int r = 0; r < gap->n_routes; r++)
        if (!same_backend(route_holder_of(cur, r), route_holder_of(s, r)))
            gap->route_leader[r] = gap->route_holder[r] = -1;
    install(p, gap);
    wait_acks(p, gap->version);
}

/* Publish s (taking ownership) if it routes differently from the current snapshot. */
static void publish(Proxy *p, ProxySnapshot *s)
{
    ProxySnapshot *cur = p->snap;
    if (proxy_snapshot_same(cur, s)) {
        proxy_snapshot_unref(s);
        return;
    }
    /* (held until the end: the gaps below replace it) */
    if (cur)
        proxy_snapshot_ref(cur);
    const ProxyBackend *was = primary_of(cur), *now = primary_of(s);
    /* (cur may be freed by the workers once the gap below replaces it: its name is copied first) */
    char was_name[NAME_MAX_LEN];
    str_copy(was_name, sizeof(was_name), was ? was->name : "none");
    int before = 0;
    for (int i = 0; cur && i < cur->n_backends; i++)
        before += cur->backends[i].eligible;
    s->primary_gen = cur ? cur->primary_gen : 1;
    bool leader_left = false;
    if (number_leaders(s, cur, p->pc, &leader_left))
        publish_gap(p, s, cur);
    if (!same_backend(was, now)) {
        s->primary_gen++;
        if (was && now) {
            /* close everything on the old primary before anyone is sent to the new one */
            ProxySnapshot *gap = xcalloc(1, sizeof(*gap));
            atomic_init(&gap->refs, 1);
            gap->primary = -1;
            gap->primary_gen = s->primary_gen;
            gap->etcd_ok = s->etcd_ok;
            install(p, gap);
            wait_acks(p, gap->version);
        }
        log_info("primary %s -> %s (generation %llu)%s", was_name, now ? now->name : "none",
                 (unsigned long long)s->primary_gen, s->etcd_ok ? "" : ": etcd unreachable for longer than the TTL");
    }
    int eligible = 0;
    for (int i = 0; i < s->n_backends; i++)
        eligible += s->backends[i].eligible;
    if (eligible != before)
        log_info("%d replica%s eligible for read-only routes", eligible, eligible == 1 ? "" : "s");
    install(p, s);
    /* a route that lost its leader: every worker has closed its connections to it before
     * anything else is published (the next leader may come a moment later); s stays alive
     * as the current snapshot, this thread being the only one that replaces it */
    if (leader_left)
        wait_acks(p, s->version);
    proxy_snapshot_unref(cur);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: pgvigil proxy -c FILE [--log-level debug|info|warning|error]\n"
                 "Routes client connections to the cluster's primary or replicas, as configured in\n"
                 "FILE (YAML: scope, etcd3, proxy.routes).\n");
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The other site (site.peer), read by a thread of its own every PEER_READ_MS, so that an etcd
 * that does not answer never slows the reads of this site's; the snapshot covers both sites. */
#define PEER_READ_MS 250

typedef struct PeerSite {
    Dcs *dcs;               /* NULL: one site */
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    Cluster pending;        /* mu: the thread's newest read, not taken yet */
    bool have_pending;      /* mu */
    int64_t pending_at;     /* mu */
    bool failing;           /* mu: the last read failed */
    char error[256];        /* mu */
    /* the control loop's */
    Cluster last;
    bool have_last;
    int64_t last_ok;
    bool down_logged;
    bool two_logged;        /* both sites claimed a primary (logged once) */
} PeerSite;

static void *peer_main(void *arg)
{
    PeerSite *ps = arg;
    while (!atomic_load(&ps->stop)) {
        Cluster c;
        Err err = {{0}};
        bool ok = ps->dcs->ops->load(ps->dcs, &c, &err);
        pthread_mutex_lock(&ps->mu);
        if (ok) {
            if (ps->have_pending)
                cluster_free(&ps->pending);
            ps->pending = c;
            ps->have_pending = true;
            ps->pending_at = mono_ms();
        } else {
            cluster_free(&c);
            str_copy(ps->error, sizeof(ps->error), err.msg);
        }
        ps->failing = !ok;
        pthread_mutex_unlock(&ps->mu);
        sleep_ms(PEER_READ_MS);
    }
    return NULL;
}

static void peer_start(PeerSite *ps)
{
    pthread_mutex_init(&ps->mu, NULL);
    atomic_init(&ps->stop, false);
    ps->started = pthread_create(&ps->thread, NULL, peer_main, ps) == 0;
    if (!ps->started)
        log_error("site.peer: cannot start the thread that reads the other site; routing by this site only");
}

static void peer_stop(PeerSite *ps)
{
    if (!ps->started)
        return;
    atomic_store(&ps->stop, true);
    pthread_join(ps->thread, NULL);
    if (ps->have_pending)
        cluster_free(&ps->pending);
    pthread_mutex_destroy(&ps->mu);
}

/* Take the thread's newest read of the other site (the control loop's copy ages out after a TTL
 * without one). */
static void peer_read(PeerSite *ps, int ttl_ms)
{
    if (!ps->started)
        return;
    pthread_mutex_lock(&ps->mu);
    if (ps->have_pending) {
        cluster_free(&ps->last);
        ps->last = ps->pending;
        ps->have_pending = false;
        ps->have_last = true;
        ps->last_ok = ps->pending_at;
    }
    bool failing = ps->failing;
    char error[256];
    str_copy(error, sizeof(error), ps->error);
    pthread_mutex_unlock(&ps->mu);
    if (failing && !ps->down_logged)
        log_warn("cannot read the other site from etcd: %s", error);
    else if (!failing && ps->down_logged)
        log_info("the other site's etcd is reachable again");
    ps->down_logged = failing;
    if (ps->have_last && mono_ms() - ps->last_ok > ttl_ms) {
        /* what it said is too old to route by */
        cluster_free(&ps->last);
        cluster_init(&ps->last);
        ps->have_last = false;
    }
}

static ProxySnapshot *build(const Proxy *p, const Cluster *own, bool etcd_ok, bool own_read_ok, PeerSite *ps)
{
    ProxySnapshot *s = proxy_snapshot_build(own, p->pc->max_replica_lag, etcd_ok, true);
    if (!ps->started) {
        proxy_snapshot_set_leaders(s, own, p->pc);
        return s;
    }
    ProxySnapshot *peer = ps->have_last ? proxy_snapshot_build(&ps->last, p->pc->max_replica_lag, true, true) : NULL;
    bool own_standby = own->config.standby.present, peer_standby = ps->have_last && ps->last.config.standby.present;
    bool two = s->primary >= 0 && !own_standby && peer && peer->primary >= 0 && !peer_standby;
    if (two) {
        /* a site that cannot be read now (a lost site: its last read is stale) and the other,
         * promoted over it, says so in its record with a newer epoch: the stale one does not
         * count. Two sites read fresh that both run a primary are left alone, loudly. */
        const char *w = site_record_winner(own, p->cfg->scope, &ps->last, p->cfg->site.peer_scope);
        own_standby = !own_read_ok && strcmp(w, p->cfg->site.peer_scope) == 0;
        peer_standby = ps->down_logged && strcmp(w, p->cfg->scope) == 0;
        two = !own_standby && !peer_standby;
    }
    if (two && !ps->two_logged)
        log_error("both sites have a primary (%s and %s): no writes are routed until one of them is a standby cluster",
                  s->leader, peer->leader);
    ps->two_logged = two;
    return proxy_snapshot_merge(s, own_standby, peer, peer_standby);
}

/* The control loop: read, publish, watch; until a signal. */
static void control_loop(Proxy *p, Dcs *dcs, PeerSite *ps)
{
    Cluster last;
    cluster_init(&last);
    bool have_last = false, down_logged = false;
    int64_t last_ok = 0;
    int ttl_ms = 10000;
    while (!atomic_load(&p->stop)) {
        Cluster c;
        Err err = {{0}};
        bool ok = dcs->ops->load(dcs, &c, &err);
        int64_t now = mono_ms();
        if (ok) {
            cluster_free(&last);
            last = c;
            have_last = true;
            last_ok = now;
            ttl_ms = last.config.ttl * 1000;
            /* an active-active group: the write leader's lease bounds how long a read is trusted */
            for (int i = 0; last.aa && i < last.aa->n_leaders; i++)
                if (last.aa->leaders[i].ttl > 0 && last.aa->leaders[i].ttl * 1000 < ttl_ms)
                    ttl_ms = last.aa->leaders[i].ttl * 1000;
            atomic_store(&p->etcd_last_ok_ms, now);
            if (down_logged)
                log_info("etcd reachable again");
            down_logged = false;
        } else {
            cluster_free(&c);
            if (!down_logged)
                log_warn("cannot read the cluster from etcd: %s", err.msg);
            down_logged = true;
        }
        bool etcd_ok = last_ok > 0 && now - last_ok <= ttl_ms;
        atomic_store(&p->etcd_ok, etcd_ok);
        peer_read(ps, ttl_ms);
        if (have_last && (ok || !etcd_ok || ps->started))
            publish(p, build(p, &last, etcd_ok, ok, ps));
        if (atomic_load(&p->stop))
            break;
        if (!ok) {
            sleep_ms(200);
            continue;
        }
        /* bounded, so a silent etcd (frozen, partitioned) is noticed by the next read; with two
         * sites, the other one's changes are seen by the next read too */
        int wait = ttl_ms / 3 < 1000 ? ttl_ms / 3 : 1000;
        if (ps->started && wait > PEER_READ_MS)
            wait = PEER_READ_MS;
        Err werr = {{0}};
        if (!dcs->ops->watch(dcs, last.revision, wait, &werr) && werr.msg[0])
            sleep_ms(100);
    }
    cluster_free(&last);
}

int cmd_proxy(int argc, char **argv)
{
    const char *path = NULL, *level = NULL;
    int rc0 = cli_parse_daemon_opts(argc, argv, usage, "proxy", &path, &level);
    if (rc0 >= 0)
        return rc0;
    Err err = {{0}};
    Config *cfg = config_load_proxy(path, &err);
    if (!cfg) {
        cli_error("fix the file and run again", "%s", err.msg);
        return EXIT_CONFIG;
    }
    log_set_name("proxy");
    LogLevel lv;
    if (!log_parse_level(level ? level : cfg->log_level, &lv)) {
        cli_error("use debug, info, warning or error", "unknown log level \"%s\"", level);
        config_free(cfg);
        return EXIT_USAGE;
    }
    log_set_level(lv);
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);

    Proxy *p = xcalloc(1, sizeof(*p));
    p->cfg = cfg;
    p->pc = &cfg->proxy;
    p->stats = xcalloc_aligned((size_t)p->pc->n_routes * (size_t)p->pc->workers, sizeof(RouteStats),
                               _Alignof(RouteStats));
    pthread_mutex_init(&p->snap_mu, NULL);
    p->snap = xcalloc(1, sizeof(ProxySnapshot));     /* nothing known yet: hold everything */
    atomic_init(&p->snap->refs, 1);
    p->snap->primary = -1;
    p->snap->version = 1;
    p->snap->primary_gen = 1;
    p->workers = xcalloc((size_t)p->pc->workers, sizeof(ProxyWorker *));
    int rc = EXIT_OK;
    ProxyAdmin *admin = NULL;
    char *prefix = dcs_prefix(cfg->namespace_, cfg->scope);
    Dcs *dcs = dcs_etcd_new(cfg->etcd_hosts, cfg->n_etcd_hosts, prefix, cfg->etcd_username, cfg->etcd_password,
                            1000, &err);
    free(prefix);
    if (!dcs) {
        cli_error("check etcd3.hosts", "%s: %s", path, err.msg);
        rc = EXIT_CONFIG;
        goto out;
    }
    for (int i = 0; i < p->pc->workers; i++) {
        p->workers[i] = proxy_worker_new(p, i, &err);
        if (!p->workers[i]) {
            cli_error("choose free addresses in proxy.routes", "%s: %s", path, err.msg);
            rc = EXIT_CONFIG;
            goto out;
        }
        p->n_workers++;
    }
    if (p->pc->admin_listen && !(admin = proxy_admin_start(p, p->pc->admin_listen, &err))) {
        cli_error("choose a free address in proxy.admin_listen", "%s: %s", path, err.msg);
        rc = EXIT_CONFIG;
        goto out;
    }
    g_proxy = p;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    for (int i = 0; i < p->n_workers; i++) {
        if (!proxy_worker_start(p->workers[i], &err)) {
            cli_error(NULL, "%s", err.msg);
            rc = EXIT_FAILED;
            atomic_store(&p->stop, 1);
            break;
        }
    }
    for (int i = 0; i < p->pc->n_routes; i++)
        log_info("route %s listening on %s -> %s (%s)", p->pc->routes[i].name, p->pc->routes[i].listen,
                 p->pc->routes[i].role == ROUTE_PRIMARY ? "primary" : p->pc->routes[i].role == ROUTE_REPLICA ? "replicas" : "write leader",
                 p->pc->routes[i].postgres ? "postgres" : "tcp");
    PeerSite ps;
    memset(&ps, 0, sizeof(ps));
    cluster_init(&ps.last);
    if (cfg->site.peer_scope && cfg->site.n_peer_etcd_hosts > 0) {
        char *pprefix = dcs_prefix(cfg->site.peer_namespace ? cfg->site.peer_namespace : cfg->namespace_,
                                   cfg->site.peer_scope);
        ps.dcs = dcs_etcd_new(cfg->site.peer_etcd_hosts, cfg->site.n_peer_etcd_hosts, pprefix, cfg->etcd_username,
                              cfg->etcd_password, 1000, &err);
        free(pprefix);
        if (!ps.dcs) {
            log_error("site.peer: %s; routing by this site only", err.msg);
        } else {
            log_info("routing across two sites: %s and %s", cfg->scope, cfg->site.peer_scope);
            peer_start(&ps);
        }
    }
    control_loop(p, dcs, &ps);
    peer_stop(&ps);
    dcs_free(ps.dcs);
    cluster_free(&ps.last);
    log_info("shutting down");
out:
    g_proxy = NULL;
    atomic_store(&p->stop, 1);
    proxy_admin_stop(admin);
    for (int i = 0; i < p->n_workers; i++)
        proxy_worker_stop(p->workers[i]);
    free(p->workers);
    dcs_free(dcs);
    proxy_snapshot_unref(p->snap);
    proxy_cancel_clear();
    pthread_mutex_destroy(&p->snap_mu);
    free(p->stats);
    free(p);
    config_free(cfg);
    return rc;
}
