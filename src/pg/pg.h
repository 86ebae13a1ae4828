/* Control and observation of the local PostgreSQL: initdb, start, stop, promote, pg_basebackup,
 * pg_rewind, the configuration files pgvigil owns, slots, and libpq queries with deadlines.
 * Every call is bounded in time; none may hang the HA loop on a frozen server. */
#ifndef PGVIGIL_PG_H
#define PGVIGIL_PG_H

#include "common/common.h"
#include "common/lsn.h"
#include "config/config.h"

#include <libpq-fe.h>
#include <sys/types.h>

typedef struct PgNode {
    const Config *cfg;           /* not owned */
    char host[128];              /* first listen host, where the agent connects */
    int port;
    char conn_host[128];         /* connect_address host, what peers use */
    int conn_port;
    PGconn *conn;                /* cached superuser connection; NULL when closed */
    int64_t deadline_cap_ms;     /* monotonic; when set, no query or connect runs past it */
    char log_path[4096];         /* server log (outside data_dir so clones don't copy it) */
} PgNode;

typedef struct WalSender {
    char application_name[64];
    char state[32];              /* streaming, catchup, ... */
    char sync_state[16];         /* sync, quorum, potential, async */
    Lsn flush_lsn, replay_lsn;
} WalSender;

/* the apply from one peer of an active-active group (pgvigil_aa.status() and peers) */
typedef struct AaPeerObs {
    char peer[64];
    bool enabled;        /* not paused */
    bool running;        /* its apply worker runs */
    bool failed;         /* the worker's last error stands */
    int64_t lag_bytes;
    double lag_seconds;
    int64_t applied_transactions;
    int64_t conflicts;
    double clock_difference_ms;
} AaPeerObs;

typedef struct PgState {
    bool data_dir_nonempty;
    bool data_dir_valid;         /* PG_VERSION and global/pg_control present */
    bool data_dir_foreign;       /* not empty, yet no PG_VERSION: not ours to overwrite */
    bool running;                /* postmaster process alive */
    bool accepting;              /* a query succeeded this tick */
    bool in_recovery;
    bool standby_signal;         /* standby.signal present */
    Lsn wal_lsn;                 /* primary: pg_current_wal_lsn() */
    Lsn receive_lsn, replay_lsn; /* replica */
    int timeline;
    int history_tli;             /* highest NNNNNNNN.history file in pg_wal (timelines we know) */
    char sysid[32];
    bool streaming;              /* walreceiver status = streaming */
    char upstream[128];          /* walreceiver sender_host:port */
    double postmaster_start_time;
    int server_version;
    bool pending_restart;
    bool commit_guard;           /* the pgvigil_guard module is loaded and names a lease file */
    double replay_age_s;         /* standby: seconds since the commit time of the last transaction
                                    replayed (the primary site's heartbeats keep it small); -1 unknown */
    pid_t postmaster_pid;
    WalSender senders[32];
    int n_senders;
    /* an active-active node (pgvigil_aa created in the agent's database): the apply per peer */
    bool aa_present;
    int64_t aa_conflicts_last_minute;
    AaPeerObs aa_peers[16];
    int n_aa_peers;
} PgState;

/* Could the server be accepting writes? Unknown counts as yes, except that a server started
 * with standby.signal cannot have left recovery without answering as a primary. */
bool pg_may_be_primary(const PgState *st);

void pg_node_init(PgNode *pg, const Config *cfg);
void pg_node_close(PgNode *pg);        /* close the cached connection */

/* Look at the data directory and the server. Never fails: what it cannot learn stays false/0. */
void pg_observe(PgNode *pg, PgState *st);
/* The live postmaster of data_dir per its pid file: 0 when there is none, or when the pid is
 * gone, a zombie, or reused by a process that is not postgres. */
pid_t pg_postmaster_pid(const char *data_dir);
/* The system identifier from pg_controldata (works with the server stopped). */
bool pg_read_sysid(PgNode *pg, char *buf, size_t sz, Err *err);
/* What pg_controldata says about a stopped (or running) data directory. */
typedef struct ControlInfo {
    int timeline;                /* latest checkpoint's TimeLineID */
    Lsn checkpoint;              /* latest checkpoint location */
    char state[48];              /* "shut down", "in production", "shut down in recovery", ... */
    bool was_primary;            /* last run as a primary (state not "... recovery") */
    bool clean_shutdown;
    char sysid[32];              /* database system identifier */
    int64_t wal_segment_size;    /* bytes (0 unknown) */
} ControlInfo;
bool pg_controldata_info(PgNode *pg, ControlInfo *out, Err *err);

/* Desired configuration of one start or reload. */
typedef struct PgConfSpec {
    bool replica;                /* write standby.signal and primary_conninfo */
    const char *primary_host;    /* replica: upstream host/port ("" = no upstream yet) */
    int primary_port;
    const char *slot_name;       /* replica: primary_slot_name (NULL = none) */
    const char *sync_names;      /* synchronous_standby_names value ("" = async); a replica
                                  * gets the blocking one ahead of a promotion in sync mode */
    const KvList *dyn_params;    /* dynamic parameters from etcd config (may be NULL) */
    bool keep_signal;            /* leave standby.signal as it is (promotion removes it itself) */
    const KvList *recovery;      /* a server restored from a backup: restore_command, targets
                                  * (written last; may be NULL) */
    /* a standby leader following the standby_cluster source (another site) */
    bool from_source;            /* primary_host/port name the source (a host list "a,b" gets
                                  * target_session_attrs=primary) */
    const char *restore_command; /* replica: this restore_command (NULL: the default below) */
    bool fetch_from_repository;  /* replica: wal-fetch from backup.repository when it is set */
    const char *min_apply_delay; /* replica: recovery_min_apply_delay (NULL none) */
} PgConfSpec;

/* The restore_command of this node: "<pgvigil> wal-fetch -c <node.yml> [--bootstrap-repository]
 * %f %p", with absolute paths. A replica gets it (from backup.repository) when
 * postgresql.create_replica_methods names pgvigil, so that it catches up from the archive
 * whenever the primary no longer has the WAL it needs. */
void pg_wal_fetch_command(const Config *cfg, bool bootstrap_repository, char *buf, size_t sz);

/* The commit guard (pgext/guard): is its server module installed with this postgres, and where
 * does the agent publish the lease for it (next to the server's socket)? When installed,
 * pg_write_config loads it and names the file. */
bool pg_guard_installed(const PgNode *pg);
void pg_guard_lease_file(const PgNode *pg, char *buf, size_t sz);
/* WAL archiving (backup.archive): the archive module (pgext/archive) installed with this
 * postgres, and the socket where the agent's archive service answers it. When backup.archive is
 * on, pg_write_config sets archive_mode, archive_library and that socket. */
bool pg_archive_module_installed(const PgNode *pg);
void pg_archive_socket(const PgNode *pg, char *buf, size_t sz);

/* The primary_conninfo pg_write_config writes for a replica of spec's upstream (malloc'd). */
char *pg_primary_conninfo(const Config *cfg, const PgConfSpec *spec);
/* Write postgresql.conf (including postgresql.base.conf), pg_hba.conf and standby.signal. */
bool pg_write_config(PgNode *pg, const PgConfSpec *spec, Err *err);

/* The initdb options of bootstrap.initdb ("--encoding=UTF8", a flag as "--data-checksums"), into
 * out (at most max): data checksums are on ("--data-checksums" added) unless the list says
 * "no-data-checksums" or {data-checksums: false}. Returns how many. */
int pg_initdb_options(const KvList *opts, char out[][256], int max);
bool pg_initdb(PgNode *pg, Err *err);
/* The data directory (0700, the server user's) and its parent (0755), for a restore into it. */
bool pg_make_data_dir(PgNode *pg, Err *err);
bool pg_start(PgNode *pg, int timeout_s, Err *err);
/* A standby's start: true once postgres answers, or when it still runs recovering after a short
 * wait (it may take long to become consistent, or never: the agent judges that on later ticks). */
bool pg_start_standby(PgNode *pg, int timeout_s, Err *err);
/* mode: "fast" or "immediate"; falls back to immediate after timeout_s. */
bool pg_stop(PgNode *pg, const char *mode, int timeout_s, Err *err);
bool pg_reload(PgNode *pg, Err *err);
bool pg_promote(PgNode *pg, int timeout_s, Err *err);
bool pg_basebackup(PgNode *pg, const char *host, int port, Err *err);
/* pg_rewind from a running primary; the local server must be stopped. A failure leaves
 * PG_REWIND_FAILED_FILE in the data directory (its error inside); a success removes it. */
#define PG_REWIND_FAILED_FILE "pgvigil.rewind_failed"
bool pg_rewind(PgNode *pg, const char *host, int port, Err *err);
/* One query on another server (host may be a list: its writable one) as cred, in dbname
 * ("postgres" when NULL), bounded by connect and statement timeouts: the first column of the
 * first row in out ("" none), or false + err. */
bool pg_remote_value(const char *host, int port, const char *dbname, const Credentials *cred, const char *sql,
                     char *out, size_t osz, Err *err);
/* ... with flags: PG_REWIND_RESTORE_WAL takes WAL the data directory lacks through its
 * restore_command; PG_REWIND_STANDBY_SOURCE: the source is a standby (a standby cluster's leader),
 * so do not wait for it to leave recovery */
#define PG_REWIND_RESTORE_WAL 1u
#define PG_REWIND_STANDBY_SOURCE 2u
bool pg_rewind_ex(PgNode *pg, const char *host, int port, unsigned flags, Err *err);
/* pg_rewind --dry-run: where the servers diverged (its output, malloc'd, in *output); changes
 * nothing but finishing the target's crash recovery. */
bool pg_rewind_dry_run(PgNode *pg, const char *host, int port, char **output, Err *err);
/* A stopped data directory that was not shut down cleanly: replay its WAL in single-user mode
 * so that it is (pg_rewind --dry-run refuses it otherwise). No-op when already clean. */
bool pg_finish_crash_recovery(PgNode *pg, Err *err);
/* pg_waldump of this data directory's pg_wal on `timeline` from `start` to where it ends
 * (malloc'd text in *output; false only when it could not run at all). */
bool pg_waldump(PgNode *pg, int timeline, Lsn start, int limit, char **output, Err *err);
bool pg_rewind_marked_failed(const PgNode *pg);
/* Did the last start fail because the data directory went past the point where the timeline it
 * was told to follow forked ("requested timeline N does not contain minimum recovery point",
 * "is not a child of this server's history")? Read from the end of the server log. */
bool pg_log_shows_divergence(const PgNode *pg);
/* The same, from byte `since` of the server log on (what was written after a moment the caller
 * marked with pg_log_size()), or from the last start when that came later. */
bool pg_log_shows_divergence_since(const PgNode *pg, long since);
/* The server log's size now (0 when it cannot be read). */
long pg_log_size(const PgNode *pg);
bool pg_checkpoint(PgNode *pg, Err *err);
/* Kill the postmaster of data_dir and every process it forked (backends included) with
 * SIGKILL, at once; used by fencing. True once the postmaster is gone (within timeout_ms). */
bool pg_kill_postmaster(const char *data_dir, int timeout_ms);

/* Run SQL on the local server as superuser with a deadline. Returns the PGresult (caller
 * PQclear's) only on PGRES_COMMAND_OK / PGRES_TUPLES_OK, else NULL + err. */
PGresult *pg_query(PgNode *pg, const char *sql, int timeout_ms, Err *err);
bool pg_exec(PgNode *pg, const char *sql, int timeout_ms, Err *err);

/* Make the physical slots on this primary exactly `names` (creating missing ones, dropping
 * our other inactive ones). */
bool pg_sync_slots(PgNode *pg, char names[][64], int n, Err *err);
/* A standby's permanent slots (names), unused: moved up to the redo point of its last
 * restartpoint, so that they hold the WAL it keeps anyway (what the other site needs to rejoin
 * after a promotion here), not every file since their creation. */
bool pg_advance_slots(PgNode *pg, char names[][64], int n, Err *err);
/* A timestamp given by an operator (rescue and site promote targets), safe to put between
 * quotes in SQL: non-empty, printable, no quote or backslash. PostgreSQL parses the rest. */
bool pg_timestamp_text_ok(const char *t);
/* Slot name for a member: lowercase, [a-z0-9_] only. */
void pg_slot_name(const char *member, char *out, size_t sz);
/* Create (or update the password of) the replication role. */
bool pg_ensure_replication_role(PgNode *pg, Err *err);

/* Environment entries for libpq-based child programs (PGPASSWORD etc.). */
#endif
