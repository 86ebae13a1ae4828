/* The HA brain: a pure function from what this agent observed (local PostgreSQL, one etcd
 * read, the peers' positions) to one action and a human-readable reason. No I/O here: the
 * decision rules live in ha_decide.c and are unit-tested with tables. Rules about how an action
 * is carried out (the fence, its arming before the key is taken, the sync step order, the
 * history key, timeline reservation) live with the actions (docs/architecture.md). */
#ifndef PGVIGIL_HA_DECIDE_H
#define PGVIGIL_HA_DECIDE_H

#include "common/common.h"
#include "common/lsn.h"
#include "config/config.h"
#include "dcs/cluster.h"

/* A peer's answer to GET /patroni during an election. */
typedef struct PeerPos {
    char name[NAME_MAX_LEN];
    bool reachable;
    bool pg_running;
    bool is_primary;           /* running and not in recovery */
    Lsn lsn;                   /* max(received, replayed) for a replica, write LSN for a primary */
    int timeline;
    Tags tags;
} PeerPos;

typedef struct Observation {
    const char *name;          /* this member */
    Tags tags;                 /* this member's tags */
    int64_t now_ms;            /* monotonic */

    /* local PostgreSQL */
    bool action_running;       /* a long action (start, clone, rewind...) is in progress */
    bool data_dir_valid;
    bool pg_running;           /* postmaster alive */
    bool pg_accepting;         /* answered a query this tick */
    bool pg_in_recovery;
    bool standby_signal;       /* standby.signal present: a running server is read-only */
    bool was_primary;          /* stopped data dir whose last run was as a primary (controldata) */
    Lsn my_lsn;                /* write LSN (primary) or max(receive, replay) (replica) */
    int my_timeline;           /* max(the timeline postgres runs on, the newest history file) */
    int pg_timeline;           /* the timeline postgres runs (or, a standby, receives) on; 0 unknown */
    const char *my_sysid;      /* "" when unknown */
    int64_t pg_down_ms;        /* how long the postmaster has been seen down (0 when up) */
    const char *following;     /* member our primary_conninfo points at, "" none */
    bool following_remote;     /* standby cluster: it points at the standby_cluster source */
    const char *remote_sysid;  /* standby cluster: the source's system identifier ("" unknown) */
    const char *remote_error;  /* ... why it is unknown ("" or NULL: not tried yet) */
    int remote_timeline;       /* the source's timeline (0 unknown) */
    bool site_unchecked;       /* site.peer is set and the other site was not read yet since the
                                  agent started: no taking of the primary role before */
    /* automatic site failover (site_witness.h), on the primary site: the primary role needs the
     * witness's or the other site's confirmation, and ends before it runs out */
    bool site_hold_needed;
    bool site_hold_known;      /* the confirmation was tried since it became needed */
    int64_t site_hold_until_ms;/* monotonic: confirmed until (0: not confirmed) */
    int64_t site_margin_ms;    /* writes stop this long before */
    bool rewind_failed;        /* the last pg_rewind attempt failed */
    bool start_failed;         /* the last start attempt failed */
    bool start_diverged;       /* ... because this replica went past the point where the leader's
                                  timeline forked (postgres said so): it needs pg_rewind */
    int64_t start_failed_ago_ms; /* time since that failed attempt */
    int start_failures;        /* consecutive failed starts */
    bool data_dir_foreign;     /* not empty and not a PostgreSQL data directory at all */
    int64_t not_streaming_ms;  /* replica following a leader but not streaming for this long */
    bool follow_diverged;      /* ... and postgres says it went past the fork of the leader's
                                  timeline (its log, after a few seconds of not streaming) */
    int64_t leaderless_ms;     /* how long no leader key has been seen (0 when there is one) */
    bool reinit_on_rewind_failure; /* postgresql.remove_data_directory_on_rewind_failure */

    /* etcd */
    bool fence_ok;             /* the fencing process runs: without it no primary may run */
    bool dcs_ok;               /* this tick's read succeeded */
    bool lease_ok;             /* our lease was renewed this tick */
    int64_t lease_deadline_ms; /* monotonic time by which etcd may expire our lease */
    int64_t demote_margin_ms;  /* demote this long before the lease deadline */
    const Cluster *cluster;    /* valid when dcs_ok */

    /* election: positions of the other members, gathered only when there is no leader */
    const PeerPos *peers;
    int n_peers;
} Observation;

typedef enum Action {
    ACT_WAIT = 0,         /* nothing to do now */
    ACT_BOOTSTRAP,        /* win the initialize key, initdb, start as primary, take the leader key */
    ACT_CLONE,            /* pg_basebackup from the leader, then start as replica */
    ACT_START_REPLICA,    /* start PostgreSQL as a standby of `target` ("" = none yet) */
    ACT_START_PRIMARY,    /* restart PostgreSQL in place as primary (we hold the leader key) */
    ACT_KEEP_LEADER,      /* leader with a live lease: maintain slots, sync, status */
    ACT_ACQUIRE,          /* take the leader key for an already-running primary (no promote) */
    ACT_PROMOTE,          /* take the leader key, then promote */
    ACT_DEMOTE,           /* stop now (immediate) and come back as a read-only standby */
    ACT_FOLLOW,           /* re-point primary_conninfo to `target` and reload */
    ACT_REWIND,           /* stop, pg_rewind from `target`, start as its standby */
    ACT_REINIT,           /* wipe the data directory and clone from `target` */
    ACT_RELEASE,          /* switchover: checkpoint, stop cleanly, delete the leader key */
    ACT_GIVE_UP_LEADER,   /* postgres will not come back: delete the leader key */
    ACT_STANDBY_DEMOTE,   /* the cluster became a standby cluster: checkpoint, stop cleanly,
                             start again as its standby leader, following the source */
    ACT__COUNT
} Action;

typedef struct Decision {
    Action action;
    char target[NAME_MAX_LEN];  /* member to follow / clone / rewind from */
    bool remote;                /* ... or instead the standby_cluster source (target "") */
    char reason[256];
    bool clear_failover;        /* the failover key is stale or refused: delete it */
} Decision;

/* Nothing takes the primary role now: the other site not read yet, a config key that does not
 * parse, or (automatic site failover) this site not confirmed by the witness or the other site. */
bool ha_primary_blocked(const Observation *o);
void ha_decide(const Observation *obs, Decision *out);
const char *ha_action_name(Action a);

#endif
