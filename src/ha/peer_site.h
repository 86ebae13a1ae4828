/* The other site (site.peer in the node's file), read from its etcd every couple of seconds on a
 * thread of its own. An agent uses it for one rule: a site the other one was promoted over while
 * it was away (the other site's pgvigil_site record names it, with a higher epoch) becomes a
 * standby cluster of it before anything here may take the primary role again; and until the
 * first read has been tried after the agent started, nothing here takes that role. */
#ifndef PGVIGIL_PEER_SITE_H
#define PGVIGIL_PEER_SITE_H

#include "common/common.h"
#include "config/config.h"

#include <pthread.h>

typedef struct PeerSiteInfo {
    bool attempted;         /* a read finished (either way) since the watch started */
    bool too_long;          /* the record does not fit: treated as not read */
    bool reachable;         /* the last read succeeded */
    int64_t epoch;          /* its pgvigil_site record's epoch (0 none) */
    char state[32];         /* ... its state ("promoted", "done", ...) */
    char to[256];           /* ... the site that became primary */
    char rejoin_as[4096];   /* ... the standby_cluster a superseded site takes (JSON, "" none) */
    bool ever_read;         /* a read succeeded since the watch started */
    int max_timeline;       /* the newest timeline in its member records, as last read (kept) */
    char error[256];
} PeerSiteInfo;

typedef struct PeerSiteWatch {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;              /* mu */
    PeerSiteInfo info;      /* mu */
    const Config *cfg;      /* site.peer, etcd credentials (the agent's first file; read only) */
} PeerSiteWatch;

/* Starts the thread when cfg names a peer site; a no-op otherwise. */
void peer_site_start(PeerSiteWatch *w, const Config *cfg);
bool peer_site_enabled(const PeerSiteWatch *w);
void peer_site_get(PeerSiteWatch *w, PeerSiteInfo *out);
void peer_site_stop(PeerSiteWatch *w);

#endif
