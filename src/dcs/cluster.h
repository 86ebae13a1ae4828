/* The cluster as read from etcd in one range read: leader, members, and the shared keys.
 * Field names follow Patroni's JSON so existing tooling can read a pgvigil cluster. */
#ifndef PGVIGIL_CLUSTER_H
#define PGVIGIL_CLUSTER_H

#include "common/common.h"
#include "common/lsn.h"
#include "config/config.h"
#include "dcs/aa_group.h"

#define NAME_MAX_LEN 64
#define MAX_SYNC 16

/* members/<name>: {"conn_url":"postgres://127.0.0.1:5432/postgres",
 *   "api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary",
 *   "version":"0.1.0","xlog_location":50331744,"timeline":1,
 *   "replication_state":"streaming","tags":{"nofailover":true},"pending_restart":false} */
typedef struct Member {
    char name[NAME_MAX_LEN];
    char conn_url[256];
    char api_url[256];
    char state[32];            /* running | starting | stopped | crashed | creating replica | ... */
    char role[32];             /* primary | replica | uninitialized */
    char version[32];
    Lsn xlog_location;         /* primary: current write LSN; replica: replay (or receive) LSN */
    int timeline;
    char replication_state[32];/* streaming | in archive recovery | "" */
    Tags tags;
    bool pending_restart;
    int64_t mod_revision;      /* etcd revision of the key (not in the JSON) */
} Member;

/* failover: {"leader":"node1","member":"node2","scheduled_at":null} (member = candidate) */
typedef struct FailoverReq {
    bool present;
    char leader[NAME_MAX_LEN];     /* for switchover: the current leader; empty for failover */
    char candidate[NAME_MAX_LEN];  /* "member" in Patroni's JSON; empty = any */
    int64_t mod_revision;
} FailoverReq;

/* sync: {"leader":"node1","sync_standby":"node2,node3","pgvigil_catchup":{"node3":"0/5000000"}}
 * pgvigil_catchup (ignored by Patroni tooling) guards a newly added synchronous standby: it may
 * be promoted only once its position reaches the LSN given ("pending": not yet, whatever its
 * position), so it cannot win an election while it lacks commits the previous synchronous
 * standby acknowledged. */
#define LSN_PENDING UINT64_MAX
typedef struct SyncState {
    bool present;
    char leader[NAME_MAX_LEN];
    char members[MAX_SYNC][NAME_MAX_LEN];
    Lsn catchup[MAX_SYNC];          /* per member: 0 none, LSN_PENDING, or the LSN to reach */
    int n_members;
    int64_t mod_revision;
} SyncState;

typedef struct Cluster {
    bool initialized;              /* the `initialize` key exists */
    char sysid[32];                /* its value: the PostgreSQL system identifier */
    char leader[NAME_MAX_LEN];     /* "" when there is no leader key */
    int64_t leader_mod_revision;
    int64_t leader_lease;
    Member *members;
    int n_members;
    bool has_config;
    DynConfig config;              /* defaults when no config key */
    int64_t config_mod_revision;
    char *config_json;             /* raw text of the config key, NULL when absent */
    bool config_invalid;           /* the key does not parse: config holds the defaults (and a
                                      standby_cluster that was there, as far as it parses) */
    FailoverReq failover;
    SyncState sync;
    char *history_json;            /* raw history key: [[timeline, lsn, "reason", "time", "new leader"], ...] */
    int history_timeline;          /* highest timeline the history says was reached (0 unknown) */
    Lsn status_optime;             /* status key {"optime": N} */
    int reserved_timeline;         /* pgvigil_timeline {"timeline": N, "member": "x"}: the newest
                                      timeline a promotion reserved (0 none) */
    int64_t reserved_timeline_rev; /* its mod_revision (0 absent) */
    /* scheduled backups: pgvigil_backup_running {"slot": N, "member": "x"} on the runner's lease,
     * pgvigil_backup_last {"slot": N, "member": "x", "ok": true}; slots are minutes since 1970 */
    int64_t backup_running_slot;   /* 0: none running */
    char backup_running_member[64];
    int64_t backup_last_slot;      /* 0: none yet */
    /* pgvigil_backup_newest {"label": "...", "stop_epoch": N, "bytes": N, "seconds": X}: the
     * newest backup that completed, written by `backup take` */
    char backup_newest_label[40];
    int64_t backup_newest_stop;    /* epoch seconds it completed, 0 none known */
    int64_t backup_newest_bytes;   /* its database size */
    double backup_newest_seconds;  /* how long it took */
    /* pgvigil_site: this site's part in site switchovers and promotions (written by `pgvigil
     * site`): {"role": "primary"|"standby", "state": ..., "peer": scope, ...}; raw, NULL absent */
    char *site_json;
    /* aa/...: an active-active group's keys, when the prefix read is a group's (see aa_group.h);
     * NULL when there are none */
    AaGroupView *aa;
    int64_t revision;              /* etcd header revision of the read */
} Cluster;

void cluster_init(Cluster *c);      /* zero + config defaults */
void cluster_free(Cluster *c);      /* frees members; leaves c zeroed */
const Member *cluster_member(const Cluster *c, const char *name);
/* The epoch of the cluster's pgvigil_site record (0 when there is none or it has none). */
int64_t cluster_site_epoch(const Cluster *c);
/* A member's conn_url, "postgres://u:p@10.0.0.1:5432/postgres?x=y" (or "host=.. port=.."), as
 * "10.0.0.1:5432". */
void cluster_member_host(const char *conn_url, char *buf, size_t sz);

/* JSON codecs. Parsers are forgiving of unknown keys and strict about types of known ones. */
bool member_from_json(const char *name, const char *json, Member *out, Err *err);
char *member_to_json(const Member *m);             /* caller frees */
bool failover_from_json(const char *json, FailoverReq *out, Err *err);
char *failover_to_json(const FailoverReq *f);
bool sync_from_json(const char *json, SyncState *out, Err *err);
char *sync_to_json(const SyncState *s);
bool sync_has(const SyncState *s, const char *name);
/* The catch-up LSN of a member (0 when none or not listed). */
Lsn sync_catchup(const SyncState *s, const char *name);
/* Append one entry to a history JSON array (NULL/invalid history starts a new one). */
char *history_append(const char *history_json, int timeline, Lsn switch_lsn, const char *reason,
                     const char *new_leader);

/* Build a Cluster from the key/value pairs of one range read of the prefix. Keys are relative
 * to the prefix ("leader", "members/node1", ...). Bad JSON in one member skips that member
 * with a warning; it never fails the whole read. */
typedef struct DcsKv {
    char *key;
    char *value;
    int64_t mod_revision;
    int64_t create_revision;
    int64_t lease;
} DcsKv;

bool cluster_from_kvs(const DcsKv *kvs, int n, int64_t revision, Cluster *out, Err *err);

#endif
