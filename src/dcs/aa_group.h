/* An active-active group's keys in etcd, under <namespace><group>/aa/ (pure code: parsing and
 * formatting; the agent's aa_leader.c writes them, the proxy and `pgvigil aa` read them).
 *
 *   aa/nodes/<node>              {"conn_url": "postgres://h:p/db", "location": "vl", "writable": true}
 *                                on the node agent's lease: the nodes that may lead
 *   aa/leader                    {"node": "a", "conn_url": ..., "ttl": 5} on the holder's lease: the group's
 *   aa/location/<loc>/leader     write leader, and each location's own
 *       during a planned switchover, also "handover_to": "b" (writes go nowhere), then
 *       "mark": "0/3000060" (b takes the key once it has applied a's WAL past the mark)
 *   aa/switchover                {"to": "b", "location": "", "drain_ms": 5000} written by `pgvigil aa switchover`;
 *                                the leader adds "state": "failed", "error": "..." when it fails
 *   aa/ddl_lock                  {"node": "a", "pid": 1234} on the holder's lease: the group's DDL
 *                                lock, for one backend of node a
 *   aa/ddl_last                  {"a": "0/3000060", "b": ...}: per node, the end of its last DDL
 *                                commit; a holder waits to have applied every other node's
 *   aa/drain/<node>              {"since": <epoch seconds>}, by `pgvigil aa maintenance`: the
 *                                node takes no lead and the proxies send it no new work */
#ifndef PGVIGIL_AA_GROUP_H
#define PGVIGIL_AA_GROUP_H

#include "common/common.h"

#define AA_NAME_LEN 64
#define AA_MAX_LEADERS 16
#define AA_MAX_GROUP_NODES 32

typedef struct AaLeaderRec {
    char location[AA_NAME_LEN];     /* "" = the group's write leader */
    char node[AA_NAME_LEN];
    char conn_url[256];
    char handover_to[AA_NAME_LEN];  /* a switchover to that node is under way ("" none) */
    char mark[32];                  /* ... and the new leader waits to have applied past it ("" not yet) */
    int ttl;                        /* the holder's lease, seconds (0 unknown): a proxy that has not
                                     * read etcd for that long no longer trusts the key */
    int64_t mod_revision;
    int64_t lease;
} AaLeaderRec;

typedef struct AaNodeRec {
    char name[AA_NAME_LEN];
    char conn_url[256];
    char location[AA_NAME_LEN];
    bool writable;                  /* its postgres answers and is not in recovery */
    char api_url[256];              /* its agent's REST API ("" not known) */
    bool drained;                   /* aa/drain/<node>: no new work, no lead (maintenance) */
} AaNodeRec;

typedef struct AaSwitchoverReq {
    bool present;
    int drain_ms;                   /* how long the old leader lets its transactions in flight end */
    char to[AA_NAME_LEN];
    char location[AA_NAME_LEN];
    char state[16];                 /* "" asked, "failed" */
    char error[256];
    int64_t mod_revision;
} AaSwitchoverReq;

typedef struct AaDdlRec {
    bool present;
    char node[AA_NAME_LEN];
    int pid;
    int64_t mod_revision;
} AaDdlRec;

/* aa/ddl_last: per node, where its last DDL commit ended in its WAL */
typedef struct AaDdlDone {
    bool present;
    int n;
    char node[AA_MAX_GROUP_NODES][AA_NAME_LEN];
    char lsn[AA_MAX_GROUP_NODES][32];
    int64_t mod_revision;
} AaDdlDone;

typedef struct AaGroupView {
    AaLeaderRec leaders[AA_MAX_LEADERS];
    int n_leaders;
    AaNodeRec nodes[AA_MAX_GROUP_NODES];
    int n_nodes;
    AaSwitchoverReq switchover;
    AaDdlRec ddl_lock;
    AaDdlDone ddl_last;
    char drained[AA_MAX_GROUP_NODES][AA_NAME_LEN];   /* aa/drain/<node> keys */
    int n_drained;
} AaGroupView;

/* Take one key of a range read (relative to the group prefix) into v; false when the key is not
 * one of the group's (or its value does not parse: then *bad names it, and it is left out). */
bool aa_group_take(AaGroupView *v, const char *key, const char *value, int64_t mod_revision, int64_t lease,
                   char *bad, size_t badsz);
/* The write leader of location ("" or NULL: the group's), NULL when there is none. */
const AaLeaderRec *aa_group_leader(const AaGroupView *v, const char *location);
const AaNodeRec *aa_group_node(const AaGroupView *v, const char *name);
/* "aa/leader" or "aa/location/<loc>/leader". */
void aa_leader_key(const char *location, char *buf, size_t sz);
/* Values (caller frees). handover_to and mark may be NULL or "". */
char *aa_leader_json(const char *node, const char *conn_url, const char *handover_to, const char *mark, int ttl);
char *aa_node_json(const char *conn_url, const char *location, bool writable, const char *api_url);
bool aa_group_is_drained(const AaGroupView *v, const char *name);
char *aa_ddl_json(const char *node, int pid);
/* aa/ddl_last with node's entry set to lsn (the others kept). */
char *aa_ddl_done_json(const AaDdlDone *d, const char *node, const char *lsn);
char *aa_switchover_json(const char *to, const char *location, int drain_ms, const char *state, const char *error);

#endif
