/* WAL archive service: a listener thread answering the server module, worker threads pushing
 * WAL files into the repository, and a table of jobs between them (one per file name). */
#include "backup/archive_service.h"
#include "backup/wal_archive.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"

#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_JOBS 256
#define MAX_CLIENTS 8
#define REQUEST_MAX 4200
/* below the module's pgvigil_archive.timeout (120 s), so the module hears why */
#define WAIT_LIMIT_MS (90 * 1000)
#define ERROR_LOG_EVERY_MS 60000

typedef enum { J_FREE, J_QUEUED, J_RUNNING, J_DONE, J_FAILED } JobState;

typedef struct Job {
    JobState st;
    bool urgent;                 /* the archiver asked for it: before the ones pushed ahead */
    uint64_t seq;                /* order of arrival */
    char name[64];
    char err[256];
} Job;

typedef struct Client {
    int fd;
    char buf[REQUEST_MAX];
    size_t n;
} Client;

struct ArchiveService {
    char *socket_path;
    char *wal_dir;               /* real path of <data_dir>/pg_wal */
    char *standby_signal;        /* <data_dir>/standby.signal: there while the server is a standby */
    Repo *repo;
    CompressKind compress;
    int level;
    int workers;
    int listen_fd;
    pthread_t listener;
    pthread_t *threads;
    int n_threads;
    bool listener_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* a job was queued or finished */
    Job jobs[MAX_JOBS];
    uint64_t seq;
    atomic_bool stop;
    ArchiveStats stats;
    char *encryption, *encryption_key_file;
    pthread_mutex_t setup_mu;
    bool repo_ready;             /* repo_cipher_setup succeeded (under setup_mu) */
    char logged_error[256];
    int64_t logged_at_ms;
};

/* ---- jobs (under mu) ------------------------------------------------------------------------ */

static Job *job_find(ArchiveService *s, const char *name)
{
    for (int i = 0; i < MAX_JOBS; i++)
        if (s->jobs[i].st != J_FREE && strcmp(s->jobs[i].name, name) == 0)
            return &s->jobs[i];
    return NULL;
}

static int jobs_free(const ArchiveService *s)
{
    int n = 0;
    for (int i = 0; i < MAX_JOBS; i++)
        n += s->jobs[i].st == J_FREE;
    return n;
}

static Job *job_add(ArchiveService *s, const char *name, bool urgent)
{
    for (int i = 0; i < MAX_JOBS; i++) {
        Job *j = &s->jobs[i];
        if (j->st != J_FREE)
            continue;
        memset(j, 0, sizeof(*j));
        j->st = J_QUEUED;
        j->urgent = urgent;
        j->seq = ++s->seq;
        str_copy(j->name, sizeof(j->name), name);
        return j;
    }
    return NULL;
}

/* The next job for a worker: asked-for ones first, then the oldest WAL file. */
static Job *job_next(ArchiveService *s)
{
    Job *best = NULL;
    for (int i = 0; i < MAX_JOBS; i++) {
        Job *j = &s->jobs[i];
        if (j->st != J_QUEUED)
            continue;
        if (!best || (j->urgent && !best->urgent) ||
            (j->urgent == best->urgent && (j->urgent ? j->seq < best->seq : strcmp(j->name, best->name) < 0)))
            best = j;
    }
    return best;
}

/* Finished jobs nobody asked for whose file PostgreSQL no longer waits to archive (archived
 * meanwhile through another way, or removed after a demotion): forget them (under mu). */
static void forget_stale_jobs(ArchiveService *s, const char *status_dir)
{
    for (int i = 0; i < MAX_JOBS; i++) {
        Job *j = &s->jobs[i];
        if ((j->st != J_DONE && j->st != J_FAILED) || j->urgent)
            continue;
        char ready[PATH_MAX + 128];
        str_fmt(ready, sizeof(ready), "%s/%s.ready", status_dir, j->name);
        if (!file_exists(ready))
            j->st = J_FREE;
    }
}

/* Queue the files PostgreSQL has marked ready, ahead of its requests. */
static void queue_ready_files(ArchiveService *s)
{
    char dir[PATH_MAX + 32];
    str_fmt(dir, sizeof(dir), "%s/archive_status", s->wal_dir);
    pthread_mutex_lock(&s->mu);
    forget_stale_jobs(s, dir);
    pthread_mutex_unlock(&s->mu);
    DIR *d = opendir(dir);
    if (!d)
        return;
    int room = s->workers * 8;
    struct dirent *e;
    pthread_mutex_lock(&s->mu);
    /* some slots stay free for the files the archiver asks for */
    while (room > 0 && jobs_free(s) > MAX_CLIENTS * 2 && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n <= 6 || strcmp(e->d_name + n - 6, ".ready") != 0 || n - 6 >= sizeof(((Job *)0)->name))
            continue;
        char name[64];
        str_fmt(name, sizeof(name), "%.*s", (int)(n - 6), e->d_name);
        if (wal_file_kind(name) == WALFILE_NONE || job_find(s, name))
            continue;
        if (job_add(s, name, false))
            room--;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    closedir(d);
}

/* ---- workers -------------------------------------------------------------------------------- */

static void log_push_error(ArchiveService *s, const char *msg)
{
    int64_t now = mono_ms();
    if (strcmp(msg, s->logged_error) != 0 || now - s->logged_at_ms >= ERROR_LOG_EVERY_MS) {
        log_error("archive: %s (PostgreSQL keeps the WAL file and retries)", msg);
        str_copy(s->logged_error, sizeof(s->logged_error), msg);
        s->logged_at_ms = now;
    }
}

/* The repository's cipher settings are read by the first push, not when the agent's loop
 * starts the service: that loop never waits on the repository (an S3 request). A failure (a
 * wrong key) fails the push, and the next one tries again. */
static bool repo_ready(ArchiveService *s, Err *err)
{
    pthread_mutex_lock(&s->setup_mu);
    if (!s->repo_ready)
        s->repo_ready = repo_cipher_setup(s->repo, s->encryption, s->encryption_key_file, err);
    bool ok = s->repo_ready;
    pthread_mutex_unlock(&s->setup_mu);
    return ok;
}

static void *worker_main(void *arg)
{
    ArchiveService *s = arg;
    WalPushBuffers *bufs = wal_push_buffers_new();
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->stop)) {
        Job *j = job_next(s);
        if (!j) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            continue;
        }
        j->st = J_RUNNING;
        char name[64];
        str_copy(name, sizeof(name), j->name);
        pthread_mutex_unlock(&s->mu);

        char path[PATH_MAX + 80];
        str_fmt(path, sizeof(path), "%s/%s", s->wal_dir, name);
        WalPushResult res;
        Err err = {{0}};
        /* in recovery (PostgreSQL 15 keeps standby.signal until it is promoted): a standby's copy */
        bool standby = access(s->standby_signal, F_OK) == 0;
        bool ok = repo_ready(s, &err) && wal_push_with(s->repo, s->compress, s->level, path, name, standby, bufs, &res, &err);

        pthread_mutex_lock(&s->mu);
        j = job_find(s, name);
        if (j) {
            j->st = ok ? J_DONE : J_FAILED;
            str_copy(j->err, sizeof(j->err), ok ? "" : err.msg);
        }
        if (ok) {
            if (s->stats.last_error[0])
                log_info("archive: storing WAL in the %s works again", s->repo->desc);
            s->stats.archived++;
            s->stats.bytes_raw += res.raw_size;
            s->stats.bytes_stored += res.already ? 0 : res.stored_size;
            s->stats.last_archived_at = wall_now();
            str_copy(s->stats.last_archived, sizeof(s->stats.last_archived), name);
            s->stats.last_error[0] = '\0';
            s->logged_error[0] = '\0';
            log_debug("archive: %s stored%s (%zu -> %zu bytes)", name, res.already ? " before" : "", res.raw_size,
                      res.stored_size);
        } else {
            s->stats.failures++;
            str_copy(s->stats.last_error, sizeof(s->stats.last_error), err.msg);
            log_push_error(s, err.msg);
        }
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    wal_push_buffers_free(bufs);
    return NULL;
}

/* ---- requests ------------------------------------------------------------------------------- */

/* The path the archiver names must be the file of that name in this server's pg_wal (both
 * resolved now: pg_wal may be a link, and may not have existed when the service started). */
static bool path_ok(const ArchiveService *s, const char *name, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || strcmp(slash + 1, name) != 0)
        return false;
    char *dir = str_printf("%.*s", (int)(slash - path), path);
    char real[PATH_MAX], want[PATH_MAX];
    bool ok = realpath(dir, real) && realpath(s->wal_dir, want) && strcmp(real, want) == 0;
    free(dir);
    return ok;
}

static void handle_request(ArchiveService *s, const char *line, char *reply, size_t sz)
{
    /* "ARCHIVE <name> <path to the end of the line>" (a data directory may hold spaces) */
    char name[64];
    int used = 0;
    if (sscanf(line, "ARCHIVE %63s %n", name, &used) != 1 || used == 0 || !line[used]) {
        str_fmt(reply, sz, "ERR malformed request");
        return;
    }
    const char *path = line + used;
    if (wal_file_kind(name) == WALFILE_NONE) {
        str_fmt(reply, sz, "ERR \"%s\" is not a WAL file name", name);
        return;
    }
    if (!path_ok(s, name, path)) {
        str_fmt(reply, sz, "ERR %s is not %s in %s", path, name, s->wal_dir);
        return;
    }
    pthread_mutex_lock(&s->mu);
    Job *j = job_find(s, name);
    if (j && j->st == J_FAILED)
        j->st = J_QUEUED; /* a retry: push it again */
    if (!j)
        j = job_add(s, name, true);
    if (j)
        j->urgent = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (!j) {
        str_fmt(reply, sz, "ERR too many WAL files in flight");
        return;
    }
    queue_ready_files(s);

    int64_t until = mono_ms() + WAIT_LIMIT_MS;
    pthread_mutex_lock(&s->mu);
    while ((j = job_find(s, name)) != NULL && j->st != J_DONE && j->st != J_FAILED && !atomic_load(&s->stop) &&
           mono_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    if (j && j->st == J_DONE) {
        str_fmt(reply, sz, "OK");
        j->st = J_FREE;
    } else if (j && j->st == J_FAILED) {
        str_fmt(reply, sz, "ERR %s", j->err);
        j->st = J_FREE;
    } else {
        str_fmt(reply, sz, "ERR %s", atomic_load(&s->stop) ? "the agent is stopping" : "storing the file takes too long");
    }
    pthread_mutex_unlock(&s->mu);
}

static void client_close(Client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->n = 0;
}

static void client_read(ArchiveService *s, Client *c)
{
    ssize_t n = read(c->fd, c->buf + c->n, sizeof(c->buf) - 1 - c->n);
    if (n <= 0) {
        client_close(c);
        return;
    }
    c->n += (size_t)n;
    c->buf[c->n] = '\0';
    char *nl;
    while ((nl = strchr(c->buf, '\n')) != NULL) {
        *nl = '\0';
        char reply[600];
        handle_request(s, c->buf, reply, sizeof(reply) - 1);
        size_t len = strlen(reply);
        reply[len++] = '\n';
        if (send(c->fd, reply, len, MSG_NOSIGNAL) != (ssize_t)len) {
            client_close(c);
            return;
        }
        size_t rest = c->n - (size_t)(nl + 1 - c->buf);
        memmove(c->buf, nl + 1, rest + 1);
        c->n = rest;
    }
    if (c->n >= sizeof(c->buf) - 1)
        client_close(c); /* a line that long is no request */
}

static void *listener_main(void *arg)
{
    ArchiveService *s = arg;
    Client clients[MAX_CLIENTS];
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1, clients[i].n = 0;
    while (!atomic_load(&s->stop)) {
        struct pollfd p[MAX_CLIENTS + 1];
        int map[MAX_CLIENTS + 1];
        int n = 0;
        p[n].fd = s->listen_fd;
        p[n].events = POLLIN;
        map[n++] = -1;
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (clients[i].fd >= 0) {
                p[n].fd = clients[i].fd;
                p[n].events = POLLIN;
                map[n++] = i;
            }
        if (poll(p, (nfds_t)n, 200) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (map[k] < 0) {
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                    continue;
                int slot = -1;
                for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
                    if (clients[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    close(fd); /* more than one archiver at once: none is ours to serve */
                    continue;
                }
                clients[slot].fd = fd;
                clients[slot].n = 0;
            } else {
                client_read(s, &clients[map[k]]);
            }
        }
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        client_close(&clients[i]);
    return NULL;
}

int archive_backlog(const char *data_dir, uint64_t wal_lsn, int64_t *lag_bytes)
{
    char dir[PATH_MAX + 32];
    str_fmt(dir, sizeof(dir), "%s/pg_wal/archive_status", data_dir);
    if (lag_bytes)
        *lag_bytes = -1;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    char oldest[25] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 6 || strcmp(e->d_name + len - 6, ".ready") != 0)
            continue;
        n++;
        /* a segment: "000000010000000000000003.ready"; the smallest segment number waits longest */
        if (len == 24 + 6 && (!oldest[0] || strncmp(e->d_name + 8, oldest + 8, 16) < 0))
            str_fmt(oldest, sizeof(oldest), "%.24s", e->d_name);
    }
    closedir(d);
    if (lag_bytes && wal_lsn) {
        const uint64_t seg = 16ULL * 1024 * 1024;
        unsigned tli, hi, lo;
        /* from the start of the oldest segment not archived (or of the one being written) */
        uint64_t from = wal_lsn / seg * seg;
        if (oldest[0] && sscanf(oldest, "%8X%8X%8X", &tli, &hi, &lo) == 3)
            from = ((uint64_t)hi * (0x100000000ULL / seg) + lo) * seg;
        *lag_bytes = wal_lsn > from ? (int64_t)(wal_lsn - from) : 0;
    }
    return n;
}

/* ---- start and stop ------------------------------------------------------------------------- */

static int bind_socket(const char *path, Err *err)
{
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (!str_copy(addr.sun_path, sizeof(addr.sun_path), path)) {
        err_set(err, "archive: socket path %s is too long", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_set(err, "archive: socket: %s", strerror(errno));
        return -1;
    }
    unlink(path); /* left by an agent that was killed */
    /* created 0600 (the socket directory is the server user's: no chmod by path afterwards),
     * then given to that user without following a link planted at the path */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc != 0 || !proc_lchown_run_as(path, err) || listen(fd, MAX_CLIENTS) != 0) {
        if (!err || !err->msg[0])
            err_set(err, "archive: cannot listen on %s: %s", path, strerror(errno));
        else
            err_prefix(err, "archive");
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

ArchiveService *archive_service_start(const ArchiveServiceConfig *c, Err *err)
{
    char wal_dir[PATH_MAX + 16];
    str_fmt(wal_dir, sizeof(wal_dir), "%s/pg_wal", c->data_dir);
    Err e = {{0}};
    int fd = bind_socket(c->socket_path, &e);
    if (fd < 0) {
        if (err)
            *err = e;
        return NULL;
    }
    ArchiveService *s = xcalloc(1, sizeof(*s));
    s->socket_path = str_dup(c->socket_path);
    s->wal_dir = str_dup(wal_dir);
    s->standby_signal = str_printf("%s/standby.signal", c->data_dir);
    s->repo = c->repo;
    s->compress = c->compress;
    s->level = c->level;
    s->workers = c->workers > 0 ? c->workers : 1;
    s->listen_fd = fd;
    s->encryption = str_dup(c->encryption);
    s->encryption_key_file = str_dup(c->encryption_key_file);
    pthread_mutex_init(&s->setup_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->threads = xcalloc((size_t)s->workers, sizeof(pthread_t));
    for (int i = 0; i < s->workers; i++) {
        if (pthread_create(&s->threads[i], NULL, worker_main, s) != 0)
            break;
        s->n_threads++;
    }
    if (s->n_threads == s->workers && pthread_create(&s->listener, NULL, listener_main, s) == 0)
        s->listener_started = true;
    if (!s->listener_started) {
        err_set(err, "archive: cannot start threads");
        archive_service_stop(s);
        return NULL;
    }
    return s;
}

void archive_service_stats(ArchiveService *s, ArchiveStats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

void archive_service_stop(ArchiveService *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, true);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->listener_started)
        pthread_join(s->listener, NULL);
    for (int i = 0; i < s->n_threads; i++)
        pthread_join(s->threads[i], NULL);
    close(s->listen_fd);
    unlink(s->socket_path);
    repo_free(s->repo);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->setup_mu);
    free(s->encryption);
    free(s->encryption_key_file);
    free(s->threads);
    free(s->socket_path);
    free(s->wal_dir);
    free(s->standby_signal);
    free(s);
}
