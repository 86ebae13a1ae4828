/* Cancel routing: sessions register the BackendKeyData their server sent; a CancelRequest
 * naming one goes to that server. An unknown key (an encrypted session, or a session made
 * through another proxy) goes to every member: PostgreSQL ignores a key it did not issue. */
#include "common/common.h"
#include "proxy/proxy_cancel.h"
#include "common/log.h"
#include "proxy/proxy_pg.h"

#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>
#include <fcntl.h>

#define BUCKETS 4096

typedef struct CancelEntry {
    uint32_t pid, key;
    struct sockaddr_storage addr;
    socklen_t len;
    struct CancelEntry *next;
} CancelEntry;

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static CancelEntry *table[BUCKETS];

static unsigned bucket(uint32_t pid, uint32_t key)
{
    return (pid * 2654435761u ^ key) % BUCKETS;
}

void proxy_cancel_register(uint32_t pid, uint32_t key, const struct sockaddr_storage *addr, socklen_t len)
{
    CancelEntry *e = xcalloc(1, sizeof(*e));
    e->pid = pid;
    e->key = key;
    memcpy(&e->addr, addr, len);
    e->len = len;
    pthread_mutex_lock(&table_mu);
    unsigned b = bucket(pid, key);
    e->next = table[b];
    table[b] = e;
    pthread_mutex_unlock(&table_mu);
}

void proxy_cancel_forget(uint32_t pid, uint32_t key)
{
    pthread_mutex_lock(&table_mu);
    for (CancelEntry **pp = &table[bucket(pid, key)]; *pp; pp = &(*pp)->next) {
        if ((*pp)->pid == pid && (*pp)->key == key) {
            CancelEntry *e = *pp;
            *pp = e->next;
            free(e);
            break;
        }
    }
    pthread_mutex_unlock(&table_mu);
}

void proxy_cancel_clear(void)
{
    pthread_mutex_lock(&table_mu);
    for (int b = 0; b < BUCKETS; b++) {
        while (table[b]) {
            CancelEntry *e = table[b];
            table[b] = e->next;
            free(e);
        }
    }
    pthread_mutex_unlock(&table_mu);
}

static bool lookup(uint32_t pid, uint32_t key, struct sockaddr_storage *addr, socklen_t *len)
{
    bool found = false;
    pthread_mutex_lock(&table_mu);
    for (CancelEntry *e = table[bucket(pid, key)]; e; e = e->next) {
        if (e->pid == pid && e->key == key) {
            memcpy(addr, &e->addr, e->len);
            *len = e->len;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&table_mu);
    return found;
}

/* Connect (bounded), send the 16 bytes, wait briefly for the server to close. */
static void send_one(const struct sockaddr_storage *addr, socklen_t len, const unsigned char *pkt)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return;
    if (connect(fd, (const struct sockaddr *)addr, len) != 0 && errno != EINPROGRESS) {
        close(fd);
        return;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (poll(&pfd, 1, 2000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0 &&
        send(fd, pkt, PG_CANCEL_LEN, MSG_NOSIGNAL) == PG_CANCEL_LEN) {
        pfd.events = POLLIN;
        poll(&pfd, 1, 1000);
    }
    close(fd);
}

typedef struct CancelJob {
    unsigned char pkt[PG_CANCEL_LEN];
    struct sockaddr_storage *addrs;
    socklen_t *lens;
    int n;
} CancelJob;

static void *cancel_thread(void *arg)
{
    CancelJob *j = arg;
    for (int i = 0; i < j->n; i++)
        send_one(&j->addrs[i], j->lens[i], j->pkt);
    free(j->addrs);
    free(j->lens);
    free(j);
    return NULL;
}

bool proxy_cancel_route(const unsigned char *pkt, uint32_t pid, uint32_t key, const ProxySnapshot *snap)
{
    CancelJob *j = xcalloc(1, sizeof(*j));
    memcpy(j->pkt, pkt, PG_CANCEL_LEN);
    int cap = snap ? snap->n_backends + 1 : 1;
    j->addrs = xcalloc((size_t)cap, sizeof(*j->addrs));
    j->lens = xcalloc((size_t)cap, sizeof(*j->lens));
    bool known = lookup(pid, key, &j->addrs[0], &j->lens[0]);
    if (known) {
        j->n = 1;
    } else if (snap) {
        for (int i = 0; i < snap->n_backends; i++) {
            memcpy(&j->addrs[j->n], &snap->backends[i].addr, snap->backends[i].addr_len);
            j->lens[j->n++] = snap->backends[i].addr_len;
        }
    }
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, cancel_thread, j) != 0) {
        log_warn("cannot start a thread to forward a cancel request");
        free(j->addrs);
        free(j->lens);
        free(j);
    }
    pthread_attr_destroy(&attr);
    return known;
}
