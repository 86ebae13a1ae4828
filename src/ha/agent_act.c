/* Carrying out HA decisions. Quick steps (etcd writes, reload, demote) run on the loop thread;
 * long ones (initdb, clone, start, promote, rewind) run as a Job on the worker thread so the
 * loop keeps renewing the lease meanwhile. */
#include "common/common.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/strbuf.h"
#include "common/timeutil.h"
#include "ha/agent.h"
#include "ha/sync_plan.h"

#include <jansson.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

_Static_assert(sizeof(((Agent *)0)->sync_applied) >= SSN_TEXT_MAX, "sync_applied too small");
_Static_assert(sizeof(((Job *)0)->sync_names) >= SSN_TEXT_MAX, "sync_names too small");

/* ---- helpers ---------------------------------------------------------------------------- */

bool agent_member_pg_addr(const Cluster *c, const char *name, char *host, size_t hsz, int *port)
{
    const Member *m = cluster_member(c, name);
    if (!m)
        return false;
    /* conn_url: postgres://host:port/dbname */
    const char *p = strstr(m->conn_url, "://");
    if (!p)
        return false;
    p += 3;
    const char *at = strchr(p, '@');
    if (at)
        p = at + 1;
    const char *colon = strrchr(p, ':');
    const char *slash = strchr(p, '/');
    if (!colon || (slash && colon > slash))
        return false;
    size_t n = (size_t)(colon - p);
    if (n + 1 > hsz)
        return false;
    memcpy(host, p, n);
    host[n] = '\0';
    *port = atoi(colon + 1);
    return *port > 0;
}

/* Callback scripts run detached; we reap only those. waitpid(-1) here would steal the exit
 * status of programs the worker thread is waiting for (pg_basebackup, pg_ctl). */
static pid_t callback_pids[32];

void agent_reap_children(void)
{
    for (size_t i = 0; i < ARRAY_LEN(callback_pids); i++)
        if (callback_pids[i] > 0 && proc_reap(callback_pids[i], NULL))
            callback_pids[i] = 0;
}

static void remember_callback(pid_t pid)
{
    for (size_t i = 0; i < ARRAY_LEN(callback_pids); i++)
        if (callback_pids[i] <= 0) {
            callback_pids[i] = pid;
            return;
        }
    /* table full of hung scripts: kill the oldest (its own session) rather than block the loop */
    log_warn("too many callbacks still running: killing the oldest (pid %d)", (int)callback_pids[0]);
    kill(-callback_pids[0], SIGKILL);
    kill(callback_pids[0], SIGKILL);
    waitpid(callback_pids[0], NULL, 0);
    callback_pids[0] = pid;
}

void agent_run_callback(Agent *a, const char *which, const char *role)
{
    const Config *cfg = a->cfg;
    const char *script = NULL;
    if (strcmp(which, "on_start") == 0)
        script = cfg->cb_on_start;
    else if (strcmp(which, "on_stop") == 0)
        script = cfg->cb_on_stop;
    else if (strcmp(which, "on_role_change") == 0)
        script = cfg->cb_on_role_change;
    else if (strcmp(which, "on_restart") == 0)
        script = cfg->cb_on_restart;
    else if (strcmp(which, "on_reload") == 0)
        script = cfg->cb_on_reload;
    if (str_empty(script))
        return;
    /* Patroni's calling convention: script <action> <role> <scope>; never waited for here */
    const char *argv[] = {"/bin/sh", "-c", "exec $0 \"$@\"", script, which, role, cfg->scope, NULL};
    ProcOpts o = {.new_session = true};
    Err err;
    pid_t pid = proc_spawn(argv, &o, &err);
    if (pid < 0) {
        log_warn("callback %s (%s): %s", which, script, err.msg);
    } else {
        remember_callback(pid);
        log_info("callback %s %s started", which, role);
    }
}

static void set_role(Agent *a, const char *role, const char *reason)
{
    if (strcmp(a->role, role) == 0)
        return;
    log_info("role %s -> %s: %s", a->role[0] ? a->role : "none", role, reason);
    str_copy(a->role, sizeof(a->role), role);
    agent_run_callback(a, "on_role_change", role);
}

/* In synchronous mode a replica already runs with the blocking synchronous_standby_names (it
 * means nothing in recovery), so that it is in force the moment the replica is promoted and
 * the promotion need not wait for a reload to reach the checkpointer. */
static const char *replica_ssn(const Agent *a)
{
    return a->cluster.config.synchronous_mode ? SSN_BLOCK : "";
}

/* The replication slots of the other members, as a primary keeps them, and the permanent ones
 * of the config's `slots` (another site following this one); returns the count. */
static int peer_slot_names(const Agent *a, char names[][64], int max)
{
    int n = 0;
    for (int i = 0; i < a->cluster.n_members && n < max; i++)
        if (strcmp(a->cluster.members[i].name, a->cfg->name) != 0)
            pg_slot_name(a->cluster.members[i].name, names[n++], 64);
    for (int i = 0; i < a->cluster.config.n_slots && n < max; i++) {
        bool dup = false;
        for (int k = 0; k < n; k++)
            dup = dup || strcmp(names[k], a->cluster.config.slots[i]) == 0;
        if (!dup)
            str_copy(names[n++], 64, a->cluster.config.slots[i]);
    }
    return n;
}

void agent_source_signature(const StandbyCluster *sc, char *buf, size_t sz)
{
    str_fmt(buf, sz, "%s\x1f%d\x1f%s\x1f%s\x1f%s", sc->host ? sc->host : "", sc->port,
            sc->primary_slot_name ? sc->primary_slot_name : "", sc->restore_command ? sc->restore_command : "",
            sc->recovery_min_apply_delay ? sc->recovery_min_apply_delay : "");
}

/* The standby_cluster source as a job's target: its address, slot, restore_command, delay. */
static void job_source(const Agent *a, Job *j)
{
    const StandbyCluster *sc = &a->cluster.config.standby;
    j->remote = true;
    j->target[0] = '\0';
    str_copy(j->host, sizeof(j->host), sc->host ? sc->host : "");
    j->port = sc->port;
    str_copy(j->slot, sizeof(j->slot), sc->primary_slot_name ? sc->primary_slot_name : "");
    str_copy(j->restore_command, sizeof(j->restore_command), sc->restore_command ? sc->restore_command : "");
    str_copy(j->min_apply_delay, sizeof(j->min_apply_delay),
             sc->recovery_min_apply_delay ? sc->recovery_min_apply_delay : "");
    for (int i = 0; i < sc->n_create_replica_methods && j->n_methods < (int)ARRAY_LEN(j->methods); i++)
        str_copy(j->methods[j->n_methods++], sizeof(j->methods[0]), sc->create_replica_methods[i]);
    agent_source_signature(sc, j->source_sig, sizeof(j->source_sig));
}

/* What the source says of itself, for a copy made before the cluster knows its identity (the
 * bootstrap of a standby cluster from the repository picks a backup by them). */
static void job_source_identity(Agent *a, Job *j)
{
    SourceInfo si;
    source_probe_get(&a->source, &si);
    if (!j->sysid[0] && si.known)
        str_copy(j->sysid, sizeof(j->sysid), si.sysid);
    if (j->leader_timeline <= 0 && si.known)
        j->leader_timeline = si.timeline;
}

static void job_prepare_ex(Agent *a, Job *j, JobKind kind, const char *target, bool remote)
{
    memset(j, 0, sizeof(*j));
    j->kind = kind;
    str_copy(j->target, sizeof(j->target), target ? target : "");
    if (target && target[0] && !agent_member_pg_addr(&a->cluster, target, j->host, sizeof(j->host), &j->port))
        j->host[0] = '\0';
    if (remote)
        job_source(a, j);
    else if (a->cluster.config.use_slots) {
        pg_slot_name(a->cfg->name, j->slot, sizeof(j->slot));
        if (kind == JOB_PROMOTE)
            j->n_peer_slots = peer_slot_names(a, j->peer_slots, 32);
    }
    if (kind == JOB_PROMOTE) {
        j->new_timeline = a->promote_timeline;
        int tl = 0;
        bool marker;
        if (!agent_promote_at_state(a, j->rescue_time, sizeof(j->rescue_time), &tl, &j->target_start_tl, &marker) ||
            tl < 0)   /* --target-time (an unreadable marker never gets here: the loop waits) */
            j->rescue_time[0] = '\0';
    }
    if (kind == JOB_START_REPLICA || kind == JOB_START_PRIMARY || kind == JOB_RESTART) {
        char t[80];
        int tl;
        j->start_blocked = agent_promote_at_pending(a, t, sizeof(t), &tl);
    }
    j->standby_cluster = a->cluster.config.standby.present;
    if (kind == JOB_RESCUE)
        str_copy(j->rescue_time, sizeof(j->rescue_time), a->rescue_time);
    str_copy(j->sysid, sizeof(j->sysid), a->cluster.sysid);
    const Member *tm = target && target[0] ? cluster_member(&a->cluster, target) : NULL;
    j->leader_timeline = tm ? tm->timeline : 0;
    if (remote)
        job_source_identity(a, j);
    str_copy(j->sync_names, sizeof(j->sync_names), a->sync_applied);
    str_copy(j->replica_ssn, sizeof(j->replica_ssn), replica_ssn(a));
    j->start_timeout = a->cluster.config.primary_start_timeout;
    for (int i = 0; i < a->cluster.config.pg_parameters.n; i++)
        kvlist_set(&j->dyn_params, a->cluster.config.pg_parameters.items[i].key,
                   a->cluster.config.pg_parameters.items[i].value);
}

static void submit(Agent *a, JobKind kind, const char *target, bool remote)
{
    pthread_mutex_lock(&a->mu);
    if (a->busy) {
        pthread_mutex_unlock(&a->mu);
        return;
    }
    job_prepare_ex(a, &a->job, kind, target, remote);
    a->busy = true;
    a->job_done = false;
    pthread_cond_signal(&a->job_cv);
    pthread_mutex_unlock(&a->mu);
}

void agent_submit(Agent *a, JobKind kind, const char *target)
{
    submit(a, kind, target, false);
}

void agent_submit_remote(Agent *a, JobKind kind)
{
    submit(a, kind, NULL, true);
}

void agent_wait_job(Agent *a, int64_t timeout_ms)
{
    struct timespec until;
    mono_deadline_after(&until, timeout_ms);
    pthread_mutex_lock(&a->mu);
    while (a->busy && !a->job_done && !a->stop)
        if (pthread_cond_timedwait(&a->done_cv, &a->mu, &until) != 0)
            break;
    pthread_mutex_unlock(&a->mu);
}

bool agent_job_running(Agent *a)
{
    pthread_mutex_lock(&a->mu);
    bool b = a->busy;
    pthread_mutex_unlock(&a->mu);
    return b;
}

static bool dcs_del_if_mine(Agent *a, const char *key)
{
    Err err = {{0}};
    bool deleted = false;
    if (!a->dcs->ops->del(a->dcs, key, a->cfg->name, &deleted, &err)) {
        log_warn("cannot delete %s: %s", key, err.msg);
        return false;
    }
    return deleted;
}

static void delete_failover_key(Agent *a)
{
    Err err = {{0}};
    bool deleted;
    if (a->cluster.failover.present && !a->dcs->ops->del(a->dcs, "failover", NULL, &deleted, &err))
        log_warn("cannot delete the failover key: %s", err.msg);
}

/* ---- worker thread ---------------------------------------------------------------------- */

#ifdef PGVIGIL_TEST_HOOKS
/* Test builds only: make the promotion window reachable on purpose. When the file named by
 * PGVIGIL_TEST_PROMOTE_PAUSE exists, the loop thread stops right after it took the leader key
 * and handed the promotion to the worker, waits for pg_promote to finish (postgres is a
 * primary, the job not yet collected) and stays there until the file is removed (at most
 * 60 s), so a fault test can kill the agent in that window. */
static void test_hook_promote_pause(Agent *a)
{
    const char *path = getenv("PGVIGIL_TEST_PROMOTE_PAUSE");
    if (str_empty(path) || !file_exists(path))
        return;
    agent_wait_job(a, 60000);
    log_warn("test hook: paused after promotion until %s is removed", path);
    for (int i = 0; i < 6000 && file_exists(path) && !a->cancel_jobs; i++)
        sleep_ms(10);
    log_warn("test hook: resuming");
}
#else
static void test_hook_promote_pause(Agent *a)
{
    (void)a;
}
#endif

bool agent_write_job_conf(PgNode *pg, const Job *j, bool replica, bool keep_signal, const KvList *recovery, Err *err)
{
    PgConfSpec spec = {
        .keep_signal = keep_signal,
        .replica = replica,
        .primary_host = j->host,
        .primary_port = j->port,
        .slot_name = j->slot[0] ? j->slot : NULL,
        .sync_names = replica ? j->replica_ssn : j->sync_names,
        .dyn_params = &j->dyn_params,
        .recovery = recovery,
        .from_source = j->remote,
        .restore_command = j->remote && j->restore_command[0] ? j->restore_command : NULL,
        .fetch_from_repository = j->remote,
        .min_apply_delay = j->remote && j->min_apply_delay[0] ? j->min_apply_delay : NULL,
    };
    return pg_write_config(pg, &spec, err);
}

static bool write_conf_ex(PgNode *pg, const Job *j, bool replica, bool keep_signal, Err *err)
{
    return agent_write_job_conf(pg, j, replica, keep_signal, NULL, err);
}

static bool write_conf(PgNode *pg, const Job *j, bool replica, Err *err)
{
    return write_conf_ex(pg, j, replica, false, err);
}

/* Synchronous promotion: is `want` the synchronous_standby_names of the whole server, the
 * checkpointer included? A commit waits for a standby only when the checkpointer has put the
 * setting into shared memory (it does so at its start and when it handles a reload), so a
 * backend showing the value proves nothing alone. The facts used:
 *  - a new connection is forked by the postmaster after its last reload, which signalled the
 *    checkpointer before it went back to accepting connections: what it shows is what the
 *    checkpointer has, or has pending;
 *  - when the configuration was not reloaded since the postmaster started, the checkpointer
 *    read this same value at its start;
 *  - otherwise a CHECKPOINT requested now completes only after the checkpointer went through
 *    the top of its loop, where it handles a pending reload before starting a checkpoint.
 * Rewrites the configuration and reloads when the value is not there yet. */
static bool ssn_in_force(PgNode *pg, const Job *j, Err *err)
{
    const char *want = j->sync_names;
    bool reloaded = false;
    int64_t deadline = mono_ms() + 10000;
    for (;;) {
        pg_node_close(pg); /* a new backend, forked after the postmaster's last reload */
        PGresult *r = pg_query(pg, "SELECT current_setting('synchronous_standby_names'), "
                                   "pg_conf_load_time() <= pg_postmaster_start_time()", 2000, err);
        if (!r)
            return false;
        bool same = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), want) == 0;
        bool since_start = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 1), "t") == 0;
        PQclear(r);
        if (same && since_start) {
            log_info("promote: synchronous_standby_names = '%s' since postgres started", want);
            return true;
        }
        if (same) {
            if (!pg_exec(pg, "CHECKPOINT", 120000, err)) {
                err_prefix(err, "promote: making the checkpointer take synchronous_standby_names: ");
                return false;
            }
            log_info("promote: synchronous_standby_names = '%s' is in force (checkpointer synced)", want);
            return true;
        }
        if (!reloaded) {
            if (!write_conf_ex(pg, j, false, true, err) || !pg_reload(pg, err))
                return false;
            reloaded = true;
        }
        if (mono_ms() >= deadline) {
            err_set(err, "synchronous_standby_names did not take effect before promotion");
            return false;
        }
        sleep_ms(20);
    }
}

/* PostgreSQL gives a promoted server the timeline after the newest one whose history file it
 * finds, going up from its own without a gap. Empty history files (comments only: PostgreSQL
 * skips them, and a standby never takes one for a timeline to follow) for the numbers below
 * `want` make it pick `want`. */
bool agent_place_timeline_markers(PgNode *pg, int want, Err *err)
{
    PgState st;
    pg_observe(pg, &st);
    int from = st.timeline > 0 ? st.timeline : 1;
    int first = 0, last = 0;
    for (int t = from + 1; t < want; t++) {
        char path[4200];
        str_fmt(path, sizeof(path), "%s/pg_wal/%08X.history", pg->cfg->pg_data_dir, (unsigned)t);
        if (file_exists(path))
            continue;
        char *text = str_printf("# pgvigil: timeline %d was created by a promotion elsewhere in the cluster; "
                                "this file only keeps PostgreSQL from using its number again\n", t);
        bool ok = file_write_atomic(path, text, strlen(text), 0600, err) && proc_chown_run_as(path, err);
        free(text);
        if (!ok)
            return false;
        if (!first)
            first = t;
        last = t;
    }
    if (first == last && first)
        log_info("promote: timeline %d is taken elsewhere: marked in pg_wal so that it is not reused", first);
    else if (first)
        log_info("promote: timelines %d to %d are taken (or kept clear) elsewhere: marked in pg_wal so that they "
                 "are not reused", first, last);
    return true;
}


/* `site promote --target-time T` names the one member to open at T: none other promotes from
 * the timeline it started from (they may have replayed past T: the bad write). */
static bool promote_target_ok(Agent *a)
{
    char other[NAME_MAX_LEN];
    if (!agent_promote_at_other(a, other, sizeof(other)))
        return true;
    log_warn("promote: not promoting: %s is the member to open this site at a past time, and this one may have "
             "applied what came after", other);
    return false;
}

/* No start but the promotion's own while a promotion at a time is pending here: a standby start
 * without the apply delay, or a primary start, would apply what came after the target. */
static bool start_allowed(const Job *j, Err *err)
{
    if (!j->start_blocked)
        return true;
    err_set(err, "a promotion at a past time is pending on this member: postgres is started by it only");
    return false;
}

static bool run_job(Agent *a, Job *j, Err *err)
{
    const Config *cfg = a->cfg;
    PgNode pg;
    pg_node_init(&pg, cfg);
    int start_timeout = j->start_timeout > 0 ? j->start_timeout : 300;
    bool ok = false;
    char path[4200];
    switch (j->kind) {
    case JOB_BOOTSTRAP: {
        PgState st;
        pg_observe(&pg, &st);
        if (st.data_dir_valid || st.data_dir_foreign) {
            err_set(err, "bootstrap: %s is not empty; refusing to initialize over it", cfg->pg_data_dir);
            break;
        }
        if (j->remote) {
            /* a standby cluster starts as a copy of its source, never with initdb */
            ok = agent_create_replica(a, j, &pg, start_timeout, err);
            break;
        }
        if (config_bootstrap_restores(cfg)) {
            ok = agent_bootstrap_restore(a, j, &pg, start_timeout, err);
            break;
        }
        log_info("bootstrap: running initdb in %s", cfg->pg_data_dir);
        j->did_initdb = true;
        if (!pg_initdb(&pg, err))
            break;
        if (!st.running && (!write_conf(&pg, j, false, err) || !pg_start(&pg, start_timeout, err)))
            break;
        ok = pg_ensure_replication_role(&pg, err);
        break;
    }
    case JOB_CLONE:
    case JOB_REINIT:
        ok = agent_create_replica(a, j, &pg, start_timeout, err);
        break;
    case JOB_START_REPLICA:
        ok = start_allowed(j, err) && write_conf(&pg, j, true, err) && pg_start_standby(&pg, start_timeout, err);
        break;
    case JOB_START_PRIMARY:
        ok = start_allowed(j, err) && write_conf(&pg, j, false, err) && pg_start(&pg, start_timeout, err);
        break;
    case JOB_PROMOTE: {
        if (j->rescue_time[0]) {
            /* site promote --target-time: nothing may reload this standby without its apply delay
             * before it stopped (it would apply the backlog, the bad write with it) */
            ok = agent_promote_at(a, j, &pg, start_timeout, err);
            break;
        }
        if (j->n_peer_slots > 0) {
            /* the replicas re-point to us as soon as we hold the leader key: with their slots
             * here first, none is refused and left to retry wal_retrieve_retry_interval later
             * (and a synchronous standby is what a sync-mode primary waits for) */
            Err se = {{0}};
            if (!pg_sync_slots(&pg, j->peer_slots, j->n_peer_slots, &se))
                log_warn("promote: replication slots: %s", se.msg);
        }
        if (j->sync_names[0]) {
            /* synchronous mode: the blocking synchronous_standby_names must be in force before
             * the first commit the new primary could acknowledge */
            ok = ssn_in_force(&pg, j, err);
        } else {
            ok = write_conf_ex(&pg, j, false, true, err) && pg_reload(&pg, err);
        }
        ok = ok && (j->new_timeline <= 0 || agent_place_timeline_markers(&pg, j->new_timeline, err));
        ok = ok && pg_promote(&pg, 60, err);
        if (ok && j->new_timeline > 0) {
            PgState st;
            pg_observe(&pg, &st);
            if (st.timeline != j->new_timeline)
                log_warn("promote: postgres took timeline %d, not the reserved %d", st.timeline, j->new_timeline);
        }
        if (ok && j->sync_names[0]) {
            /* the primary's own configuration (no primary_conninfo); the value is unchanged */
            Err ce = {{0}};
            if (!write_conf_ex(&pg, j, false, true, &ce) || !pg_reload(&pg, &ce))
                log_warn("promote: rewriting the configuration: %s", ce.msg);
        }
        break;
    }
    case JOB_REWIND: {
        if (!j->host[0]) {
            err_set(err, "no address known for %s", j->target);
            break;
        }
        PgState st;
        pg_observe(&pg, &st);
        if (st.running && !pg_stop(&pg, "fast", 30, err))
            break;
        unsigned flags = 0;
        if (!j->remote && j->standby_cluster)
            flags |= PG_REWIND_STANDBY_SOURCE;   /* the standby leader of a standby cluster */
        if (j->remote) {
            /* the configuration as the source's standby: pg_rewind --restore-target-wal takes WAL
             * this directory lacks through its restore_command (the backup repository) */
            if (!write_conf(&pg, j, true, err))
                break;
            if (j->restore_command[0] || config_has_repository(&cfg->backup))
                flags |= PG_REWIND_RESTORE_WAL;
        }
        /* single-user crash recovery (done by pg_rewind) refuses standby mode */
        str_fmt(path, sizeof(path), "%s/standby.signal", cfg->pg_data_dir);
        unlink(path);
        if (j->remote && !agent_divergence_report(a, &pg, j, err)) {
            err_prefix(err, "not rewinding without keeping what it would throw away (retrying): ");
            j->rewind_not_run = true;
            break;
        }
        log_info("pg_rewind from %s (%s:%d)", j->remote ? "the standby_cluster source" : j->target, j->host, j->port);
        if (!pg_rewind_ex(&pg, j->host, j->port, flags, err))
            break;
        ok = write_conf(&pg, j, true, err) && pg_start_standby(&pg, start_timeout, err);
        break;
    }
    case JOB_RELEASE: {
        Err e2 = {{0}};
        if (!pg_checkpoint(&pg, &e2))
            log_warn("switchover: checkpoint failed: %s", e2.msg);
        ok = pg_stop(&pg, "fast", 60, err);
        break;
    }
    case JOB_RESCUE:
        ok = agent_rescue(a, j, &pg, start_timeout, err);
        break;
    case JOB_STANDBY_DEMOTE: {
        /* a clean stop: the shutdown checkpoint is the last record, which the new primary site
         * has once it replayed past it; this server then follows it without a rewind */
        Err e2 = {{0}};
        if (!pg_checkpoint(&pg, &e2))
            log_warn("demote to standby leader: checkpoint failed: %s", e2.msg);
        ok = pg_stop(&pg, "fast", 60, err) && write_conf(&pg, j, true, err) && pg_start(&pg, start_timeout, err);
        break;
    }
    case JOB_RESTART: {
        PgState st;
        pg_observe(&pg, &st);
        bool replica = st.in_recovery || st.standby_signal;
        if (!start_allowed(j, err))
            break;
        if (st.running && !pg_stop(&pg, "fast", 60, err))
            break;
        ok = write_conf(&pg, j, replica, err) && pg_start(&pg, start_timeout, err);
        break;
    }
    case JOB_NONE:
        ok = true;
        break;
    }
    pg_node_close(&pg);
    return ok;
}

static void *worker_main(void *arg)
{
    Agent *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->stop && (!a->busy || a->job_done))
            pthread_cond_wait(&a->job_cv, &a->mu);
        if (a->stop)
            break;
        Job *j = &a->job;
        pthread_mutex_unlock(&a->mu);
        Err err = {{0}};
        bool ok = run_job(a, j, &err);
        pthread_mutex_lock(&a->mu);
        a->job_ok = ok;
        str_copy(a->job_err, sizeof(a->job_err), err.msg);
        a->job_done = true;
        pthread_cond_broadcast(&a->done_cv);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

bool agent_worker_start(Agent *a, Err *err)
{
    pthread_cond_init(&a->job_cv, NULL);
    mono_cond_init(&a->done_cv);
    if (pthread_create(&a->worker, NULL, worker_main, a) != 0) {
        err_set(err, "cannot start the worker thread");
        return false;
    }
    a->worker_started = true;
    return true;
}

void agent_worker_stop(Agent *a)
{
    if (!a->worker_started)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    pthread_cond_broadcast(&a->job_cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->worker, NULL);
    pthread_cond_destroy(&a->job_cv);
    pthread_cond_destroy(&a->done_cv);
    kvlist_free(&a->job.dyn_params);
    a->worker_started = false;
}

/* A cluster bootstrapped from a backup starts on the timeline its recovery ended with: the history
 * key records where it forked from the backup's, as after a promotion. */
static void note_restored_timeline(Agent *a, const char *label)
{
    PgState st;
    pg_observe(&a->pg, &st);
    int parent = st.timeline - 1;
    Lsn fork = 0;
    Err err = {{0}};
    if (st.timeline <= 1 || !agent_fork_lsn(a->cfg->pg_data_dir, st.timeline, &parent, &fork, &err))
        return;
    a->history_pending = true;
    a->history_tli = parent;
    a->history_lsn = fork;
    str_fmt(a->history_reason, sizeof(a->history_reason), "restored from backup %s", label);
}

static const char *job_name(JobKind k)
{
    static const char *names[] = {"none", "bootstrap", "clone", "start as replica", "start as primary",
                                  "promote", "rewind", "reinitialize", "release", "restart",
                                  "demote to standby leader", "rescue"};
    return names[k];
}

void agent_collect_job(Agent *a)
{
    pthread_mutex_lock(&a->mu);
    if (!a->busy || !a->job_done) {
        pthread_mutex_unlock(&a->mu);
        return;
    }
    Job j = a->job;
    memset(&a->job.dyn_params, 0, sizeof(a->job.dyn_params));
    bool ok = a->job_ok;
    char errmsg[512];
    str_copy(errmsg, sizeof(errmsg), a->job_err);
    a->busy = false;
    a->job_done = false;
    pthread_mutex_unlock(&a->mu);
    kvlist_free(&j.dyn_params);

    if (ok)
        log_info("%s finished", job_name(j.kind));
    else
        log_error("%s failed: %s", job_name(j.kind), errmsg);
    Err err = {{0}};
    switch (j.kind) {
    case JOB_BOOTSTRAP:
        if (ok) {
            char sysid[32];
            if (pg_read_sysid(&a->pg, sysid, sizeof(sysid), &err) &&
                a->dcs->ops->put(a->dcs, "initialize", sysid, false, &err)) {
                log_info("bootstrap complete: cluster %s, system identifier %s%s%s", a->cfg->scope, sysid,
                         j.restored[0] ? ", restored from backup " : "", j.restored);
                if (!a->cluster.has_config) {
                    char *json = dynconfig_to_json(&a->cfg->bootstrap_dcs);
                    bool sw;
                    if (!a->dcs->ops->cas_rev(a->dcs, "config", 0, json, &sw, NULL, &err))
                        log_warn("cannot store the initial config: %s", err.msg);
                    free(json);
                }
            } else {
                log_error("bootstrap: cannot record the system identifier: %s", err.msg);
            }
            if (j.remote) {
                a->following[0] = '\0';
                a->following_remote = true;
                str_copy(a->following_sig, sizeof(a->following_sig), j.source_sig);
                set_role(a, "standby_leader", "bootstrapped a standby cluster from its source");
                agent_run_callback(a, "on_start", "standby_leader");
                break;
            }
            if (j.restored[0])
                note_restored_timeline(a, j.restored);
            set_role(a, "primary", "bootstrapped a new cluster");
            agent_run_callback(a, "on_start", "primary");
        } else {
            /* give the race back so another member (or we, later) can try again */
            bool d;
            a->dcs->ops->del(a->dcs, "initialize", "", &d, &err);
            dcs_del_if_mine(a, "leader");
            Err e2 = {{0}};
            PgNode pg;
            pg_node_init(&pg, a->cfg);
            /* remove only a data directory this bootstrap created, and only once stopped */
            if (j.did_initdb) {
                PgState st;
                pg_observe(&pg, &st);
                if (st.running && !pg_stop(&pg, "immediate", 10, &e2))
                    log_error("bootstrap: cannot stop the new postgres: %s", e2.msg);
                else if (!dir_remove_all(a->cfg->pg_data_dir, &e2))
                    log_warn("%s", e2.msg);
            }
            pg_node_close(&pg);
        }
        break;
    case JOB_CLONE:
    case JOB_REINIT:
    case JOB_REWIND:
        if (j.divergence[0] && strncmp(j.divergence, "no divergence", 13) != 0) {
            /* the other site's operators see it too: etcd, beside the site records (a rewind that
             * found nothing to throw away does not replace an earlier report) */
            json_t *o = json_pack("{s:s, s:I, s:s}", "member", a->cfg->name, "at", (json_int_t)wall_now(), "summary",
                                  j.divergence);
            char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
            Err de = {{0}};
            if (s && !a->dcs->ops->put(a->dcs, "pgvigil_divergence", s, false, &de))
                log_warn("cannot record the divergence report in etcd: %s", de.msg);
            free(s);
            json_decref(o);
        }
        /* a failed rewind sticks until a rewind, clone or reinit succeeds; one that never ran
         * (its divergence report failed: the data directory is untouched) is retried later */
        if ((j.kind == JOB_REWIND && !j.rewind_not_run) || ok)
            a->rewind_failed = !ok;
        a->start_failed = !ok && (j.kind != JOB_REWIND || j.rewind_not_run);
        if (a->start_failed)
            a->start_failed_at = mono_ms();
        if (j.kind != JOB_REWIND)
            a->start_failures = ok ? 0 : a->start_failures + 1;
        if (ok)
            a->start_diverged = a->follow_diverged = false;
        if (ok && a->rescued && j.kind != JOB_REWIND) {
            /* rebuilt: the rescued data directory is gone, the member takes part again */
            a->rescued = false;
            a->rescued_at[0] = '\0';
            log_info("rescue over: rebuilt as a replica");
        }
        if (ok) {
            str_copy(a->following, sizeof(a->following), j.target);
            a->following_remote = j.remote;
            str_copy(a->following_sig, sizeof(a->following_sig), j.source_sig);
            set_role(a, j.remote ? "standby_leader" : "replica", "following the leader");
            agent_run_callback(a, "on_start", a->role);
        }
        break;
    case JOB_START_REPLICA:
        a->start_failed = !ok;
        a->start_diverged = !ok && pg_log_shows_divergence(&a->pg);
        if (a->start_diverged)
            log_warn("start as replica: postgres went past the fork of the leader's timeline; it needs pg_rewind");
        if (!ok)
            a->start_failed_at = mono_ms();
        a->start_failures = ok ? 0 : a->start_failures + 1;
        if (ok) {
            str_copy(a->following, sizeof(a->following), j.target);
            a->following_remote = j.remote;
            str_copy(a->following_sig, sizeof(a->following_sig), j.source_sig);
            set_role(a, j.remote ? "standby_leader" : "replica",
                     j.remote ? "started as standby leader" : j.target[0] ? "started as a replica" : "started read-only, no leader yet");
            agent_run_callback(a, "on_start", a->role);
        }
        break;
    case JOB_START_PRIMARY:
        a->start_failed = !ok;
        if (!ok)
            a->start_failed_at = mono_ms();
        a->start_failures = ok ? 0 : a->start_failures + 1;
        if (ok) {
            a->following[0] = '\0';
            a->following_remote = false;
            agent_run_callback(a, "on_start", "primary");
        }
        break;
    case JOB_PROMOTE:
        if (ok) {
            a->failovers++;
            a->following[0] = '\0';
            a->following_remote = false;
            PgState st;
            pg_observe(&a->pg, &st);
            /* the history entry goes in before the new leader announces itself (tick() writes it,
             * retrying until etcd takes it); its LSN is where the new timeline forked */
            int parent = st.timeline > 1 ? st.timeline - 1 : 1;
            Lsn fork = st.wal_lsn;
            if (!agent_fork_lsn(a->cfg->pg_data_dir, st.timeline, &parent, &fork, &err))
                log_warn("history: %s; recording the current position instead", err.msg);
            a->history_pending = true;
            a->history_tli = parent;
            a->history_lsn = fork;
            str_copy(a->history_reason, sizeof(a->history_reason),
                     a->cluster.failover.present ? "switchover" : "failover");
            agent_write_history(a);
            agent_effects_promoted(a, a->cluster.failover.present);
            delete_failover_key(a);
            set_role(a, "primary", "promoted");
        } else {
            /* could not promote: let someone else try (and not retry at once: each try reserves a
             * timeline number of its own) */
            a->promote_failed_at = mono_ms();
            dcs_del_if_mine(a, "leader");
        }
        break;
    case JOB_RELEASE:
        if (!ok) {
            /* postgres may still run: keeping the key (and the fence) is the safe side */
            log_error("switchover: postgres did not stop; keeping the leader key");
            delete_failover_key(a);
            break;
        }
        /* the key goes next tick, right after our final position is published */
        a->release_pending = true;
        set_role(a, "replica", "switchover: stepped down");
        agent_run_callback(a, "on_stop", "primary");
        break;
    case JOB_RESTART:
        a->start_failed = !ok;
        if (!ok)
            a->start_failed_at = mono_ms();
        a->start_failures = ok ? 0 : a->start_failures + 1;
        agent_run_callback(a, "on_restart", a->role);
        break;
    case JOB_RESCUE:
        if (ok) {
            a->rescued = true;
            str_copy(a->rescued_at, sizeof(a->rescued_at), j.rescue_time);
            a->following[0] = '\0';
            a->following_remote = false;
            set_role(a, "rescued", "opened at the rescue time, detached from the cluster");
            log_warn("rescue: postgres runs as it was at %s, detached from the cluster (no routing, no elections); "
                     "'pgvigil reinit %s' makes it a replica again", j.rescue_time, a->cfg->name);
        } else {
            log_error("rescue to %s failed: %s (see the server log); 'pgvigil reinit %s' rebuilds it", j.rescue_time,
                      errmsg, a->cfg->name);
            a->rescued = true;   /* whatever it is now, it is not a standby to run as before */
            str_copy(a->rescued_at, sizeof(a->rescued_at), j.rescue_time);
        }
        break;
    case JOB_STANDBY_DEMOTE:
        a->start_failed = !ok;
        if (!ok) {
            a->start_failed_at = mono_ms();
            a->start_failures++;
            break;
        }
        a->start_failures = 0;
        a->following[0] = '\0';
        a->following_remote = true;
        str_copy(a->following_sig, sizeof(a->following_sig), j.source_sig);
        set_role(a, "standby_leader", "this site now follows another one");
        break;
    case JOB_NONE:
        break;
    }
}

/* An agent restarted under a running standby leader: postgres follows the source already when it
 * runs with the primary_conninfo and slot this agent would write for it now. */
void agent_adopt_source(Agent *a)
{
    const StandbyCluster *sc = &a->cluster.config.standby;
    if (a->following_remote || a->following[0] || !a->dcs_ok || !sc->present || !sc->host || !a->pgst.running ||
        !a->pgst.accepting || !a->pgst.in_recovery || strcmp(a->cluster.leader, a->cfg->name) != 0 ||
        agent_job_running(a))
        return;
    Job j;
    job_prepare_ex(a, &j, JOB_NONE, NULL, true);
    PgConfSpec spec = {.replica = true, .primary_host = j.host, .primary_port = j.port, .from_source = true};
    char *want = pg_primary_conninfo(a->cfg, &spec);
    Err err = {{0}};
    PGresult *r = pg_query(&a->pg, "SELECT current_setting('primary_conninfo'), current_setting('primary_slot_name')",
                           2000, &err);
    if (r && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), want) == 0 && strcmp(PQgetvalue(r, 0, 1), j.slot) == 0) {
        a->following_remote = true;
        str_copy(a->following_sig, sizeof(a->following_sig), j.source_sig);
        log_info("standby leader: postgres already follows %s:%d", sc->host, sc->port);
    }
    PQclear(r);
    free(want);
    kvlist_free(&j.dyn_params);
}

/* ---- leader maintenance ----------------------------------------------------------------- */

static void maintain_slots(Agent *a)
{
    if (!a->cluster.config.use_slots)
        return;
    char names[64][64];
    int n = peer_slot_names(a, names, 64);
    Err err = {{0}};
    if (!pg_sync_slots(&a->pg, names, n, &err))
        log_warn("replication slots: %s", err.msg);
    if (a->pgst.in_recovery && a->cluster.config.n_slots > 0) {
        /* a standby leader's permanent slots serve the other site once this one is promoted:
         * unused until then, they would hold every WAL file since their creation (a DR site's
         * disk, and what a failback's pg_rewind copies); they follow its restartpoints */
        char perm[16][64];
        int np = 0;
        for (int i = 0; i < a->cluster.config.n_slots && np < 16; i++)
            str_copy(perm[np++], 64, a->cluster.config.slots[i]);
        Err ae = {{0}};
        if (!pg_advance_slots(&a->pg, perm, np, &ae))
            log_debug("advancing the permanent slots: %s", ae.msg);
    }
}

/* Rewrite the configuration of the running server and reload it (loop thread): as a replica
 * of `target` ("" none), or as a primary with synchronous_standby_names `ssn`. */
static bool reconfigure(Agent *a, bool replica, const char *target, bool remote, const char *ssn, Err *err)
{
    Job j;
    job_prepare_ex(a, &j, JOB_NONE, replica ? target : NULL, replica && remote);
    str_copy(j.sync_names, sizeof(j.sync_names), ssn ? ssn : "");
    bool ok = agent_write_job_conf(&a->pg, &j, replica, false, NULL, err) && pg_reload(&a->pg, err);
    kvlist_free(&j.dyn_params);
    return ok;
}

/* take over, add, switch: the steps from a promotion to a synchronous standby in force */
#define SYNC_STEPS_PER_TICK 4
#define NUDGE_WAIT_MS 200

static bool apply_ssn(Agent *a, const char *ssn)
{
    Err err = {{0}};
    if (!reconfigure(a, false, NULL, false, ssn, &err)) {
        log_error("cannot apply synchronous_standby_names: %s", err.msg);
        return false;
    }
    str_copy(a->sync_applied, sizeof(a->sync_applied), ssn);
    a->sync_changed_ms = mono_ms();
    return true;
}

/* Commits waiting for a synchronous standby are released only when its walsender, having
 * loaded the new synchronous_standby_names, gets a reply from it; a standby that has flushed
 * everything replies only every wal_receiver_status_interval. A commit of our own that waits
 * only for the local flush sends it new WAL, so it replies at once. The walsender's priority
 * shows in pg_stat_replication only once the standby has replied on this connection at all
 * (a standby that just re-connected has not), and a walsender still catching up releases
 * nothing: so commit, look, and again until every named standby streams and shows its
 * priority; the reply to the last commit is then handled with both. Bounded: the regular reply
 * comes within a second anyway. */
static void nudge_sync_standbys(Agent *a, const SsnSet *ssn)
{
    int64_t deadline = mono_ms() + NUDGE_WAIT_MS;
    for (;;) {
        Err err = {{0}};
        PGresult *r = pg_query(&a->pg, "SELECT application_name FROM pg_stat_replication WHERE sync_priority > 0 AND state = 'streaming'",
                               500, &err);
        int seen = 0;
        for (int i = 0; r && i < PQntuples(r); i++)
            for (int j = 0; j < ssn->n; j++)
                if (strcasecmp(PQgetvalue(r, i, 0), ssn->names[j]) == 0)
                    seen++;
        PQclear(r);
        if (!r || !pg_exec(&a->pg, "BEGIN; SET LOCAL synchronous_commit TO local; SELECT txid_current(); COMMIT",
                           500, &err)) {
            log_debug("sync: nudging the synchronous standbys: %s", err.msg);
            return;
        }
        if (seen >= ssn->n || mono_ms() >= deadline)
            return;
        sleep_ms(10);
    }
}

/* The site lag guard (site_lag_guard_bytes, outside synchronous mode): when a permanent slot (the
 * one another site follows through) lags more than the bound, commits wait for that site:
 * synchronous_standby_names names the walsenders that serve another site (or, with none
 * connected, a name nobody has: commits wait until it comes back). Released below half the
 * bound. Measured on the slot, so a site that is gone counts as lagging. */
static void site_guard_ssn(Agent *a, char *out, size_t sz)
{
    out[0] = '\0';
    const DynConfig *dc = &a->cluster.config;
    if (dc->site_lag_guard_bytes <= 0 || dc->n_slots == 0) {
        a->guard_on = false;
        a->guard_lag = -1;
        return;
    }
    StrBuf q = {0};
    strbuf_adds(&q, "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), 0)::bigint "
                    "FROM pg_replication_slots WHERE slot_type = 'physical' AND slot_name IN (");
    for (int i = 0; i < dc->n_slots; i++)
        strbuf_addf(&q, "%s'%s'", i ? ", " : "", dc->slots[i]);   /* names checked: [a-z0-9_] */
    strbuf_adds(&q, ")");
    char *sql = strbuf_take(&q);
    Err err = {{0}};
    PGresult *r = pg_query(&a->pg, sql, 2000, &err);
    free(sql);
    if (!r || PQntuples(r) != 1) {
        PQclear(r);
        log_debug("site lag guard: %s", err.msg);
        if (a->guard_on)   /* unknown: keep what is in force */
            str_copy(out, sz, a->sync_applied);
        return;
    }
    a->guard_lag = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (a->guard_lag > dc->site_lag_guard_bytes)
        a->guard_on = true;
    else if (a->guard_lag <= dc->site_lag_guard_bytes / 2)
        a->guard_on = false;
    if (!a->guard_on)
        return;
    /* the walsenders that serve the permanent slots (not any stranger: pg_receivewal also
     * reports a flush position) */
    StrBuf q2 = {0};
    strbuf_adds(&q2, "SELECT r.application_name FROM pg_replication_slots s JOIN pg_stat_replication r "
                     "ON r.pid = s.active_pid WHERE s.slot_name IN (");
    for (int i = 0; i < dc->n_slots; i++)
        strbuf_addf(&q2, "%s'%s'", i ? ", " : "", dc->slots[i]);
    strbuf_adds(&q2, ")");
    sql = strbuf_take(&q2);
    r = pg_query(&a->pg, sql, 2000, &err);
    free(sql);
    StrBuf names = {0};
    int n = 0;
    for (int i = 0; r && i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        if (!name[0] || strpbrk(name, "\"\\") || strlen(name) > 63)
            continue;   /* not a name synchronous_standby_names can carry */
        strbuf_addf(&names, "%s\"%s\"", n++ ? ", " : "", name);
    }
    PQclear(r);
    if (n == 0)
        strbuf_adds(&names, "\"pgvigil_other_site\"");
    char *list = strbuf_take(&names);
    str_fmt(out, sz, "ANY 1 (%s)", list);
    free(list);
}

/* Synchronous replication on the leader: sync_plan()'s steps, as many in a row as can be taken
 * at once. */
static void maintain_sync(Agent *a)
{
    const Cluster *c = &a->cluster;
    Err err = {{0}};
    /* sample the WAL position now, with the setting: a confirmation step records it as the
     * catch-up LSN, and it must not predate the moment the new setting was in force */
    PGresult *r = pg_query(&a->pg, "SELECT current_setting('synchronous_standby_names'), pg_current_wal_lsn()::text",
                           2000, &err);
    if (!r) {
        log_warn("synchronous replication: %s", err.msg);
        return;
    }
    char current[SSN_TEXT_MAX];
    Lsn wal_now = 0;
    str_copy(current, sizeof(current), PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "");
    if (PQntuples(r) != 1 || !lsn_parse(PQgetvalue(r, 0, 1), &wal_now)) {
        PQclear(r);
        log_warn("synchronous replication: unexpected answer from postgres");
        return;
    }
    PQclear(r);
    if (!c->config.synchronous_mode) {
        if (c->sync.present) {
            bool deleted;
            if (!a->dcs->ops->del(a->dcs, "sync", NULL, &deleted, &err))
                log_warn("cannot delete the sync key: %s", err.msg);
        }
        char guard[SSN_TEXT_MAX];
        site_guard_ssn(a, guard, sizeof(guard));
        if (strcmp(current, guard) != 0 && apply_ssn(a, guard)) {
            if (guard[0])
                log_warn("site lag guard: another site lags %lld bytes (more than site_lag_guard_bytes %lld): commits "
                         "wait for it (synchronous_standby_names = '%s')",
                         (long long)a->guard_lag, (long long)c->config.site_lag_guard_bytes, guard);
            else
                log_info("%s", a->guard_lag >= 0 ? "site lag guard released: the other site caught up"
                                                   : "synchronous mode off: synchronous_standby_names cleared");
        }
        return;
    }
    if (c->config.site_lag_guard_bytes > 0 && !a->guard_warned) {
        log_warn("site_lag_guard_bytes is not applied in synchronous mode (synchronous_standby_names belongs to it)");
        a->guard_warned = true;
    }
    SsnSet applied;
    ssn_parse(current, &applied);
    SyncInput in = {
        .me = a->cfg->name,
        .node_count = c->config.synchronous_node_count,
        .strict = c->config.synchronous_mode_strict,
        .key = &c->sync,
        .applied = &applied,
        .applied_age_ms = a->sync_changed_ms ? mono_ms() - a->sync_changed_ms : INT64_MAX,
        .senders = a->pgst.senders,
        .n_senders = a->pgst.n_senders,
        .cluster = c,
        .wal_lsn = wal_now,
    };
    /* Steps follow each other in one tick as long as each succeeds: every key write is
     * acknowledged by etcd before the next step starts, so the order the invariant needs holds,
     * and a promotion does not wait three ticks (take over, add, switch) before it commits. */
    SyncState key = c->sync;
    in.key = &key;
    for (int steps = 0; steps < SYNC_STEPS_PER_TICK; steps++) {
        SyncStep st;
        sync_plan(&in, &st);
        if (st.kind == SYNC_NOTHING) {
            log_debug("sync: %s", st.reason);
            return;
        }
        log_info("sync: %s", st.reason);
        if (st.kind == SYNC_SET_SSN) {
            char text[SSN_TEXT_MAX];
            ssn_format(&st.ssn, text, sizeof(text));
            if (apply_ssn(a, text) && st.ssn.n > 0)
                nudge_sync_standbys(a, &st.ssn);
            return;   /* what follows a switch waits for it to be in force */
        }
        char *json = sync_to_json(&st.key);
        bool swapped = false;
        int64_t rev = 0;
        bool ok = a->dcs->ops->cas_rev(a->dcs, "sync", key.present ? key.mod_revision : 0, json, &swapped, &rev, &err);
        free(json);
        if (!ok) {
            log_warn("cannot write the sync key: %s", err.msg);
            return;
        }
        if (!swapped) {
            log_warn("sync key changed concurrently; retrying next tick");
            return;
        }
        key = st.key;
        key.present = true;
        key.mod_revision = rev;
    }
}

static char *params_text(const KvList *l)
{
    size_t cap = 64, len = 0;
    char *s = xmalloc(cap);
    s[0] = '\0';
    for (int i = 0; i < l->n; i++) {
        char *item = str_printf("%s=%s\n", l->items[i].key, l->items[i].value ? l->items[i].value : "");
        size_t n = strlen(item);
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            s = xrealloc(s, cap);
        }
        memcpy(s + len, item, n + 1);
        len += n;
        free(item);
    }
    return s;
}

void agent_apply_params(Agent *a)
{
    if (!a->pgst.running || !a->pgst.accepting || !a->dcs_ok)
        return;
    if (a->following_remote) {
        /* the source changed: re-pointing is ha_decide's (it may refuse the new one) */
        char sig[sizeof(a->following_sig)];
        agent_source_signature(&a->cluster.config.standby, sig, sizeof(sig));
        if (strcmp(sig, a->following_sig) != 0)
            return;
    }
    char t[80];
    int tl;
    if (agent_promote_at_pending(a, t, sizeof(t), &tl))
        return;   /* a reload could drop the apply delay that keeps the bad write back */
    char *now = params_text(&a->cluster.config.pg_parameters);
    if (a->params_applied && strcmp(now, a->params_applied) == 0) {
        free(now);
        return;
    }
    bool first = a->params_applied == NULL;
    if (!a->pgst.in_recovery && a->sync_changed_ms == 0) {
        /* agent restarted under a running primary: keep its synchronous_standby_names */
        Err e = {{0}};
        PGresult *r = pg_query(&a->pg, "SHOW synchronous_standby_names", 2000, &e);
        if (!r) {
            free(now);
            return;
        }
        str_copy(a->sync_applied, sizeof(a->sync_applied), PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "");
        PQclear(r);
        a->sync_changed_ms = mono_ms();
    }
    Err err = {{0}};
    if (reconfigure(a, a->pgst.in_recovery, a->following, a->following_remote, a->sync_applied, &err)) {
        if (!first)
            log_info("postgresql parameters changed in the cluster config: configuration rewritten and reloaded");
        free(a->params_applied);
        a->params_applied = now;
        now = NULL;
    } else {
        log_warn("cannot apply postgresql parameters: %s", err.msg);
    }
    free(now);
}

/* A standby cluster (another site) streams from us when a walsender serves a name that is not
 * one of our members: then a small commit every second lets it measure its lag in seconds
 * (pg_last_xact_replay_timestamp() moves only with commits). */
#define HEARTBEAT_EVERY_MS 1000

static void site_heartbeat(Agent *a)
{
    bool other_site = false;
    for (int i = 0; i < a->pgst.n_senders && !other_site; i++)
        other_site = !cluster_member(&a->cluster, a->pgst.senders[i].application_name);
    int64_t now = mono_ms();
    if (!other_site || now - a->heartbeat_ms < HEARTBEAT_EVERY_MS)
        return;
    a->heartbeat_ms = now;
    Err err = {{0}};
    if (!pg_exec(&a->pg, "BEGIN; SET LOCAL synchronous_commit TO local; "
                         "SELECT pg_logical_emit_message(true, 'pgvigil_heartbeat', now()::text); COMMIT",
                 1000, &err))
        log_debug("site heartbeat: %s", err.msg);
}

static void keep_leader(Agent *a, const Decision *d)
{
    Err err = {{0}};
    /* tick() has already moved the key onto our current lease if it sat on another one */
    if (d->clear_failover)
        delete_failover_key(a);
    /* a new primary tells the proxies at once (the end of the tick would publish it after the
     * slot and sync work); slots and synchronous standbys come next */
    const Member *me = cluster_member(&a->cluster, a->cfg->name);
    if (!a->pgst.in_recovery && a->pgst.accepting && (!me || strcmp(me->role, "primary") != 0))
        agent_publish(a);
    maintain_slots(a);
    if (a->pgst.in_recovery) {
        /* a standby leader: it keeps its cascading members' slots (and the permanent ones, which
         * then hold what another site needs the moment this one is promoted); nothing else */
        set_role(a, "standby_leader", d->reason);
        return;
    }
    maintain_sync(a);
    site_heartbeat(a);
    int64_t now = mono_ms();
    if (a->pgst.wal_lsn && a->pgst.wal_lsn != a->cluster.status_optime &&
        now - a->status_written_ms >= (int64_t)a->cluster.config.loop_wait_ms) {
        a->status_written_ms = now;
        char status[64];
        str_fmt(status, sizeof(status), "{\"optime\":%llu}", (unsigned long long)a->pgst.wal_lsn);
        if (!a->dcs->ops->put(a->dcs, "status", status, false, &err))
            log_warn("cannot write status: %s", err.msg);
    }
    set_role(a, "primary", d->reason);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

/* A promotion reserves its timeline number in etcd first, above every timeline the cluster has
 * seen: PostgreSQL picks the next number free in its own pg_wal, which knows nothing of a
 * promotion elsewhere that nobody recorded (its agent died before writing the history key).
 * Two primaries on one timeline number make pg_rewind take their diverging WAL for the same,
 * and the replicas that rejoin never recover. */
static bool reserve_timeline(Agent *a, int *out)
{
    const Cluster *c = &a->cluster;
    int max = a->pgst.timeline > a->pgst.history_tli ? a->pgst.timeline : a->pgst.history_tli;
    if (c->history_timeline > max)
        max = c->history_timeline;
    if (c->reserved_timeline > max)
        max = c->reserved_timeline;
    for (int i = 0; i < c->n_members; i++)
        if (c->members[i].timeline > max)
            max = c->members[i].timeline;
    if (max >= INT32_MAX - 1)
        return false;
    int want = max + 1;
    json_t *o = json_pack("{s:i,s:s}", "timeline", want, "member", a->cfg->name);
    char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!json) {
        log_error("promote: out of memory");
        return false;
    }
    Err err = {{0}};
    bool swapped = false;
    bool ok = a->dcs->ops->cas_rev(a->dcs, "pgvigil_timeline", c->reserved_timeline_rev, json, &swapped, NULL, &err);
    free(json);
    if (!ok || !swapped) {
        log_warn("promote: cannot reserve timeline %d%s%s", want, err.msg[0] ? ": " : " (the key changed meanwhile)",
                 err.msg);
        return false;
    }
    *out = want;
    return true;
}

static bool take_leader_key(Agent *a)
{
    Err err = {{0}};
    bool created = false;
    if (!a->dcs->ops->create(a->dcs, "leader", a->cfg->name, true, &created, &err)) {
        log_warn("cannot create the leader key: %s", err.msg);
        return false;
    }
    if (!created)
        log_info("another member took the leader key first");
    return created;
}

static void demote_now(Agent *a, const char *mode)
{
    Err err = {{0}};
    bool stopped = pg_stop(&a->pg, mode, 10, &err);
    if (!stopped)
        log_error("demote: cannot stop postgres: %s (the fence stays armed)", err.msg);
    pg_node_close(&a->pg);
    a->following[0] = '\0';
    a->following_remote = false;
    if (stopped)
        fence_disarm(&a->fence);
    set_role(a, "demoted", "stopped writes");
    agent_run_callback(a, "on_stop", "primary");
}

void agent_act(Agent *a, const Decision *d)
{
    Err err = {{0}};
    switch (d->action) {
    case ACT_WAIT:
        if (d->clear_failover)
            delete_failover_key(a);
        break;
    case ACT_BOOTSTRAP: {
        bool created = false;
        if (a->pgst.running && !a->pgst.in_recovery && a->pgst.sysid[0]) {
            if (!a->dcs->ops->create(a->dcs, "initialize", a->pgst.sysid, false, &created, &err) || !created)
                break;
            if (agent_arm_fence_for_lead(a) && take_leader_key(a))
                set_role(a, "primary", "registered the running primary as a new cluster");
            break;
        }
        if (!a->dcs->ops->create(a->dcs, "initialize", "", false, &created, &err)) {
            log_warn("bootstrap: %s", err.msg);
            break;
        }
        if (!created) {
            log_info("bootstrap: another member won the initialize key");
            break;
        }
        /* a standby cluster's bootstrap copies its source and stays in recovery: no fence */
        if ((!d->remote && !agent_arm_fence_for_lead(a)) || !take_leader_key(a)) {
            bool del;
            a->dcs->ops->del(a->dcs, "initialize", "", &del, &err);
            break;
        }
        if (d->remote)
            agent_submit_remote(a, JOB_BOOTSTRAP);
        else
            agent_submit(a, JOB_BOOTSTRAP, NULL);
        break;
    }
    case ACT_CLONE:
        set_role(a, "replica", "creating replica");
        agent_submit(a, JOB_CLONE, d->target);
        break;
    case ACT_START_REPLICA:
        if (d->remote)
            agent_submit_remote(a, JOB_START_REPLICA);
        else
            agent_submit(a, JOB_START_REPLICA, d->target);
        break;
    case ACT_START_PRIMARY:
        if (!agent_arm_fence_for_lead(a)) {
            log_warn("start as primary: no live lease to arm the fence with; not starting");
            break;
        }
        str_copy(a->sync_applied, sizeof(a->sync_applied), a->cluster.config.synchronous_mode ? SSN_BLOCK : "");
        a->sync_changed_ms = mono_ms();
        agent_submit(a, JOB_START_PRIMARY, NULL);
        break;
    case ACT_KEEP_LEADER:
        keep_leader(a, d);
        break;
    case ACT_ACQUIRE: {
        /* a standby cluster's new standby leader, in recovery, needs no fence */
        bool standby_lead = a->cluster.config.standby.present && a->pgst.in_recovery && a->pgst.accepting;
        if ((standby_lead || agent_arm_fence_for_lead(a)) && take_leader_key(a))
            set_role(a, standby_lead ? "standby_leader" : "primary", d->reason);
        break;
    }
    case ACT_PROMOTE:
        /* the fence is armed before the key is ours: if we die from here on, whatever
         * postgres has become is killed by the lease deadline */
        if (!agent_arm_fence_for_lead(a)) {
            log_warn("promote: no live lease to arm the fence with; not promoting");
            break;
        }
        if (a->promote_failed_at && mono_ms() - a->promote_failed_at < PROMOTE_RETRY_PAUSE_MS) {
            log_debug("promote: the last promotion failed %lld ms ago; trying again after %d ms",
                     (long long)(mono_ms() - a->promote_failed_at), PROMOTE_RETRY_PAUSE_MS);
            break;
        }
        if (!promote_target_ok(a))
            break;
        {
            /* a promotion at a time that was interrupted keeps the timeline it reserved */
            char t[80];
            int tl = 0;
            if (!(agent_promote_at_pending(a, t, sizeof(t), &tl) && tl > 0 && (a->promote_timeline = tl)) &&
                !reserve_timeline(a, &a->promote_timeline))
                break;
        }
        if (strcmp(a->cluster.leader, a->cfg->name) != 0 && !take_leader_key(a))
            break;
        /* in synchronous mode the new primary acknowledges nothing until a synchronous
         * standby of its own is confirmed (see sync_plan.c) */
        str_copy(a->sync_applied, sizeof(a->sync_applied), a->cluster.config.synchronous_mode ? SSN_BLOCK : "");
        a->sync_changed_ms = mono_ms();
        agent_submit(a, JOB_PROMOTE, NULL);
        test_hook_promote_pause(a);
        break;
    case ACT_DEMOTE:
        demote_now(a, "immediate");
        if (strcmp(a->cluster.leader, a->cfg->name) == 0 && a->dcs_ok)
            dcs_del_if_mine(a, "leader");
        break;
    case ACT_FOLLOW:
        if (reconfigure(a, true, d->target, d->remote, NULL, &err)) {
            str_copy(a->following, sizeof(a->following), d->target);
            a->following_remote = d->remote;
            agent_source_signature(&a->cluster.config.standby, a->following_sig, sizeof(a->following_sig));
            set_role(a, d->remote ? "standby_leader" : "replica", d->reason);
        } else {
            log_error("follow %s: %s", d->remote ? "the standby_cluster source" : d->target, err.msg);
        }
        break;
    case ACT_REWIND:
        if (d->remote)
            agent_submit_remote(a, JOB_REWIND);
        else
            agent_submit(a, JOB_REWIND, d->target);
        break;
    case ACT_STANDBY_DEMOTE:
        agent_submit_remote(a, JOB_STANDBY_DEMOTE);
        break;
    case ACT_REINIT:
        agent_submit(a, JOB_REINIT, d->target);
        break;
    case ACT_RELEASE:
        agent_submit(a, JOB_RELEASE, d->target);
        break;
    case ACT_GIVE_UP_LEADER:
        if (a->pgst.running)
            demote_now(a, "immediate");
        dcs_del_if_mine(a, "leader");
        break;
    case ACT__COUNT:
        break;
    }
}

static bool same_str(const char *x, const char *y)
{
    return strcmp(x ? x : "", y ? y : "") == 0;
}

void agent_reload_config(Agent *a)
{
    Err err = {{0}};
    Config *n = config_load(a->cfg->path, &err);
    if (!n) {
        log_error("reload: keeping the current configuration: %s", err.msg);
        return;
    }
    const Config *o = a->cfg;
    if (!same_str(n->name, o->name) || !same_str(n->scope, o->scope) || !same_str(n->pg_data_dir, o->pg_data_dir) ||
        !same_str(n->pg_listen, o->pg_listen) || !same_str(n->restapi_listen, o->restapi_listen) ||
        !same_str(n->namespace_, o->namespace_)) {
        log_error("reload: name, scope, namespace, data_dir, postgresql.listen and restapi.listen need an agent restart; "
                  "keeping the current configuration");
        config_free(n);
        return;
    }
    a->old_cfgs = xrealloc(a->old_cfgs, sizeof(*a->old_cfgs) * (size_t)(a->n_old_cfgs + 1));
    a->old_cfgs[a->n_old_cfgs++] = a->cfg;
    a->cfg = n;
    a->pg.cfg = n;
    LogLevel lv;
    if (n->log_level && log_parse_level(n->log_level, &lv))
        log_set_level(lv);
    /* rewrite postgresql.conf / pg_hba.conf with the new local settings on the next tick */
    free(a->params_applied);
    a->params_applied = NULL;
    a->last_member_shape[0] = '\0';
    log_info("reload: configuration re-read from %s", n->path);
    agent_run_callback(a, "on_reload", a->role);
}
