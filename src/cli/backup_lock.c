/* The cluster's backup lock (see backup_lock.h). */
#include "cli/backup_lock.h"
#include "backup/base_backup.h"
#include "common/log.h"
#include "dcs/dcs.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define LOCK_TTL_S 30   /* renewed every third of it */

/* the lease's TTL; the tests shorten it so that a killed command's lock expires sooner */
static int lock_ttl(void)
{
#ifdef PGVIGIL_TEST_HOOKS
    const char *t = getenv("PGVIGIL_TEST_BACKUP_LOCK_TTL");
    if (t && atoi(t) >= 3 && atoi(t) <= LOCK_TTL_S)
        return atoi(t);
#endif
    return LOCK_TTL_S;
}
#define LOCK_DCS_TIMEOUT_MS 5000

struct BackupLock {
    Dcs *dcs;
    pthread_t renewer;
    bool renewing;               /* the renewer thread was started */
    pthread_mutex_t mu;          /* stop, with cv */
    pthread_cond_t cv;
    pthread_mutex_t dcs_mu;      /* one call at a time on dcs */
    bool stop;
};

static void *renew_main(void *arg)
{
    BackupLock *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += lock_ttl() / 3;
        pthread_cond_timedwait(&l->cv, &l->mu, &until);
        if (l->stop)
            break;
        pthread_mutex_unlock(&l->mu);
        Err err = {{0}};
        bool expired = false;
        pthread_mutex_lock(&l->dcs_mu);
        bool renewed = l->dcs->ops->keepalive(l->dcs, lock_ttl(), &expired, &err);
        pthread_mutex_unlock(&l->dcs_mu);
        if (!renewed || expired)
            /* the backup itself is still right: PostgreSQL runs concurrent backups; only the
             * one-at-a-time rule is not enforced until etcd answers again */
            log_warn("backup lock: %s", expired ? "the lease expired; another backup may start" : err.msg);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

BackupLock *backup_lock_take(const Config *cfg, const char *what, bool *busy, Err *err)
{
    *busy = false;
    char *prefix = dcs_prefix(cfg->namespace_, cfg->scope);
    Dcs *d = dcs_etcd_new(cfg->etcd_hosts, cfg->n_etcd_hosts, prefix, cfg->etcd_username, cfg->etcd_password,
                          LOCK_DCS_TIMEOUT_MS, err);
    free(prefix);
    if (!d)
        return NULL;
    bool expired = false, created = false;
    char host[128] = "";
    gethostname(host, sizeof(host) - 1);
    char *value = str_printf("{\"slot\":%lld,\"member\":\"%s\",\"what\":\"%s\",\"host\":\"%s\",\"pid\":%d}",
                             (long long)(time(NULL) / 60), cfg->name ? cfg->name : "", what, host, (int)getpid());
    bool ok = d->ops->keepalive(d, lock_ttl(), &expired, err) &&
              d->ops->create(d, "pgvigil_backup_running", value, true, &created, err);
    free(value);
    if (ok && !created) {
        Cluster c;
        Err le = {{0}};
        d->ops->load(d, &c, &le);
        err_set(err, "another backup or expiry runs in this cluster (member %s holds pgvigil_backup_running in etcd)",
                c.backup_running_member[0] ? c.backup_running_member : "?");
        cluster_free(&c);
        *busy = true;
        ok = false;
    }
    if (!ok) {
        if (!*busy)
            err_prefix(err, "cannot take the cluster's backup lock in etcd");
        d->ops->revoke(d, NULL);
        d->ops->free(d);
        return NULL;
    }
    BackupLock *l = xcalloc(1, sizeof(*l));
    l->dcs = d;
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->dcs_mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->renewing = pthread_create(&l->renewer, NULL, renew_main, l) == 0;
    if (!l->renewing) {
        err_set(err, "backup lock: cannot start the thread that renews it");
        backup_lock_release(l);
        return NULL;
    }
    return l;
}

/* "2026-12-05T02:03:00.123Z" -> epoch seconds (0 when malformed) */
static int64_t iso_epoch(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

void backup_record_newest(const Config *cfg, BackupLock *l, const BackupInfo *b)
{
    Err err = {{0}};
    Dcs *d = l ? l->dcs : NULL;
    if (!d) {
        char *prefix = dcs_prefix(cfg->namespace_, cfg->scope);
        d = dcs_etcd_new(cfg->etcd_hosts, cfg->n_etcd_hosts, prefix, cfg->etcd_username, cfg->etcd_password,
                         LOCK_DCS_TIMEOUT_MS, &err);
        free(prefix);
    }
    char *value = str_printf("{\"label\":\"%s\",\"type\":\"%s\",\"stop_epoch\":%lld,\"bytes\":%lld,\"seconds\":%.3f,"
                             "\"member\":\"%s\"}",
                             b->label, b->type, (long long)iso_epoch(b->stop_time), (long long)b->bytes, b->seconds,
                             cfg->name ? cfg->name : "");
    /* the renewing thread shares l's handle: one call at a time */
    if (l)
        pthread_mutex_lock(&l->dcs_mu);
    bool ok = d && d->ops->put(d, "pgvigil_backup_newest", value, false, &err);
    if (l)
        pthread_mutex_unlock(&l->dcs_mu);
    if (!ok)
        log_warn("cannot record backup %s as the newest in etcd (pgvigil_backup_newest): %s; the agents' backup age "
                 "metric stays on the one before",
                 b->label, err.msg);
    free(value);
    if (d && !l)
        d->ops->free(d);
}

void backup_lock_release(BackupLock *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (l->renewing)
        pthread_join(l->renewer, NULL);
    Err err = {{0}};
    if (!l->dcs->ops->revoke(l->dcs, &err))
        log_warn("backup lock: %s (it expires within %d s)", err.msg, LOCK_TTL_S);
    l->dcs->ops->free(l->dcs);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->dcs_mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}
