/* The agent of one node: the HA loop (observe -> decide -> act -> publish), its long-running
 * actions on a worker thread, the fencing process, and the REST API backend.
 * Threads: the loop thread owns everything except `mu`-protected fields, which the worker
 * and the REST thread also touch. */
#ifndef PGVIGIL_AGENT_H
#define PGVIGIL_AGENT_H

#include "api/node_status.h"
#include "api/rest.h"
#include "backup/archive_service.h"
#include "backup/schedule.h"
#include "common/common.h"
#include "config/config.h"
#include "dcs/dcs.h"
#include "ha/agent_effects.h"
#include "ha/fence.h"
#include "ha/ha_decide.h"

#include <jansson.h>
#include "ha/source_probe.h"
#include "ha/aa_leader.h"
#include "ha/peer_site.h"
#include "ha/site_witness.h"
#include "pg/pg.h"

#include <pthread.h>
#include <signal.h>

typedef enum JobKind {
    JOB_NONE = 0,
    JOB_BOOTSTRAP,
    JOB_CLONE,
    JOB_START_REPLICA,
    JOB_START_PRIMARY,
    JOB_PROMOTE,
    JOB_REWIND,
    JOB_REINIT,
    JOB_RELEASE,
    JOB_RESTART,
    JOB_STANDBY_DEMOTE,
    JOB_RESCUE,
} JobKind;

typedef struct Job {
    JobKind kind;
    char target[NAME_MAX_LEN];  /* member to clone/rewind from / follow */
    bool remote;                /* ... or instead the standby_cluster source (target "") */
    char host[256];             /* its PostgreSQL address (the source's may be a list "a,b") */
    int port;
    char slot[64];
    char peer_slots[32][64];    /* JOB_PROMOTE with use_slots: the other members' slots */
    int new_timeline;           /* JOB_PROMOTE: the timeline reserved in etcd (0: PostgreSQL's pick) */
    int n_peer_slots;
    char sync_names[1200];      /* synchronous_standby_names (>= SSN_TEXT_MAX) */
    char replica_ssn[64];       /* ... written for a replica: SSN_BLOCK in synchronous mode */
    KvList dyn_params;          /* copy of the cluster's postgresql.parameters */
    int start_timeout;          /* seconds (primary_start_timeout) */
    char sysid[32];             /* JOB_CLONE, JOB_REINIT: the cluster's system identifier */
    int leader_timeline;        /* ... and the timeline of the member cloned from (its member key) */
    bool did_initdb;            /* set by the worker: the data directory is ours to remove */
    char restored[40];          /* set by the worker: the backup a bootstrap or clone restored ("" none) */
    /* remote: standby_cluster's restore_command ("" the default), recovery_min_apply_delay ("" none),
     * and create_replica_methods for a standby cluster's bootstrap */
    char restore_command[1024];
    char min_apply_delay[64];
    char methods[4][16];
    int n_methods;
    char source_sig[1400];      /* remote: agent_source_signature() of the source followed */
    char divergence[1200];      /* set by a remote JOB_REWIND: what the rewind threw away ("" none) */
    bool rewind_not_run;        /* set by the worker: pg_rewind was not started (data untouched) */
    bool standby_cluster;       /* the cluster was a standby cluster when the job was made */
    char rescue_time[80];       /* JOB_RESCUE: recover to this time, then promote (detached); JOB_PROMOTE: the
                                 * same as the site's primary (site promote --target-time) */
    int target_start_tl;        /* JOB_PROMOTE at a time: the timeline it recovers along (0: the current one) */
    bool start_blocked;         /* start jobs: a promotion at a time is pending here, nothing else starts */
} Job;

typedef struct Agent {
    Config *cfg;
    Dcs *dcs;                   /* loop thread only */
    PgNode pg;                  /* loop thread only (the worker has its own copy) */
    RestServer *rest;
    ArchiveService *archive;    /* backup.archive: WAL archive service (NULL when off) */
    bool archive_logged;        /* a failure to start it was logged */
    bool archive_alerted;       /* archive_failing was sent for the current failure streak */
    /* scheduled backups (agent_backup.c) */
    Schedule backup_schedule;
    pid_t backup_pid;           /* the running `pgvigil backup take`, 0 none */
    int64_t backup_slot;        /* the minute it is for */
    int64_t backup_done_slot;   /* the last minute handled */
    char backup_running_json[160];
    char backup_slot_text[32];
    Fence fence;
    bool fence_ok;              /* the fencing process runs (or was replaced); false: demote */
    bool leave_fence;           /* exiting with postgres maybe running: the fence stays */
    bool identity_checked;      /* our name and system identifier were checked against etcd */
    uint64_t lease_gen;         /* changes with every new lease (see fence_new_lease) */
    bool strays_checked;        /* fences of an earlier agent of our data directory are gone */
    bool refused;               /* another live agent has our name: exit touching nothing */
    int pidfile_fd;             /* agent.pid_file, locked while we run (-1 none) */
    /* promotion: the history key entry still to write (before the new leader serves) */
    bool history_pending;
    int history_tli;            /* the timeline we left */
    Lsn history_lsn;            /* where it forked (the new timeline's switch point) */
    char history_reason[80];    /* "failover", "switchover", "restored from backup <label>" */
    int history_checked_tli;    /* a timeline found recorded in the history key (checked once) */
    int promote_timeline;       /* reserved for the promotion being submitted (see agent_act.c) */
    Effects fx;                 /* VIP, DNS, notifications (loop thread) */

    Cluster cluster;            /* last successful read */
    bool dcs_ok;
    bool lease_ok;
    bool lease_fail_logged;
    int64_t lease_deadline_ms;  /* monotonic: etcd may expire our lease from then on */
    int64_t lease_sent_ms;      /* monotonic: when the last successful renewal was sent */
    int64_t dcs_timeout_ms;
    PgState pgst;
    char following[NAME_MAX_LEN];
    bool following_remote;      /* following the standby_cluster source (following is "") */
    char following_sig[1400];   /* ... as configured then (agent_source_signature) */
    SourceProbe source;         /* standby cluster: the source's identity and position */
    PeerSiteWatch peer;         /* site.peer: the other site's record */
    AaLeader aa_leader;         /* active_active: the group's write lead (its own thread) */
    bool site_start_seen;       /* the first observation with a data directory was made */
    bool site_cold_start;       /* ... and postgres was down then */
    char site_error_logged[256];/* the other site's read error last logged */
    SiteWitness witness;        /* site.failover automatic: the witness thread */
    char witness_why_logged[256];
    bool witness_held_logged;   /* "holds the primary role" was logged (and still true) */
    int64_t site_hold_until_ms; /* the primary role is confirmed until (feeds the fence); -1: n/a */
    int64_t site_unknown_since; /* a running primary's confirmation is not known yet since (0 known) */
    bool rewind_failed;
    bool start_failed;
    bool start_diverged;        /* the failed start: past the fork of the leader's timeline */
    int64_t start_failed_at;    /* monotonic time of the last failed start */
    int64_t promote_failed_at;  /* monotonic time of the last failed promotion (retried after a pause) */
    char promote_at_seen[80];   /* T of the promotion at a time whose marker is here ("" none) */
    char promote_at_refused[80];/* a target time already refused in the log (logged once) */
    int start_failures;         /* consecutive failed starts */
    int64_t pg_down_since;      /* 0 when up */
    int64_t not_streaming_since;
    bool follow_diverged;       /* a replica's postgres said it cannot follow the leader's timeline */
    long log_streamed_at;       /* the server log's size when the replica was last seen streaming:
                                 * what it says of a fork is read from there on */
    int64_t not_accepting_since; /* postgres runs but refuses connections (starting, recovering) */
    int64_t leaderless_since;   /* monotonic; 0 while a leader key exists */
    Lsn stopped_checkpoint;     /* cleanly stopped: the shutdown checkpoint (published as position) */
    bool release_pending;       /* switchover: stopped; publish the final position, then release */
    char role[16];              /* last published role */
    int64_t tick_started_ms;    /* monotonic start of the last tick */
    char last_reason[256];
    Action last_action;
    int64_t last_member_write_ms;
    int64_t status_written_ms;  /* last write of the status key (leader) */
    int64_t heartbeat_ms;       /* last site heartbeat (a primary another site follows) */
    bool guard_on;              /* the site lag guard makes commits wait for the other site */
    int64_t guard_lag;          /* ... the lag it measured on the permanent slots (-1 none) */
    bool guard_warned;          /* ... "not applied in synchronous mode" was logged */
    char last_member_shape[1024]; /* last member record written, with xlog_location 0 ("" = rewrite) */
    Lsn last_member_pos;          /* its xlog_location */
    int64_t failovers;
    bool was_leader;            /* held the leader key at the end of the last tick */
    char sync_applied[1200];    /* synchronous_standby_names we last applied (>= SSN_TEXT_MAX) */
    int64_t sync_changed_ms;    /* monotonic time of that change (0 unknown) */
    char *params_applied;       /* dynamic postgresql.parameters last written (JSON-ish text) */

    /* worker thread */
    pthread_t worker;
    bool worker_started;
    Job job;                    /* owned by the worker while busy */
    bool busy;                  /* mu */
    bool job_done;              /* mu: finished, result not yet consumed by the loop */
    bool job_ok;                /* mu */
    char job_err[512];          /* mu */
    pthread_cond_t job_cv;
    pthread_cond_t done_cv;     /* signalled when a job finishes (the loop waits on it) */

    /* shared with the REST thread */
    pthread_mutex_t mu;
    NodeStatus status;          /* mu */
    char *cluster_json;         /* mu: for GET /cluster */
    char *history_json;         /* mu */
    char *config_json;          /* mu */
    bool req_restart;           /* mu */
    bool req_reinit;            /* mu */
    bool req_reload;            /* mu */
    char req_rescue[80];        /* mu: POST /rescue's target time ("" none) */
    bool rescued;               /* opened at a time by a rescue: detached, no HA actions */
    char rescued_at[80];
    char rescue_time[80];       /* the target of the rescue being submitted */
    Dcs *api_dcs;               /* REST thread's own etcd handle (guarded by api_mu) */
    pthread_mutex_t api_mu;

    Config **old_cfgs;          /* configs replaced by reloads, freed at exit (other threads may
                                   still hold pointers into them) */
    int n_old_cfgs;

    volatile sig_atomic_t stop;
    volatile sig_atomic_t hup;
    volatile sig_atomic_t cancel_jobs;  /* shutdown: stop the worker's running program */
} Agent;

/* agent.c */
/* Write our member key when what it says changed (and refresh the REST snapshot). */
void agent_publish(Agent *a);

/* agent_act.c */
void agent_act(Agent *a, const Decision *d);
bool agent_worker_start(Agent *a, Err *err);
void agent_worker_stop(Agent *a);
bool agent_job_running(Agent *a);
/* Sleep until the running job finishes or timeout_ms passes (returns at once without a job). */
void agent_wait_job(Agent *a, int64_t timeout_ms);
/* Hand a long action to the worker thread (no-op while it is busy). */
void agent_submit(Agent *a, JobKind kind, const char *target);
/* ... with the standby_cluster source as the target */
void agent_submit_remote(Agent *a, JobKind kind);
void agent_collect_job(Agent *a);          /* consume a finished job's result (loop thread) */
void agent_run_callback(Agent *a, const char *which, const char *role);
void agent_reap_children(void);
/* Rewrite the configuration and reload when the cluster's dynamic parameters changed. */
void agent_apply_params(Agent *a);
/* Re-read the YAML file (REST POST /reload, SIGHUP) and apply what can change live. */
void agent_reload_config(Agent *a);
bool agent_member_pg_addr(const Cluster *c, const char *name, char *host, size_t hsz, int *port);
/* What postgres is configured with to follow a standby_cluster source: a change of any of it
 * (host, port, slot, restore_command, delay) means re-pointing. */
void agent_source_signature(const StandbyCluster *sc, char *buf, size_t sz);
/* An agent restarted under a running standby leader recognises that postgres follows the source. */
void agent_adopt_source(Agent *a);

/* Write the server's configuration for a job: as a replica of the job's target or as a
 * primary; keep_signal leaves standby.signal alone; recovery: settings of a server restored
 * from a backup (NULL none). */
bool agent_write_job_conf(PgNode *pg, const Job *j, bool replica, bool keep_signal, const KvList *recovery, Err *err);

/* agent_divergence.c (worker thread): before a rewind from the standby_cluster source, keep the
 * WAL past the fork beside the server log and report its committed transactions (j->divergence
 * gets the summary). The target must be stopped. */
bool agent_divergence_report(Agent *a, PgNode *pg, Job *j, Err *err);

/* agent_site.c: a superseded site becomes a standby cluster; o->site_unchecked until the other
 * site was read once */
void agent_site_tick(Agent *a, Observation *o);
/* agent_witness.c: automatic site failover (site_witness.h): the witness thread's mode, the
 * observation's site_hold_*, and the standby site's promotion once the thread claimed it */
void agent_witness_tick(Agent *a, Observation *o);
/* postgres may run as a primary, or a running job may make it one */
bool agent_may_be_primary(Agent *a);

/* agent_restore.c: data directories made from the backup repository (worker thread) */
/* A new replica of the job's target, by each of postgresql.create_replica_methods in turn until
 * one works (pgvigil: from backup.repository; basebackup: pg_basebackup); started as a standby. */
bool agent_create_replica(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err);
/* bootstrap.method pgvigil_restore: restore, recover from the archive, promoted by PostgreSQL. */
bool agent_bootstrap_restore(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err);
/* The recovery settings (into rec) that take a stopped standby to `when` from the WAL it has and
 * the repository's, with no apply delay, and promote it there; its standby.signal is removed. */
void agent_recovery_to_time(const Config *cfg, const char *when, KvList *rec);
/* JOB_RESCUE: stop, recover to j->rescue_time from the WAL there is (no apply delay), promote. */
bool agent_rescue(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err);
/* 1 when this standby's last replayed commit is before `when` (or it replayed none), 0 when
 * not, -1 + err when it cannot tell or `when` is not a timestamp. */
int agent_replayed_before(PgNode *pg, const char *when, Err *err);
/* Until PostgreSQL ends recovery and promotes itself (recovery_target_action = promote, or the
 * end of the archive); false when it stops instead, or the agent shuts down. */
bool agent_wait_promoted(Agent *a, PgNode *pg, Err *err);
/* An empty signal file (recovery.signal, standby.signal) in data_dir, owned by the server's user. */
bool agent_write_signal(const char *data_dir, const char *name, Err *err);

/* agent_promote_at.c: `site promote --target-time T` on the member it names */
/* A promotion at a target time this member must carry out, or finish: the marker its data
 * directory keeps from the job's start to its end (an interrupted one: the agent or postgres
 * stopped meanwhile), or the site record naming this member while it is still on the timeline
 * the promotion starts from. T into t; the timeline reserved for it (0: not yet) into *tl. */
bool agent_promote_at_pending(const Agent *a, char *t, size_t tsz, int *tl);
/* The same with the timeline it recovers along (*start_tl) and whether the marker exists. */
bool agent_promote_at_state(const Agent *a, char *t, size_t tsz, int *tl, int *start_tl, bool *marker);
/* The site record names another member of this site to open at a time, and that promotion is
 * not over (this one may have applied what came after): its name, or NULL. */
const char *agent_promote_at_other(const Agent *a, char *member, size_t msz);
/* Loop thread, each tick: the marker follows the site record. Written as soon as the record
 * ("promoting") names this member while it runs as a standby that has applied nothing at or
 * after T (the CLI waits for it, through GET /patroni's promote_at, before it changes the
 * site); removed when the record no longer names it before the job started, or once postgres
 * runs promoted. */
void agent_promote_at_tick(Agent *a);
/* JOB_PROMOTE with j->rescue_time: stop, recover to that time from the WAL there is (no apply
 * delay), promote as the site's primary on j->new_timeline. The marker is written before
 * postgres is stopped and removed once it is promoted. */
bool agent_promote_at(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err);
/* a promotion that failed is not retried at once (another member may take over meanwhile, and
 * each try reserves a timeline number) */
#define PROMOTE_RETRY_PAUSE_MS 5000
/* The marker of a promotion at a time, in the data directory (T, reserved timeline or 0, the
 * timeline it recovers along, member), one per line. */
#define PROMOTE_AT_FILE "pgvigil.promote_at"
/* PostgreSQL's promotion takes the timeline after the newest history file it finds: empty ones
 * below `want` make it take `want`. */
bool agent_place_timeline_markers(PgNode *pg, int want, Err *err);
/* The marker a rescued data directory carries (its agent stays detached across restarts). */
#define RESCUED_FILE "pgvigil.rescued"

/* agent.c */
/* Arm the fence at our lease deadline (minus its margin) before taking the leader key or
 * starting a job that makes postgres a primary; false when we hold no live lease. */
bool agent_arm_fence_for_lead(Agent *a);

/* agent_identity.c */
/* Refuse to run when another live agent uses our member name (its member key carries another
 * api_url), or when our data directory belongs to another cluster (system identifier). */
bool agent_identity_ok(Agent *a, Err *err);
/* Write our pid to agent.pid_file (when set) and lock it: false + err when another live agent
 * holds it. */
bool agent_pidfile_take(Agent *a, Err *err);
void agent_pidfile_remove(Agent *a);

/* agent_history.c */
/* After a promotion: append the timeline change to the history key with compare-and-set,
 * retried every tick until it succeeds; until then the new leader does not announce itself. */
void agent_write_history(Agent *a);
/* The switch point of timeline tli from pg_wal/<tli>.history in data_dir. */
bool agent_fork_lsn(const char *data_dir, int tli, int *parent_tli, Lsn *lsn, Err *err);

/* agent_api.c */
RestBackend agent_rest_backend(Agent *a);

/* Scheduled backups: start one when backup.schedule says so and this member wins the cluster's
 * turn; collect it when it ends (agent_backup.c). */
void agent_backup_tick(Agent *a);

#endif
