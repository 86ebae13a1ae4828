/* The agent's part in an active-active group's write lead (active_active in the node's file):
 * a thread of its own, with its own etcd handle and lease (active_active.ttl), so that the HA
 * loop's pace never slows a change of write leader.
 *
 * Every tenth of a second it asks its postgres whether it can take writes (it answers, is not
 * in recovery, and has pgvigil_aa created: its node name comes from pgvigil_aa.local_node), and
 * publishes that as aa/nodes/<node>. A node that can take writes takes a vacant leader key (the
 * group's, and its location's when it has one); a leader whose postgres stops answering deletes
 * its key at once, and another node takes it at its next look: the write lead moves within a
 * couple of tenths of a second. When the agent dies too, the key goes with its lease (ttl).
 *
 * A planned switchover (aa/switchover, from `pgvigil aa switchover`): the leader marks its key
 * as handing over (proxies stop sending it writes and close their connections to it), refuses
 * clients' writes for the handover (pgvigil_aa.handover_block), waits for the transactions in
 * flight, marks its stream (pgvigil_aa.mark) and writes the mark in the key; the new leader
 * takes the key once it has applied past the mark, so nothing the old leader committed can
 * conflict with the new leader's first writes. A new leader that does not get there within
 * AA_HANDOVER_TIMEOUT_MS leaves the key to the old one, which takes the lead back and says why
 * in aa/switchover.
 *
 * The same thread keeps the group's DDL lock for this node's backends (below). */
#ifndef PGVIGIL_AA_LEADER_H
#define PGVIGIL_AA_LEADER_H

#include "common/common.h"
#include "config/config.h"

#include <pthread.h>
#include <stdatomic.h>

#define AA_HANDOVER_TIMEOUT_MS 10000

#define AA_DDL_WAITERS 32

typedef struct AaLeader {
    const Config *cfg;          /* the agent's first file (read only) */
    char conn_url[256];         /* published for proxies: postgres://connect_address/postgres */
    char api_url[300];          /* ... and this agent's REST API, for `pgvigil aa maintenance` */
    pthread_t thread;
    bool started;
    atomic_bool stop;
    /* the group's DDL lock for this node's backends (the REST threads ask, the thread acts) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ddl_waiting[AA_DDL_WAITERS];    /* mu: backends asking, oldest first */
    int n_ddl_waiting;                  /* mu */
    int ddl_holder;                     /* mu: the backend holding it here (0 none) */
    bool ddl_release;                   /* mu: the holder is done ... */
    char ddl_release_lsn[32];           /* mu: ... its commit ended there ("0/0": nothing committed) */
    char ddl_why[256];                  /* mu: what the waiters wait for */
} AaLeader;

/* Starts the thread when cfg has active_active.group; a no-op otherwise. */
void aa_leader_start(AaLeader *l, const Config *cfg, const char *conn_host, int conn_port);
/* Stops it; with its lease revoked, the keys it held go at once. */
void aa_leader_stop(AaLeader *l);

/* The group's DDL lock (aa/ddl_lock), from the REST API (POST /aa/ddl_lock, /aa/ddl_unlock) for
 * a backend of this node (pgext/aa/pgvigil_aa_ddl_lock.c): the lock is granted once no other
 * node holds it and this node has applied the last holder's commit (aa/ddl_last); a holder
 * whose backend is gone is released. Returns an HTTP status and a message (malloc'd). */
int aa_leader_ddl_lock(AaLeader *l, int pid, int timeout_ms, char **body);
int aa_leader_ddl_unlock(AaLeader *l, int pid, const char *lsn, char **body);

#endif
