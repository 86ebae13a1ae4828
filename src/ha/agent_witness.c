/* The agent's part in automatic site failover (site.failover: automatic, see site_witness.h):
 * what the witness thread should do this tick, what the HA decision learns from it, and the
 * standby site's promotion once the thread has claimed the primary role. Loop thread. */
#include "common/common.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "dcs/site_record.h"
#include "ha/agent.h"

#include <jansson.h>

/* This site's pgvigil_site epoch when the record names this site as primary (0 without one),
 * -1 when it names another site or says this one was superseded; *switchover: the record is a
 * switchover's (no "kind"). */
static int64_t epoch_as_primary(const Agent *a, bool *switchover)
{
    const Cluster *c = &a->cluster;
    *switchover = false;
    if (!c->site_json)
        return 0;
    json_t *o = json_loads(c->site_json, 0, NULL);
    int64_t e = strcmp(site_record_primary(o), a->cfg->scope) == 0 ? cluster_site_epoch(c) : -1;
    *switchover = e >= 0 && !json_object_get(o, "kind");
    json_decref(o);
    return e;
}

/* This site's record: an automatic claim of ours that still says "promoting" (the agent stopped
 * between the claim and the end of the promotion), or NULL. */
static json_t *own_promoting_record(const Agent *a)
{
    json_t *o = a->cluster.site_json ? json_loads(a->cluster.site_json, 0, NULL) : NULL;
    const char *st = json_string_value(json_object_get(o, "state"));
    const char *kind = json_string_value(json_object_get(o, "kind"));
    if (st && kind && strcmp(st, "promoting") == 0 && strcmp(kind, "automatic") == 0 &&
        strcmp(site_record_primary(o), a->cfg->scope) == 0)
        return o;
    json_decref(o);
    return NULL;
}

/* The record the old site acts on, last: "promoted", with the standby_cluster it takes. */
static bool record_promoted(Agent *a, int64_t epoch, json_t *rejoin_as)
{
    json_t *rec = json_pack("{s:s, s:s, s:s, s:I, s:s, s:f, s:O}", "state", "promoted", "from", a->cfg->site.peer_scope,
                            "to", a->cfg->scope, "epoch", (json_int_t)epoch, "kind", "automatic", "at", wall_now(),
                            "rejoin_as", rejoin_as);
    char *s = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    Err err = {{0}};
    bool ok = a->dcs->ops->put(a->dcs, "pgvigil_site", s, false, &err);
    free(s);
    if (!ok)
        log_error("site witness: cannot write pgvigil_site \"promoted\" (retrying): %s", err.msg);
    return ok;
}

/* The thread claimed the primary role for this standby site ("promoting" is recorded): reserve a
 * timeline clear of the other site's (once), drop standby_cluster so that this standby leader
 * promotes, then record "promoted" with the standby_cluster the other site takes when it comes
 * back. A step that fails is retried on the next tick. */
static void promote_site(Agent *a, int64_t epoch)
{
    Cluster *c = &a->cluster;
    Err err = {{0}};
    json_t *back = site_standby_for(c, a->cfg->scope, &c->config.standby, &err);
    if (!back) {
        log_error("site witness: cannot build the standby_cluster %s rejoins as: %s", a->cfg->site.peer_scope, err.msg);
        return;
    }
    PeerSiteInfo pi;
    peer_site_get(&a->peer, &pi);
    if (!site_reserve_timeline_gap(a->dcs, c, pi.max_timeline, &err)) {
        log_error("site witness: cannot reserve a timeline clear of %s's: %s", a->cfg->site.peer_scope, err.msg);
        json_decref(back);
        return;
    }
    char *json = dynconfig_json_merge(c->config_json ? c->config_json : "{}", "{\"standby_cluster\":null}", &err);
    bool swapped = false;
    bool ok = json && a->dcs->ops->cas_rev(a->dcs, "config", c->has_config ? c->config_mod_revision : 0, json,
                                           &swapped, NULL, &err);
    free(json);
    if (!ok || !swapped) {
        log_error("site witness: cannot remove standby_cluster from the config key%s%s", err.msg[0] ? ": " : "",
                  err.msg[0] ? err.msg : " (it changed meanwhile; trying again)");
        json_decref(back);
        return;
    }
    log_warn("site witness: %s is the primary site now (epoch %lld): standby_cluster removed, promoting", a->cfg->scope,
             (long long)epoch);
    record_promoted(a, epoch, back);
    json_decref(back);
}

void agent_witness_tick(Agent *a, Observation *o)
{
    if (!site_witness_enabled(&a->witness))
        return;
    const Cluster *c = &a->cluster;
    bool standby = c->config.standby.present;
    bool i_lead = c->leader[0] && strcmp(c->leader, a->cfg->name) == 0;
    bool may_be_primary = agent_may_be_primary(a);
    WitnessInput in = {0};
    /* the primary site's leader, a member that may become it, or one that may still write */
    if (!standby && !a->rescued && (i_lead || may_be_primary || (!c->leader[0] && !a->cfg->tags.nofailover)))
        in.mode = WITNESS_HOLD;
    else if (standby && i_lead && !a->rescued)
        in.mode = WITNESS_OBSERVE;
    bool switchover = false;
    in.my_epoch = epoch_as_primary(a, &switchover);
    in.takeover_epoch = switchover ? in.my_epoch : -1;
    in.own_epoch = cluster_site_epoch(c);
    in.may_take_over = i_lead || !c->leader[0];
    PeerSiteInfo pi;
    peer_site_get(&a->peer, &pi);
    in.peer_epoch = pi.epoch;
    in.may_claim = standby && i_lead && a->dcs_ok && a->lease_ok && !c->config_invalid && !c->config.pause &&
                   a->pgst.running && a->pgst.in_recovery && !o->site_unchecked && !a->rescued;
    if (in.may_claim) {
        /* a claim that could not be finished would only lock the other site out */
        Err err = {{0}};
        json_t *back = site_standby_for(c, a->cfg->scope, &c->config.standby, &err);
        in.may_claim = back != NULL;
        json_decref(back);
    }
    site_witness_set(&a->witness, &in);

    WitnessInfo wi;
    site_witness_get(&a->witness, &wi);
    int64_t now = mono_ms();
    o->site_hold_needed = !standby;
    o->site_hold_known = wi.known;
    o->site_hold_until_ms = wi.hold_until_ms;
    o->site_margin_ms = site_witness_margin_ms(a->cfg);
    if (!standby && !wi.known && pg_may_be_primary(&a->pgst)) {
        /* a running primary whose confirmation was not tried yet (the agent just started): the
         * other site cannot claim before the claim wait has passed since its keys expired, which
         * was no earlier than our start; until the first round says more, that bounds it */
        if (!a->site_unknown_since)
            a->site_unknown_since = now;
        o->site_hold_known = true;
        o->site_hold_until_ms = a->site_unknown_since + site_witness_claim_wait_ms(a->cfg) / 2;
    } else {
        a->site_unknown_since = 0;
    }
    a->site_hold_until_ms = o->site_hold_needed && o->site_hold_known ? o->site_hold_until_ms : -1;
    bool held = wi.mode == WITNESS_HOLD && wi.hold_until_ms > now;
    if (held && !a->witness_held_logged)
        log_info("site witness: %s holds the primary role (confirmed by %s%s%s)", a->cfg->scope,
                 wi.witness_until_ms > now ? "the witness" : "",
                 wi.witness_until_ms > now && wi.peer_until_ms > now ? " and " : "",
                 wi.peer_until_ms > now ? a->cfg->site.peer_scope : "");
    a->witness_held_logged = held;
    if (strcmp(wi.why, a->witness_why_logged) != 0) {
        /* the primary losing its confirmation matters; a standby site watching, or a member
         * racing for the key, is routine */
        if (wi.why[0] && wi.mode == WITNESS_HOLD && (i_lead || may_be_primary))
            log_warn("site witness: %s", wi.why);
        else if (wi.why[0])
            log_info("site witness: %s", wi.why);
        str_copy(a->witness_why_logged, sizeof(a->witness_why_logged), wi.why);
    }
    if (standby && i_lead && wi.mode == WITNESS_OBSERVE && wi.claimed_epoch > 0 && a->dcs_ok)
        promote_site(a, wi.claimed_epoch);
    /* a claim whose promotion was interrupted after standby_cluster went: record it now */
    json_t *rec = !standby && a->dcs_ok ? own_promoting_record(a) : NULL;
    if (rec) {
        Err err = {{0}};
        json_t *back = site_standby_for(c, a->cfg->scope, &c->config.standby, &err);
        if (back && record_promoted(a, cluster_site_epoch(c), back))
            log_info("site witness: recorded the end of the promotion of %s", a->cfg->scope);
        json_decref(back);
        json_decref(rec);
    }
}
