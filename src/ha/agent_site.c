/* The agent's part in two sites (site.peer): a site superseded while it was away becomes a
 * standby cluster of the other site on its own, and nothing here takes the primary role before
 * the other site was looked at once (see peer_site.h). Loop thread. */
#include "common/common.h"
#include "common/log.h"
#include "ha/agent.h"

#include <jansson.h>

/* The other site's record says it became the primary site after this one's last record: take the
 * standby_cluster it left for us (a CAS on the config key; every agent here may try, one wins). */
static bool become_standby(Agent *a, const PeerSiteInfo *pi)
{
    Cluster *c = &a->cluster;
    char *patch = str_printf("{\"standby_cluster\":%s}", pi->rejoin_as);
    Err err = {{0}};
    char *json = dynconfig_json_merge(c->config_json ? c->config_json : "{}", patch, &err);
    free(patch);
    if (!json) {
        log_error("site: cannot merge the other site's rejoin_as into this site's config key: %s", err.msg);
        return false;
    }
    bool swapped = false;
    if (!a->dcs->ops->cas_rev(a->dcs, "config", c->has_config ? c->config_mod_revision : 0, json, &swapped, NULL,
                              &err)) {
        log_error("site: cannot write standby_cluster into the config key: %s", err.msg);
    } else if (swapped) {
        log_error("site: %s was promoted while this site was away (its epoch %lld is newer than ours, %lld): this "
                  "site is now its standby cluster (standby_cluster set); what only this site had is reported "
                  "before the rewind",
                  a->cfg->site.peer_scope, (long long)pi->epoch, (long long)cluster_site_epoch(c));
        char *rec = str_printf("{\"state\":\"superseded\",\"by\":\"%s\",\"epoch\":%lld}", a->cfg->site.peer_scope,
                               (long long)pi->epoch);
        if (!a->dcs->ops->put(a->dcs, "pgvigil_site", rec, false, &err))
            log_warn("site: cannot record it in pgvigil_site: %s", err.msg);
        free(rec);
    }
    free(json);
    return swapped;
}

void agent_site_tick(Agent *a, Observation *o)
{
    if (!peer_site_enabled(&a->peer)) {
        o->site_unchecked = false;
        return;
    }
    if (!a->site_start_seen && a->pgst.data_dir_valid) {
        /* everything here was down (a site outage): the other site may have been promoted meanwhile */
        a->site_start_seen = true;
        a->site_cold_start = !a->pgst.running;
    }
    PeerSiteInfo pi;
    peer_site_get(&a->peer, &pi);
    if (pi.attempted && !pi.reachable && strcmp(pi.error, a->site_error_logged) != 0) {
        log_warn("site: cannot read the other site %s: %s", a->cfg->site.peer_scope, pi.error);
        str_copy(a->site_error_logged, sizeof(a->site_error_logged), pi.error);
    } else if (pi.reachable && a->site_error_logged[0]) {
        log_info("site: the other site %s can be read again", a->cfg->site.peer_scope);
        a->site_error_logged[0] = '\0';
    }
    /* until the other site was read: not at all yet, or, after a cold start, never successfully
     * (a site back from an outage may have been superseded: it waits, unless told otherwise) */
    bool cold_blind = a->site_cold_start && !pi.ever_read && !a->cluster.config.site_start_without_peer;
    o->site_unchecked = !pi.attempted || cold_blind;
    if (!a->dcs_ok || !pi.reachable || a->cluster.config.standby.present)
        return;
    bool peer_primary = strcmp(pi.to, a->cfg->site.peer_scope) == 0 &&
                        (strcmp(pi.state, "promoted") == 0 || strcmp(pi.state, "done") == 0);
    if (peer_primary && pi.epoch > cluster_site_epoch(&a->cluster) && pi.rejoin_as[0]) {
        become_standby(a, &pi);
        /* this tick's view still says primary site: nothing here takes the primary role until
         * the next read shows standby_cluster (or while it could not be written) */
        o->site_unchecked = true;
    }
}
