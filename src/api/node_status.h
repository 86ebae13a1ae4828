/* The snapshot of one node's state that the agent publishes after every HA tick and the
 * REST API answers from. Plain data, copied under a lock; no pointers. */
#ifndef PGVIGIL_NODE_STATUS_H
#define PGVIGIL_NODE_STATUS_H

#include "common/common.h"
#include "common/lsn.h"
#include "config/config.h"
#include "pg/pg.h"

typedef struct NodeStatus {
    char name[64];
    char scope[64];
    char role[16];            /* "primary", "replica", "standby_leader", "uninitialized" */
    char state[32];           /* "running", "starting", "stopped", "crashed", "creating replica",
                                 "restarting", "rewinding", "demoting" */
    bool pg_running;          /* postmaster alive and accepting connections */
    bool in_recovery;         /* pg_is_in_recovery() */
    bool is_leader;           /* this agent holds the leader key on a live lease */
    bool streaming;           /* replica: walreceiver is streaming from a primary */
    bool paused;              /* cluster in maintenance mode */
    bool sync_mode;           /* synchronous_mode on */
    bool sync_standby;        /* this node is listed in the sync key */
    bool pending_restart;
    bool commit_guard;        /* postgres runs the commit guard (pgext/guard) */
    bool dcs_ok;              /* last etcd operation succeeded */
    Lsn wal_lsn;              /* primary: pg_current_wal_lsn() */
    Lsn receive_lsn;          /* replica: pg_last_wal_receive_lsn() */
    Lsn replay_lsn;           /* replica: pg_last_wal_replay_lsn() */
    Lsn leader_lsn;           /* leader's last published position (for lag), 0 unknown */
    int64_t lag_bytes;        /* replica: leader_lsn - replay_lsn, -1 unknown */
    int timeline;
    int server_version;       /* e.g. 150004 */
    double postmaster_start_time; /* epoch seconds, 0 unknown */
    char sysid[32];
    char leader_name[64];     /* current leader key value, "" none */
    Tags tags;
    int64_t dcs_last_seen;    /* epoch seconds of last successful DCS read */
    int64_t failovers;        /* role changes to primary since agent start (metrics) */
    /* WAL archive (backup.archive), this agent's service */
    bool archive_on;
    uint64_t archived_total, archive_failures_total;
    double archive_last_success;  /* epoch seconds of the last WAL file stored, 0 none */
    int archive_ready;        /* WAL files PostgreSQL waits to archive (archive_status/\*.ready) */
    char archive_last_error[256];
    int64_t archive_lag_bytes;    /* primary: its WAL not in the repository yet; -1 unknown */
    double archive_rpo_seconds;   /* primary: seconds since the newest WAL stored when some is not; -1 unknown */
    /* the cluster's newest complete backup (pgvigil_backup_newest in etcd) */
    char backup_newest_label[40];
    int64_t backup_newest_stop;   /* epoch seconds, 0 none known */
    int64_t backup_age_seconds;   /* at the snapshot */
    int64_t backup_newest_bytes;
    double backup_newest_seconds;
    /* standby cluster (a DR site following another one) */
    bool standby_cluster;         /* the cluster's config has standby_cluster */
    char promote_at[80];          /* a promotion at this time is pending here (site promote --target-time) */
    char source[160];             /* its host:port ("" archive only) */
    bool source_known;            /* the source answered lately (identity and position) */
    int64_t site_lag_bytes;       /* standby leader: the source's flushed WAL not received here; -1 unknown */
    int64_t wal_free_bytes;       /* free space where pg_wal is, -1 unknown */
    bool site_guard;              /* the site lag guard is configured (and applies: no sync mode) */
    bool site_guard_on;           /* ... and commits wait for the other site now */
    int64_t site_guard_lag;       /* ... the lag of the permanent slots it measured, -1 unknown */
    double site_lag_seconds;      /* standby leader: age of the last replayed commit (the source's
                                     heartbeats: one a second); -1 unknown */
    /* automatic site failover (site.failover: automatic) */
    bool site_auto;
    const char *witness_mode;     /* "hold", "observe" or "idle" (static strings) */
    int64_t site_confirmed_ms;    /* hold: the primary role is confirmed for this long still (0 not) */
    bool witness_reachable;
    bool witness_peer_reachable;  /* the other site's etcd, as the witness thread last read it */
    char witness_holder[128];     /* the site the witness key names ("" none) */
    int64_t site_gone_ms;         /* observe: the other site looks gone for this long (0 not) */
    /* an active-active node: the apply from each peer (PgState's) */
    bool aa_present;
    int64_t aa_conflicts_last_minute;
    AaPeerObs aa_peers[16];
    int n_aa_peers;
} NodeStatus;

#endif
