/* Data directories made from the backup repository, on the job worker thread:
 *  - bootstrap.method pgvigil_restore: the member that won the initialize key restores a backup
 *    from bootstrap.pgvigil_restore.repository instead of running initdb, recovers from that
 *    repository's archive (to its end, or to the target), and PostgreSQL promotes it at the end
 *    of recovery; it leads the new cluster, whose system identifier is the backup's;
 *  - postgresql.create_replica_methods: a new replica is made by each method in turn until one
 *    works. pgvigil restores the newest backup of the cluster that lies on the leader's timeline
 *    history from backup.repository, and starts it as a standby of the leader that catches up
 *    from the archive, then streams; basebackup copies the leader with pg_basebackup.
 * Whatever a method leaves half made is removed before the next one is tried, as a failed
 * pg_basebackup's copy is; a restore writes global/pg_control last, so an interrupted one never
 * looks like a data directory. */
#include "common/common.h"
#include "backup/base_backup.h"
#include "backup/restore_pick.h"
#include "backup/wal_archive.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "ha/agent.h"


#include <sys/stat.h>

#define RESTORE_WORKERS 2
/* how long the agent's superuser may fail to connect to a recovering server before the
 * bootstrap gives up (a backup whose roles do not match postgresql.authentication) */
#define RECOVERY_QUERY_FAIL_MS 60000
#define RECOVERY_LOG_EVERY_MS 30000

/* Stop whatever runs in the data directory and remove it: what a failed method left. */
static bool discard_data_dir(PgNode *pg, Err *err)
{
    if (pg_postmaster_pid(pg->cfg->pg_data_dir) != 0 && !pg_stop(pg, "immediate", 30, err))
        return false;
    pg_node_close(pg);
    return dir_remove_all(pg->cfg->pg_data_dir, err);
}

/* How long a new copy may run without its apply delay, waiting to stream from the source. */
#define COPY_STREAM_WAIT_MS 30000

/* Start what pg_basebackup copied as the job's standby. A standby leader with an apply delay
 * (standby_cluster.recovery_min_apply_delay) first runs without it, until it streams from the
 * source: PostgreSQL starts its WAL receiver only when replay has used up the WAL it holds, and
 * with the delay on, a commit among what the copy holds past the end of the backup (written
 * while the copy ended: a's heartbeat) stops replay for the whole delay, so nothing would be
 * received from the source in that time. What it applies without the delay is those few
 * records, and what streams in before the reload takes effect (a fraction of a second): the
 * copy is as new. (A copy restored from the repository keeps its delay from the start: it
 * replays the archive, which may hold the last hour's mistakes.) */
static bool start_copied_standby(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err)
{
    if (!j->remote || !j->min_apply_delay[0])
        return agent_write_job_conf(pg, j, true, false, NULL, err) && pg_start(pg, start_timeout, err);
    char delay[sizeof(j->min_apply_delay)];
    str_copy(delay, sizeof(delay), j->min_apply_delay);
    j->min_apply_delay[0] = '\0';
    bool ok = agent_write_job_conf(pg, j, true, false, NULL, err) && pg_start(pg, start_timeout, err);
    str_copy(j->min_apply_delay, sizeof(j->min_apply_delay), delay);
    bool streaming = false;
    int64_t deadline = mono_ms() + COPY_STREAM_WAIT_MS;
    while (ok && !a->cancel_jobs && mono_ms() < deadline) {
        PgState st;
        pg_observe(pg, &st);
        if ((streaming = st.streaming))
            break;
        sleep_ms(200);
    }
    if (ok && streaming)
        log_info("create replica: streaming from the source: taking the apply delay (%s)", delay);
    else if (ok)
        log_warn("create replica: not streaming from the source (%s:%d) after %d s: taking the apply delay (%s) now; "
                 "PostgreSQL connects to the source when replay needs WAL", j->host, j->port,
                 COPY_STREAM_WAIT_MS / 1000, delay);
    /* the delay in the configuration in any case: a failed start may leave postgres running */
    Err de = {{0}};
    bool delayed = agent_write_job_conf(pg, j, true, false, NULL, &de) &&
                   (pg_postmaster_pid(pg->cfg->pg_data_dir) == 0 || pg_reload(pg, &de));
    if (ok && !delayed)
        *err = de;
    else if (!delayed)
        log_error("create replica: the apply delay (%s) could not be written back: %s", delay, de.msg);
    return ok && delayed;
}

/* The backup to restore for a replica of the job's target, from the node's repository. */
static bool pick_replica_backup(Repo *r, const Job *j, BackupInfo *out, Err *err)
{
    BackupInfo *all = NULL;
    int n = 0;
    if (!backup_list(r, &all, &n, err))
        return false;
    TimelineFork hist[TLI_HISTORY_MAX];
    int n_hist = 0;
    if (j->leader_timeline > 1) {
        /* backups of older timelines count only up to where the leader's history left them */
        char *text = NULL;
        bool missing = false;
        Err he = {{0}};
        if (wal_history_read(r, j->leader_timeline, &text, &missing, &he)) {
            n_hist = timeline_history_parse(text, hist, TLI_HISTORY_MAX);
            if (n_hist < 0) {
                log_warn("create replica: the history file of timeline %d in the %s is malformed: only backups of "
                         "timeline %d count", j->leader_timeline, r->desc, j->leader_timeline);
                n_hist = 0;
            }
        } else if (!missing) {
            log_warn("create replica: %s: only backups of timeline %d count", he.msg, j->leader_timeline);
        }
        free(text);
    }
    char why[256];
    int k = backup_pick_for_timeline(all, n, j->sysid, j->leader_timeline, hist, n_hist, why, sizeof(why));
    if (k >= 0)
        *out = all[k];
    else
        err_set(err, "the %s holds no backup to restore for timeline %d of %s: %s", r->desc, j->leader_timeline,
                j->target, why);
    free(all);
    return k >= 0;
}

/* Method pgvigil: restore the newest usable backup as a standby of the job's target. */
static bool replica_from_repository(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err)
{
    const Config *cfg = a->cfg;
    if (!j->sysid[0]) {
        err_set(err, "the cluster's system identifier is not recorded yet");
        return false;
    }
    if (j->leader_timeline <= 0) {
        err_set(err, "the timeline of %s is not known yet", j->target);
        return false;
    }
    Repo *r = repo_open(&cfg->backup, err);
    if (!r)
        return false;
    BackupInfo b;
    bool ok = pick_replica_backup(r, j, &b, err);
    char lsn[LSN_BUFSZ];
    bool restored = false;
    /* a reinit over this cluster's own data directory (a rewind that failed): a delta restore
     * writes only what differs from the backup; a full restore when that fails */
    char *pv = str_printf("%s/PG_VERSION", cfg->pg_data_dir);
    bool delta = ok && j->kind == JOB_REINIT && file_exists(pv);
    free(pv);
    if (delta) {
        Err de = {{0}};
        if (pg_postmaster_pid(cfg->pg_data_dir) != 0 && !pg_stop(pg, "immediate", 30, &de)) {
            log_warn("create replica: cannot stop postgres for a delta restore: %s", de.msg);
        } else {
            pg_node_close(pg);
            log_info("create replica: delta restore of backup %s (timeline %d, ended at %s) from the %s over this "
                     "data directory", b.label, b.timeline, lsn_format(b.stop_lsn, lsn), r->desc);
            RestoreOptions o = {.label = b.label, .target_dir = cfg->pg_data_dir, .files_only = true, .delta = true,
                                .by_agent = true, .workers = RESTORE_WORKERS};
            BackupInfo used;
            RestoreCounts counts;
            memset(&counts, 0, sizeof(counts));
            restored = backup_restore(cfg, r, &o, &used, &counts, &de);
            if (restored) {
                str_copy(j->restored, sizeof(j->restored), used.label);
                log_info("create replica: delta restore done: %d file(s) written (%.1f MB), %d kept, %d removed; "
                         "%lld files, %.1f MB in the backup", counts.written, (double)counts.written_bytes / 1048576.0,
                         counts.kept, counts.removed, (long long)used.files, (double)used.bytes / 1048576.0);
            } else {
                log_warn("create replica: the delta restore failed (%s): restoring the whole backup", de.msg);
            }
        }
    }
    /* nothing is removed before there is a backup to restore */
    ok = ok && (restored || (discard_data_dir(pg, err) && pg_make_data_dir(pg, err)));
    if (ok && !restored) {
        log_info("create replica: restoring backup %s (timeline %d, ended at %s, %lld files) from the %s", b.label,
                 b.timeline, lsn_format(b.stop_lsn, lsn), (long long)b.files, r->desc);
        RestoreOptions o = {.label = b.label, .target_dir = cfg->pg_data_dir, .files_only = true,
                            .workers = RESTORE_WORKERS};
        BackupInfo used;
        RestoreCounts counts;
        ok = backup_restore(cfg, r, &o, &used, &counts, err);
        if (ok)
            str_copy(j->restored, sizeof(j->restored), used.label);
    }
    repo_free(r);
    /* standby.signal, primary_conninfo to the leader, restore_command from the repository */
    ok = ok && agent_write_job_conf(pg, j, true, false, NULL, err) && pg_start(pg, start_timeout, err);
    if (ok)
        log_info("create replica: restored from the repository (backup %s), not copied from %s: recovering from the "
                 "archive, then streaming from %s:%d", j->restored, j->target, j->host, j->port);
    return ok;
}

/* Method basebackup: pg_basebackup from the job's target. */
static bool replica_from_leader(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err)
{
    log_info("cloning from %s (%s:%d) with pg_basebackup", j->remote ? "the standby_cluster source" : j->target, j->host,
             j->port);
    return pg_basebackup(pg, j->host, j->port, err) && start_copied_standby(a, j, pg, start_timeout, err);
}

bool agent_create_replica(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err)
{
    const Config *cfg = a->cfg;
    if (!j->host[0]) {
        err_set(err, "no address known for %s", j->target);
        return false;
    }
    if (j->kind == JOB_REINIT) {
        Err e2;
        pg_stop(pg, "immediate", 30, &e2);
    }
    /* a standby cluster's source: standby_cluster.create_replica_methods (default basebackup) */
    const char *source_default[] = {"basebackup"};
    int n = cfg->n_replica_methods;
    const char *methods[8];
    for (int i = 0; i < n && i < 8; i++)
        methods[i] = cfg->replica_methods[i];
    if (j->remote) {
        n = j->n_methods > 0 ? j->n_methods : 1;
        for (int i = 0; i < n; i++)
            methods[i] = j->n_methods > 0 ? j->methods[i] : source_default[0];
    }
    if (n > 8)
        n = 8;
    for (int i = 0; i < n; i++) {
        const char *m = methods[i];
        Err me = {{0}};
        bool ok = strcmp(m, "pgvigil") == 0 ? replica_from_repository(a, j, pg, start_timeout, &me)
                                            : replica_from_leader(a, j, pg, start_timeout, &me);
        if (ok)
            return true;
        if (i + 1 == n || a->cancel_jobs) {
            *err = me;
            if (n > 1)
                err_prefix(err, "create replica: method %s: ", m);
            return false;
        }
        log_warn("create replica: method %s failed: %s; trying %s", m, me.msg, methods[i + 1]);
        Err de = {{0}};
        if (!discard_data_dir(pg, &de)) {
            err_set(err, "create replica: method %s failed (%s), and what it left cannot be removed: %s", m, me.msg,
                    de.msg);
            return false;
        }
        j->restored[0] = '\0';
    }
    err_set(err, "create replica: no method in postgresql.create_replica_methods");
    return false;
}

/* Wait until PostgreSQL ends recovery and promotes itself (recovery_target_action = promote, or
 * the end of the archive); false when it stops instead (a target past the archive's end, WAL
 * that cannot be read), or the agent shuts down. */
bool agent_wait_promoted(Agent *a, PgNode *pg, Err *err)
{
    int64_t next_log = mono_ms() + RECOVERY_LOG_EVERY_MS;
    int64_t failing_since = 0;
    for (;;) {
        if (a->cancel_jobs) {
            err_set(err, "recovery: the agent is stopping during recovery");
            return false;
        }
        if (pg_postmaster_pid(pg->cfg->pg_data_dir) == 0) {
            err_set(err, "recovery: postgres stopped during recovery (see %s)", pg->log_path);
            return false;
        }
        Err qe = {{0}};
        PGresult *r = pg_query(pg, "SELECT pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn()::text, '')", 2000, &qe);
        if (r && PQntuples(r) == 1) {
            failing_since = 0;
            bool done = strcmp(PQgetvalue(r, 0, 0), "f") == 0;
            if (!done && mono_ms() >= next_log) {
                log_info("recovery: still recovering (replayed up to %s)", PQgetvalue(r, 0, 1));
                next_log = mono_ms() + RECOVERY_LOG_EVERY_MS;
            }
            PQclear(r);
            if (done)
                return true;
        } else {
            PQclear(r);
            pg_node_close(pg);
            if (!failing_since)
                failing_since = mono_ms();
            if (mono_ms() - failing_since > RECOVERY_QUERY_FAIL_MS) {
                err_set(err, "recovery: cannot query the recovering server: %s (a restored cluster keeps the backup's "
                             "roles and passwords: postgresql.authentication.superuser must match them)", qe.msg);
                return false;
            }
        }
        sleep_ms(200);
    }
}

bool agent_write_signal(const char *data_dir, const char *name, Err *err)
{
    char path[4200];
    str_fmt(path, sizeof(path), "%s/%s", data_dir, name);
    return file_write_atomic(path, "", 0, 0600, err) && proc_chown_run_as(path, err);
}

void agent_recovery_to_time(const Config *cfg, const char *when, KvList *rec)
{
    char path[4200];
    str_fmt(path, sizeof(path), "%s/standby.signal", cfg->pg_data_dir);
    unlink(path);
    kvlist_set(rec, "recovery_target_time", when);
    kvlist_set(rec, "recovery_target_inclusive", "off");
    kvlist_set(rec, "recovery_target_action", "promote");
    kvlist_set(rec, "recovery_min_apply_delay", "0");
    /* a targeted recovery needs a restore_command; what it lacks in pg_wal (where the delayed
     * standby has what it received) it takes from the repository, when there is one */
    char cmd[3 * 4096];
    if (config_has_repository(&cfg->backup))
        pg_wal_fetch_command(cfg, false, cmd, sizeof(cmd));
    else
        str_copy(cmd, sizeof(cmd), "/bin/false");
    kvlist_set(rec, "restore_command", cmd);
}

bool agent_rescue(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err)
{
    const Config *cfg = a->cfg;
    if (!pg_stop(pg, "fast", 60, err))
        return false;
    char path[4200];
    KvList rec = {0};
    agent_recovery_to_time(cfg, j->rescue_time, &rec);
    /* its new timeline is nobody else's: it must not reach the cluster's repository */
    kvlist_set(&rec, "archive_mode", "off");
    log_info("rescue: recovering to %s from the WAL received (no apply delay), then promoting, detached",
             j->rescue_time);
    /* no primary_conninfo: nothing more than what is here; the marker first, so that a crash
     * from here on leaves an agent that stays detached */
    str_fmt(path, sizeof(path), "%s/%s", cfg->pg_data_dir, RESCUED_FILE);
    bool ok = file_write_atomic(path, j->rescue_time, strlen(j->rescue_time), 0600, err) &&
              agent_write_signal(cfg->pg_data_dir, "recovery.signal", err) &&
              agent_write_job_conf(pg, j, false, false, &rec, err) && pg_start(pg, start_timeout, err) &&
              agent_wait_promoted(a, pg, err);
    kvlist_free(&rec);
    return ok;
}

int agent_replayed_before(PgNode *pg, const char *when, Err *err)
{
    if (!pg_timestamp_text_ok(when)) {
        err_set(err, "\"%s\" is not a timestamp (e.g. '2026-12-05 11:00:00+00')", when);
        return -1;
    }
    /* no commit replayed since it started: every commit it shows is older than the checkpoint
     * its recovery started from */
    char sql[320];
    str_fmt(sql, sizeof(sql),
            "SELECT (coalesce(pg_last_xact_replay_timestamp(), (SELECT checkpoint_time FROM pg_control_checkpoint())) "
            "< '%s'::timestamptz)::text", when);
    PGresult *r = pg_query(pg, sql, 2000, err);
    int before = r && PQntuples(r) == 1 ? strcmp(PQgetvalue(r, 0, 0), "true") == 0 : -1;
    PQclear(r);
    return before;
}

bool agent_bootstrap_restore(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err)
{
    const Config *cfg = a->cfg;
    const BootstrapRestore *br = &cfg->boot_restore;
    const BackupConfig *src = &br->repo;
    /* a posix source is read, never created (repo_posix_new would make an empty one) */
    struct stat sst;
    if (src->repo_path && stat(src->repo_path, &sst) != 0) {
        err_set(err, "bootstrap: bootstrap.pgvigil_restore.repository.path %s: %s", src->repo_path, strerror(errno));
        return false;
    }
    if (src->repo_path && !S_ISDIR(sst.st_mode)) {
        err_set(err, "bootstrap: bootstrap.pgvigil_restore.repository.path %s: not a directory", src->repo_path);
        return false;
    }
    PgState st;
    pg_observe(pg, &st);
    if (st.running) {
        err_set(err, "bootstrap: postgres runs in %s; refusing to restore into it", cfg->pg_data_dir);
        return false;
    }
    if (st.data_dir_nonempty) {
        /* PG_VERSION without global/pg_control (else it would be valid or foreign): an interrupted
         * restore or initdb of an earlier bootstrap */
        log_warn("bootstrap: %s holds an unfinished data directory (no global/pg_control): removing it",
                 cfg->pg_data_dir);
        if (!dir_remove_all(cfg->pg_data_dir, err))
            return false;
    }
    Repo *r = repo_open(src, err);
    if (!r) {
        err_prefix(err, "bootstrap: bootstrap.pgvigil_restore.repository: ");
        return false;
    }
    j->did_initdb = true; /* from here on the data directory is ours to remove */
    bool ok = pg_make_data_dir(pg, err);
    BackupInfo used;
    if (ok) {
        const char *which = br->backup ? br->backup
                            : br->target_time || br->target_lsn ? "the newest backup that ended before the target"
                                                                 : "the newest backup";
        log_info("bootstrap: restoring %s from the %s into %s instead of running initdb", which, r->desc,
                 cfg->pg_data_dir);
        RestoreOptions o = {.label = br->backup, .target_dir = cfg->pg_data_dir, .target_time = br->target_time,
                            .target_lsn = br->target_lsn, .files_only = true, .workers = RESTORE_WORKERS};
        RestoreCounts counts;
        ok = backup_restore(cfg, r, &o, &used, &counts, err);
        if (!ok)
            err_prefix(err, "bootstrap: ");
    }
    repo_free(r);
    if (!ok)
        return false;
    str_copy(j->restored, sizeof(j->restored), used.label);
    char lsn[LSN_BUFSZ];
    log_info("bootstrap: restored backup %s (system identifier %s, timeline %d, ended at %s); recovering from the "
             "archive %s, then promoting",
             used.label, used.sysid, used.timeline, lsn_format(used.stop_lsn, lsn),
             br->target_time ? br->target_time : br->target_lsn ? br->target_lsn : "to its end");
    KvList rec = {0};
    char cmd[3 * 4096];
    pg_wal_fetch_command(cfg, true, cmd, sizeof(cmd));
    kvlist_set(&rec, "restore_command", cmd);
    /* at the end of the archive PostgreSQL promotes by itself; a target needs the action (its
     * default pauses). Target settings take effect only at a start: once promoted and dropped
     * from the file, the server reports them pending a restart, and they do nothing on a primary */
    if (br->target_time || br->target_lsn)
        kvlist_set(&rec, "recovery_target_action", "promote");
    if (br->target_time)
        kvlist_set(&rec, "recovery_target_time", br->target_time);
    if (br->target_lsn)
        kvlist_set(&rec, "recovery_target_lsn", br->target_lsn);
    ok = agent_write_signal(cfg->pg_data_dir, "recovery.signal", err) && agent_write_job_conf(pg, j, false, false, &rec, err) &&
         pg_start(pg, start_timeout, err) && agent_wait_promoted(a, pg, err);
    kvlist_free(&rec);
    if (!ok)
        return false;
    /* a primary now: its own configuration, without the recovery settings */
    ok = agent_write_job_conf(pg, j, false, false, NULL, err) && pg_reload(pg, err) && pg_ensure_replication_role(pg, err);
    if (ok)
        log_info("bootstrap: recovery ended and postgres promoted itself: the new cluster starts from backup %s",
                 used.label);
    return ok;
}
