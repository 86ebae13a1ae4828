/* Reading the other site's etcd from a thread (see peer_site.h). */
#include "common/common.h"
#include "common/timeutil.h"
#include "dcs/dcs.h"
#include "dcs/site_record.h"
#include "ha/peer_site.h"

#include <jansson.h>

#define PEER_READ_EVERY_MS 2000
#define PEER_READ_TIMEOUT_MS 2000

static void read_once(Dcs *dcs, PeerSiteInfo *out)
{
    Cluster c;
    Err err = {{0}};
    PeerSiteInfo got;
    memset(&got, 0, sizeof(got));
    got.attempted = true;
    if (!dcs->ops->load(dcs, &c, &err)) {
        str_copy(got.error, sizeof(got.error), err.msg);
    } else {
        got.reachable = true;
        got.max_timeline = site_max_timeline(&c);
        json_t *o = c.site_json ? json_loads(c.site_json, 0, NULL) : NULL;
        got.epoch = cluster_site_epoch(&c);
        const char *st = json_string_value(json_object_get(o, "state"));
        const char *to = json_string_value(json_object_get(o, "to"));
        json_t *rj = json_object_get(o, "rejoin_as");
        char *s = json_is_object(rj) ? json_dumps(rj, JSON_COMPACT) : NULL;
        /* a record that does not fit is not half read: as if the site could not be read */
        got.too_long = !str_copy(got.state, sizeof(got.state), st ? st : "") ||
                       !str_copy(got.to, sizeof(got.to), to ? to : "") ||
                       (s && !str_copy(got.rejoin_as, sizeof(got.rejoin_as), s));
        if (got.too_long) {
            got.reachable = false;
            str_copy(got.error, sizeof(got.error), "its pgvigil_site record is too long to read");
        }
        free(s);
        json_decref(o);
    }
    cluster_free(&c);
    *out = got;
}

static void *watch_main(void *arg)
{
    PeerSiteWatch *w = arg;
    const SiteConfig *sc = &w->cfg->site;
    char *prefix = dcs_prefix(sc->peer_namespace ? sc->peer_namespace : w->cfg->namespace_, sc->peer_scope);
    Err err = {{0}};
    Dcs *dcs = dcs_etcd_new(sc->peer_etcd_hosts, sc->n_peer_etcd_hosts, prefix, w->cfg->etcd_username,
                            w->cfg->etcd_password, PEER_READ_TIMEOUT_MS, &err);
    free(prefix);
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        PeerSiteInfo got;
        if (dcs) {
            pthread_mutex_unlock(&w->mu);
            read_once(dcs, &got);
            pthread_mutex_lock(&w->mu);
        } else {
            memset(&got, 0, sizeof(got));
            got.attempted = true;
            str_copy(got.error, sizeof(got.error), err.msg);
        }
        got.ever_read = w->info.ever_read || got.reachable;
        if (!got.reachable || got.max_timeline < w->info.max_timeline)
            got.max_timeline = w->info.max_timeline;
        w->info = got;
        struct timespec until;
        mono_deadline_after(&until, PEER_READ_EVERY_MS);
        if (!w->stop)
            pthread_cond_timedwait(&w->cv, &w->mu, &until);
    }
    pthread_mutex_unlock(&w->mu);
    dcs_free(dcs);
    return NULL;
}

bool peer_site_enabled(const PeerSiteWatch *w)
{
    return w->started;
}

void peer_site_start(PeerSiteWatch *w, const Config *cfg)
{
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    if (!cfg->site.peer_scope || cfg->site.n_peer_etcd_hosts == 0)
        return;
    pthread_mutex_init(&w->mu, NULL);
    mono_cond_init(&w->cv);
    w->started = pthread_create(&w->thread, NULL, watch_main, w) == 0;
    if (!w->started) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
}

void peer_site_get(PeerSiteWatch *w, PeerSiteInfo *out)
{
    if (!w->started) {
        memset(out, 0, sizeof(*out));
        return;
    }
    pthread_mutex_lock(&w->mu);
    *out = w->info;
    pthread_mutex_unlock(&w->mu);
}

void peer_site_stop(PeerSiteWatch *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->started = false;
}
