/* Leadership effects outside PostgreSQL: the floating IP follows the lease, the DNS record is
 * claimed by a new leader, and events go to the notifier. See agent_effects.h. */
#include "common/common.h"
#include "ha/agent_effects.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "ha/agent.h"
#include "net/dns_update.h"
#include "net/vip.h"
#include "notify/notify.h"

bool agent_effects_start(Agent *a, Err *err)
{
    Effects *fx = &a->fx;
    const Config *cfg = a->cfg;
    if (cfg->vip.address && !(fx->vip = vip_new(&cfg->vip, err)))
        return false;
    if (cfg->dns.server && !(fx->dns = dns_updater_new(&cfg->dns, err)))
        return false;
    fx->notify = notifier_new(&cfg->notify, cfg->scope, cfg->name, err);
    return fx->notify != NULL;
}

void agent_notify(Agent *a, const char *event, const char *member, const char *fmt, ...)
{
    if (!a->fx.notify)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    notifier_send(a->fx.notify, event, member, msg);
}

/* Leading: the key names us on a live lease (renewed within loop_wait), and postgres runs as
 * a primary.
 * The VIP is added only then; it goes as soon as any of it stops being true. */
static bool leading_now(const Agent *a, const Decision *d)
{
    if (d->action == ACT_DEMOTE || d->action == ACT_RELEASE || d->action == ACT_GIVE_UP_LEADER)
        return false;
    /* stepping down (switchover) or restarting: postgres may still look like a primary for a
     * tick or two, but it is on its way out */
    if (a->release_pending || agent_job_running((Agent *)a))
        return false;
    /* a new primary is announced only once the history key has its timeline */
    if (a->history_pending)
        return false;
    const PgState *st = &a->pgst;
    return a->dcs_ok && a->lease_ok && strcmp(a->cluster.leader, a->cfg->name) == 0 && st->running &&
           st->accepting && !st->in_recovery;
}

static void follow_vip(Agent *a, bool leading)
{
    Effects *fx = &a->fx;
    if (!fx->vip)
        return;
    Err err = {{0}};
    bool changed = false;
    bool ok = leading ? vip_add(fx->vip, &changed, &err) : vip_remove(fx->vip, &changed, &err);
    if (!ok) {
        if (!fx->vip_failed_logged)
            log_error("vip %s: %s", vip_describe(fx->vip), err.msg);
        fx->vip_failed_logged = true;
        return;
    }
    fx->vip_failed_logged = false;
    if (changed)
        log_info("vip %s %s", vip_describe(fx->vip), leading ? "added (leader)" : "removed");
}

static WatchedMember *watched(Effects *fx, const char *name)
{
    for (int i = 0; i < fx->n_members; i++)
        if (strcmp(fx->members[i].name, name) == 0)
            return &fx->members[i];
    return NULL;
}

#define LAG_SUSTAIN_MS 3000   /* a burst of writes may outrun a healthy replica for a moment */

/* lag_high once a replica has stayed above the threshold for LAG_SUSTAIN_MS. Lag is measured
 * from our own pg_stat_replication (the member key's position is rewritten at most once per
 * loop_wait, so it trails during bursts); a member without a WAL sender is left to
 * member_down. */
static void watch_lag(Agent *a, WatchedMember *w, const Member *m, int64_t threshold)
{
    const PgState *st = &a->pgst;
    const WalSender *ws = NULL;
    for (int i = 0; i < st->n_senders; i++)
        if (strcmp(st->senders[i].application_name, m->name) == 0)
            ws = &st->senders[i];
    if (!ws || st->wal_lsn == 0)
        return;
    int64_t lag = st->wal_lsn > ws->flush_lsn ? (int64_t)(st->wal_lsn - ws->flush_lsn) : 0;
    int64_t now = mono_ms();
    if (lag <= threshold) {
        w->above_since = 0;
        if (w->lag_high && lag < threshold / 2)
            w->lag_high = false;
        return;
    }
    if (!w->above_since)
        w->above_since = now;
    if (!w->lag_high && now - w->above_since >= LAG_SUSTAIN_MS) {
        w->lag_high = true;
        agent_notify(a, EV_LAG_HIGH, m->name, "member %s lags %lld bytes behind (threshold %lld)", m->name, (long long)lag,
               (long long)threshold);
    }
}

/* Members whose key vanished or came back, and lag above the threshold. Every node keeps the
 * list, so that a new leader knows the member that died with the old one (their keys expire
 * together); only the leader reports (emit), and a member that went down and came back while
 * another node led is not reported again. */
static void watch_members(Agent *a, bool emit)
{
    Effects *fx = &a->fx;
    const Cluster *c = &a->cluster;
    int64_t threshold = a->cfg->notify.lag_threshold;
    for (int i = 0; emit && i < fx->n_members; i++) {
        WatchedMember *w = &fx->members[i];
        if (!w->down && !cluster_member(c, w->name)) {
            w->down = true;
            agent_notify(a, EV_MEMBER_DOWN, w->name, "member %s is down (its key expired or was removed)", w->name);
        }
    }
    for (int i = 0; i < c->n_members; i++) {
        const Member *m = &c->members[i];
        if (strcmp(m->name, a->cfg->name) == 0)
            continue;
        WatchedMember *w = watched(fx, m->name);
        if (!w) {
            fx->members = xrealloc(fx->members, (size_t)(fx->n_members + 1) * sizeof(*fx->members));
            w = &fx->members[fx->n_members++];
            memset(w, 0, sizeof(*w));
            str_copy(w->name, sizeof(w->name), m->name);
        }
        bool streaming = strcmp(m->state, "running") == 0 && strcmp(m->replication_state, "streaming") == 0;
        if (w->down && streaming) {
            w->down = false;
            if (emit)
                agent_notify(a, EV_MEMBER_REJOINED, m->name, "member %s streams again", m->name);
        }
        if (emit && threshold > 0 && strcmp(m->role, "replica") == 0)
            watch_lag(a, w, m, threshold);
    }
}

void agent_effects_tick(Agent *a, const Decision *d)
{
    Effects *fx = &a->fx;
    bool leading = leading_now(a, d);
    follow_vip(a, leading);
    if (leading && !fx->leading) {
        if (fx->dns)
            dns_updater_claim(fx->dns);
    } else if (!leading && fx->leading && fx->dns) {
        dns_updater_cancel(fx->dns);
    }
    if (d->action == ACT_DEMOTE)
        agent_notify(a, EV_LEASE_LOST, a->cfg->name, "%s demoted: %s", a->cfg->name, d->reason);
    if (a->dcs_ok)
        watch_members(a, leading);
    fx->leading = leading;
}

void agent_effects_promoted(Agent *a, bool switchover)
{
    agent_notify(a, switchover ? EV_SWITCHOVER : EV_FAILOVER, a->cfg->name, "%s: %s is the new primary (timeline %d)",
           switchover ? "switchover" : "failover", a->cfg->name, a->pgst.timeline + 1);
}

void agent_effects_stop(Agent *a, bool drop_vip)
{
    Effects *fx = &a->fx;
    if (fx->vip && drop_vip)
        follow_vip(a, false);
    vip_free(fx->vip);
    dns_updater_free(fx->dns);
    notifier_free(fx->notify, 2000);
    free(fx->members);
    memset(fx, 0, sizeof(*fx));
}
