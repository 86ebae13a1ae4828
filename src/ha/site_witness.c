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

/* Short calls: a store that does not answer must not eat much of the TTL (see margin). */
static int call_timeout_ms(const Config *cfg)
{
    int t = cfg->site.witness_ttl * 100;
    return t < 200 ? 200 : (t > 1000 ? 1000 : t);
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

/* Rounds start this often: a renewal that fails once or twice leaves the key held (TTL/4 each). */
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
 * may_take), or when it names this site (another member's lease, or none after a claim), or when
 * it names the other site at an epoch older than takeover_epoch (-1: never).
 * guard (may be NULL) is one more compare for the write. True when the key is ours now. */
static bool hold_key(const Config *cfg, Dcs *d, const char *key, bool may_take, int64_t takeover_epoch,
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
    bool take = may_take && (!val || mine_site || (takeover_epoch >= 0 && seen->epoch < takeover_epoch));
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

/* The witness key (part 0, HOLD). */
static void hold_witness(const Config *cfg, Stores *s, const WitnessInput *in, WitnessPart *p, SiteWitness *w)
{
    int64_t t0 = mono_ms();
    Owner seen;
    bool reachable = false;
    char why[256] = "";
    bool held = hold_key(cfg, s->wit, KEY_PRIMARY, true, in->takeover_epoch, in->my_epoch, NULL, &reachable, &seen,
                         why, sizeof(why));
    pthread_mutex_lock(&w->mu);
    p->reachable = reachable;
    if (held)
        p->until_ms = t0 + (int64_t)cfg->site.witness_ttl * 1000;
    else if (reachable)
        p->until_ms = 0;   /* the key is not ours: what was renewed before may be gone */
    str_copy(p->why, sizeof(p->why), held ? "" : why);
    str_copy(w->holder, sizeof(w->holder), seen.site);
    w->holder_epoch = seen.epoch;
    p->known = true;
    pthread_mutex_unlock(&w->mu);
}

/* Our lease key in the other site's etcd (part 1, HOLD). It may be created there only while the
 * other site's record does not name that site as (becoming) the primary site at our epoch or
 * later, and only if the record is unchanged when it is written (the other site's claim changes
 * it). */
static void hold_peer(const Config *cfg, Stores *s, const WitnessInput *in, WitnessPart *p, SiteWitness *w)
{
    int64_t t0 = mono_ms();
    char why[256] = "";
    char *rec = NULL;
    int64_t rec_rev = 0;
    Err err = {{0}};
    bool reachable = false, held = false;
    if (!s->peer->ops->get(s->peer, KEY_SITE, &rec, &rec_rev, NULL, &err)) {
        str_fmt(why, sizeof(why), "%s", err.msg);
    } else {
        Owner pr, seen;
        parse_owner(rec, &pr);
        bool theirs = rec && strcmp(pr.site, cfg->site.peer_scope) == 0 && strcmp(pr.state, "aborted") != 0 &&
                      pr.epoch >= in->own_epoch;
        DcsCmp guard = {KEY_SITE, rec_rev};
        held = hold_key(cfg, s->peer, KEY_PEER_LEASE, !theirs, -1, in->my_epoch, &guard, &reachable, &seen, why,
                        sizeof(why));
        if (!held && theirs)
            str_fmt(why, sizeof(why), "its record names it as the primary site (epoch %lld)", (long long)pr.epoch);
    }
    free(rec);
    pthread_mutex_lock(&w->mu);
    p->reachable = reachable;
    if (held)
        p->until_ms = t0 + (int64_t)cfg->site.witness_ttl * 1000;
    else if (reachable)
        p->until_ms = 0;
    str_copy(p->why, sizeof(p->why), held ? "" : why);
    p->known = true;
    pthread_mutex_unlock(&w->mu);
}

/* What an OBSERVE round saw (published under the mutex at its end). */
typedef struct Seen {
    bool witness_reachable, own_reachable, peer_reachable, peer_lease_here;
    Owner holder;
    int64_t witness_rev;
    char why[256];
} Seen;

/* The standby site claims the primary role (see site_witness.h for why this order is exclusive).
 * The new epoch, or 0 with why set. */
static int64_t claim(const Config *cfg, Stores *s, const WitnessInput *in, Seen *seen, int64_t gone_ms)
{
    Err err = {{0}};
    char *rec = NULL;
    int64_t rec_rev = 0;
    if (!s->own->ops->get(s->own, KEY_SITE, &rec, &rec_rev, NULL, &err)) {
        str_fmt(seen->why, sizeof(seen->why), "cannot read this site's pgvigil_site: %s", err.msg);
        return 0;
    }
    Owner mine;
    parse_owner(rec, &mine);
    free(rec);
    int64_t e = in->own_epoch;
    int64_t cands[] = {mine.epoch, in->peer_epoch, seen->holder.epoch};
    for (size_t i = 0; i < ARRAY_LEN(cands); i++)
        if (cands[i] > e)
            e = cands[i];
    e++;
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:s, s:f}", "state", "promoting", "from", cfg->site.peer_scope, "to",
                          cfg->scope, "epoch", (json_int_t)e, "kind", "automatic", "at", wall_now());
    char *promoting = json_dumps(j, JSON_COMPACT);
    int64_t claimed = 0;
    DcsCmp c1[2] = {{KEY_PEER_LEASE, 0}, {KEY_SITE, rec_rev}};
    DcsOp o1 = {KEY_SITE, promoting, false};
    bool ok = false;
    if (!s->own->ops->txn(s->own, c1, 2, &o1, 1, &ok, &err) || !ok) {
        str_fmt(seen->why, sizeof(seen->why), "claim: this site's record or the other site's lease key changed%s%s",
                err.msg[0] ? ": " : "", err.msg);
        goto out;
    }
    char *owner = owner_value(cfg->scope, e, cfg->name);
    DcsCmp c2 = {KEY_PRIMARY, seen->witness_rev};
    DcsOp o2 = {KEY_PRIMARY, owner, false};   /* no lease: the primary site's members take it over */
    ok = false;
    bool called = s->wit->ops->txn(s->wit, &c2, 1, &o2, 1, &ok, &err);
    free(owner);
    if (!called || !ok) {
        str_fmt(seen->why, sizeof(seen->why), "claim: the witness key changed or could not be written%s%s",
                err.msg[0] ? ": " : "", err.msg);
        json_object_set_new(j, "state", json_string("aborted"));
        char *aborted = json_dumps(j, JSON_COMPACT);
        Err e2 = {{0}};
        if (!s->own->ops->put(s->own, KEY_SITE, aborted, false, &e2))
            log_warn("site witness: cannot mark the claim aborted in pgvigil_site: %s", e2.msg);
        free(aborted);
        goto out;
    }
    claimed = e;
    log_warn("site witness: %s is gone (witness key absent, its lease gone from our etcd, its etcd unreachable for "
             "%lld ms): %s claimed the primary role at epoch %lld",
             cfg->site.peer_scope, (long long)gone_ms, cfg->scope, (long long)e);
out:
    free(promoting);
    json_decref(j);
    return claimed;
}

/* The standby site's leader (part 0, OBSERVE): does the other site look gone, for long enough? */
static void observe_round(const Config *cfg, Stores *s, const WitnessInput *in, WitnessPart *p, SiteWitness *w)
{
    Err err = {{0}};
    Seen seen;
    memset(&seen, 0, sizeof(seen));
    char *v = NULL;
    seen.witness_reachable = s->wit->ops->get(s->wit, KEY_PRIMARY, &v, &seen.witness_rev, NULL, &err);
    parse_owner(v, &seen.holder);
    free(v);
    v = NULL;
    seen.own_reachable = s->own->ops->get(s->own, KEY_PEER_LEASE, &v, NULL, NULL, &err);
    seen.peer_lease_here = seen.own_reachable && v;
    free(v);
    v = NULL;
    seen.peer_reachable = s->peer->ops->get(s->peer, KEY_SITE, &v, NULL, NULL, &err);
    free(v);
    bool holder_free = !seen.holder.site[0] || strcmp(seen.holder.site, cfg->scope) == 0;
    bool gone = seen.witness_reachable && seen.own_reachable && holder_free && !seen.peer_lease_here &&
                !seen.peer_reachable;
    if (!seen.witness_reachable)
        str_fmt(seen.why, sizeof(seen.why), "the witness does not answer: no automatic promotion");
    else if (!holder_free)
        str_fmt(seen.why, sizeof(seen.why), "the witness names %s", seen.holder.site);
    else if (seen.peer_lease_here)
        str_fmt(seen.why, sizeof(seen.why), "%s's lease key is in this site's etcd", cfg->site.peer_scope);
    else if (seen.peer_reachable)
        str_fmt(seen.why, sizeof(seen.why), "%s's etcd answers", cfg->site.peer_scope);
    else if (!seen.own_reachable)
        str_fmt(seen.why, sizeof(seen.why), "this site's etcd does not answer");
    else
        str_fmt(seen.why, sizeof(seen.why), "%s looks gone (witness key absent, its lease gone from our etcd, its etcd "
                "unreachable): promoting this site if it stays so for %lld ms", cfg->site.peer_scope,
                (long long)site_witness_claim_wait_ms(cfg));

    pthread_mutex_lock(&w->mu);
    if (!gone)
        w->gone_since_ms = 0;
    else if (!w->gone_since_ms)
        w->gone_since_ms = mono_ms();
    int64_t gone_ms = w->gone_since_ms ? mono_ms() - w->gone_since_ms : 0;
    bool try_claim = gone && !w->claimed_epoch && in->may_claim && gone_ms >= site_witness_claim_wait_ms(cfg);
    pthread_mutex_unlock(&w->mu);
    int64_t claimed = try_claim ? claim(cfg, s, in, &seen, gone_ms) : 0;

    pthread_mutex_lock(&w->mu);
    p->reachable = seen.witness_reachable;
    str_copy(p->why, sizeof(p->why), seen.why);
    str_copy(w->holder, sizeof(w->holder), seen.holder.site);
    w->holder_epoch = seen.holder.epoch;
    w->peer_lease_here = seen.peer_lease_here;
    w->observe_peer_reachable = seen.peer_reachable;
    if (claimed)
        w->claimed_epoch = claimed;
    pthread_mutex_unlock(&w->mu);
}

static Dcs *store_for(const Config *cfg, char *const *hosts, int n, const char *ns, const char *scope, Err *err)
{
    char *prefix = dcs_prefix(ns ? ns : cfg->namespace_, scope);
    Dcs *d = dcs_etcd_new(hosts, n, prefix, cfg->etcd_username, cfg->etcd_password, call_timeout_ms(cfg), err);
    free(prefix);
    return d;
}

static bool open_stores(const Config *cfg, bool peer_only, Stores *s, Err *err)
{
    const SiteConfig *sc = &cfg->site;
    memset(s, 0, sizeof(*s));
    s->peer = store_for(cfg, sc->peer_etcd_hosts, sc->n_peer_etcd_hosts, sc->peer_namespace, sc->peer_scope, err);
    if (peer_only)
        return s->peer != NULL;
    /* the pair's keys in the witness: one prefix for both sites, whichever names it first */
    bool mine_first = strcmp(cfg->scope, sc->peer_scope) < 0;
    char *pair = str_printf("pgvigil-sites/%s+%s", mine_first ? cfg->scope : sc->peer_scope,
                            mine_first ? sc->peer_scope : cfg->scope);
    s->wit = store_for(cfg, sc->witness_etcd_hosts, sc->n_witness_etcd_hosts, sc->witness_namespace, pair, err);
    free(pair);
    s->own = store_for(cfg, cfg->etcd_hosts, cfg->n_etcd_hosts, NULL, cfg->scope, err);
    return s->peer && s->wit && s->own;
}

static void *part_main(void *arg)
{
    WitnessPart *p = arg;
    SiteWitness *w = p->w;
    const Config *cfg = w->cfg;
    Err err = {{0}};
    Stores s;
    bool opened = open_stores(cfg, p->peer_part, &s, &err);
    pthread_mutex_lock(&w->mu);
    if (!opened)
        str_fmt(p->why, sizeof(p->why), "cannot set up its etcd clients: %s", err.msg);
    while (!w->stop && opened) {
        WitnessInput in = w->in;
        if (in.mode != p->mode) {
            /* a new mode: what the last one found does not carry over */
            p->known = false;
            p->why[0] = '\0';
            if (!p->peer_part) {
                w->gone_since_ms = 0;
                w->claimed_epoch = 0;
            }
        }
        pthread_mutex_unlock(&w->mu);
        int64_t start = mono_ms();
        if (in.mode == WITNESS_HOLD)
            (p->peer_part ? hold_peer : hold_witness)(cfg, &s, &in, p, w);
        else if (in.mode == WITNESS_OBSERVE && !p->peer_part)
            observe_round(cfg, &s, &in, p, w);
        pthread_mutex_lock(&w->mu);
        p->mode = in.mode;
        struct timespec until;
        int64_t left = (in.mode == WITNESS_IDLE ? 1000 : round_every_ms(cfg)) - (mono_ms() - start);
        mono_deadline_after(&until, left > 0 ? left : 0);
        /* a new mode starts a round at once */
        while (!w->stop && w->in.mode == p->mode && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0)
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
    w->started = true;
    for (int i = 0; i < 2; i++) {
        WitnessPart *p = &w->parts[i];
        p->w = w;
        p->peer_part = i == 1;
        p->started = pthread_create(&p->thread, NULL, part_main, p) == 0;
        if (!p->started)
            log_error("site witness: cannot start a thread: the primary role cannot be confirmed by %s",
                      i == 0 ? "the witness" : cfg->site.peer_scope);
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
        pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void site_witness_get(SiteWitness *w, WitnessInfo *out)
{
    memset(out, 0, sizeof(*out));
    if (!w->started)
        return;
    const WitnessPart *wp = &w->parts[0], *pp = &w->parts[1];
    pthread_mutex_lock(&w->mu);
    out->mode = wp->mode;
    out->witness_until_ms = wp->mode == WITNESS_HOLD ? wp->until_ms : 0;
    out->peer_until_ms = pp->mode == WITNESS_HOLD ? pp->until_ms : 0;
    out->hold_until_ms = out->witness_until_ms > out->peer_until_ms ? out->witness_until_ms : out->peer_until_ms;
    out->known = (wp->known && pp->known) || out->hold_until_ms > mono_ms();
    out->witness_reachable = wp->reachable;
    out->peer_reachable = wp->mode == WITNESS_OBSERVE ? w->observe_peer_reachable : pp->reachable;
    str_copy(out->holder, sizeof(out->holder), w->holder);
    out->holder_epoch = w->holder_epoch;
    out->peer_lease_here = w->peer_lease_here;
    out->gone_since_ms = w->gone_since_ms;
    out->claimed_epoch = w->claimed_epoch;
    if (wp->mode == WITNESS_OBSERVE)
        str_copy(out->why, sizeof(out->why), wp->why);
    else if (wp->mode == WITNESS_HOLD && out->known) {
        int64_t now = mono_ms();
        bool by_w = out->witness_until_ms > now, by_p = out->peer_until_ms > now;
        const char *ww = wp->why[0] ? wp->why : "no renewal yet", *pw = pp->why[0] ? pp->why : "no renewal yet";
        if (!by_w && !by_p)
            str_fmt(out->why, sizeof(out->why), "neither confirms this site: the witness: %s; %s: %s", ww,
                    w->cfg->site.peer_scope, pw);
        else if (!by_w)
            str_fmt(out->why, sizeof(out->why), "confirmed by %s alone; the witness: %s", w->cfg->site.peer_scope, ww);
        else if (!by_p)
            str_fmt(out->why, sizeof(out->why), "confirmed by the witness alone; %s: %s", w->cfg->site.peer_scope, pw);
    }
    pthread_mutex_unlock(&w->mu);
}

void site_witness_stop(SiteWitness *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < 2; i++)
        if (w->parts[i].started)
            pthread_join(w->parts[i].thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->started = false;
}
