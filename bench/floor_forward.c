/* The least a user-space TCP forwarder can do, as a yardstick for bench/proxy: each worker
 * thread has its own SO_REUSEPORT listener and edge-triggered epoll loop, and each ready socket
 * costs one recv into a fixed buffer and one send to its peer. No routing, no parsing, no
 * statistics, no partial-write handling beyond a blocking retry: not a proxy, only the floor
 * of what one costs on this machine (two thread wake-ups and two TCP hops per round trip).
 *   usage: floor_forward LISTEN_PORT TARGET_PORT WORKERS   (both on 127.0.0.1) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUF = 16384, MAX_WORKERS = 64 };

typedef struct End End;
struct End {
    int fd;
    End *peer;
    End *next_dead;  /* freed after the epoll batch: a later event may still name it */
};

static int listen_port, target_port;

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* send all of buf; the floor does not queue, it waits for room (never seen with small messages) */
static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 1000);
        } else {
            return -1;
        }
    }
    return 0;
}

static _Thread_local End *dead;

static void close_pair(End *e)
{
    End *p = e->peer, *first = e < p ? e : p;  /* both ends live in one allocation */
    if (e->fd < 0)
        return;
    close(e->fd);
    close(p->fd);
    e->fd = p->fd = -1;
    first->next_dead = dead;
    dead = first;
}

static void accept_one(int ep, int lfd)
{
    for (;;) {
        int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (c < 0)
            return;
        int b = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in t = loopback(target_port);
        if (b < 0 || connect(b, (struct sockaddr *)&t, sizeof(t)) != 0) {
            perror("floor_forward: connect");
            close(c);
            if (b >= 0)
                close(b);
            continue;
        }
        fcntl(b, F_SETFL, O_NONBLOCK);
        nodelay(c);
        nodelay(b);
        End *pair = calloc(2, sizeof(End));
        if (!pair) {
            close(c);
            close(b);
            continue;
        }
        pair[0] = (End){.fd = c, .peer = &pair[1]};
        pair[1] = (End){.fd = b, .peer = &pair[0]};
        for (int i = 0; i < 2; i++) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = &pair[i]};
            epoll_ctl(ep, EPOLL_CTL_ADD, pair[i].fd, &ev);
        }
    }
}

static void *worker(void *arg)
{
    (void)arg;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    struct sockaddr_in a = loopback(listen_port);
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 128) != 0) {
        perror("floor_forward: listen");
        exit(1);
    }
    int ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    static _Thread_local char buf[BUF];
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            End *e = evs[i].data.ptr;
            if (!e) {
                accept_one(ep, lfd);
                continue;
            }
            if (e->fd < 0)
                continue;
            for (;;) {  /* edge-triggered: read until EAGAIN */
                ssize_t got = recv(e->fd, buf, BUF, 0);
                if (got > 0) {
                    if (send_all(e->peer->fd, buf, (size_t)got) != 0) {
                        close_pair(e);
                        break;
                    }
                    if (got < BUF && !(evs[i].events & EPOLLRDHUP))
                        break;
                } else if (got < 0 && errno == EAGAIN) {
                    break;
                } else if (got < 0 && errno == EINTR) {
                    continue;
                } else {
                    close_pair(e);
                    break;
                }
            }
        }
        while (dead) {
            End *d = dead;
            dead = d->next_dead;
            free(d);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: floor_forward LISTEN_PORT TARGET_PORT WORKERS\n");
        return 2;
    }
    listen_port = atoi(argv[1]);
    target_port = atoi(argv[2]);
    int workers = atoi(argv[3]);
    if (listen_port <= 0 || target_port <= 0 || workers < 1 || workers > MAX_WORKERS) {
        fprintf(stderr, "floor_forward: bad arguments\n");
        return 2;
    }
    pthread_t t[MAX_WORKERS];
    for (int i = 0; i < workers; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    pthread_join(t[0], NULL);
    return 0;
}
