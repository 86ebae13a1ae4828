/* Asking the other members for their positions (GET <api_url>, Patroni's /patroni document)
 * during an election. All requests run in parallel with one short deadline. */
#ifndef PGVIGIL_PEERS_H
#define PGVIGIL_PEERS_H

#include "dcs/cluster.h"
#include "ha/ha_decide.h"

/* Fill out[] (capacity cap) with every member but `me`; returns the count. Unreachable peers
 * are listed with reachable=false. */
int peers_fetch(const Cluster *c, const char *me, int timeout_ms, PeerPos *out, int cap);
/* Parse a /patroni document (pure; used by peers_fetch and unit tests). */
bool peer_from_status_json(const char *json, PeerPos *out);

#endif
