/* `pgvigil agent`: the HA loop of one node. Every tick: renew the lease, read the cluster,
 * observe PostgreSQL, (during an election) ask the peers, decide, act, publish; then wait for
 * an etcd change or loop_wait, whichever comes first. */
#include "common/common.h"
#include "common/lease_file.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "ha/agent.h"
#include "net/vip.h"
#include "ha/peers.h"
#include "notify/notify.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* renew this much before a whole loop_wait has passed, so a tick that starts a little early
 * still renews */
#define RENEW_EARLY_MS 50

static Agent *g_agent;

/* the shortest time between the starts of two ticks run by etcd changes */
#define MIN_TICK_GAP_MS 50

static void on_signal(int sig)
{
    if (!g_agent)
        return;
    if (sig == SIGHUP)
        g_agent->hup = 1;
    else
        g_agent->stop = 1;
}

static int64_t dcs_timeout_for(int ttl)
{
    int64_t t = (int64_t)ttl * 1000 / 5;
    return t < 500 ? 500 : (t > 2000 ? 2000 : t);
}

/* How long before the lease deadline a primary that cannot renew must stop writes: one etcd
 * timeout (the renewal in flight) plus time to stop postgres. */
static int64_t demote_margin(const Agent *a)
{
    /* one etcd call may try every host in turn */
    int64_t m = a->dcs_timeout_ms * (a->cfg->n_etcd_hosts > 0 ? a->cfg->n_etcd_hosts : 1) + 1500;
    int64_t ttl_ms = (int64_t)a->cluster.config.ttl * 1000;
    return m > ttl_ms / 2 ? ttl_ms / 2 : m;
}

static int current_ttl(const Agent *a)
{
    return a->cluster.config.ttl > 0 ? a->cluster.config.ttl : a->cfg->bootstrap_dcs.ttl;
}

static int64_t current_loop_wait_ms(const Agent *a)
{
    return a->cluster.config.loop_wait_ms > 0 ? a->cluster.config.loop_wait_ms : a->cfg->bootstrap_dcs.loop_wait_ms;
}

/* The lease is renewed once per loop_wait, not on every tick: a tick also runs on every etcd
 * change, and renewing then would push the expiry of a dead node's lease towards a whole TTL
 * after its death. Renewing on a fixed cadence makes failover take TTL - loop_wait/2 on
 * average. */
static int64_t renew_due_ms(const Agent *a)
{
    return a->lease_sent_ms + current_loop_wait_ms(a) - RENEW_EARLY_MS;
}

/* The fence stops postgres this long before the lease deadline. It has to fall after the next
 * renewal (one loop_wait after the last), with room for a slow one: half the gap, at most 1 s. */
static int64_t fence_margin(const Agent *a)
{
    int64_t gap = (int64_t)current_ttl(a) * 1000 - current_loop_wait_ms(a);
    return gap / 2 < 1000 ? gap / 2 : 1000;
}

/* What the postgres calls of one tick may spend together. The fence stops postgres when no
 * renewal came for ttl - margin; renewals happen at the start of a tick, so a tick must stay well
 * inside the gap between one renewal and the fence: postgres gets half of it, at most 2 s. */
static int64_t pg_budget_ms(const Agent *a)
{
    int64_t gap = (int64_t)current_ttl(a) * 1000 - current_loop_wait_ms(a) - fence_margin(a);
    return gap / 2 < 2000 ? (gap / 2 > 100 ? gap / 2 : 100) : 2000;
}

/* The WAL archive service, when backup.archive is on. Started once the identity is checked: its
 * socket is the one this postgres's archiver connects to. A failure is logged, and the archiver
 * keeps its WAL and retries until an agent answers. */
static void agent_archive_start(Agent *a)
{
    const BackupConfig *bc = &a->cfg->backup;
    if (!bc->archive || a->archive)
        return;
    Err err = {{0}};
    Repo *repo = repo_open_driver(bc, &err); /* read by the service's first push, not here */
    CompressKind k = COMPRESS_ZSTD;
    compress_kind_parse(bc->compression, &k);
    char sock[4200];
    pg_archive_socket(&a->pg, sock, sizeof(sock));
    ArchiveServiceConfig c = {
        .socket_path = sock,
        .data_dir = a->cfg->pg_data_dir,
        .repo = repo,
        .compress = k,
        .level = bc->compression_level,
        .workers = bc->archive_workers,
        .encryption = bc->encryption,
        .encryption_key_file = bc->encryption_key_file,
    };
    if (repo)
        a->archive = archive_service_start(&c, &err);
    if (!a->archive) {
        repo_free(repo);
        if (!a->archive_logged)
            log_error("archive: %s (WAL stays in pg_wal until archiving works; retrying)", err.msg);
        a->archive_logged = true;
        return;
    }
    log_info("archive: storing WAL in the %s (%s, encryption %s), %d worker(s), socket %s", repo->desc,
             bc->compression, bc->encryption ? bc->encryption : "none", c.workers, sock);
}

/* One archive_failing notification per failure streak (the service logs every distinct error). */
static void agent_archive_watch(Agent *a)
{
    if (!a->archive)
        return;
    ArchiveStats st;
    archive_service_stats(a->archive, &st);
    if (st.last_error[0] && !a->archive_alerted) {
        agent_notify(a, EV_ARCHIVE_FAILING, a->cfg->name, "WAL archiving fails; PostgreSQL keeps the WAL: %s",
                     st.last_error);
        a->archive_alerted = true;
    } else if (!st.last_error[0]) {
        a->archive_alerted = false;
    }
}

static void renew_lease(Agent *a)
{
    Err err = {{0}};
    bool expired = false;
    int64_t sent = mono_ms();
    if (a->lease_ok && sent < renew_due_ms(a))
        return;
    int ttl = current_ttl(a);
    if (a->dcs->ops->keepalive(a->dcs, ttl, &expired, &err)) {
        a->lease_ok = true;
        a->lease_sent_ms = sent;
        /* etcd counts the TTL from when it received the renewal, which is after `sent` */
        a->lease_deadline_ms = sent + (int64_t)ttl * 1000;
        if (expired) {
            log_warn("my previous lease had expired; keys on it are gone");
            /* the leader key went with it: until etcd is read again this agent does not lead,
             * so the renewal extends neither the fence nor the commit guard (another node may
             * be primary already), and commits held under the old lease are never released */
            if (strcmp(a->cluster.leader, a->cfg->name) == 0)
                a->cluster.leader[0] = '\0';
            fence_new_lease(&a->fence, ++a->lease_gen);
        }
    } else {
        if (a->lease_ok || !a->lease_fail_logged)
            log_warn("lease renewal failed: %s", err.msg);
        else
            log_debug("lease renewal failed: %s", err.msg);
        a->lease_fail_logged = true;
        a->lease_ok = false;
    }
}

static void load_cluster(Agent *a)
{
    Cluster c;
    cluster_init(&c);
    Err err = {{0}};
    if (a->dcs->ops->load(a->dcs, &c, &err)) {
        if (!c.has_config) {
            /* until the bootstrapping member stores it, use our bootstrap.dcs */
            dynconfig_free(&c.config);
            dynconfig_copy(&c.config, &a->cfg->bootstrap_dcs);
        } else if (c.config_invalid && a->cluster.has_config && !a->cluster.config_invalid) {
            /* a config key broken by hand: go on with the last one that parsed (its defaults could
             * turn synchronous mode off or a standby cluster into a primary site), keeping a
             * standby_cluster the broken key still names */
            StandbyCluster salvaged = c.config.standby;
            memset(&c.config.standby, 0, sizeof(c.config.standby));
            dynconfig_free(&c.config);
            dynconfig_copy(&c.config, &a->cluster.config);
            if (salvaged.present && !c.config.standby.present) {
                DynConfig tmp;
                memset(&tmp, 0, sizeof(tmp));
                tmp.standby = c.config.standby;
                dynconfig_free(&tmp);
                c.config.standby = salvaged;
            } else {
                DynConfig tmp;
                memset(&tmp, 0, sizeof(tmp));
                tmp.standby = salvaged;
                dynconfig_free(&tmp);
            }
            c.config_invalid = false;   /* what it holds now is a valid configuration */
        }
        cluster_free(&a->cluster);
        a->cluster = c;
        if (!a->dcs_ok)
            log_info("etcd reachable again");
        a->dcs_ok = true;
    } else {
        cluster_free(&c);
        if (a->dcs_ok)
            log_error("etcd unreachable: %s", err.msg);
        a->dcs_ok = false;
    }
}

/* how long a running postgres may refuse connections before its log is read for a divergence */
#define NOT_ACCEPTING_CHECK_MS 5000
/* ... and how long a running standby may go without streaming before its log is read for one:
 * its walreceiver tries again every wal_retrieve_retry_interval (1 s as pgvigil writes it), and
 * postgres says at the first try that it cannot follow */
#define NOT_STREAMING_CHECK_MS 2000

static void observe_pg(Agent *a, Observation *o, ControlInfo *ci)
{
    PgState *st = &a->pgst;
    long log_size = pg_log_size(&a->pg);   /* before the look: what it says later is after it */
    pg_observe(&a->pg, st);
    int64_t now = mono_ms();
    if (st->running) {
        a->pg_down_since = 0;
    } else if (!a->pg_down_since) {
        a->pg_down_since = now;
    }
    /* Count "not streaming" (which ha_decide reads as diverged timelines) only while the leader
     * we follow runs as a primary and we may act: a leader whose postgres is down, restarting
     * or paused explains the missing stream by itself, and must not trigger a rewind the moment
     * it is back (the walreceiver retries every wal_retrieve_retry_interval). */
    const Member *lm = a->dcs_ok && a->cluster.leader[0] ? cluster_member(&a->cluster, a->cluster.leader) : NULL;
    bool leader_serving = lm && strcmp(a->following, lm->name) == 0 && strcmp(lm->state, "running") == 0 &&
                          (strcmp(lm->role, "primary") == 0 || strcmp(lm->role, "master") == 0 ||
                           strcmp(lm->role, "standby_leader") == 0) &&
                          !a->cluster.config.pause;
    bool replica_following = st->running && st->accepting && st->in_recovery && a->following[0] && leader_serving;
    /* a standby leader whose source answers (its identity was read lately) but does not stream
     * from it: the timelines diverged (the old primary site, back after a site promotion) */
    SourceInfo src;
    source_probe_get(&a->source, &src);
    if (st->running && st->accepting && st->in_recovery && a->following_remote && src.known &&
        mono_ms() - src.at_ms < 10000 && !a->cluster.config.pause)
        replica_following = true;
    if (replica_following && !st->streaming) {
        if (!a->not_streaming_since)
            a->not_streaming_since = now;
        /* what postgres says about it decides a standby leader's rewind, and spares a replica of
         * this cluster's leader the wait for NOT_STREAMING_REWIND_MS (the old primary site's
         * members after a site failover) */
        bool *diverged = a->following_remote ? &a->start_diverged : &a->follow_diverged;
        if (!*diverged && now - a->not_streaming_since > NOT_STREAMING_CHECK_MS &&
            pg_log_shows_divergence_since(&a->pg, a->log_streamed_at)) {
            if (a->following_remote)
                log_warn("standby leader: postgres cannot follow the source's timeline (see its log); it needs pg_rewind");
            else
                log_warn("postgres cannot follow the timeline of leader %s (see its log); it needs pg_rewind",
                         a->following);
            *diverged = true;
        }
    } else {
        /* once postgres said it cannot follow, its walreceiver still "streams" for a moment on
         * each retry, up to the fork, on its own timeline: that is no reason to start counting
         * again. Streaming on the source's timeline is: it follows after all. */
        bool retrying = a->start_diverged && a->following_remote && replica_following;
        if (retrying && st->streaming && src.known && st->timeline >= src.timeline) {
            log_info("standby leader: streaming on the source's timeline %d: it follows after all", st->timeline);
            a->start_diverged = retrying = false;
        }
        if (!retrying) {
            a->not_streaming_since = 0;
            a->follow_diverged = false;
            if (replica_following)
                a->log_streamed_at = log_size;
        }
    }
    /* a standby that runs but never becomes consistent may have gone past the fork of the
     * timeline it should follow (its recovery stops there for good): its log says so */
    if (st->running && !st->accepting) {
        if (!a->not_accepting_since)
            a->not_accepting_since = now;
        if (now - a->not_accepting_since > NOT_ACCEPTING_CHECK_MS && !a->start_diverged && pg_log_shows_divergence(&a->pg)) {
            log_warn("postgres runs but cannot recover past the fork of the leader's timeline; it needs pg_rewind");
            a->start_diverged = true;
        }
    } else {
        a->not_accepting_since = 0;
    }
    memset(ci, 0, sizeof(*ci));
    if (st->data_dir_valid && !st->running) {
        Err err;
        if (!pg_controldata_info(&a->pg, ci, &err))
            log_debug("%s", err.msg);
    }
    o->data_dir_valid = st->data_dir_valid;
    o->pg_running = st->running;
    o->pg_accepting = st->accepting;
    o->pg_in_recovery = st->in_recovery;
    o->standby_signal = st->standby_signal;
    /* only an unclean stop of a primary can hold writes no standby has seen */
    o->was_primary = ci->was_primary && !ci->clean_shutdown;
    o->my_lsn = st->in_recovery ? (st->receive_lsn > st->replay_lsn ? st->receive_lsn : st->replay_lsn) : st->wal_lsn;
    o->my_timeline = st->timeline > st->history_tli ? st->timeline : st->history_tli;
    o->pg_timeline = st->accepting ? st->timeline : 0;
    a->stopped_checkpoint = (!st->running && ci->clean_shutdown) ? ci->checkpoint : 0;
    /* a stopped data dir is checked too: never rewind, reclone or start another cluster's data */
    o->my_sysid = st->sysid[0] ? st->sysid : ci->sysid;
    o->pg_down_ms = a->pg_down_since ? now - a->pg_down_since : 0;
    o->not_streaming_ms = a->not_streaming_since ? now - a->not_streaming_since : 0;
    o->follow_diverged = a->follow_diverged && a->not_streaming_since;
}

static const char *state_name(const Agent *a)
{
    const PgState *st = &a->pgst;
    if (agent_job_running((Agent *)a)) {
        switch (a->job.kind) {
        case JOB_CLONE: case JOB_REINIT: return "creating replica";
        case JOB_REWIND: return "rewinding";
        case JOB_BOOTSTRAP: return "initializing new cluster";
        case JOB_RELEASE: return "stopping";
        case JOB_STANDBY_DEMOTE: return "restarting";
        default: return "starting";
        }
    }
    if (a->history_pending && st->running && st->accepting)
        return "promoting"; /* not announced as primary before the history key has the fork */
    if (st->running && st->accepting)
        return "running";
    if (st->running)
        return "starting";
    if (!st->data_dir_valid)
        return "stopped";
    return a->last_action == ACT_DEMOTE ? "stopped" : (a->pg_down_since ? "stopped" : "crashed");
}

void agent_publish(Agent *a)
{
    const Config *cfg = a->cfg;
    const PgState *st = &a->pgst;
    Member m;
    memset(&m, 0, sizeof(m));
    str_copy(m.name, sizeof(m.name), cfg->name);
    str_fmt(m.conn_url, sizeof(m.conn_url), "postgres://%s:%d/postgres", a->pg.conn_host, a->pg.conn_port);
    str_fmt(m.api_url, sizeof(m.api_url), "http://%s/patroni", cfg->restapi_connect_address);
    str_copy(m.state, sizeof(m.state), state_name(a));
    const char *role = !st->data_dir_valid ? "uninitialized" : (st->running && st->accepting && !st->in_recovery) ? "primary" : "replica";
    /* Patroni's name for the leader of a standby cluster */
    bool standby_leader = strcmp(role, "replica") == 0 && a->dcs_ok && a->cluster.config.standby.present &&
                          strcmp(a->cluster.leader, cfg->name) == 0;
    if (standby_leader)
        role = "standby_leader";
    if (a->rescued && st->data_dir_valid)
        role = "rescued";   /* no primary, no replica: no routing, no election counts it */
    str_copy(m.role, sizeof(m.role), role);
    str_copy(m.version, sizeof(m.version), PGVIGIL_VERSION);
    m.xlog_location = st->in_recovery ? st->replay_lsn : st->wal_lsn;
    if (!st->running && a->stopped_checkpoint)
        m.xlog_location = a->stopped_checkpoint; /* lets a switchover candidate check it has it all */
    if (st->in_recovery && st->receive_lsn > m.xlog_location)
        m.xlog_location = st->receive_lsn;
    m.timeline = st->timeline;
    /* a standby whose walreceiver is down reports its last restartpoint's timeline; the history
     * file it fetched when it followed a promotion tells the one it is on */
    if (st->in_recovery && st->history_tli > m.timeline)
        m.timeline = st->history_tli;
    if (st->in_recovery)
        str_copy(m.replication_state, sizeof(m.replication_state), st->streaming ? "streaming" : "in archive recovery");
    m.tags = cfg->tags;
    m.pending_restart = st->pending_restart;
    /* the key lives on our lease, so an unchanged record is never rewritten; a new position
     * alone is written at most once per loop_wait: every write wakes every agent's watch */
    if (a->dcs_ok && !cluster_member(&a->cluster, cfg->name))
        a->last_member_shape[0] = '\0'; /* gone from etcd (lease expired, deleted): rewrite */
    Lsn pos = m.xlog_location;
    m.xlog_location = 0;
    char *shape = member_to_json(&m);
    m.xlog_location = pos;
    int64_t now = mono_ms();
    bool recent = now - a->last_member_write_ms < (int64_t)a->cluster.config.loop_wait_ms;
    bool changed = strcmp(shape, a->last_member_shape) != 0;
    if (a->dcs_ok && (changed || (pos != a->last_member_pos && !recent))) {
        Err err = {{0}};
        char key[128];
        str_fmt(key, sizeof(key), "members/%s", cfg->name);
        char *json = member_to_json(&m);
        if (a->dcs->ops->put(a->dcs, key, json, true, &err)) {
            str_copy(a->last_member_shape, sizeof(a->last_member_shape), shape);
            a->last_member_pos = pos;
            a->last_member_write_ms = now;
        } else {
            log_warn("cannot publish member key: %s", err.msg);
        }
        free(json);
    }
    free(shape);

    /* snapshot for the REST thread */
    NodeStatus ns;
    memset(&ns, 0, sizeof(ns));
    str_copy(ns.name, sizeof(ns.name), cfg->name);
    str_copy(ns.scope, sizeof(ns.scope), cfg->scope);
    str_copy(ns.role, sizeof(ns.role), role);
    str_copy(ns.state, sizeof(ns.state), state_name(a));
    ns.pg_running = st->running && st->accepting;
    ns.in_recovery = st->in_recovery;
    ns.is_leader = a->dcs_ok && strcmp(a->cluster.leader, cfg->name) == 0 && a->lease_ok;
    ns.streaming = st->streaming;
    ns.paused = a->cluster.config.pause;
    ns.sync_mode = a->cluster.config.synchronous_mode;
    ns.sync_standby = sync_has(&a->cluster.sync, cfg->name) && st->in_recovery;
    ns.pending_restart = st->pending_restart;
    ns.commit_guard = st->commit_guard;
    ns.dcs_ok = a->dcs_ok;
    ns.wal_lsn = st->wal_lsn;
    ns.receive_lsn = st->receive_lsn;
    ns.replay_lsn = st->replay_lsn;
    const Member *lm = cluster_member(&a->cluster, a->cluster.leader);
    ns.leader_lsn = a->cluster.status_optime;
    if (lm && lm->xlog_location > ns.leader_lsn)
        ns.leader_lsn = lm->xlog_location;
    ns.lag_bytes = -1;
    if (st->in_recovery && ns.leader_lsn) {
        Lsn mine = st->replay_lsn > st->receive_lsn ? st->replay_lsn : st->receive_lsn;
        ns.lag_bytes = ns.leader_lsn > mine ? (int64_t)(ns.leader_lsn - mine) : 0;
    }
    ns.timeline = st->timeline;
    str_copy(ns.promote_at, sizeof(ns.promote_at), a->promote_at_seen);
    ns.aa_present = st->aa_present;
    ns.aa_conflicts_last_minute = st->aa_conflicts_last_minute;
    ns.n_aa_peers = st->n_aa_peers;
    memcpy(ns.aa_peers, st->aa_peers, sizeof(ns.aa_peers));
    if (a->archive) {
        ArchiveStats as;
        archive_service_stats(a->archive, &as);
        ns.archive_on = true;
        ns.archived_total = as.archived;
        ns.archive_failures_total = as.failures;
        ns.archive_last_success = as.last_archived_at;
        /* what a restore from the repository would lose now: the primary's WAL not stored yet */
        bool primary = st->running && !st->in_recovery;
        ns.archive_ready = archive_backlog(cfg->pg_data_dir, primary ? st->wal_lsn : 0, &ns.archive_lag_bytes);
        ns.archive_rpo_seconds = -1;
        if (primary && ns.archive_lag_bytes >= 0)
            ns.archive_rpo_seconds = ns.archive_lag_bytes == 0 ? 0
                                     : as.last_archived_at > 0 ? wall_now() - as.last_archived_at
                                                               : -1;
        str_copy(ns.archive_last_error, sizeof(ns.archive_last_error), as.last_error);
    }
    if (a->cluster.backup_newest_stop > 0) {
        str_copy(ns.backup_newest_label, sizeof(ns.backup_newest_label), a->cluster.backup_newest_label);
        ns.backup_newest_stop = a->cluster.backup_newest_stop;
        ns.backup_newest_bytes = a->cluster.backup_newest_bytes;
        ns.backup_newest_seconds = a->cluster.backup_newest_seconds;
        int64_t age = (int64_t)wall_now() - ns.backup_newest_stop;
        ns.backup_age_seconds = age > 0 ? age : 0;
    }
    ns.site_lag_bytes = -1;
    ns.site_lag_seconds = -1;
    ns.wal_free_bytes = -1;
    ns.site_guard = a->cluster.config.site_lag_guard_bytes > 0 && !a->cluster.config.synchronous_mode;
    ns.site_guard_on = ns.site_guard && a->guard_on;
    ns.site_guard_lag = ns.site_guard ? a->guard_lag : -1;
    char walpath[4200];
    struct statvfs vfs;
    str_fmt(walpath, sizeof(walpath), "%s/pg_wal", cfg->pg_data_dir);
    if (st->data_dir_valid && statvfs(walpath, &vfs) == 0)
        ns.wal_free_bytes = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
    if (a->cluster.config.standby.present) {
        const StandbyCluster *sc = &a->cluster.config.standby;
        ns.standby_cluster = true;
        if (sc->host)
            str_fmt(ns.source, sizeof(ns.source), "%s:%d", sc->host, sc->port);
        SourceInfo si;
        source_probe_get(&a->source, &si);
        ns.source_known = si.known;
        Lsn mine = st->receive_lsn > st->replay_lsn ? st->receive_lsn : st->replay_lsn;
        if (si.known && standby_leader && mine)
            ns.site_lag_bytes = si.flush_lsn > mine ? (int64_t)(si.flush_lsn - mine) : 0;
        if (standby_leader && st->replay_age_s >= 0)
            ns.site_lag_seconds = st->replay_age_s;
    }
    if (site_witness_enabled(&a->witness)) {
        WitnessInfo wi;
        site_witness_get(&a->witness, &wi);
        int64_t mnow = mono_ms();
        ns.site_auto = true;
        ns.witness_mode = wi.mode == WITNESS_HOLD ? "hold" : wi.mode == WITNESS_OBSERVE ? "observe" : "idle";
        ns.site_confirmed_ms = wi.hold_until_ms > mnow ? wi.hold_until_ms - mnow : 0;
        ns.witness_reachable = wi.witness_reachable;
        ns.witness_peer_reachable = wi.peer_reachable;
        str_copy(ns.witness_holder, sizeof(ns.witness_holder), wi.holder);
        ns.site_gone_ms = wi.gone_since_ms ? mnow - wi.gone_since_ms : 0;
    }
    ns.server_version = st->server_version;
    ns.postmaster_start_time = st->postmaster_start_time;
    str_copy(ns.sysid, sizeof(ns.sysid), st->sysid[0] ? st->sysid : a->cluster.sysid);
    str_copy(ns.leader_name, sizeof(ns.leader_name), a->cluster.leader);
    ns.tags = cfg->tags;
    ns.dcs_last_seen = a->dcs_ok ? (int64_t)wall_now() : a->status.dcs_last_seen;
    ns.failovers = a->failovers;
    pthread_mutex_lock(&a->mu);
    a->status = ns;
    if (a->dcs_ok) {
        free(a->history_json);
        a->history_json = str_dup(a->cluster.history_json);
        free(a->config_json);
        a->config_json = a->cluster.config_json ? str_dup(a->cluster.config_json) : dynconfig_to_json(&a->cluster.config);
    }
    pthread_mutex_unlock(&a->mu);
}

/* A job that can leave postgres running as a primary: its start does not wait for the next
 * observation to arm the fence. */
static bool job_may_make_primary(Agent *a)
{
    if (!agent_job_running(a))
        return false;
    JobKind k = a->job.kind;
    if (a->job.remote)
        return false;   /* a job following a standby cluster's source leaves a standby */
    return k == JOB_PROMOTE || k == JOB_START_PRIMARY || k == JOB_BOOTSTRAP || k == JOB_RESTART;
}

bool agent_may_be_primary(Agent *a)
{
    return pg_may_be_primary(&a->pgst) || job_may_make_primary(a);
}

/* The fence's deadline: the lease's, or the end of the site's confirmation when earlier
 * (automatic site failover), minus the margin. */
static int64_t fence_deadline(const Agent *a, int64_t margin)
{
    int64_t dl = a->lease_deadline_ms;
    if (a->site_hold_until_ms >= 0 && a->site_hold_until_ms < dl)
        dl = a->site_hold_until_ms;
    return dl - margin;
}

/* The fence kills postgres at the lease deadline unless we renew first. Armed while we hold
 * the leader key (whatever postgres is doing: a promotion or a start may be under way), and
 * while postgres may be a primary or a job may make it one; extended only by a renewal made
 * while holding the leader key. */
static void feed_fence(Agent *a)
{
    if (a->rescued) {
        /* opened by a rescue, outside the cluster on purpose: nothing to fence it against */
        fence_disarm(&a->fence);
        return;
    }
    if (a->dcs_ok)
        fence_set_paused(&a->fence, a->cluster.config.pause);
    bool i_lead = a->dcs_ok && strcmp(a->cluster.leader, a->cfg->name) == 0;
    int64_t margin = fence_margin(a);
    /* a standby cluster's leader runs in recovery: nothing to fence while it cannot write */
    bool standby_lead = i_lead && a->cluster.config.standby.present && !pg_may_be_primary(&a->pgst) &&
                        !job_may_make_primary(a);
    if (i_lead && a->lease_ok && !standby_lead) {
        fence_arm(&a->fence, fence_deadline(a, margin));
        return;
    }
    if (!pg_may_be_primary(&a->pgst) && !job_may_make_primary(a)) {
        fence_disarm(&a->fence);
        return;
    }
    if (a->fence.armed_until == 0)
        fence_arm(&a->fence, a->lease_deadline_ms > 0 ? a->lease_deadline_ms - margin : mono_ms());
}

bool agent_arm_fence_for_lead(Agent *a)
{
    if (!a->lease_ok || a->lease_deadline_ms <= mono_ms())
        return false;
    fence_arm(&a->fence, fence_deadline(a, fence_margin(a)));
    return !a->fence.failed;
}

/* A dead or stuck fencing process is replaced; when that fails, postgres must not go on as a
 * primary (ha_decide demotes on fence_ok == false). */
static void watch_fence(Agent *a)
{
    Err err = {{0}};
    bool ok = fence_check(&a->fence, &err);
    if (!ok && a->fence_ok)
        log_error("%s", err.msg);
    else if (ok && !a->fence_ok)
        log_info("fence: working again");
    a->fence_ok = ok;
}

/* `site promote --target-time`: the member it names promotes at the target, and nothing else,
 * until it has (resuming an interrupted one: its marker); the site's other members, which may
 * have applied what came after, neither promote nor start as a primary meanwhile, and leave the
 * leader key to it. The safety conditions ha_decide applies to a promotion apply here too. */
static void promote_at_override(Agent *a, const Observation *o, Decision *d)
{
    char t[80], other[NAME_MAX_LEN];
    int tl = 0, start_tl = 0;
    bool marker = false;
    bool lead = strcmp(a->cluster.leader, a->cfg->name) == 0;
    bool standby = a->cluster.config.standby.present;
    if (agent_promote_at_state(a, t, sizeof(t), &tl, &start_tl, &marker)) {
        if (a->pgst.running && a->pgst.accepting && !a->pgst.in_recovery)
            return;   /* promoted (the tick removes the marker) */
        if (standby && (!marker || tl == 0)) {
            /* not started yet: the standby leader goes on as one until standby_cluster is gone,
             * and does nothing else (a rewind, a clone or a restart would lose what keeps the
             * bad write back) */
            if (d->action != ACT_KEEP_LEADER && d->action != ACT_WAIT) {
                Action was = d->action;
                memset(d, 0, sizeof(*d));
                d->action = ACT_WAIT;
                str_fmt(d->reason, sizeof(d->reason), "not now (%s): this member is being prepared to open the site "
                        "at %s", ha_action_name(was), t);
            }
            return;
        }
        memset(d, 0, sizeof(*d));
        d->action = ACT_WAIT;
        if (tl < 0) {
            str_fmt(d->reason, sizeof(d->reason), "%s/%s cannot be read: nothing starts postgres here until it is "
                    "checked and removed by hand", a->cfg->pg_data_dir, PROMOTE_AT_FILE);
        } else if (!marker) {
            str_fmt(d->reason, sizeof(d->reason), "the site record names this member to open at %s, but it never "
                    "got ready (no marker): nothing starts postgres here; see 'pgvigil site status'", t);
        } else if (standby) {
            str_fmt(d->reason, sizeof(d->reason), "a promotion at %s was started here and standby_cluster is back: "
                    "nothing starts postgres here; finish it (edit-config --set standby_cluster=null) or reinit", t);
        } else if (a->promote_failed_at && mono_ms() - a->promote_failed_at < PROMOTE_RETRY_PAUSE_MS) {
            str_fmt(d->reason, sizeof(d->reason), "the promotion at %s failed: trying again shortly", t);
        } else if (ha_primary_blocked(o) || a->cluster.config.pause) {
            str_fmt(d->reason, sizeof(d->reason), "a promotion at %s is pending here: not now (%s)", t,
                    a->cluster.config.pause ? "paused" : "the other site, the configuration or the witness");
        } else if (a->dcs_ok && (lead || !a->cluster.leader[0])) {
            d->action = ACT_PROMOTE;
            str_fmt(d->reason, sizeof(d->reason), "promoting at %s (site promote --target-time)%s", t,
                    tl > 0 ? ": resuming an interrupted promotion" : "");
        } else {
            str_fmt(d->reason, sizeof(d->reason), "a promotion at %s is pending here: waiting for the leader key", t);
        }
        return;
    }
    if ((d->action == ACT_PROMOTE || d->action == ACT_START_PRIMARY) && agent_promote_at_other(a, other, sizeof(other))) {
        memset(d, 0, sizeof(*d));
        d->action = ACT_WAIT;
        str_fmt(d->reason, sizeof(d->reason), "%s is the member to open this site at a past time: not taking the "
                "primary role", other);
        Err err = {{0}};
        bool deleted = false;
        if (lead && a->dcs_ok && a->dcs->ops->del(a->dcs, "leader", a->cfg->name, &deleted, &err) && deleted)
            log_info("promote: leader key released for %s", other);
    }
}

/* POST /rescue: a standby cluster's member opened at a time before a bad write (agent_rescue). */
static bool start_rescue(Agent *a, const char *when)
{
    if (!a->cluster.config.standby.present || !a->pgst.running || !a->pgst.in_recovery) {
        log_error("rescue to %s refused: not a running member of a standby cluster", when);
        return false;
    }
    /* what it replayed is before the target, or there is nothing to rescue */
    Err err = {{0}};
    int before = agent_replayed_before(&a->pg, when, &err);
    if (before != 1) {
        log_error("rescue to %s refused: %s", when,
                  before == 0 ? "this standby already replayed past that time (its recovery_min_apply_delay is shorter)"
                              : err.msg);
        return false;
    }
    if (strcmp(a->cluster.leader, a->cfg->name) == 0) {
        /* the site's other members elect a new standby leader meanwhile */
        bool deleted = false;
        if (a->dcs->ops->del(a->dcs, "leader", a->cfg->name, &deleted, &err) && deleted)
            log_info("rescue: standby leader key released");
    }
    if (agent_job_running(a)) {
        log_error("rescue to %s refused: an action is in progress", when);
        return false;
    }
    str_copy(a->rescue_time, sizeof(a->rescue_time), when);   /* job_prepare copies it */
    agent_submit(a, JOB_RESCUE, NULL);
    return true;
}

static void handle_requests(Agent *a, Decision *d)
{
    pthread_mutex_lock(&a->mu);
    bool restart = a->req_restart, reinit = a->req_reinit, reload = a->req_reload || a->hup;
    char rescue_at[80];
    str_copy(rescue_at, sizeof(rescue_at), a->req_rescue);
    a->req_rescue[0] = '\0';
    a->req_restart = a->req_reinit = a->req_reload = false;
    a->hup = 0;
    pthread_mutex_unlock(&a->mu);
    if (reload)
        agent_reload_config(a);
    if (rescue_at[0] && start_rescue(a, rescue_at)) {
        d->action = ACT_WAIT;
        str_copy(d->reason, sizeof(d->reason), "rescue in progress");
        return;
    }
    if (reinit && strcmp(a->cluster.leader, a->cfg->name) != 0 && a->cluster.leader[0]) {
        d->action = ACT_REINIT;
        str_copy(d->target, sizeof(d->target), a->cluster.leader);
        str_copy(d->reason, sizeof(d->reason), "reinitialize requested through the REST API");
    } else if (restart) {
        log_info("restart requested through the REST API");
        if (a->following_remote)
            agent_submit_remote(a, JOB_RESTART);
        else
            agent_submit(a, JOB_RESTART, a->following);
        d->action = ACT_WAIT;
        str_copy(d->reason, sizeof(d->reason), "restart in progress");
    }
}

/* A tick that eats into the fence margin says where its time went: the fence stops a primary
 * whose agent is late, so a slow etcd or postgres call must be visible in the log. */
static void log_slow_tick(const Agent *a, const int64_t *t, int64_t end)
{
    int64_t total = end - t[0];
    int64_t limit = fence_margin(a) / 2;
    if (total < limit)
        return;
    log_warn("slow tick: %.2f s (lease renewal %.2f, etcd read %.2f, postgres %.2f, decision and actions %.2f)",
             total / 1000.0, (t[1] - t[0]) / 1000.0, (t[2] - t[1]) / 1000.0, (t[3] - t[2]) / 1000.0,
             (end - t[3]) / 1000.0);
}

static void tick(Agent *a)
{
    int64_t t[4];   /* start, lease renewed, cluster read, postgres observed */
    a->tick_started_ms = t[0] = mono_ms();
    /* the renewal and the fence come first: anything else this tick does (a finished job's etcd
     * writes, a slow read) must not delay a renewal past the fence's deadline */
    renew_lease(a);
    watch_fence(a);
    feed_fence(a);
    t[1] = mono_ms();
    if (a->lease_ok) {
        load_cluster(a);
    } else {
        /* etcd did not answer the renewal: more calls this tick would only spend, in
         * timeouts, the margin a primary needs to stop writes before its lease may expire */
        if (a->dcs_ok)
            log_error("etcd unreachable: lease renewal failed");
        a->dcs_ok = false;
    }
    if (a->dcs_ok && !a->identity_checked) {
        Err ierr = {{0}};
        if (!agent_identity_ok(a, &ierr)) {
            cli_error("stop the other agent, or give this one another name and data directory", "%s", ierr.msg);
            a->refused = true;
            a->stop = 1;
            return;
        }
        a->identity_checked = true;
        a->archive_logged = false;
        /* the postgres is ours: its commit guard reads our deadlines from now on */
        if (pg_guard_installed(&a->pg)) {
            char lease[4200];
            pg_guard_lease_file(&a->pg, lease, sizeof(lease));
            fence_new_lease(&a->fence, a->lease_gen);
            fence_guard_commits(&a->fence, lease);
        } else {
            log_warn("commit guard: %s.so is not installed next to postgres (%s/../lib): a primary frozen as a whole "
                     "can acknowledge a commit in the milliseconds between its lease running out and the fence "
                     "killing it (make -C pgext/guard install)",
                     LEASE_GUARD_LIBRARY, a->cfg->pg_bin_dir);
        }
    }
    /* the archiver of our postgres reaches us once our identity is checked */
    if (a->identity_checked)
        agent_archive_start(a);
    if (a->identity_checked)
        agent_backup_tick(a);
    agent_archive_watch(a);
    agent_collect_job(a);
    agent_reap_children();
    proc_reap_orphans();
    /* the fence was fed from the last observation of postgres, before this tick's slow calls
     * could delay it; it is fed again at the end, from this tick's observation */
    feed_fence(a);
    a->pg.deadline_cap_ms = mono_ms() + pg_budget_ms(a);
    agent_write_history(a);

    if (a->release_pending && a->dcs_ok) {
        /* switchover: the candidate checks it received everything up to our shutdown
         * checkpoint, so publish that before the key goes */
        pg_observe(&a->pg, &a->pgst);
        ControlInfo ci;
        Err e = {{0}};
        if (pg_controldata_info(&a->pg, &ci, &e) && ci.clean_shutdown)
            a->stopped_checkpoint = ci.checkpoint;
        a->last_member_shape[0] = '\0';
        agent_publish(a);
        bool deleted = false;
        if (a->dcs->ops->del(a->dcs, "leader", a->cfg->name, &deleted, &e) && deleted)
            log_info("switchover: leader key released");
        a->release_pending = false;
        a->cluster.leader[0] = '\0';
    }
    if (a->dcs_ok && a->lease_ok && strcmp(a->cluster.leader, a->cfg->name) == 0 &&
        a->cluster.leader_lease != a->dcs->ops->lease_id(a->dcs)) {
        /* the key names us but sits on another lease (our agent restarted within the TTL):
         * that lease expires on its own, so move the key to ours before acting as leader */
        Err err = {{0}};
        bool swapped = false;
        if (a->dcs->ops->cas(a->dcs, "leader", a->cfg->name, a->cfg->name, true, &swapped, &err) && swapped) {
            a->cluster.leader_lease = a->dcs->ops->lease_id(a->dcs);
            log_info("leader key moved to my current lease");
        } else {
            log_warn("leader key on a stale lease could not be taken over%s%s", err.msg[0] ? ": " : "", err.msg);
            a->cluster.leader[0] = '\0'; /* not ours: decide as if there were no leader */
        }
    }
    t[2] = mono_ms();
    Observation o;
    memset(&o, 0, sizeof(o));
    ControlInfo ci;
    observe_pg(a, &o, &ci);
    t[3] = mono_ms();
    o.name = a->cfg->name;
    o.tags = a->cfg->tags;
    o.now_ms = mono_ms();
    o.action_running = agent_job_running(a);
    agent_adopt_source(a);
    agent_site_tick(a, &o);
    agent_witness_tick(a, &o);
    o.following = a->following;
    char sig[sizeof(a->following_sig)];
    agent_source_signature(&a->cluster.config.standby, sig, sizeof(sig));
    /* pointed at the source as it is configured now: an edited standby_cluster means re-pointing */
    o.following_remote = a->following_remote && strcmp(sig, a->following_sig) == 0;
    SourceInfo si;
    if (a->dcs_ok)
        source_probe_set(&a->source, &a->cluster.config.standby, a->cfg);
    source_probe_get(&a->source, &si);
    o.remote_sysid = si.known ? si.sysid : "";
    o.remote_error = si.error;
    o.remote_timeline = si.known ? si.timeline : 0;
    if (!a->rewind_failed && a->pgst.data_dir_valid && !a->pgst.running && !o.action_running &&
        pg_rewind_marked_failed(&a->pg)) {
        log_warn("%s/%s: an earlier pg_rewind failed here", a->cfg->pg_data_dir, PG_REWIND_FAILED_FILE);
        a->rewind_failed = true;
    }
    o.rewind_failed = a->rewind_failed;
    o.start_failed = a->start_failed;
    o.start_diverged = a->start_diverged;
    o.start_failed_ago_ms = a->start_failed ? mono_ms() - a->start_failed_at : 0;
    o.start_failures = a->start_failures;
    o.data_dir_foreign = a->pgst.data_dir_foreign;
    o.reinit_on_rewind_failure = a->cfg->remove_data_directory_on_rewind_failure;
    o.dcs_ok = a->dcs_ok;
    o.fence_ok = a->fence_ok;
    o.lease_ok = a->lease_ok;
    o.lease_deadline_ms = a->lease_deadline_ms;
    o.demote_margin_ms = demote_margin(a);
    if (a->dcs_ok && !a->cluster.leader[0]) {
        if (!a->leaderless_since)
            a->leaderless_since = mono_ms();
    } else if (a->dcs_ok) {
        a->leaderless_since = 0;
    }
    o.leaderless_ms = a->leaderless_since ? mono_ms() - a->leaderless_since : 0;
    o.cluster = &a->cluster;

    PeerPos peers[32];
    bool leader_in_recovery = strcmp(a->cluster.leader, a->cfg->name) == 0 && a->pgst.in_recovery;
    if (a->dcs_ok && (!a->cluster.leader[0] || leader_in_recovery) && a->cluster.initialized && a->pgst.running &&
        !o.action_running) {
        o.n_peers = peers_fetch(&a->cluster, a->cfg->name, (int)a->dcs_timeout_ms, peers, 32);
        o.peers = peers;
    }
    Decision d;
    ha_decide(&o, &d);
    if (!a->rescued && a->pgst.data_dir_valid && !o.action_running) {
        char marker[4200];
        str_fmt(marker, sizeof(marker), "%s/%s", a->cfg->pg_data_dir, RESCUED_FILE);
        if (file_exists(marker)) {
            a->rescued = true;
            str_copy(a->rescued_at, sizeof(a->rescued_at), "an earlier rescue");
        }
    }
    if (a->rescued && !o.action_running) {
        memset(&d, 0, sizeof(d));
        d.action = ACT_WAIT;
        str_fmt(d.reason, sizeof(d.reason), "rescued (opened as of %s): detached from the cluster; 'pgvigil reinit %s' "
                "makes it a replica again", a->rescued_at, a->cfg->name);
    }
    if (!a->rescued && !o.action_running) {
        agent_promote_at_tick(a);
        if (a->pgst.data_dir_valid)
            promote_at_override(a, &o, &d);
    }
    if (a->dcs_ok && !o.action_running && (d.action == ACT_WAIT || d.action == ACT_KEEP_LEADER))
        handle_requests(a, &d);
    /* one line per decision that changes something, or whose reason changed */
    if (d.action != ACT_WAIT || strcmp(d.reason, a->last_reason) != 0 || d.action != a->last_action) {
        if (d.action == ACT_KEEP_LEADER && a->last_action == ACT_KEEP_LEADER && strcmp(d.reason, a->last_reason) == 0)
            log_debug("%s: %s", ha_action_name(d.action), d.reason);
        else
            log_info("%s: %s", ha_action_name(d.action), d.reason);
    }
    str_copy(a->last_reason, sizeof(a->last_reason), d.reason);
    agent_act(a, &d);
    a->last_action = d.action;
    if (d.action == ACT_WAIT || d.action == ACT_KEEP_LEADER)
        if (!agent_job_running(a))
            agent_apply_params(a);
    if (d.action == ACT_DEMOTE || d.action == ACT_GIVE_UP_LEADER)
        pg_observe(&a->pg, &a->pgst);
    feed_fence(a);
    if (!a->strays_checked && a->fence_ok &&
        ((a->dcs_ok && a->lease_ok && strcmp(a->cluster.leader, a->cfg->name) == 0 && a->fence.armed_until) ||
         (a->pgst.running && a->pgst.accepting && a->pgst.in_recovery))) {
        /* an agent killed before us left its fence waiting for its lease deadline: it would
         * kill the primary we kept or the standby we run */
        fence_kill_strays(&a->fence);
        fence_strays_gone(&a->fence);
        a->strays_checked = true;
    }
    agent_effects_tick(a, &d);
    agent_publish(a);
    a->pg.deadline_cap_ms = 0;
    log_slow_tick(a, t, mono_ms());
}

static void usage(FILE *out)
{
    fprintf(out, "usage: pgvigil agent -c FILE [--log-level debug|info|warning|error]\n"
                 "Runs the HA agent for the PostgreSQL node described in FILE (YAML).\n");
}

static void shutdown_agent(Agent *a)
{
    log_info("shutting down");
    bool paused = a->cluster.config.pause;
    /* a long action (pg_basebackup, pg_rewind, a slow start) must not hold the shutdown */
    a->cancel_jobs = 1;
    agent_worker_stop(a);
    a->cancel_jobs = 0;
    rest_stop(a->rest);
    a->rest = NULL;
    Err err = {{0}};
    if (!paused && a->pgst.running) {
        if (!pg_stop(&a->pg, "fast", 30, &err)) {
            /* postgres may still run: leave the key to expire and the fence armed; the fence
             * outlives us and acts at the deadline (or at once when none is set) */
            log_error("stopping postgres: %s; leaving the leader key to expire and the fence to act", err.msg);
            pg_node_close(&a->pg);
            a->leave_fence = true;
            return;
        }
        agent_run_callback(a, "on_stop", a->role);
    }
    pg_node_close(&a->pg);
    if (paused && a->pgst.running && site_witness_enabled(&a->witness) && !a->cluster.config.standby.present &&
        pg_may_be_primary(&a->pgst)) {
        /* automatic site failover: no confirmation is renewed once we are gone, and the other
         * site may promote when it runs out: the fence stays, armed at that time */
        log_warn("paused, postgres left running as a primary: its fence stays and stops it when this site's "
                 "confirmation runs out (automatic site failover)");
        a->leave_fence = true;
        return;
    }
    /* postgres is stopped (or left running on purpose while paused) */
    agent_effects_stop(a, !paused || !a->pgst.running);
    fence_stop(&a->fence);
    if (a->dcs_ok) {
        bool deleted;
        if (!paused)
            a->dcs->ops->del(a->dcs, "leader", a->cfg->name, &deleted, &err);
        a->dcs->ops->revoke(a->dcs, &err);
    }
}

int cmd_agent(int argc, char **argv)
{
    const char *path = getenv("PGVIGIL_CONFIG"), *level = NULL;
    int rc0 = cli_parse_daemon_opts(argc, argv, usage, "node", &path, &level);
    if (rc0 >= 0)
        return rc0;
    Err err = {{0}};
    Config *cfg = config_load(path, &err);
    if (!cfg) {
        cli_error("fix the file and run again", "%s", err.msg);
        return EXIT_CONFIG;
    }
    log_set_name(cfg->name);
    LogLevel lv;
    if (level || cfg->log_level) {
        if (!log_parse_level(level ? level : cfg->log_level, &lv)) {
            cli_error("use debug, info, warning or error", "unknown log level \"%s\"", level ? level : cfg->log_level);
            config_free(cfg);
            return EXIT_USAGE;
        }
        log_set_level(lv);
    }
    if (!proc_set_run_as(cfg->pg_run_as, &err)) {
        cli_error("set postgresql.run_as to an existing unprivileged user", "%s: %s", path, err.msg);
        config_free(cfg);
        return EXIT_CONFIG;
    }

    Agent *a = xcalloc(1, sizeof(*a));
    a->cfg = cfg;
    a->fence.fd = -1;
    a->fence_ok = true;
    a->pidfile_fd = -1;
    a->guard_lag = -1;
    /* distinct from an earlier agent's (the lease file may hold one): pid and start time */
    a->lease_gen = ((uint64_t)getpid() << 40) ^ ((uint64_t)wall_now() << 8);
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->api_mu, NULL);
    source_probe_init(&a->source);
    cluster_init(&a->cluster);
    dynconfig_free(&a->cluster.config);
    dynconfig_copy(&a->cluster.config, &cfg->bootstrap_dcs);
    a->dcs_timeout_ms = dcs_timeout_for(cfg->bootstrap_dcs.ttl);
    a->dcs_ok = true; /* so that a first failure is logged */
    pg_node_init(&a->pg, cfg);
    int rc = EXIT_OK;
    if (cfg->backup.schedule)
        schedule_parse(cfg->backup.schedule, &a->backup_schedule, NULL); /* checked when loaded */
    if (cfg->backup.archive && !pg_archive_module_installed(&a->pg)) {
        cli_error("install it (make pgext-install) or set backup.archive: off",
                  "%s: backup.archive: the archive module pgvigil_archive.so is not installed in %s/../lib", path,
                  cfg->pg_bin_dir);
        rc = EXIT_CONFIG;
        goto out;
    }

    /* an orphaned postmaster becomes our child, so its zombie is reaped even where PID 1 does
     * not reap (containers); until reaped, its pid still looks alive to PostgreSQL itself */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    /* the VIP settings are checked here so that a mistake is a config error, not a fence one */
    if (cfg->vip.address) {
        Vip *v = vip_new(&cfg->vip, &err);
        if (!v) {
            cli_error("fix the file and run again", "%s: %s", path, err.msg);
            rc = EXIT_CONFIG;
            goto out;
        }
        vip_free(v);
    }
    /* fork the fencing process before any thread exists */
    if (!agent_pidfile_take(a, &err)) {
        cli_error("stop the other agent first", "%s", err.msg);
        rc = EXIT_STATE;
        goto out;
    }
    if (!fence_start(&a->fence, cfg->name, cfg->pg_data_dir, cfg->vip.address ? &cfg->vip : NULL, &err)) {
        cli_error(NULL, "%s", err.msg);
        rc = EXIT_FAILED;
        goto out;
    }
    char *prefix = dcs_prefix(cfg->namespace_, cfg->scope);
    a->dcs = dcs_etcd_new(cfg->etcd_hosts, cfg->n_etcd_hosts, prefix, cfg->etcd_username, cfg->etcd_password,
                          (int)a->dcs_timeout_ms, &err);
    if (a->dcs)
        a->api_dcs = dcs_etcd_new(cfg->etcd_hosts, cfg->n_etcd_hosts, prefix, cfg->etcd_username,
                                  cfg->etcd_password, 3000, &err);
    free(prefix);
    if (!a->dcs || !a->api_dcs) {
        cli_error("check etcd3.hosts", "%s: %s", path, err.msg);
        rc = EXIT_CONFIG;
        goto out;
    }
    RestBackend be = agent_rest_backend(a);
    a->rest = rest_start(cfg->restapi_listen, &be, cfg->restapi_auth.username, cfg->restapi_auth.password, &err);
    if (!a->rest) {
        cli_error("choose a free port in restapi.listen", "%s", err.msg);
        rc = EXIT_CONFIG;
        goto out;
    }
    if (!agent_effects_start(a, &err)) {
        cli_error("fix the file and run again", "%s: %s", path, err.msg);
        rc = EXIT_CONFIG;
        goto out;
    }
    proc_set_cancel_flag(&a->cancel_jobs);
    if (!agent_worker_start(a, &err)) {
        cli_error(NULL, "%s", err.msg);
        rc = EXIT_FAILED;
        goto out;
    }
    peer_site_start(&a->peer, cfg);
    aa_leader_start(&a->aa_leader, cfg, a->pg.conn_host, a->pg.conn_port);
    a->site_hold_until_ms = -1;
    site_witness_start(&a->witness, cfg);
    g_agent = a;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    log_info("agent %s of cluster %s starting (postgres %s:%d, REST %s)", cfg->name, cfg->scope, a->pg.host,
             a->pg.port, cfg->restapi_listen);

    while (!a->stop) {
        int64_t t0 = mono_ms();
        tick(a);
        int64_t t = dcs_timeout_for(a->cluster.config.ttl);
        if (t != a->dcs_timeout_ms) {
            a->dcs_timeout_ms = t;
            dcs_etcd_set_timeout(a->dcs, (int)t);
        }
        int64_t wait = current_loop_wait_ms(a) - (mono_ms() - t0);
        /* a tick run early by an etcd change must not delay the next renewal */
        if (a->lease_ok && wait > renew_due_ms(a) - mono_ms())
            wait = renew_due_ms(a) - mono_ms();
        /* a primary that could not renew retries often, so that it stops writes before
         * lease_deadline - margin rather than a whole loop_wait later */
        if (pg_may_be_primary(&a->pgst) && !a->lease_ok && wait > 500)
            wait = 500;
        /* ... and likewise before the site's confirmation runs out (automatic site failover) */
        if (pg_may_be_primary(&a->pgst) && a->site_hold_until_ms >= 0) {
            int64_t due = a->site_hold_until_ms - site_witness_margin_ms(cfg) - mono_ms() + 50;
            if (due < 200)
                due = 200;   /* past it: the demotion runs; no faster ticks than that */
            if (wait > due)
                wait = due;
        }
        /* a busy worker finishing should be noticed quickly */
        if (agent_job_running(a) && wait > 200)
            wait = 200;
        if (wait <= 0 || a->stop)
            continue;
        if (agent_job_running(a)) {
            /* a finished promotion or release is acted on at once, not at the next poll */
            agent_wait_job(a, wait);
        } else if (a->dcs_ok) {
            Err werr = {{0}};
            int64_t before = mono_ms();
            if (a->dcs->ops->watch(a->dcs, a->cluster.revision, (int)wait, &werr)) {
                /* something changed: tick at once, but never more often than every
                 * MIN_TICK_GAP_MS (the changes of a failover come in bursts: a fixed pause
                 * after each one delayed every step of a switchover) */
                int64_t next = a->tick_started_ms + MIN_TICK_GAP_MS;
                if (mono_ms() < next)
                    sleep_ms(next - mono_ms());
            } else if (mono_ms() - before < wait / 2) {
                sleep_ms(wait - (mono_ms() - before));
            }
        } else {
            sleep_ms(wait);
        }
    }
    if (a->refused) {
        /* another agent owns this name: touch nothing of its keys or of postgres */
        rc = EXIT_STATE;
        rest_stop(a->rest);
        a->rest = NULL;
    } else {
        shutdown_agent(a);
    }
out:
    g_agent = NULL;
    proc_set_cancel_flag(NULL);
    agent_worker_stop(a);
    source_probe_stop(&a->source);
    peer_site_stop(&a->peer);
    aa_leader_stop(&a->aa_leader);
    site_witness_stop(&a->witness);
    rest_stop(a->rest);
    if (a->leave_fence)
        fence_abandon(&a->fence);
    else if (a->fence.fd >= 0)
        fence_stop(&a->fence);
    fence_free(&a->fence);
    agent_pidfile_remove(a);
    agent_effects_stop(a, false);
    archive_service_stop(a->archive);
    a->archive = NULL;
    dcs_free(a->dcs);
    dcs_free(a->api_dcs);
    cluster_free(&a->cluster);
    free(a->cluster_json);
    free(a->history_json);
    free(a->config_json);
    free(a->params_applied);
    for (int i = 0; i < a->n_old_cfgs; i++)
        config_free(a->old_cfgs[i]);
    free(a->old_cfgs);
    cfg = a->cfg;
    pthread_mutex_destroy(&a->mu);
    free(a);
    config_free(cfg);
    return rc;
}
