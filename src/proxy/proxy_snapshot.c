/* Route snapshots: who may take writes and which replicas may take reads, from one etcd read.
 * The primary is the member named by the leader key whose own record says it runs as primary;
 * a key alone (promotion still running) or a record alone (old primary) is not enough. */
#include "common/common.h"
#include "proxy/proxy.h"

#include <netdb.h>
#include <arpa/inet.h>

bool proxy_parse_conn_url(const char *url, char *host, size_t hsz, int *port)
{
    const char *p = strstr(url, "://");
    if (!p)
        return false;
    p += 3;
    const char *at = strchr(p, '@'), *slash = strchr(p, '/');
    if (at && (!slash || at < slash))
        p = at + 1;
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    char hostport[300];
    if (n == 0 || n >= sizeof(hostport))
        return false;
    memcpy(hostport, p, n);
    hostport[n] = '\0';
    char *h = NULL;
    Err err;
    if (strrchr(hostport, ':') == NULL || (hostport[0] == '[' && !strstr(hostport, "]:"))) {
        /* no port: PostgreSQL's default */
        const char *b = hostport[0] == '[' ? hostport + 1 : hostport;
        size_t bl = strlen(b) - (hostport[0] == '[' ? 1 : 0);
        if (bl == 0 || bl >= hsz)
            return false;
        memcpy(host, b, bl);
        host[bl] = '\0';
        *port = 5432;
        return true;
    }
    if (!config_split_hostport(hostport, &h, port, &err))
        return false;
    bool ok = str_copy(host, hsz, h);
    free(h);
    return ok;
}

static void resolve(ProxyBackend *b, bool allow_dns)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = allow_dns ? 0 : AI_NUMERICHOST;
    char port[16];
    str_fmt(port, sizeof(port), "%d", b->port);
    if (getaddrinfo(b->host, port, &hints, &res) != 0 || !res)
        return;
    if (res->ai_addrlen <= sizeof(b->addr)) {
        memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
        b->addr_len = res->ai_addrlen;
    }
    freeaddrinfo(res);
}

static bool add_backend(ProxySnapshot *s, const char *name, const char *conn_url, bool allow_dns)
{
    ProxyBackend *b = &s->backends[s->n_backends];
    memset(b, 0, sizeof(*b));
    if (!proxy_parse_conn_url(conn_url, b->host, sizeof(b->host), &b->port) ||
        !str_copy(b->name, sizeof(b->name), name))
        return false;
    resolve(b, allow_dns);
    if (b->addr_len == 0)
        return false;
    b->lag = -1;
    s->n_backends++;
    return true;
}

/* An active-active group's nodes: each one that can take writes serves replica routes too
 * (every node of the group is readable); a leader without a node record is reachable only as
 * the leader. */
static void add_group_nodes(ProxySnapshot *s, const Cluster *c, bool allow_dns)
{
    const AaGroupView *v = c->aa;
    if (!v)
        return;
    s->backends = xrealloc(s->backends, ((size_t)s->n_backends + (size_t)v->n_nodes + (size_t)v->n_leaders + 1) *
                                            sizeof(ProxyBackend));
    for (int i = 0; i < v->n_nodes; i++) {
        const AaNodeRec *n = &v->nodes[i];
        if (proxy_snapshot_find(s, n->name) >= 0 || !add_backend(s, n->name, n->conn_url, allow_dns))
            continue;
        ProxyBackend *b = &s->backends[s->n_backends - 1];
        /* (a drained node gets no new sessions; its open ones finish) */
        b->replica = n->writable && s->etcd_ok;
        b->eligible = b->replica && !n->drained;
    }
    for (int i = 0; i < v->n_leaders; i++)
        if (proxy_snapshot_find(s, v->leaders[i].node) < 0)
            add_backend(s, v->leaders[i].node, v->leaders[i].conn_url, allow_dns);
}

void proxy_snapshot_set_leaders(ProxySnapshot *s, const Cluster *c, const ProxyConfig *pc)
{
    bool any = false;
    for (int r = 0; r < pc->n_routes; r++)
        any = any || pc->routes[r].role == ROUTE_WRITE_LEADER;
    if (!any)
        return;
    s->n_routes = pc->n_routes;
    s->route_leader = xcalloc((size_t)pc->n_routes, sizeof(int));
    s->route_holder = xcalloc((size_t)pc->n_routes, sizeof(int));
    s->route_gen = xcalloc((size_t)pc->n_routes, sizeof(uint64_t));
    for (int r = 0; r < pc->n_routes; r++) {
        s->route_leader[r] = s->route_holder[r] = -1;
        if (pc->routes[r].role != ROUTE_WRITE_LEADER || !s->etcd_ok)
            continue;
        const AaLeaderRec *l = NULL;
        if (pc->routes[r].location)
            l = aa_group_leader(c->aa, pc->routes[r].location);
        if (!l)
            l = aa_group_leader(c->aa, "");
        if (!l)
            continue;
        s->route_holder[r] = proxy_snapshot_find(s, l->node);
        if (!l->handover_to[0])
            s->route_leader[r] = s->route_holder[r];
    }
}

ProxySnapshot *proxy_snapshot_clone(const ProxySnapshot *s)
{
    ProxySnapshot *n = xcalloc(1, sizeof(*n));
    *n = *s;
    atomic_init(&n->refs, 1);
    n->backends = xcalloc((size_t)s->n_backends + 1, sizeof(ProxyBackend));
    if (s->n_backends)
        memcpy(n->backends, s->backends, (size_t)s->n_backends * sizeof(ProxyBackend));
    if (s->route_leader) {
        n->route_leader = xcalloc((size_t)s->n_routes, sizeof(int));
        n->route_holder = xcalloc((size_t)s->n_routes, sizeof(int));
        n->route_gen = xcalloc((size_t)s->n_routes, sizeof(uint64_t));
        memcpy(n->route_leader, s->route_leader, (size_t)s->n_routes * sizeof(int));
        memcpy(n->route_holder, s->route_holder, (size_t)s->n_routes * sizeof(int));
        memcpy(n->route_gen, s->route_gen, (size_t)s->n_routes * sizeof(uint64_t));
    }
    return n;
}

ProxySnapshot *proxy_snapshot_build(const Cluster *c, int64_t max_lag, bool etcd_ok, bool allow_dns)
{
    ProxySnapshot *s = xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->primary = -1;
    s->etcd_ok = etcd_ok;
    str_copy(s->leader, sizeof(s->leader), c->leader);
    s->backends = xcalloc((size_t)c->n_members + 1, sizeof(ProxyBackend));
    const Member *lm = cluster_member(c, c->leader);
    Lsn leader_pos = c->status_optime;
    if (lm && lm->xlog_location > leader_pos)
        leader_pos = lm->xlog_location;
    for (int i = 0; i < c->n_members; i++) {
        const Member *m = &c->members[i];
        ProxyBackend *b = &s->backends[s->n_backends];
        memset(b, 0, sizeof(*b));
        if (!proxy_parse_conn_url(m->conn_url, b->host, sizeof(b->host), &b->port))
            continue;
        str_copy(b->name, sizeof(b->name), m->name);
        resolve(b, allow_dns);
        if (b->addr_len == 0)
            continue;
        bool running = strcmp(m->state, "running") == 0;
        bool leader = c->leader[0] && strcmp(m->name, c->leader) == 0;
        b->is_primary = etcd_ok && leader && running && strcmp(m->role, "primary") == 0;
        /* a standby cluster's leader serves reads like a replica (it is one, of another site) */
        b->replica = running && ((!leader && strcmp(m->role, "replica") == 0) ||
                                 (leader && strcmp(m->role, "standby_leader") == 0));
        b->lag = -1;
        if (b->replica && leader_pos)
            b->lag = leader_pos > m->xlog_location ? (int64_t)(leader_pos - m->xlog_location) : 0;
        b->eligible = b->replica && strcmp(m->replication_state, "streaming") == 0 && !m->tags.noloadbalance &&
                      (b->lag < 0 || b->lag <= max_lag);
        if (b->is_primary)
            s->primary = s->n_backends;
        s->n_backends++;
    }
    add_group_nodes(s, c, allow_dns);
    return s;
}

ProxySnapshot *proxy_snapshot_merge(ProxySnapshot *own, bool own_standby, ProxySnapshot *peer, bool peer_standby)
{
    if (!peer)
        return own;
    bool own_writes = own->primary >= 0 && !own_standby;
    bool peer_writes = peer->primary >= 0 && !peer_standby;
    bool both = own_writes && peer_writes;
    ProxySnapshot *m = xcalloc(1, sizeof(*m));
    atomic_init(&m->refs, 1);
    m->primary = -1;
    m->etcd_ok = own->etcd_ok || peer->etcd_ok;
    m->backends = xcalloc((size_t)(own->n_backends + peer->n_backends) + 1, sizeof(ProxyBackend));
    str_copy(m->leader, sizeof(m->leader), own_writes && !both ? own->leader : peer_writes && !both ? peer->leader : "");
    for (int side = 0; side < 2; side++) {
        const ProxySnapshot *s = side == 0 ? own : peer;
        bool writes = (side == 0 ? own_writes : peer_writes) && !both;
        /* the reads of the site that is not primary (or of both, when neither is) stay off */
        bool reads = side == 0 ? (own_writes || !peer_writes) && !own_standby : (peer_writes || !own_writes) && !peer_standby;
        for (int i = 0; i < s->n_backends; i++) {
            ProxyBackend *b = &m->backends[m->n_backends];
            *b = s->backends[i];
            b->is_primary = b->is_primary && writes;
            b->eligible = b->eligible && reads;
            if (b->is_primary)
                m->primary = m->n_backends;
            m->n_backends++;
        }
    }
    proxy_snapshot_unref(own);
    proxy_snapshot_unref(peer);
    return m;
}

bool proxy_snapshot_same(const ProxySnapshot *a, const ProxySnapshot *b)
{
    if (!a || !b || a->n_backends != b->n_backends || a->etcd_ok != b->etcd_ok || strcmp(a->leader, b->leader) != 0)
        return false;
    if ((a->primary < 0) != (b->primary < 0) || a->n_routes != b->n_routes)
        return false;
    for (int r = 0; r < a->n_routes; r++)
        if (a->route_leader[r] != b->route_leader[r] || a->route_holder[r] != b->route_holder[r])
            return false;
    for (int i = 0; i < a->n_backends; i++) {
        const ProxyBackend *x = &a->backends[i], *y = &b->backends[i];
        if (strcmp(x->name, y->name) != 0 || x->port != y->port || strcmp(x->host, y->host) != 0 ||
            x->is_primary != y->is_primary || x->replica != y->replica || x->eligible != y->eligible ||
            x->addr_len != y->addr_len || memcmp(&x->addr, &y->addr, x->addr_len) != 0)
            return false;
    }
    return true;
}

void proxy_snapshot_ref(ProxySnapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void proxy_snapshot_unref(ProxySnapshot *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(s->backends);
    free(s->route_leader);
    free(s->route_holder);
    free(s->route_gen);
    free(s);
}

int proxy_snapshot_find(const ProxySnapshot *s, const char *name)
{
    for (int i = 0; i < s->n_backends; i++)
        if (strcmp(s->backends[i].name, name) == 0)
            return i;
    return -1;
}
