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
 * in aa/switchover. */
#ifndef PGVIGIL_AA_LEADER_H
#define PGVIGIL_AA_LEADER_H

#include "common/common.h"
#include "config/config.h"

#include <pthread.h>
#include <stdatomic.h>

#define AA_HANDOVER_TIMEOUT_MS 10000

typedef struct AaLeader {
    const Config *cfg;          /* the agent's first file (read only) */
    char conn_url[256];         /* published for proxies: postgres://connect_address/postgres */
    pthread_t thread;
    bool started;
    atomic_bool stop;
} AaLeader;

/* Starts the thread when cfg has active_active.group; a no-op otherwise. */
void aa_leader_start(AaLeader *l, const Config *cfg, const char *conn_host, int conn_port);
/* Stops it; with its lease revoked, the keys it held go at once. */
void aa_leader_stop(AaLeader *l);

#endif
