/* The witness thread of automatic site failover (see site_witness.h). */
#include "common/common.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "dcs/dcs.h"
#include "ha/site_witness.h"

#include <jansson.h>

#define KEY_PRIMARY "primary_site"
#define KEY_PEER_LEASE "pgvigil_peer_lease"
#define KEY_SITE "pgvigil_site"

typedef struct Stores {
    Dcs *wit;   /* the witness, under the pair's prefix */
    Dcs *peer;  /* the other site's etcd, under its prefix */
    Dcs *own;   /* this site's etcd, under its prefix */
} Stores;

/* A key's {"site","epoch","member"} (or a pgvigil_site record's "to" and epoch). */
typedef struct Owner {
    char site[256];
    char state[32];
    int64_t epoch;
} Owner;

static int call_timeout_ms(const Config *cfg)
{
    int t = cfg->site.witness_ttl * 1000 / 5;
    return t < 300 ? 300 : (t > 2000 ? 2000 : t);
}

int64_t site_witness_margin_ms(const Config *cfg)
{
    int64_t m = call_timeout_ms(cfg) + 1000;
    int64_t half = (int64_t)cfg->site.witness_ttl * 500;
    return m > half ? half : m;
}

int64_t site_witness_claim_wait_ms(const Config *cfg)
{
    int64_t w = (int64_t)cfg->site.witness_ttl * 500;
    return w < 2000 ? 2000 : w;
}

static int64_t round_every_ms(const Config *cfg)
{
    return (int64_t)cfg->site.witness_ttl * 250;
}

/* site/to, state and epoch of a key's JSON value; an owner with site "" when absent or unreadable */
static void parse_owner(const char *value, Owner *o)
{
    memset(o, 0, sizeof(*o));
    json_t *j = value ? json_loads(value, 0, NULL) : NULL;
    const char *site = json_string_value(json_object_get(j, "site"));
    if (!site)
        site = json_string_value(json_object_get(j, "to"));
    str_copy(o->site, sizeof(o->site), site ? site : "");
    const char *st = json_string_value(json_object_get(j, "state"));
    str_copy(o->state, sizeof(o->state), st ? st : "");
    json_t *e = json_object_get(j, "epoch");
    o->epoch = json_is_integer(e) ? (int64_t)json_integer_value(e) : 0;
    json_decref(j);
}

static char *owner_value(const char *site, int64_t epoch, const char *member)
{
    json_t *j = json_pack("{s:s, s:I, s:s}", "site", site, "epoch", (json_int_t)(epoch > 0 ? epoch : 0), "member",
                          member);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

/* Renew our lease on d and make sure key is on it, naming this site: taken when absent (and
 * may_take), or when it names this site (another member's lease, or none after a claim), or, for
 * the witness (newer_epoch_wins), when it names the other site at an older epoch than ours.
 * guard (may be NULL) is one more compare for the write. True when the key is ours now. */
static bool hold_key(const Config *cfg, Dcs *d, const char *key, bool may_take, bool newer_epoch_wins,
                     int64_t my_epoch, const DcsCmp *guard, bool *reachable, Owner *seen, char *why, size_t wsz)
{
    Err err = {{0}};
    bool expired = false;
    *reachable = false;
    memset(seen, 0, sizeof(*seen));
    char *val = NULL;
    int64_t rev = 0, lease = 0;
    if (!d->ops->keepalive(d, cfg->site.witness_ttl, &expired, &err) ||
        !d->ops->get(d, key, &val, &rev, &lease, &err)) {
        str_fmt(why, wsz, "%s", err.msg);
        return false;
    }
    *reachable = true;
    parse_owner(val, seen);
    bool mine_site = val && strcmp(seen->site, cfg->scope) == 0;
    if (mine_site && lease == d->ops->lease_id(d) && lease != 0) {
        free(val);
        return true;
    }
    bool take = may_take && (!val || mine_site || (newer_epoch_wins && my_epoch >= 0 && seen->epoch < my_epoch));
    if (!take) {
        if (val)
            str_fmt(why, wsz, "%s%s names %s (epoch %lld)", d->prefix, key, seen->site[0] ? seen->site : "?",
                    (long long)seen->epoch);
        else
            str_fmt(why, wsz, "%s%s may not be created now", d->prefix, key);
        free(val);
        return false;
    }
    free(val);
    char *mine = owner_value(cfg->scope, my_epoch, cfg->name);
    DcsCmp cmps[2] = {{key, rev}, {NULL, 0}};
    int n = 1;
    if (guard)
        cmps[n++] = *guard;
    DcsOp op = {key, mine, true};
    bool ok = false;
    if (!d->ops->txn(d, cmps, n, &op, 1, &ok, &err))
        str_fmt(why, wsz, "%s", err.msg);
    else if (!ok)
        str_fmt(why, wsz, "%s%s changed while it was taken; trying again", d->prefix, key);
    free(mine);
    return ok;
}

static void hold_round(const Config *cfg, Stores *s, const WitnessInput *in, WitnessInfo *st)
{
    int64_t t0 = mono_ms(), ttl_ms = (int64_t)cfg->site.witness_ttl * 1000;
    char why_w[256] = "", why_p[256] = "";
    Owner seen;
    if (hold_key(cfg, s->wit, KEY_PRIMARY, true, true, in->my_epoch, NULL, &st->witness_reachable, &seen, why_w,
                 sizeof(why_w)))
        st->witness_until_ms = t0 + ttl_ms;
    else if (st->witness_reachable)
        st->witness_until_ms = 0;   /* the key is not ours: what was renewed before may be gone */
    str_copy(st->holder, sizeof(st->holder), seen.site);
    st->holder_epoch = seen.epoch;

    /* the other site's record: our lease key may be created there only while it does not name
     * that site as (becoming) the primary site at our epoch or later, and only if the record is
     * unchanged when it is written (the other site's claim changes it) */
    char *rec = NULL;
    int64_t rec_rev = 0;
    Err err = {{0}};
    if (!s->peer->ops->get(s->peer, KEY_SITE, &rec, &rec_rev, NULL, &err)) {
        st->peer_reachable = false;
        str_fmt(why_p, sizeof(why_p), "%s", err.msg);
    } else {
        Owner pr;
        parse_owner(rec, &pr);
        bool theirs = rec && strcmp(pr.site, cfg->site.peer_scope) == 0 && strcmp(pr.state, "aborted") != 0 &&
                      pr.epoch >= in->own_epoch;
        DcsCmp guard = {KEY_SITE, rec_rev};
        if (hold_key(cfg, s->peer, KEY_PEER_LEASE, !theirs, false, in->my_epoch, &guard, &st->peer_reachable, &seen,
                     why_p, sizeof(why_p)))
            st->peer_until_ms = t0 + ttl_ms;
        else if (st->peer_reachable)
            st->peer_until_ms = 0;
        if (theirs && !why_p[0])
            str_fmt(why_p, sizeof(why_p), "%s's record names it as the primary site (epoch %lld)", cfg->site.peer_scope,
                    (long long)pr.epoch);
    }
    free(rec);
    st->hold_until_ms = st->witness_until_ms > st->peer_until_ms ? st->witness_until_ms : st->peer_until_ms;
    if (st->hold_until_ms > mono_ms())
        st->why[0] = '\0';
    else
        str_fmt(st->why, sizeof(st->why), "witness: %s; %s: %s", why_w[0] ? why_w : "not held", cfg->site.peer_scope,
                why_p[0] ? why_p : "not held");
    st->known = true;
}

/* The standby site claims the primary role (see site_witness.h for why this order is exclusive). */
static void claim(const Config *cfg, Stores *s, const WitnessInput *in, int64_t witness_rev, WitnessInfo *st)
{
    Err err = {{0}};
    char *rec = NULL;
    int64_t rec_rev = 0;
    if (!s->own->ops->get(s->own, KEY_SITE, &rec, &rec_rev, NULL, &err)) {
        str_fmt(st->why, sizeof(st->why), "cannot read this site's pgvigil_site: %s", err.msg);
        return;
    }
    Owner mine;
    parse_owner(rec, &mine);
    free(rec);
    int64_t e = in->own_epoch;
    int64_t cands[] = {mine.epoch, in->peer_epoch, st->holder_epoch};
    for (size_t i = 0; i < ARRAY_LEN(cands); i++)
        if (cands[i] > e)
            e = cands[i];
    e++;
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:s, s:f}", "state", "promoting", "from", cfg->site.peer_scope, "to",
                          cfg->scope, "epoch", (json_int_t)e, "kind", "automatic", "at", wall_now());
    char *promoting = json_dumps(j, JSON_COMPACT);
    DcsCmp c1[2] = {{KEY_PEER_LEASE, 0}, {KEY_SITE, rec_rev}};
    DcsOp o1 = {KEY_SITE, promoting, false};
    bool ok = false;
    if (!s->own->ops->txn(s->own, c1, 2, &o1, 1, &ok, &err) || !ok) {
        str_fmt(st->why, sizeof(st->why), "claim: this site's record or the other site's lease key changed%s%s",
                err.msg[0] ? ": " : "", err.msg);
        goto out;
    }
    char *owner = owner_value(cfg->scope, e, cfg->name);
    DcsCmp c2 = {KEY_PRIMARY, witness_rev};
    DcsOp o2 = {KEY_PRIMARY, owner, false};   /* no lease: the primary site's members take it over */
    ok = false;
    bool called = s->wit->ops->txn(s->wit, &c2, 1, &o2, 1, &ok, &err);
    free(owner);
    if (!called || !ok) {
        str_fmt(st->why, sizeof(st->why), "claim: the witness key changed or could not be written%s%s",
                err.msg[0] ? ": " : "", err.msg);
        json_object_set_new(j, "state", json_string("aborted"));
        char *aborted = json_dumps(j, JSON_COMPACT);
        Err e2 = {{0}};
        if (!s->own->ops->put(s->own, KEY_SITE, aborted, false, &e2))
            log_warn("site witness: cannot mark the claim aborted in pgvigil_site: %s", e2.msg);
        free(aborted);
        goto out;
    }
    st->claimed_epoch = e;
    log_warn("site witness: %s is gone (witness key absent, its lease gone from our etcd, its etcd unreachable for "
             "%lld ms): %s claimed the primary role at epoch %lld",
             cfg->site.peer_scope, (long long)(mono_ms() - st->gone_since_ms), cfg->scope, (long long)e);
out:
    free(promoting);
    json_decref(j);
}

static void observe_round(const Config *cfg, Stores *s, const WitnessInput *in, WitnessInfo *st)
{
    Err err = {{0}};
    char *v = NULL;
    int64_t wrev = 0;
    st->witness_reachable = s->wit->ops->get(s->wit, KEY_PRIMARY, &v, &wrev, NULL, &err);
    Owner o;
    parse_owner(v, &o);
    free(v);
    str_copy(st->holder, sizeof(st->holder), o.site);
    st->holder_epoch = o.epoch;
    v = NULL;
    bool own_ok = s->own->ops->get(s->own, KEY_PEER_LEASE, &v, NULL, NULL, &err);
    st->peer_lease_here = own_ok && v;
    free(v);
    v = NULL;
    st->peer_reachable = s->peer->ops->get(s->peer, KEY_SITE, &v, NULL, NULL, &err);
    free(v);
    bool holder_free = !st->holder[0] || strcmp(st->holder, cfg->scope) == 0;
    bool gone = st->witness_reachable && own_ok && holder_free && !st->peer_lease_here && !st->peer_reachable;
    if (!gone) {
        st->gone_since_ms = 0;
        if (!st->witness_reachable)
            str_fmt(st->why, sizeof(st->why), "the witness does not answer: no automatic promotion");
        else if (!holder_free)
            str_fmt(st->why, sizeof(st->why), "the witness names %s", st->holder);
        else if (st->peer_lease_here)
            str_fmt(st->why, sizeof(st->why), "%s's lease key is in this site's etcd", cfg->site.peer_scope);
        else if (st->peer_reachable)
            str_fmt(st->why, sizeof(st->why), "%s's etcd answers", cfg->site.peer_scope);
        else
            str_fmt(st->why, sizeof(st->why), "this site's etcd does not answer");
        return;
    }
    if (!st->gone_since_ms)
        st->gone_since_ms = mono_ms();
    if (st->claimed_epoch || !in->may_claim)
        return;
    int64_t waited = mono_ms() - st->gone_since_ms;
    if (waited < site_witness_claim_wait_ms(cfg)) {
        str_fmt(st->why, sizeof(st->why), "%s looks gone (witness key absent, its lease gone from our etcd, its etcd "
                "unreachable): promoting this site if it stays so for %lld ms", cfg->site.peer_scope,
                (long long)site_witness_claim_wait_ms(cfg));
        return;
    }
    claim(cfg, s, in, wrev, st);
}

static Dcs *store_for(const Config *cfg, char *const *hosts, int n, const char *ns, const char *scope, Err *err)
{
    char *prefix = dcs_prefix(ns ? ns : cfg->namespace_, scope);
    Dcs *d = dcs_etcd_new(hosts, n, prefix, cfg->etcd_username, cfg->etcd_password, call_timeout_ms(cfg), err);
    free(prefix);
    return d;
}

static void *witness_main(void *arg)
{
    SiteWitness *w = arg;
    const Config *cfg = w->cfg;
    const SiteConfig *sc = &cfg->site;
    /* the pair's keys in the witness: one prefix for both sites, whichever names it first */
    bool mine_first = strcmp(cfg->scope, sc->peer_scope) < 0;
    char *pair = str_printf("pgvigil-sites/%s+%s", mine_first ? cfg->scope : sc->peer_scope,
                            mine_first ? sc->peer_scope : cfg->scope);
    Err err = {{0}};
    Stores s = {
        .wit = store_for(cfg, sc->witness_etcd_hosts, sc->n_witness_etcd_hosts, sc->witness_namespace, pair, &err),
        .peer = store_for(cfg, sc->peer_etcd_hosts, sc->n_peer_etcd_hosts, sc->peer_namespace, sc->peer_scope, &err),
        .own = store_for(cfg, cfg->etcd_hosts, cfg->n_etcd_hosts, NULL, cfg->scope, &err),
    };
    free(pair);
    pthread_mutex_lock(&w->mu);
    if (!s.wit || !s.peer || !s.own)
        str_fmt(w->info.why, sizeof(w->info.why), "site witness: %s", err.msg);
    WitnessMode last = WITNESS_IDLE;
    while (!w->stop && s.wit && s.peer && s.own) {
        WitnessInput in = w->in;
        WitnessInfo st = w->info;
        pthread_mutex_unlock(&w->mu);
        if (in.mode != last) {
            st.gone_since_ms = 0;
            st.claimed_epoch = 0;
            if (in.mode == WITNESS_HOLD)
                st.known = false;
        }
        if (in.mode == WITNESS_HOLD)
            hold_round(cfg, &s, &in, &st);
        else if (in.mode == WITNESS_OBSERVE)
            observe_round(cfg, &s, &in, &st);
        st.mode = in.mode;
        last = in.mode;
        pthread_mutex_lock(&w->mu);
        w->info = st;
        struct timespec until;
        mono_deadline_after(&until, in.mode == WITNESS_IDLE ? 1000 : round_every_ms(cfg));
        /* a new mode starts a round at once */
        while (!w->stop && w->in.mode == last &&
               pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&w->mu);
    dcs_free(s.wit);
    dcs_free(s.peer);
    dcs_free(s.own);
    return NULL;
}

bool site_witness_enabled(const SiteWitness *w)
{
    return w->started;
}

void site_witness_start(SiteWitness *w, const Config *cfg)
{
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    if (!cfg->site.automatic)
        return;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &attr);
    pthread_condattr_destroy(&attr);
    w->started = pthread_create(&w->thread, NULL, witness_main, w) == 0;
    if (!w->started) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
}

void site_witness_set(SiteWitness *w, const WitnessInput *in)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mu);
    bool changed = w->in.mode != in->mode;
    w->in = *in;
    if (changed)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void site_witness_get(SiteWitness *w, WitnessInfo *out)
{
    if (!w->started) {
        memset(out, 0, sizeof(*out));
        return;
    }
    pthread_mutex_lock(&w->mu);
    *out = w->info;
    pthread_mutex_unlock(&w->mu);
}

void site_witness_stop(SiteWitness *w)
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
