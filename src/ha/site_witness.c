/* The witness thread of automatic site failover (see site_witness.h). */
#include "common/common.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "dcs/dcs.h"
#include "dcs/site_record.h"
#include "ha/site_witness.h"
#include "ha/site_witness_rounds.h"

#include <jansson.h>

#define KEY_PRIMARY "primary_site"
#define KEY_PEER_LEASE "pgvigil_peer_lease"
#define KEY_SITE "pgvigil_site"


/* A key's {"site","epoch","member"} (or a pgvigil_site record's "to" and epoch). */
typedef struct Owner {
    char site[256];
    char witness[512];   /* a lease key's witness prefix: both sites must use the same one */
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
        site = site_record_primary(j);
    str_copy(o->site, sizeof(o->site), site);
    const char *wp = json_string_value(json_object_get(j, "witness"));
    str_copy(o->witness, sizeof(o->witness), wp ? wp : "");
    const char *st = json_string_value(json_object_get(j, "state"));
    str_copy(o->state, sizeof(o->state), st ? st : "");
    json_t *e = json_object_get(j, "epoch");
    o->epoch = json_is_integer(e) ? (int64_t)json_integer_value(e) : 0;
    json_decref(j);
}

static char *owner_value(const char *site, int64_t epoch, const char *member, const char *witness)
{
    json_t *j = json_pack("{s:s, s:I, s:s, s:s}", "site", site, "epoch", (json_int_t)(epoch > 0 ? epoch : 0), "member",
                          member, "witness", witness);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

/* Renew our lease on d and make sure key is on it, naming this site: taken when absent (and
 * may_take), or when it names this site (another member's lease, or none after a claim), or when
 * it names the other site at an epoch older than takeover_epoch (-1: never).
 * guard (may be NULL) is one more compare for the write. True when the key is ours now. */
static bool hold_key(const Config *cfg, Dcs *d, const char *key, bool may_take, bool may_take_over,
                     int64_t takeover_epoch, int64_t my_epoch, const char *witness, const DcsCmp *guard,
                     bool *reachable, Owner *seen, char *why, size_t wsz)
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
    /* another member's key of this site only by the member that leads (or may lead) it: the key's
     * expiry moves to our lease, which a member still writing must not see shortened */
    bool take = may_take && (!val || (mine_site && may_take_over) ||
                             (!mine_site && takeover_epoch >= 0 && seen->epoch < takeover_epoch));
    if (!take) {
        if (val)
            str_fmt(why, wsz, "%s%s names %s (epoch %lld)", d->prefix, key, seen->site[0] ? seen->site : "?",
                    (long long)seen->epoch);
        else
            str_fmt(why, wsz, "%s%s may not be created now", d->prefix, key);
        free(val);
        return false;
    }
    bool had_value = val != NULL;
    free(val);
    char *mine = owner_value(cfg->scope, my_epoch, cfg->name, witness);
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
    /* renewed once more after the write: the key lives at least TTL from now, beyond what a member
     * that held it before us counted from its own last renewal */
    if (ok && had_value && !d->ops->keepalive(d, cfg->site.witness_ttl, &expired, &err)) {
        str_fmt(why, wsz, "%s", err.msg);
        ok = false;
    }
    return ok;
}

/* The witness key (part 0, HOLD). */
static void hold_witness(const Config *cfg, WitnessStores *s, const WitnessInput *in, WitnessPart *p, SiteWitness *w)
{
    int64_t t0 = mono_ms();
    Owner seen;
    bool reachable = false;
    char why[256] = "";
    bool held = hold_key(cfg, s->wit, KEY_PRIMARY, true, in->may_take_over, in->takeover_epoch, in->my_epoch,
                         w->witness_prefix, NULL, &reachable, &seen, why, sizeof(why));
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
static void hold_peer(const Config *cfg, WitnessStores *s, const WitnessInput *in, WitnessPart *p, SiteWitness *w)
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
        if (theirs) {
            /* superseded there: not even a key we hold is renewed */
            reachable = true;
            str_fmt(why, sizeof(why), "its record names it as the primary site (epoch %lld)", (long long)pr.epoch);
        } else {
            held = hold_key(cfg, s->peer, KEY_PEER_LEASE, true, in->may_take_over, -1, in->my_epoch, w->witness_prefix,
                            &guard, &reachable, &seen, why, sizeof(why));
        }
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
static int64_t claim(const Config *cfg, WitnessStores *s, const WitnessInput *in, Seen *seen, int64_t gone_ms,
                     const char *witness)
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
    char *owner = owner_value(cfg->scope, e, cfg->name, witness);
    DcsCmp c2 = {KEY_PRIMARY, seen->witness_rev};
    DcsOp o2 = {KEY_PRIMARY, owner, false};   /* no lease: the primary site's members take it over */
    ok = false;
    bool called = s->wit->ops->txn(s->wit, &c2, 1, &o2, 1, &ok, &err);
    if (!called) {
        /* no answer: the write may have happened; the witness says */
        char *v = NULL;
        Err ge = {{0}};
        if (s->wit->ops->get(s->wit, KEY_PRIMARY, &v, NULL, NULL, &ge) && v && strcmp(v, owner) == 0)
            called = ok = true;
        free(v);
    }
    free(owner);
    if (!called || !ok) {
        str_fmt(seen->why, sizeof(seen->why), "claim: the witness key changed or could not be written%s%s",
                err.msg[0] ? ": " : "", err.msg);
        json_object_set_new(j, "state", json_string("aborted"));
        char *aborted = json_dumps(j, JSON_COMPACT);
        Err e2 = {{0}};
        bool put = false;
        for (int i = 0; i < 3 && !put; i++)
            put = s->own->ops->put(s->own, KEY_SITE, aborted, false, &e2);
        if (!put)
            log_warn("site witness: cannot mark the claim aborted in pgvigil_site (the other site cannot renew its "
                     "lease key here until it is): %s", e2.msg);
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
static void observe_round(const Config *cfg, WitnessStores *s, const WitnessInput *in, WitnessPart *p, SiteWitness *w,
                          bool no_wait)
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
    Owner pl;
    parse_owner(v, &pl);
    free(v);
    /* the other site's key says which witness it uses: another one would see none of our keys */
    if (seen.peer_lease_here) {
        pthread_mutex_lock(&w->mu);
        bool was = w->witness_mismatch;
        w->witness_mismatch = strcmp(pl.witness, w->witness_prefix) != 0;
        if (w->witness_mismatch && !was)
            log_error("site witness: %s uses the witness prefix %s, this site %s: no automatic promotion until both "
                      "name the same (site.witness.namespace, site.witness.etcd3.hosts)",
                      cfg->site.peer_scope, pl.witness[0] ? pl.witness : "(none)", w->witness_prefix);
        pthread_mutex_unlock(&w->mu);
    }
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
    bool try_claim = gone && !w->claimed_epoch && in->may_claim && !w->witness_mismatch &&
                     (no_wait || gone_ms >= site_witness_claim_wait_ms(cfg));
    if (gone && w->witness_mismatch)
        str_fmt(seen.why, sizeof(seen.why), "%s looks gone, but it uses another witness: no automatic promotion",
                cfg->site.peer_scope);
    pthread_mutex_unlock(&w->mu);
    int64_t claimed = try_claim ? claim(cfg, s, in, &seen, gone_ms, w->witness_prefix) : 0;

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

static bool open_stores(const Config *cfg, const char *witness_prefix, bool peer_only, WitnessStores *s, Err *err)
{
    const SiteConfig *sc = &cfg->site;
    memset(s, 0, sizeof(*s));
    s->peer = store_for(cfg, sc->peer_etcd_hosts, sc->n_peer_etcd_hosts, sc->peer_namespace, sc->peer_scope, err);
    if (peer_only)
        return s->peer != NULL;
    s->wit = dcs_etcd_new(sc->witness_etcd_hosts, sc->n_witness_etcd_hosts, witness_prefix, cfg->etcd_username,
                          cfg->etcd_password, call_timeout_ms(cfg), err);
    s->own = store_for(cfg, cfg->etcd_hosts, cfg->n_etcd_hosts, NULL, cfg->scope, err);
    return s->peer && s->wit && s->own;
}

/* The pair's keys in the witness: one prefix for both sites, whichever names it first, under
 * site.witness.namespace (default "/service/", not the file's namespace: both sites must agree). */
static void witness_prefix_of(const Config *cfg, char *out, size_t sz)
{
    const SiteConfig *sc = &cfg->site;
    bool mine_first = strcmp(cfg->scope, sc->peer_scope) < 0;
    char *pair = str_printf("pgvigil-sites/%s+%s", mine_first ? cfg->scope : sc->peer_scope,
                            mine_first ? sc->peer_scope : cfg->scope);
    char *prefix = dcs_prefix(sc->witness_namespace ? sc->witness_namespace : "/service/", pair);
    str_copy(out, sz, prefix);
    free(prefix);
    free(pair);
}

static void *part_main(void *arg)
{
    WitnessPart *p = arg;
    SiteWitness *w = p->w;
    const Config *cfg = w->cfg;
    Err err = {{0}};
    WitnessStores s;
    bool opened = open_stores(cfg, w->witness_prefix, p->peer_part, &s, &err);
    pthread_mutex_lock(&w->mu);
    if (!opened) {
        /* counted as tried and not held: a primary demotes rather than write unconfirmed */
        str_fmt(p->why, sizeof(p->why), "cannot set up its etcd clients: %s", err.msg);
        p->failed = true;
        log_error("site witness: %s", p->why);
    }
    while (!w->stop && opened) {
        WitnessInput in = w->in;
        pthread_mutex_unlock(&w->mu);
        int64_t start = mono_ms();
        site_witness_round(w, &s, &in, p->peer_part ? 1 : 0, false);
        pthread_mutex_lock(&w->mu);
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

void site_witness_init(SiteWitness *w, const Config *cfg)
{
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    witness_prefix_of(cfg, w->witness_prefix, sizeof(w->witness_prefix));
    pthread_mutex_init(&w->mu, NULL);
    mono_cond_init(&w->cv);
    w->parts[0].w = w->parts[1].w = w;
    w->parts[1].peer_part = true;
}

void site_witness_round(SiteWitness *w, WitnessStores *s, const WitnessInput *in, int part, bool no_wait)
{
    WitnessPart *p = &w->parts[part];
    pthread_mutex_lock(&w->mu);
    if (in->mode != p->mode) {
        p->known = false;
        p->why[0] = '\0';
        if (part == 0) {
            w->gone_since_ms = 0;
            w->claimed_epoch = 0;
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (in->mode == WITNESS_HOLD)
        (part ? hold_peer : hold_witness)(w->cfg, s, in, p, w);
    else if (in->mode == WITNESS_OBSERVE && part == 0)
        observe_round(w->cfg, s, in, p, w, no_wait);
    pthread_mutex_lock(&w->mu);
    p->mode = in->mode;
    pthread_mutex_unlock(&w->mu);
}

void site_witness_free(SiteWitness *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

void site_witness_start(SiteWitness *w, const Config *cfg)
{
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    if (!cfg->site.automatic)
        return;
    site_witness_init(w, cfg);
    w->started = true;
    for (int i = 0; i < 2; i++) {
        WitnessPart *p = &w->parts[i];
        p->started = pthread_create(&p->thread, NULL, part_main, p) == 0;
        if (!p->started) {
            p->failed = true;
            log_error("site witness: cannot start a thread: the primary role cannot be confirmed by %s",
                      i == 0 ? "the witness" : cfg->site.peer_scope);
        }
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
    if (w->started)
        site_witness_get_info(w, out);
}

void site_witness_get_info(SiteWitness *w, WitnessInfo *out)
{
    memset(out, 0, sizeof(*out));
    const WitnessPart *wp = &w->parts[0], *pp = &w->parts[1];
    pthread_mutex_lock(&w->mu);
    out->mode = wp->mode;
    out->witness_until_ms = wp->mode == WITNESS_HOLD ? wp->until_ms : 0;
    out->peer_until_ms = pp->mode == WITNESS_HOLD ? pp->until_ms : 0;
    out->hold_until_ms = out->witness_until_ms > out->peer_until_ms ? out->witness_until_ms : out->peer_until_ms;
    /* a part that cannot run counts as tried: it holds nothing */
    bool kw = wp->failed || (wp->known && wp->mode == WITNESS_HOLD), kp = pp->failed || (pp->known && pp->mode == WITNESS_HOLD);
    out->known = (kw && kp) || out->hold_until_ms > mono_ms();
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
    site_witness_free(w);
    w->started = false;
}
