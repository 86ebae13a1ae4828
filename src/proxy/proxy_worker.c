/* One proxy worker: an edge-triggered epoll loop with its own SO_REUSEPORT listener per route.
 * A connection is HELD until its route has a backend, CONNECTING while the backend socket
 * opens, then OPEN: bytes are copied both ways, nothing else. When a new snapshot arrives the
 * worker first closes every connection whose backend no longer has the role it was chosen
 * for, then acknowledges the snapshot, then routes held connections. */
#include "common/common.h"
#include "proxy/proxy.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "proxy/proxy_cancel.h"
#include "proxy/proxy_pg.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define BUF_SIZE 16384
#define MAX_EVENTS 256
#define RETRY_MS 200            /* between connect attempts of a held connection */

typedef enum HandleKind { H_LISTEN, H_WAKE, H_CLIENT, H_BACKEND } HandleKind;

typedef struct Handle {
    HandleKind kind;
    int fd;
    int route;                  /* listeners */
    struct Conn *conn;          /* client and backend handles */
} Handle;

typedef enum ConnState { CS_HOLD, CS_CONNECTING, CS_OPEN, CS_CLOSED } ConnState;

typedef struct Buf {
    size_t off, len;            /* pending bytes are data[off, len) */
    unsigned char data[BUF_SIZE];
} Buf;

typedef struct Conn {
    Handle client, backend;
    int route;
    ConnState st;
    bool to_primary;            /* routed to the primary (also a replica route's fallback) */
    uint64_t gen;               /* the snapshot's primary_gen when routed to the primary */
    char target[NAME_MAX_LEN];
    struct sockaddr_storage taddr;
    socklen_t talen;
    int64_t hold_deadline, connect_deadline, retry_at;
    uint64_t tried_version;     /* snapshot version tried_mask refers to */
    uint64_t tried_mask;        /* replicas that refused this connection */
    bool first_seen;            /* postgres routes: the first packet was classified */
    bool client_eof, backend_eof, client_shut, backend_shut;
    /* readiness as last reported by epoll or learnt from a short read/write: a socket is only
     * read or written when it may make progress, which saves the EAGAIN round trips */
    bool c_rd, c_wr, b_rd, b_wr;
    /* the peer's close was reported (EPOLLRDHUP/HUP): edge-triggered epoll reports it once, so
     * a short read does not mean drained then, the end of stream is still to be read */
    bool c_hup, b_hup;
    /* EPOLLOUT is in a socket's interest set only while bytes wait for it (or a connect is in
     * progress): left on, every ACK that frees send space would wake the loop for nothing */
    bool c_out, b_out;
    PgKeyScan ks;
    bool ks_on, key_registered;
    Buf up, down;               /* client -> backend, backend -> client */
    struct Conn *prev, *next;   /* the worker's pending (HOLD, CONNECTING) or open list */
} Conn;

typedef struct ConnList {
    Conn *head;
} ConnList;

struct ProxyWorker {
    Proxy *p;
    int index;
    pthread_t thread;
    bool started;
    int ep;
    Handle wake;
    Handle *listeners;
    int n_listeners;
    ProxySnapshot *snap;
    atomic_uint_fast64_t acked;
    ConnList pending, open, dead;
    unsigned rr;                /* round robin over replicas */
};

static void list_add(ConnList *l, Conn *c)
{
    c->prev = NULL;
    c->next = l->head;
    if (l->head)
        l->head->prev = c;
    l->head = c;
}

static void list_del(ConnList *l, Conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static const ProxyRoute *route_of(const ProxyWorker *w, const Conn *c)
{
    return &w->p->pc->routes[c->route];
}

static RouteStats *stats_of(const ProxyWorker *w, const Conn *c)
{
    return &w->p->stats[w->index * w->p->pc->n_routes + c->route];
}

static void set_nodelay_keepalive(int fd, int user_timeout_s)
{
    int one = 1, idle = 10, intvl = 3, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    if (user_timeout_s > 0) {
        unsigned ms = (unsigned)user_timeout_s * 1000u;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
    }
}

/* ---- connection life cycle ---- */

static void set_state(ProxyWorker *w, Conn *c, ConnState st)
{
    RouteStats *rs = stats_of(w, c);
    bool was_pending = c->st == CS_HOLD || c->st == CS_CONNECTING;
    bool is_pending = st == CS_HOLD || st == CS_CONNECTING;
    if (c->st == CS_OPEN)
        atomic_fetch_sub_explicit(&rs->active, 1, memory_order_relaxed);
    if (st == CS_OPEN)
        atomic_fetch_add_explicit(&rs->active, 1, memory_order_relaxed);
    if (was_pending && !is_pending)
        atomic_fetch_sub_explicit(&rs->held, 1, memory_order_relaxed);
    if (!was_pending && is_pending)
        atomic_fetch_add_explicit(&rs->held, 1, memory_order_relaxed);
    if (was_pending != is_pending || st == CS_CLOSED) {
        list_del(was_pending ? &w->pending : &w->open, c);
        list_add(st == CS_CLOSED ? &w->dead : is_pending ? &w->pending : &w->open, c);
    }
    c->st = st;
}

static void close_backend(Conn *c)
{
    if (c->backend.fd >= 0)
        close(c->backend.fd);
    c->backend.fd = -1;
}

static void close_conn(ProxyWorker *w, Conn *c)
{
    if (c->st == CS_CLOSED)
        return;
    if (c->key_registered)
        proxy_cancel_forget(c->ks.pid, c->ks.key);
    close_backend(c);
    if (c->client.fd >= 0)
        close(c->client.fd);
    c->client.fd = -1;
    set_state(w, c, CS_CLOSED);  /* freed after the current batch of events */
}

/* A held connection waited connect_wait in vain: tell a PostgreSQL client why. Its bytes so
 * far were read, so closing does not turn into a reset that could eat the message. */
static void fail_hold(ProxyWorker *w, Conn *c)
{
    const ProxyRoute *r = route_of(w, c);
    atomic_fetch_add_explicit(&stats_of(w, c)->hold_timeouts, 1, memory_order_relaxed);
    if (r->postgres) {
        char msg[200];
        if (!w->snap->etcd_ok)
            str_fmt(msg, sizeof(msg), "pgvigil proxy: no primary available (etcd unreachable), waited %d s",
                    w->p->pc->connect_wait);
        else
            str_fmt(msg, sizeof(msg), "pgvigil proxy: no %s available for route %s, waited %d s",
                    r->role == ROUTE_PRIMARY ? "primary" : r->role == ROUTE_REPLICA ? "replica" : "write leader",
                    r->name, w->p->pc->connect_wait);
        unsigned char buf[300];
        size_t n = pg_error_response(buf, sizeof(buf), msg);
        if (n > 0 && send(c->client.fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
            shutdown(c->client.fd, SHUT_WR);
    }
    close_conn(w, c);
}

/* One recv from fd into b, unless b is full, the side is at EOF or not readable. Returns
 * false on a socket error; *got is the byte count (0 when nothing was read). */
static bool recv_into(int fd, Buf *b, bool *readable, bool peer_closed, bool *eof, size_t *got,
                      bool *progress)
{
    *got = 0;
    if (*eof)
        return true;
    if (b->off > 0 && b->len == BUF_SIZE) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len == BUF_SIZE || !*readable)
        return true;
    size_t want = BUF_SIZE - b->len;
    ssize_t n = recv(fd, b->data + b->len, want, 0);
    if (n > 0) {
        if ((size_t)n < want && !peer_closed)
            *readable = false;  /* drained: the next data raises a new edge */
        *got = (size_t)n;
        *progress = true;
        return true;
    }
    if (n == 0) {
        *eof = true;
        *progress = true;
        return true;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        *readable = false;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

/* Read what the client sent into c->up (held or open connections). */
static bool client_read(ProxyWorker *w, Conn *c, bool *progress)
{
    size_t n;
    if (!recv_into(c->client.fd, &c->up, &c->c_rd, c->c_hup, &c->client_eof, &n, progress))
        return false;
    if (n > 0) {
        if (c->ks_on && !c->ks.done && !c->ks.client_done)
            pg_keyscan_client(&c->ks, c->up.data + c->up.len, n);
        c->up.len += n;
        atomic_fetch_add_explicit(&stats_of(w, c)->bytes_in, (uint64_t)n, memory_order_relaxed);
    }
    return true;
}

static bool backend_read(ProxyWorker *w, Conn *c, bool *progress)
{
    size_t n;
    if (!recv_into(c->backend.fd, &c->down, &c->b_rd, c->b_hup, &c->backend_eof, &n, progress))
        return false;
    if (n > 0) {
        if (c->ks_on && !c->ks.done) {
            pg_keyscan_server(&c->ks, c->down.data + c->down.len, n);
            if (c->ks.found && !c->key_registered) {
                proxy_cancel_register(c->ks.pid, c->ks.key, &c->taddr, c->talen);
                c->key_registered = true;
            }
        }
        c->down.len += n;
        atomic_fetch_add_explicit(&stats_of(w, c)->bytes_out, (uint64_t)n, memory_order_relaxed);
    }
    return true;
}

static bool flush(int fd, Buf *b, bool *writable, bool *progress)
{
    if (b->off == b->len || !*writable)
        return true;
    size_t want = b->len - b->off;
    ssize_t n = send(fd, b->data + b->off, want, MSG_NOSIGNAL);
    if (n > 0) {
        if ((size_t)n < want)
            *writable = false;  /* send buffer full: EPOLLOUT follows when it drains */
        b->off += (size_t)n;
        if (b->off == b->len)
            b->off = b->len = 0;
        *progress = true;
        return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        *writable = false;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

static void want_out(ProxyWorker *w, Handle *h, bool *armed, bool on)
{
    if (*armed == on || h->fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (on ? EPOLLOUT : 0), .data.ptr = h};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, h->fd, &ev) == 0)
        *armed = on;
}

/* Move bytes both ways until neither side can make progress (edge-triggered: every socket
 * must be left at EAGAIN or with a full buffer whose other end is not writable). */
static void pump(ProxyWorker *w, Conn *c)
{
    for (;;) {
        bool progress = false;
        if (!flush(c->backend.fd, &c->up, &c->b_wr, &progress) || !flush(c->client.fd, &c->down, &c->c_wr, &progress) ||
            !client_read(w, c, &progress) || !backend_read(w, c, &progress)) {
            close_conn(w, c);
            return;
        }
        if (!progress)
            break;
    }
    if (c->client_eof && c->up.off == c->up.len && !c->backend_shut) {
        shutdown(c->backend.fd, SHUT_WR);
        c->backend_shut = true;
    }
    if (c->backend_eof && c->down.off == c->down.len && !c->client_shut) {
        shutdown(c->client.fd, SHUT_WR);
        c->client_shut = true;
    }
    if (c->client_shut && c->backend_shut) {
        close_conn(w, c);
        return;
    }
    want_out(w, &c->backend, &c->b_out, c->up.off < c->up.len);
    want_out(w, &c->client, &c->c_out, c->down.off < c->down.len);
}

/* ---- routing ---- */

static const ProxyBackend *choose(ProxyWorker *w, Conn *c)
{
    const ProxySnapshot *s = w->snap;
    const ProxyRoute *r = route_of(w, c);
    if (c->tried_version != s->version) {
        c->tried_version = s->version;
        c->tried_mask = 0;
    }
    c->to_primary = false;
    if (r->role == ROUTE_WRITE_LEADER) {
        int i = s->route_leader ? s->route_leader[c->route] : -1;
        if (i < 0)
            return NULL;
        c->to_primary = true;
        c->gen = s->route_gen[c->route];
        return &s->backends[i];
    }
    if (r->role == ROUTE_REPLICA) {
        int n = s->n_backends;
        for (int k = 0; k < n; k++) {
            int i = (int)((w->rr + (unsigned)k) % (unsigned)n);
            if (s->backends[i].eligible && !(i < 64 && (c->tried_mask >> i) & 1)) {
                w->rr = (unsigned)i + 1;
                return &s->backends[i];
            }
        }
        if (!r->fallback_primary)
            return NULL;
    }
    if (s->primary < 0)
        return NULL;
    c->to_primary = true;
    c->gen = s->primary_gen;
    return &s->backends[s->primary];
}

static void connect_failed(ProxyWorker *w, Conn *c, int64_t now)
{
    atomic_fetch_add_explicit(&stats_of(w, c)->connect_failures, 1, memory_order_relaxed);
    int i = proxy_snapshot_find(w->snap, c->target);
    if (i >= 0 && i < 64 && !c->to_primary)
        c->tried_mask |= 1ull << i;
    close_backend(c);
    c->retry_at = c->to_primary || route_of(w, c)->role == ROUTE_PRIMARY ? now + RETRY_MS : now;
    set_state(w, c, CS_HOLD);
}

static void start_connect(ProxyWorker *w, Conn *c, const ProxyBackend *b, int64_t now)
{
    const ProxyRoute *r = route_of(w, c);
    str_copy(c->target, sizeof(c->target), b->name);
    memcpy(&c->taddr, &b->addr, b->addr_len);
    c->talen = b->addr_len;
    if (r->target_port > 0) {
        if (c->taddr.ss_family == AF_INET)
            ((struct sockaddr_in *)&c->taddr)->sin_port = htons((uint16_t)r->target_port);
        else
            ((struct sockaddr_in6 *)&c->taddr)->sin6_port = htons((uint16_t)r->target_port);
    }
    int fd = socket(c->taddr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        connect_failed(w, c, now);
        return;
    }
    set_nodelay_keepalive(fd, w->p->pc->backend_user_timeout);
    c->backend.fd = fd;
    c->b_rd = c->b_wr = true;
    c->b_out = true;
    c->backend_eof = c->backend_shut = c->b_hup = false;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &c->backend};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        connect_failed(w, c, now);
        return;
    }
    int rc = connect(fd, (struct sockaddr *)&c->taddr, c->talen);
    if (rc != 0 && errno != EINPROGRESS) {
        connect_failed(w, c, now);
        return;
    }
    c->connect_deadline = now + (int64_t)w->p->pc->connect_timeout * 1000;
    set_state(w, c, CS_CONNECTING);
    /* completion (or failure) arrives as EPOLLOUT/EPOLLERR on the backend socket */
}

/* Try to send a held connection on. */
static void dispatch(ProxyWorker *w, Conn *c, int64_t now)
{
    if (c->st != CS_HOLD)
        return;
    const ProxyRoute *r = route_of(w, c);
    if (r->postgres && !c->first_seen) {
        uint32_t pid, key;
        switch (pg_first_packet(c->up.data + c->up.off, c->up.len - c->up.off, &pid, &key)) {
        case PGF_NEED_MORE:
            if (c->client_eof)
                close_conn(w, c);
            else if (now >= c->hold_deadline)
                fail_hold(w, c);
            return;
        case PGF_CANCEL:
            atomic_fetch_add_explicit(&stats_of(w, c)->cancels, 1, memory_order_relaxed);
            proxy_cancel_route(c->up.data + c->up.off, pid, key, w->snap);
            close_conn(w, c);
            return;
        case PGF_OTHER:
            c->first_seen = true;
            break;
        }
    }
    if (now < c->retry_at)
        return;
    const ProxyBackend *b = choose(w, c);
    if (!b) {
        if (now >= c->hold_deadline)
            fail_hold(w, c);
        return;
    }
    start_connect(w, c, b, now);
}

/* Is an open (or opening) connection still going where its route says? */
static bool still_valid(const ProxyWorker *w, const Conn *c)
{
    const ProxySnapshot *s = w->snap;
    if (c->to_primary && route_of(w, c)->role == ROUTE_WRITE_LEADER)
        return s->route_holder && s->route_holder[c->route] >= 0 && c->gen == s->route_gen[c->route];
    if (c->to_primary)
        return s->primary >= 0 && c->gen == s->primary_gen;
    int i = proxy_snapshot_find(s, c->target);
    return i >= 0 && s->backends[i].replica;
}

static void apply_snapshot(ProxyWorker *w)
{
    ProxySnapshot *s = proxy_current(w->p);
    proxy_snapshot_unref(w->snap);
    w->snap = s;
    for (Conn *c = w->open.head, *next; c; c = next) {
        next = c->next;
        if (!still_valid(w, c)) {
            atomic_fetch_add_explicit(&stats_of(w, c)->closed_on_change, 1, memory_order_relaxed);
            close_conn(w, c);
        }
    }
    for (Conn *c = w->pending.head; c; c = c->next) {
        if (c->st == CS_CONNECTING && !still_valid(w, c)) {
            /* nothing was sent yet: route it again */
            close_backend(c);
            c->st = CS_HOLD;
        }
        /* a new snapshot may name another target: a held connection tries it at once */
        if (c->st == CS_HOLD)
            c->retry_at = 0;
    }
    atomic_store_explicit(&w->acked, s->version, memory_order_release);
    int64_t now = mono_ms();
    for (Conn *c = w->pending.head, *next; c; c = next) {
        next = c->next;
        dispatch(w, c, now);
    }
}

/* ---- events ---- */

static void accept_all(ProxyWorker *w, Handle *l)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                log_warn("cannot accept on route %s: %s", w->p->pc->routes[l->route].name, strerror(errno));
            return;
        }
        /* TCP_NODELAY and keepalive come from the listening socket (Linux copies them) */
        Conn *c = xmalloc(sizeof(*c));
        memset(c, 0, offsetof(Conn, up));
        c->up.off = c->up.len = c->down.off = c->down.len = 0;
        c->client = (Handle){.kind = H_CLIENT, .fd = fd, .conn = c};
        c->backend = (Handle){.kind = H_BACKEND, .fd = -1, .conn = c};
        c->route = l->route;
        c->st = CS_HOLD;
        c->c_rd = c->c_wr = true;
        c->ks_on = w->p->pc->routes[l->route].postgres;
        int64_t now = mono_ms();
        c->hold_deadline = now + (int64_t)w->p->pc->connect_wait * 1000;
        list_add(&w->pending, c);
        RouteStats *rs = stats_of(w, c);
        atomic_fetch_add_explicit(&rs->accepted, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&rs->held, 1, memory_order_relaxed);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = &c->client};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close_conn(w, c);
            continue;
        }
        if (!route_of(w, c)->postgres)
            dispatch(w, c, now);
        /* postgres routes wait for the first packet (EPOLLIN follows at once if it is there) */
    }
}

static void on_conn_event(ProxyWorker *w, Handle *h, uint32_t events)
{
    Conn *c = h->conn;
    int64_t now = mono_ms();
    bool rd = events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    bool wr = events & (EPOLLOUT | EPOLLHUP | EPOLLERR);
    bool hup = events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    if (h->kind == H_CLIENT) {
        c->c_rd |= rd;
        c->c_wr |= wr;
        c->c_hup |= hup;
    } else {
        c->b_rd |= rd;
        c->b_wr |= wr;
        c->b_hup |= hup;
    }
    switch (c->st) {
    case CS_CLOSED:
        return;
    case CS_HOLD:
        if (h->kind == H_CLIENT) {
            bool progress;
            do {
                progress = false;
                if (!client_read(w, c, &progress)) {
                    close_conn(w, c);
                    return;
                }
            } while (progress && !c->client_eof && c->up.len < BUF_SIZE);
            if (c->client_eof && !(route_of(w, c)->postgres && !c->first_seen &&
                                   pg_first_packet(c->up.data, c->up.len, &(uint32_t){0}, &(uint32_t){0}) == PGF_CANCEL)) {
                close_conn(w, c);   /* the client gave up waiting */
                return;
            }
            dispatch(w, c, now);
        }
        return;
    case CS_CONNECTING:
        if (h->kind == H_BACKEND) {
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (getsockopt(c->backend.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
                connect_failed(w, c, now);
                return;
            }
            if (!(events & EPOLLOUT))
                return;
            set_state(w, c, CS_OPEN);
            pump(w, c);
        } else {
            bool progress = false;
            if (!client_read(w, c, &progress))
                close_conn(w, c);
        }
        return;
    case CS_OPEN:
        pump(w, c);
        return;
    }
}

/* Deadlines and retries of held and connecting connections. */
static void service_pending(ProxyWorker *w)
{
    int64_t now = mono_ms();
    for (Conn *c = w->pending.head, *next; c; c = next) {
        next = c->next;
        if (c->st == CS_CONNECTING && now >= c->connect_deadline)
            connect_failed(w, c, now);
        if (c->st == CS_HOLD)
            dispatch(w, c, now);
    }
}

static void free_dead(ProxyWorker *w)
{
    while (w->dead.head) {
        Conn *c = w->dead.head;
        list_del(&w->dead, c);
        free(c);
    }
}

static void *worker_main(void *arg)
{
    ProxyWorker *w = arg;
    struct epoll_event evs[MAX_EVENTS];
    char name[16];
    str_fmt(name, sizeof(name), "proxy-w%d", w->index);
    pthread_setname_np(pthread_self(), name);
    while (!atomic_load(&w->p->stop)) {
        int timeout = w->pending.head ? 50 : 1000;
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            Handle *h = evs[i].data.ptr;
            switch (h->kind) {
            case H_LISTEN:
                accept_all(w, h);
                break;
            case H_WAKE: {
                uint64_t v;
                if (read(w->wake.fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    log_warn("eventfd: %s", strerror(errno));
                apply_snapshot(w);
                break;
            }
            case H_CLIENT:
            case H_BACKEND:
                on_conn_event(w, h, evs[i].events);
                break;
            }
        }
        if (w->pending.head)
            service_pending(w);
        free_dead(w);
    }
    return NULL;
}

/* ---- setup ---- */

static int listen_on(const char *addr, Err *err)
{
    char *host = NULL;
    int port;
    if (!config_split_hostport(addr, &host, &port, err))
        return -1;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[16];
    str_fmt(ps, sizeof(ps), "%d", port);
    int rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, ps, &hints, &res);
    free(host);
    if (rc != 0) {
        err_set(err, "cannot resolve %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        set_nodelay_keepalive(fd, 0);   /* inherited by every accepted socket */
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        err_set(err, "cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

ProxyWorker *proxy_worker_new(Proxy *p, int index, Err *err)
{
    ProxyWorker *w = xcalloc(1, sizeof(*w));
    w->p = p;
    w->index = index;
    w->wake = (Handle){.kind = H_WAKE, .fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->listeners = xcalloc((size_t)p->pc->n_routes, sizeof(Handle));
    if (w->ep < 0 || w->wake.fd < 0) {
        err_set(err, "proxy: cannot create an event loop: %s", strerror(errno));
        proxy_worker_stop(w);
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->wake};
    epoll_ctl(w->ep, EPOLL_CTL_ADD, w->wake.fd, &ev);
    for (int i = 0; i < p->pc->n_routes; i++) {
        Handle *l = &w->listeners[i];
        *l = (Handle){.kind = H_LISTEN, .route = i};
        l->fd = listen_on(p->pc->routes[i].listen, err);
        if (l->fd < 0) {
            err_prefix(err, "proxy.routes[%d] (%s)", i, p->pc->routes[i].name);
            proxy_worker_stop(w);
            return NULL;
        }
        w->n_listeners++;
        /* level-triggered: a backlog left by a failed accept is offered again */
        struct epoll_event lev = {.events = EPOLLIN, .data.ptr = l};
        epoll_ctl(w->ep, EPOLL_CTL_ADD, l->fd, &lev);
    }
    w->snap = proxy_current(p);
    atomic_init(&w->acked, w->snap->version);
    return w;
}

bool proxy_worker_start(ProxyWorker *w, Err *err)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        err_set(err, "proxy: cannot start worker thread %d", w->index);
        return false;
    }
    w->started = true;
    return true;
}

void proxy_worker_notify(ProxyWorker *w)
{
    uint64_t one = 1;
    if (write(w->wake.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("cannot wake worker %d: %s", w->index, strerror(errno));
}

uint64_t proxy_worker_acked(ProxyWorker *w)
{
    return atomic_load_explicit(&w->acked, memory_order_acquire);
}

void proxy_worker_stop(ProxyWorker *w)
{
    if (!w)
        return;
    if (w->started) {
        proxy_worker_notify(w);
        pthread_join(w->thread, NULL);
    }
    while (w->pending.head)
        close_conn(w, w->pending.head);
    while (w->open.head)
        close_conn(w, w->open.head);
    free_dead(w);
    for (int i = 0; i < w->n_listeners; i++)
        close(w->listeners[i].fd);
    free(w->listeners);
    if (w->wake.fd >= 0)
        close(w->wake.fd);
    if (w->ep >= 0)
        close(w->ep);
    proxy_snapshot_unref(w->snap);
    free(w);
}
