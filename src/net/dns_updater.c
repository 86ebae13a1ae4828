/* The DNS updater thread: claims the record for this node with retries and backoff, so that
 * the HA loop never waits on DNS. */
#include "common/common.h"
#include "net/dns_update.h"
#include "net/dns_int.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 10000

/* ---- the background updater ---- */

struct DnsUpdater {
    DnsConfig cfg;              /* deep copy */
    DnsTarget target;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* CLOCK_MONOTONIC */
    int stop_fd;                /* eventfd: aborts the network wait at dns_updater_free */
    bool wanted;                /* claimed and not cancelled since */
    bool done;                  /* the current claim succeeded */
    bool stop;
    uint64_t gen;               /* bumped by claim and cancel: results of older attempts are stale */
};

static void dnscfg_copy(DnsConfig *dst, const DnsConfig *src)
{
    *dst = *src;
    dst->server = str_dup(src->server);
    dst->zone = str_dup(src->zone);
    dst->record = str_dup(src->record);
    dst->address = str_dup(src->address);
    dst->tsig_key_name = str_dup(src->tsig_key_name);
    dst->tsig_secret = str_dup(src->tsig_secret);
    dst->tsig_algorithm = str_dup(src->tsig_algorithm);
}

static void dnscfg_clear(DnsConfig *c)
{
    if (c->tsig_secret)
        memset(c->tsig_secret, 0, strlen(c->tsig_secret));
    char **s[] = {&c->server, &c->zone, &c->record, &c->address, &c->tsig_key_name, &c->tsig_secret,
                  &c->tsig_algorithm};
    for (size_t i = 0; i < ARRAY_LEN(s); i++)
        FREE_AND_NULL(*s[i]);
}

/* One claim attempt: read the RRset, and unless it already names us, replace it with a
 * prerequisite on what was read. A failed prerequisite (someone changed it between our
 * read and our write) gets one immediate re-read and retry. */
static bool claim_attempt(DnsUpdater *u, Err *err)
{
    const DnsConfig *cfg = &u->cfg;
    for (int round = 0; round < 2; round++) {
        AddrList cur;
        if (!query_rrset(cfg, &u->target, u->target.v6, u->stop_fd, &cur, err))
            return false;
        if (cur.n == 1 && addr_equal(cur.v[0], cfg->address)) {
            if (round == 0)
                log_info("dns: %s already names %s", cfg->record, cfg->address);
            else
                log_info("dns: %s -> %s (set by another update)", cfg->record, cfg->address);
            addrs_free(&cur);
            return true;
        }
        bool prereq_failed = false;
        bool ok = send_update(cfg, &u->target, &cur, cfg->address, u->stop_fd, &prereq_failed, err);
        if (ok) {
            char was[256] = "none";
            for (size_t i = 0, off = 0; i < cur.n && off < sizeof(was); i++) {
                int n = snprintf(was + off, sizeof(was) - off, "%s%s", i ? ", " : "", cur.v[i]);
                if (n < 0)
                    break;
                off += (size_t)n;
            }
            log_info("dns: %s -> %s (was %s)", cfg->record, cfg->address, was);
        }
        addrs_free(&cur);
        if (ok || !prereq_failed)
            return ok;
        if (round == 0)
            log_warn("dns: %s changed while we updated it; reading it again", cfg->record);
    }
    return false;
}

static void *updater_main(void *arg)
{
    DnsUpdater *u = arg;
    int backoff_ms = BACKOFF_FIRST_MS;
    pthread_mutex_lock(&u->mu);
    while (!u->stop) {
        if (!u->wanted || u->done) {
            backoff_ms = BACKOFF_FIRST_MS;
            pthread_cond_wait(&u->cv, &u->mu);
            continue;
        }
        uint64_t gen = u->gen;
        pthread_mutex_unlock(&u->mu);
        Err err = {{0}};
        bool ok = claim_attempt(u, &err);
        pthread_mutex_lock(&u->mu);
        if (u->stop || u->gen != gen)
            continue;               /* cancelled or claimed anew meanwhile: decide again */
        if (ok) {
            u->done = true;
            continue;
        }
        log_warn("dns: %s -> %s failed: %s; retrying in %.1f s", u->cfg.record, u->cfg.address, err.msg,
                 backoff_ms / 1000.0);
        struct timespec until;
        mono_deadline_after(&until, backoff_ms);
        while (!u->stop && u->gen == gen)
            if (pthread_cond_timedwait(&u->cv, &u->mu, &until) == ETIMEDOUT)
                break;
        backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
    }
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

DnsUpdater *dns_updater_new(const DnsConfig *cfg, Err *err)
{
    DnsUpdater *u = xcalloc(1, sizeof(*u));
    if (!target_init(cfg, &u->target, err)) {
        free(u);
        return NULL;
    }
    dnscfg_copy(&u->cfg, cfg);
    u->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    mono_cond_init(&u->cv);
    pthread_mutex_init(&u->mu, NULL);
    int rc = u->stop_fd < 0 ? errno : pthread_create(&u->thread, NULL, updater_main, u);
    if (rc != 0) {
        err_set(err, "dns: cannot start the update thread: %s", strerror(rc));
        if (u->stop_fd >= 0)
            close(u->stop_fd);
        pthread_cond_destroy(&u->cv);
        pthread_mutex_destroy(&u->mu);
        target_clear(&u->target);
        dnscfg_clear(&u->cfg);
        free(u);
        return NULL;
    }
    return u;
}

/* claim (wanted) or cancel (!wanted): a change starts a new generation for the thread */
static void set_wanted(DnsUpdater *u, bool wanted)
{
    pthread_mutex_lock(&u->mu);
    if (u->wanted != wanted) {
        u->wanted = wanted;
        u->done = false;
        u->gen++;
        pthread_cond_signal(&u->cv);
    }
    pthread_mutex_unlock(&u->mu);
}

void dns_updater_claim(DnsUpdater *u)
{
    set_wanted(u, true);
}

void dns_updater_cancel(DnsUpdater *u)
{
    set_wanted(u, false);
}

bool dns_updater_done(DnsUpdater *u)
{
    pthread_mutex_lock(&u->mu);
    bool d = u->wanted && u->done;
    pthread_mutex_unlock(&u->mu);
    return d;
}

void dns_updater_free(DnsUpdater *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&u->mu);
    u->stop = true;
    pthread_cond_signal(&u->cv);
    pthread_mutex_unlock(&u->mu);
    uint64_t one = 1;
    ssize_t w = write(u->stop_fd, &one, sizeof(one));
    (void)w;
    pthread_join(u->thread, NULL);
    close(u->stop_fd);
    pthread_cond_destroy(&u->cv);
    pthread_mutex_destroy(&u->mu);
    target_clear(&u->target);
    dnscfg_clear(&u->cfg);
    free(u);
}
