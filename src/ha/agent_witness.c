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
    const char *to = json_string_value(json_object_get(o, "to"));
    /* a record without "to" says this site was superseded */
    int64_t e = to && strcmp(to, a->cfg->scope) == 0 ? cluster_site_epoch(c) : -1;
    *switchover = e >= 0 && !json_object_get(o, "kind");
    json_decref(o);
    return e;
}

/* The thread claimed the primary role for this standby site: record "promoted" (with the
 * standby_cluster the other site takes when it comes back), then drop standby_cluster so that
 * this standby leader promotes. True when both are written. */
static bool promote_site(Agent *a, int64_t epoch)
{
    Cluster *c = &a->cluster;
    Err err = {{0}};
    json_t *back = site_standby_for(c, a->cfg->scope, &c->config.standby, &err);
    if (!back) {
        log_error("site witness: cannot build the standby_cluster %s rejoins as: %s", a->cfg->site.peer_scope, err.msg);
        return false;
    }
    json_t *rec = json_pack("{s:s, s:s, s:s, s:I, s:s, s:f, s:o}", "state", "promoted", "from", a->cfg->site.peer_scope,
                            "to", a->cfg->scope, "epoch", (json_int_t)epoch, "kind", "automatic", "at", wall_now(),
                            "rejoin_as", back);
    char *s = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    bool ok = a->dcs->ops->put(a->dcs, "pgvigil_site", s, false, &err);
    free(s);
    if (!ok) {
        log_error("site witness: cannot write pgvigil_site: %s", err.msg);
        return false;
    }
    PeerSiteInfo pi;
    peer_site_get(&a->peer, &pi);
    if (!site_reserve_timeline_gap(a->dcs, c, pi.max_timeline, &err)) {
        log_error("site witness: cannot reserve a timeline clear of %s's: %s", a->cfg->site.peer_scope, err.msg);
        return false;
    }
    char *json = dynconfig_json_merge(c->config_json ? c->config_json : "{}", "{\"standby_cluster\":null}", &err);
    bool swapped = false;
    ok = json && a->dcs->ops->cas_rev(a->dcs, "config", c->has_config ? c->config_mod_revision : 0, json, &swapped,
                                      NULL, &err);
    free(json);
    if (!ok || !swapped) {
        log_error("site witness: cannot remove standby_cluster from the config key%s%s", err.msg[0] ? ": " : "",
                  err.msg[0] ? err.msg : " (it changed meanwhile; trying again)");
        return false;
    }
    log_warn("site witness: %s is the primary site now (epoch %lld): standby_cluster removed, promoting", a->cfg->scope,
             (long long)epoch);
    return true;
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
    if (may_be_primary || (!standby && (i_lead || (!c->leader[0] && !a->cfg->tags.nofailover))))
        in.mode = WITNESS_HOLD;
    else if (standby && i_lead)
        in.mode = WITNESS_OBSERVE;
    bool switchover = false;
    in.my_epoch = epoch_as_primary(a, &switchover);
    in.takeover_epoch = switchover ? in.my_epoch : -1;
    in.own_epoch = cluster_site_epoch(c);
    PeerSiteInfo pi;
    peer_site_get(&a->peer, &pi);
    in.peer_epoch = pi.epoch;
    in.may_claim = standby && i_lead && a->dcs_ok && a->lease_ok && !c->config_invalid && !c->config.pause &&
                   a->pgst.running && a->pgst.in_recovery && !o->site_unchecked && !a->rescued;
    site_witness_set(&a->witness, &in);

    WitnessInfo wi;
    site_witness_get(&a->witness, &wi);
    o->site_hold_needed = !standby;
    o->site_hold_known = wi.known && wi.mode == WITNESS_HOLD;
    o->site_hold_until_ms = wi.hold_until_ms;
    o->site_margin_ms = site_witness_margin_ms(a->cfg);
    a->site_hold_until_ms = o->site_hold_needed && o->site_hold_known ? wi.hold_until_ms : -1;
    bool held = wi.mode == WITNESS_HOLD && wi.hold_until_ms > mono_ms();
    if (held && !a->witness_held_logged)
        log_info("site witness: %s holds the primary role (confirmed by %s%s%s)", a->cfg->scope,
                 wi.witness_until_ms > mono_ms() ? "the witness" : "",
                 wi.witness_until_ms > mono_ms() && wi.peer_until_ms > mono_ms() ? " and " : "",
                 wi.peer_until_ms > mono_ms() ? a->cfg->site.peer_scope : "");
    a->witness_held_logged = held;
    if (strcmp(wi.why, a->witness_why_logged) != 0) {
        /* a standby site watching is routine; a primary site losing its confirmation is not */
        if (wi.why[0] && wi.mode == WITNESS_HOLD)
            log_warn("site witness: %s", wi.why);
        else if (wi.why[0])
            log_info("site witness: %s", wi.why);
        str_copy(a->witness_why_logged, sizeof(a->witness_why_logged), wi.why);
    }
    if (standby && i_lead && wi.mode == WITNESS_OBSERVE && wi.claimed_epoch > 0 && a->dcs_ok)
        promote_site(a, wi.claimed_epoch);
}
