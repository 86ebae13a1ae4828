/* Two sites: the standby_cluster a site takes to follow the other one, built from that site's
 * member records. Shared by `pgvigil site` and the agents (automatic site failover). */
#ifndef PGVIGIL_DCS_SITE_RECORD_H
#define PGVIGIL_DCS_SITE_RECORD_H

#include "dcs/cluster.h"
#include "dcs/dcs.h"

#include <jansson.h>

/* The standby_cluster that follows newp (scope newp_scope): its members' addresses, its one
 * permanent slot, and what old (the standby_cluster newp had) said about restoring WAL, delays
 * and replica methods. NULL + err when newp has no member records or mixed ports. */
json_t *site_standby_for(const Cluster *newp, const char *newp_scope, const StandbyCluster *old, Err *err);

/* The site a pgvigil_site record names as the primary one: its "to", or, after a switchover that
 * was rolled back, its "from"; "" when it names none (a superseded site's record). */
const char *site_record_primary(const json_t *rec);

/* Two sites that both look primary (one may be read stale): the one the newer pgvigil_site record
 * names as primary, a_scope or b_scope; "" when neither record settles it (same epoch, or the
 * newer names neither). */
const char *site_record_winner(const Cluster *a, const char *a_scope, const Cluster *b, const char *b_scope);

/* `site promote --target-time T`: the promotion this record (state "promoting" or "promoted")
 * asks of site `scope` opens its standby leader `*member` at T, not at the end of the WAL it
 * received. T until that promotion is over ("target_done" set by the member once promoted, or
 * by the CLI); NULL otherwise (no target, another site, a rolled back record). `timeline` is
 * unused (kept for the callers' symmetry with the record's starting timeline). */
const char *site_record_target_time(const json_t *rec, const char *scope, int timeline, const char **member);

/* A site failover (automatic or `site promote`): the other site may have promoted on its own
 * meanwhile, a few timelines past anything this site saw, and two servers on one timeline number
 * with different histories cannot be rewound apart. So the promotion that follows takes a number
 * well clear of it: the pgvigil_timeline reservation moves SITE_TIMELINE_GAP past the newest
 * timeline known here or, from its members' records (other_max), there. */
#define SITE_TIMELINE_GAP 100
bool site_reserve_timeline_gap(Dcs *d, const Cluster *c, int other_max, Err *err);
/* The newest timeline among a cluster's member records (0 none). */
int site_max_timeline(const Cluster *c);

#endif
