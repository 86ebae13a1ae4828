/* Two sites: the standby_cluster a site takes to follow the other one, built from that site's
 * member records. Shared by `pgvigil site` and the agents (automatic site failover). */
#ifndef PGVIGIL_DCS_SITE_RECORD_H
#define PGVIGIL_DCS_SITE_RECORD_H

#include "dcs/cluster.h"

#include <jansson.h>

/* The standby_cluster that follows newp (scope newp_scope): its members' addresses, its one
 * permanent slot, and what old (the standby_cluster newp had) said about restoring WAL, delays
 * and replica methods. NULL + err when newp has no member records or mixed ports. */
json_t *site_standby_for(const Cluster *newp, const char *newp_scope, const StandbyCluster *old, Err *err);

#endif
