/* The standby cluster's source (standby_cluster.host/port: the primary site), watched from a
 * thread of its own so that a site that does not answer never slows the HA loop: every couple
 * of seconds a replication connection runs IDENTIFY_SYSTEM, which gives the source's system
 * identifier (a standby cluster never follows another cluster's server), its timeline and its
 * flushed WAL position (what the DR site's lag in bytes is measured against). */
#ifndef PGVIGIL_SOURCE_PROBE_H
#define PGVIGIL_SOURCE_PROBE_H

#include "common/common.h"
#include "common/lsn.h"
#include "config/config.h"

#include <pthread.h>

typedef struct SourceInfo {
    bool known;             /* the last attempt succeeded */
    char sysid[32];
    int timeline;
    Lsn flush_lsn;          /* the source's current flush position (IDENTIFY_SYSTEM xlogpos) */
    int64_t at_ms;          /* monotonic time of the last success, 0 never */
    char error[256];        /* the last failure ("" none) */
} SourceInfo;

typedef struct SourceProbe {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;              /* mu */
    char conninfo[1024];    /* mu: "" = nothing to watch */
    SourceInfo info;        /* mu */
} SourceProbe;

void source_probe_init(SourceProbe *p);
/* Watch the source of `sc` with the replication credentials of cfg (NULL or a standby cluster
 * without a host: stop watching and forget what was known). Cheap when nothing changed. */
void source_probe_set(SourceProbe *p, const StandbyCluster *sc, const Config *cfg);
void source_probe_get(SourceProbe *p, SourceInfo *out);
void source_probe_stop(SourceProbe *p);

/* The libpq connection string for a replication connection to the standby_cluster source
 * (a host list gets target_session_attrs=primary: the writable one is meant). */
void source_conninfo(const StandbyCluster *sc, const Config *cfg, bool replication, char *buf, size_t sz);

#endif
