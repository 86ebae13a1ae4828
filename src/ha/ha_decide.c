/* ha_decide(): observation -> one action + reason. Pure: no I/O, no clock, no globals.
 * Rules are checked from the most safety-critical (etcd lost, another leader) down. */
#include "common/common.h"
#include "ha/ha_decide.h"
#include "ha/sync_plan.h"

/* replica that did not stream from its leader for this long is considered diverged */
#define NOT_STREAMING_REWIND_MS 15000
/* after a failed start of postgres, wait this long before trying again */
#define START_RETRY_MS 5000
/* a switchover candidate waits this long at most for the old leader's last WAL */
#define SWITCHOVER_RECEIVE_WAIT_MS 10000
/* the leader retries a restart in place this often, this many times (a killed postmaster's
 * backends may still hold its shared memory for a moment) */
#define LEADER_START_RETRY_MS 1000
#define LEADER_START_ATTEMPTS 3

static const char *action_names[ACT__COUNT] = {
    [ACT_WAIT] = "wait",
    [ACT_BOOTSTRAP] = "bootstrap",
    [ACT_CLONE] = "clone",
    [ACT_START_REPLICA] = "start as replica",
    [ACT_START_PRIMARY] = "start as primary",
    [ACT_KEEP_LEADER] = "keep leader",
    [ACT_ACQUIRE] = "acquire leader key",
    [ACT_PROMOTE] = "promote",
    [ACT_DEMOTE] = "demote",
    [ACT_FOLLOW] = "follow",
    [ACT_REWIND] = "rewind",
    [ACT_REINIT] = "reinitialize",
    [ACT_RELEASE] = "release leader key",
    [ACT_GIVE_UP_LEADER] = "give up leader key",
    [ACT_STANDBY_DEMOTE] = "demote to standby leader",
};

const char *ha_action_name(Action a)
{
    return (a >= 0 && a < ACT__COUNT && action_names[a]) ? action_names[a] : "unknown";
}

static void decide(Decision *d, Action a, const char *target, const char *fmt, ...) PRINTF_LIKE(4, 5);
static void decide(Decision *d, Action a, const char *target, const char *fmt, ...)
{
    d->action = a;
    str_copy(d->target, sizeof(d->target), target ? target : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
}

/* decide() with the standby_cluster source as the target */
static void decide_remote(Decision *d, Action a, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void decide_remote(Decision *d, Action a, const char *fmt, ...)
{
    d->action = a;
    d->target[0] = '\0';
    d->remote = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
}

static bool standby_cluster(const Cluster *c)
{
    return c->config.standby.present;
}

/* "10.1.0.3:5432", or "restore_command" for a standby cluster that only reads the archive */
static void source_text(const Cluster *c, char *buf, size_t sz)
{
    const StandbyCluster *sc = &c->config.standby;
    if (sc->host)
        str_fmt(buf, sz, "%s:%d", sc->host, sc->port);
    else
        str_copy(buf, sz, "its restore_command");
}

/* The standby_cluster source belongs to another cluster: never follow it (nor demote for it). */
static bool source_refused(const Observation *o, char *why, size_t sz)
{
    const Cluster *c = o->cluster;
    if (str_empty(o->remote_sysid) || !c->sysid[0] || strcmp(o->remote_sysid, c->sysid) == 0)
        return false;
    char src[160];
    source_text(c, src, sizeof(src));
    str_fmt(why, sz, "standby_cluster source %s has system identifier %s but this cluster has %s: refusing to follow it",
            src, o->remote_sysid, c->sysid);
    return true;
}

/* Could the local server be accepting writes? Unknown counts as yes, except that a server
 * started with standby.signal cannot have left recovery unless it answered as a primary. */
static bool may_be_primary(const Observation *o)
{
    if (!o->pg_running)
        return false;
    if (o->pg_accepting)
        return !o->pg_in_recovery;
    return !o->standby_signal;
}

/* Synchronous replication is the primary site's business: a standby cluster's members
 * acknowledge no commits, so its rules do not apply there. */
static bool sync_mode(const Cluster *c)
{
    return c->config.synchronous_mode && !standby_cluster(c);
}

static bool eligible_tags(const Tags *t)
{
    return !t->nofailover && t->failover_priority > 0;
}

static bool member_is_healthy_replica(const Member *m)
{
    return m && strcmp(m->state, "running") == 0 && strcmp(m->role, "replica") == 0 && eligible_tags(&m->tags);
}

/* Best switchover target when none was named: the most advanced healthy eligible replica. */
static const Member *best_replica(const Cluster *c, const char *me)
{
    const Member *best = NULL;
    for (int i = 0; i < c->n_members; i++) {
        const Member *m = &c->members[i];
        if (strcmp(m->name, me) == 0 || !member_is_healthy_replica(m) || strcmp(m->replication_state, "streaming") != 0)
            continue;
        if (sync_mode(c) && !sync_may_promote(&c->sync, m->name, m->xlog_location))
            continue;
        if (!best || m->xlog_location > best->xlog_location)
            best = m;
    }
    return best;
}

/* A switchover request (the failover key) seen by the leader: release the key to the candidate,
 * or refuse and clear the request. False when there is none. */
static bool decide_switchover_request(const Observation *o, Decision *d)
{
    const Cluster *c = o->cluster;
    const FailoverReq *f = &c->failover;
    if (f->present) {
        bool for_me = f->leader[0] == '\0' || strcmp(f->leader, o->name) == 0;
        if (!for_me || strcmp(f->candidate, o->name) == 0) {
            decide(d, ACT_KEEP_LEADER, "", "ignoring a failover request that does not apply to this leader");
            d->clear_failover = true;
            return true;
        }
        const Member *cand = f->candidate[0] ? cluster_member(c, f->candidate) : best_replica(c, o->name);
        if (!cand) {
            decide(d, ACT_KEEP_LEADER, "", "switchover refused: %s", f->candidate[0] ? "candidate is not a member" : "no healthy replica");
            d->clear_failover = true;
            return true;
        }
        if (!member_is_healthy_replica(cand)) {
            decide(d, ACT_KEEP_LEADER, "", "switchover to %s refused: it is not a healthy eligible replica", cand->name);
            d->clear_failover = true;
            return true;
        }
        /* a clean stop hands every WAL record to the standbys connected at that moment; one
         * that does not stream would miss the last ones */
        if (strcmp(cand->replication_state, "streaming") != 0) {
            decide(d, ACT_KEEP_LEADER, "", "switchover to %s refused: it is not streaming from me", cand->name);
            d->clear_failover = true;
            return true;
        }
        if (sync_mode(c) && !sync_may_promote(&c->sync, cand->name, cand->xlog_location)) {
            decide(d, ACT_KEEP_LEADER, "", "switchover to %s refused: not a synchronous standby", cand->name);
            d->clear_failover = true;
            return true;
        }
        decide(d, ACT_RELEASE, cand->name, "switchover to %s requested: stopping cleanly and releasing the leader key",
               cand->name);
        return true;
    }
    return false;
}

static void decide_standby_leader(const Observation *o, Decision *d);

static void decide_leader(const Observation *o, Decision *d)
{
    const Cluster *c = o->cluster;
    bool maybe_primary = may_be_primary(o);
    if (!o->lease_ok) {
        if (maybe_primary && o->now_ms >= o->lease_deadline_ms - o->demote_margin_ms) {
            decide(d, ACT_DEMOTE, "", "cannot renew the leader lease and it may expire in %lld ms: stopping writes",
                   (long long)(o->lease_deadline_ms - o->now_ms));
            return;
        }
        decide(d, ACT_WAIT, "", "cannot renew the leader lease; retrying (lease valid for %lld ms)",
               (long long)(o->lease_deadline_ms - o->now_ms));
        return;
    }
    if (standby_cluster(c)) {
        decide_standby_leader(o, d);
        return;
    }
    if (!o->pg_running) {
        int64_t limit = (int64_t)c->config.primary_start_timeout * 1000;
        if (o->start_failures >= LEADER_START_ATTEMPTS || o->pg_down_ms > limit) {
            decide(d, ACT_GIVE_UP_LEADER, "", "postgres did not come back (%s): releasing the leader key",
                   o->pg_down_ms > limit ? "down longer than primary_start_timeout" : "start failed repeatedly");
            return;
        }
        if (o->start_failed && o->start_failed_ago_ms < LEADER_START_RETRY_MS) {
            decide(d, ACT_WAIT, "", "restarting postgres in place failed; retrying");
            return;
        }
        decide(d, ACT_START_PRIMARY, "", "I hold the leader key but postgres is down: restarting it in place");
        return;
    }
    if (!o->pg_accepting) {
        decide(d, ACT_WAIT, "", "holding the leader key; postgres is not answering yet");
        return;
    }
    if (o->pg_in_recovery) {
        /* the key can name us while the old primary still runs (it was overwritten, or we got
         * it before the old one noticed): that one demotes the moment it sees the key, and we
         * promote only once it has */
        for (int i = 0; i < o->n_peers; i++)
            if (o->peers[i].reachable && o->peers[i].is_primary) {
                decide(d, ACT_WAIT, "", "I hold the leader key, but %s still runs as primary: waiting for it to step down",
                       o->peers[i].name);
                return;
            }
        decide(d, ACT_PROMOTE, "", "I hold the leader key but postgres is in recovery: promoting");
        return;
    }
    if (decide_switchover_request(o, d))
        return;
    decide(d, ACT_KEEP_LEADER, "", "holding the leader key with a live lease");
}

/* The leader of a standby cluster: a standby leader, in recovery, following the source named by
 * standby_cluster (the primary site), which the site's other members cascade from. It never
 * promotes here: removing standby_cluster (a site promotion) does that. */
static void decide_standby_leader(const Observation *o, Decision *d)
{
    const Cluster *c = o->cluster;
    char src[160], why[256];
    source_text(c, src, sizeof(src));
    bool refused = source_refused(o, why, sizeof(why));
    if (!o->pg_running) {
        int64_t limit = (int64_t)c->config.primary_start_timeout * 1000;
        if (o->start_failures >= LEADER_START_ATTEMPTS || o->pg_down_ms > limit) {
            decide(d, ACT_GIVE_UP_LEADER, "", "postgres did not come back (%s): releasing the standby leader key",
                   o->pg_down_ms > limit ? "down longer than primary_start_timeout" : "start failed repeatedly");
            return;
        }
        if (refused) {
            decide(d, ACT_WAIT, "", "%s", why);
            return;
        }
        if (o->rewind_failed) {
            decide(d, ACT_WAIT, "", "pg_rewind from %s failed; data directory not usable: run 'pgvigil reinit %s'", src,
                   o->name);
            return;
        }
        if (o->start_failed && o->start_failed_ago_ms < START_RETRY_MS) {
            decide(d, ACT_WAIT, "", "standby leader: the last attempt failed; retrying in %lld s",
                   (long long)((START_RETRY_MS - o->start_failed_ago_ms + 999) / 1000));
            return;
        }
        /* a primary that stopped uncleanly (the old site after a site failover) may hold WAL the
         * new primary site never had */
        if (o->was_primary && c->config.use_pg_rewind && c->config.standby.host) {
            decide_remote(d, ACT_REWIND, "former primary rejoining as standby leader: pg_rewind from %s, then follow it",
                          src);
            return;
        }
        if (o->start_failed && o->start_diverged && c->config.use_pg_rewind && c->config.standby.host) {
            decide_remote(d, ACT_REWIND, "postgres went past the fork of %s's timeline: pg_rewind from it", src);
            return;
        }
        decide_remote(d, ACT_START_REPLICA, "standby leader: starting postgres, following %s", src);
        return;
    }
    if (!o->pg_accepting) {
        /* it runs but its recovery cannot pass the fork of the source's timeline: it never will */
        if (o->start_diverged && c->config.use_pg_rewind && c->config.standby.host && !refused) {
            decide_remote(d, ACT_REWIND, "postgres cannot recover past the fork of %s's timeline: pg_rewind from it",
                          src);
            return;
        }
        decide(d, ACT_WAIT, "", "standby leader; postgres is not answering yet");
        return;
    }
    if (!o->pg_in_recovery) {
        if (refused) {
            decide(d, ACT_KEEP_LEADER, "", "%s; staying primary", why);
            return;
        }
        decide_remote(d, ACT_STANDBY_DEMOTE, "standby_cluster is set: stopping cleanly to follow %s as standby leader",
                      src);
        return;
    }
    if (refused) {
        decide(d, ACT_WAIT, "", "%s", why);
        return;
    }
    if (!o->following_remote) {
        /* a running standby is re-pointed only at a source whose identity is known to match: a
         * source that does not answer may be another cluster's server */
        if (str_empty(o->remote_sysid)) {
            decide(d, ACT_WAIT, "", "standby leader: waiting to verify the system identifier of %s before replicating "
                                    "from it%s%s", src, str_empty(o->remote_error) ? "" : ": ",
                   str_empty(o->remote_error) ? "" : o->remote_error);
            return;
        }
        decide_remote(d, ACT_FOLLOW, "standby leader: replicating from %s", src);
        return;
    }
    /* not streaming from a source on a newer timeline, and postgres says why: diverged. (A missing
     * slot or removed WAL is not cured by a rewind.) */
    /* (the timeline it runs on: the new timeline's history file may have been fetched already) */
    int mine = o->pg_timeline > 0 ? o->pg_timeline : o->my_timeline;
    if (o->not_streaming_ms > 0 && o->start_diverged && o->remote_timeline > mine && c->config.use_pg_rewind &&
        c->config.standby.host) {
        decide_remote(d, ACT_REWIND, "not streaming from %s for %lld s while it answers: timelines diverged, rewinding",
                      src, (long long)(o->not_streaming_ms / 1000));
        return;
    }
    if (decide_switchover_request(o, d))
        return;
    decide(d, ACT_KEEP_LEADER, "", "standby leader, following %s", src);
}

static void decide_follower(const Observation *o, Decision *d)
{
    const Cluster *c = o->cluster;
    const char *leader = c->leader;
    const Member *lm = cluster_member(c, leader);
    bool maybe_primary = may_be_primary(o);
    if (maybe_primary) {
        decide(d, ACT_DEMOTE, leader, "%s holds the leader key but I am running as primary: demoting", leader);
        return;
    }
    bool leader_running = lm && strcmp(lm->state, "running") == 0;
    if (!o->pg_running) {
        /* checked before was_primary: pg_rewind's own crash recovery marks the control file
         * as cleanly shut down even when the rewind then fails */
        if (o->rewind_failed) {
            if (o->reinit_on_rewind_failure && leader_running) {
                decide(d, ACT_REINIT, leader, "pg_rewind failed: rebuilding the data directory from %s", leader);
                return;
            }
            decide(d, ACT_WAIT, "", "pg_rewind failed; data directory not usable: run 'pgvigil reinit %s' to rebuild from %s",
                   o->name, leader);
            return;
        }
        if (o->was_primary && c->config.use_pg_rewind) {
            if (!leader_running) {
                decide(d, ACT_WAIT, "", "former primary: waiting for leader %s to run before pg_rewind", leader);
                return;
            }
            decide(d, ACT_REWIND, leader, "former primary rejoining: pg_rewind from %s, then follow it", leader);
            return;
        }
        /* it replayed WAL of the old timeline past the fork (an old primary streamed on after the
         * new one was promoted): starting again would fail forever */
        if (o->start_failed && o->start_diverged && c->config.use_pg_rewind) {
            if (!leader_running) {
                decide(d, ACT_WAIT, "", "diverged from the leader's timeline: waiting for leader %s to run before pg_rewind",
                       leader);
                return;
            }
            decide(d, ACT_REWIND, leader, "postgres went past the fork of %s's timeline: pg_rewind from %s", leader,
                   leader);
            return;
        }
        if (o->start_failed && o->start_failed_ago_ms < START_RETRY_MS) {
            decide(d, ACT_WAIT, "", "starting postgres failed; retrying in %lld s",
                   (long long)((START_RETRY_MS - o->start_failed_ago_ms + 999) / 1000));
            return;
        }
        decide(d, ACT_START_REPLICA, leader, "starting as a replica of %s", leader);
        return;
    }
    if (!o->pg_accepting) {
        /* it runs but its recovery cannot pass the fork of the leader's timeline: it never will */
        if (o->start_diverged && c->config.use_pg_rewind && leader_running) {
            decide(d, ACT_REWIND, leader, "postgres cannot recover past the fork of %s's timeline: pg_rewind from %s",
                   leader, leader);
            return;
        }
        decide(d, ACT_WAIT, "", "postgres is starting; leader is %s", leader);
        return;
    }
    if (strcmp(o->following, leader) != 0) {
        decide(d, ACT_FOLLOW, leader, "leader is %s: re-pointing replication (was following %s)", leader,
               o->following[0] ? o->following : "nobody");
        return;
    }
    if (leader_running && o->not_streaming_ms > 0 && o->follow_diverged && c->config.use_pg_rewind) {
        decide(d, ACT_REWIND, leader, "postgres cannot follow the timeline of %s (not streaming for %lld s, its log "
               "says why): rewinding", leader, (long long)(o->not_streaming_ms / 1000));
        return;
    }
    if (leader_running && o->not_streaming_ms > NOT_STREAMING_REWIND_MS && c->config.use_pg_rewind) {
        decide(d, ACT_REWIND, leader, "not streaming from %s for %lld s: timelines diverged, rewinding", leader,
               (long long)(o->not_streaming_ms / 1000));
        return;
    }
    decide(d, ACT_WAIT, "", "following leader %s", leader);
}

/* May `name` win a leaderless election as far as synchronous mode is concerned? */
static bool sync_candidate(const Cluster *c, const char *name)
{
    return !sync_mode(c) || sync_has(&c->sync, name) || sync_names_leader(&c->sync, name);
}

/* No leader key: either take it for a running primary, or run the election. */
static void decide_no_leader(const Observation *o, Decision *d)
{
    const Cluster *c = o->cluster;
    char buf[LSN_BUFSZ], buf2[LSN_BUFSZ];
    bool maybe_primary = may_be_primary(o);
    if (maybe_primary) {
        if (!o->pg_accepting) {
            decide(d, ACT_WAIT, "", "no leader key; postgres is not answering yet");
            return;
        }
        for (int i = 0; i < o->n_peers; i++)
            if (o->peers[i].reachable && o->peers[i].is_primary) {
                decide(d, ACT_DEMOTE, "", "no leader key and %s is also running as primary: demoting", o->peers[i].name);
                return;
            }
        if (c->history_timeline > o->my_timeline) {
            decide(d, ACT_DEMOTE, "", "no leader key, and I run a primary on timeline %d while the cluster reached timeline %d: demoting",
                   o->my_timeline, c->history_timeline);
            return;
        }
        decide(d, ACT_ACQUIRE, "", "no leader key and I am the running primary: taking the key");
        return;
    }
    if (!o->pg_running) {
        if (o->rewind_failed) {
            decide(d, ACT_WAIT, "", "no leader; pg_rewind failed, so this data directory may not take part in the election");
            return;
        }
        if (o->start_failed && o->start_failed_ago_ms < START_RETRY_MS) {
            decide(d, ACT_WAIT, "", "starting postgres failed; retrying in %lld s",
                   (long long)((START_RETRY_MS - o->start_failed_ago_ms + 999) / 1000));
            return;
        }
        decide(d, ACT_START_REPLICA, "", "no leader: starting read-only to take part in the election");
        return;
    }
    if (!o->pg_accepting) {
        decide(d, ACT_WAIT, "", "no leader; postgres is not answering yet");
        return;
    }
    const FailoverReq *f = &c->failover;
    /* A failover to me still obeys every promotion rule below (only the priority tie-break is
     * waived); a refusal clears the key so that the others, who wait for me, hold an election. */
    bool to_me = f->present && f->candidate[0] && strcmp(f->candidate, o->name) == 0;
    if (f->present && f->candidate[0] && !to_me) {
        for (int i = 0; i < o->n_peers; i++)
            if (strcmp(o->peers[i].name, f->candidate) == 0 && o->peers[i].reachable && o->peers[i].pg_running) {
                decide(d, ACT_WAIT, "", "failover to %s requested: waiting for it to take over", f->candidate);
                return;
            }
        /* the named candidate is gone: fall through to a normal election */
    }
    if (!eligible_tags(&o->tags)) {
        decide(d, ACT_WAIT, "", "no leader, but this member may not be promoted (nofailover)");
        d->clear_failover = to_me;
        return;
    }
    bool key_leader = sync_mode(c) && sync_names_leader(&c->sync, o->name);
    if (sync_mode(c) && !key_leader && !sync_has(&c->sync, o->name)) {
        if (to_me)
            decide(d, ACT_WAIT, "", "failover to me requested, but I am not a synchronous standby");
        else
            decide(d, ACT_WAIT, "", "no leader, but in synchronous mode only a synchronous standby may be promoted");
        d->clear_failover = to_me;
        return;
    }
    if (sync_mode(c) && !key_leader && !sync_may_promote(&c->sync, o->name, o->my_lsn)) {
        Lsn need = sync_catchup(&c->sync, o->name);
        if (need == LSN_PENDING)
            decide(d, ACT_WAIT, "", "synchronous standby not yet confirmed by the old leader: may not be promoted");
        else
            decide(d, ACT_WAIT, "", "synchronous standby still catching up to %s: may not be promoted", lsn_format(need, buf));
        d->clear_failover = to_me;
        return;
    }
    if (c->status_optime > o->my_lsn && c->status_optime - o->my_lsn > (Lsn)c->config.maximum_lag_on_failover) {
        decide(d, ACT_WAIT, "", "no leader, but my lag %llu bytes exceeds maximum_lag_on_failover",
               (unsigned long long)(c->status_optime - o->my_lsn));
        d->clear_failover = to_me;
        return;
    }
    /* a node behind the cluster's timeline may hold writes nobody else has, and lacks the
     * newer timeline's ones: it never wins on its LSN alone */
    if (c->history_timeline > o->my_timeline) {
        decide(d, ACT_WAIT, "", "I am on timeline %d but the cluster reached timeline %d: may not be promoted",
               o->my_timeline, c->history_timeline);
        d->clear_failover = to_me;
        return;
    }
    for (int i = 0; i < o->n_peers; i++) {
        const PeerPos *p = &o->peers[i];
        if (!p->reachable)
            continue;
        if (p->pg_running && eligible_tags(&p->tags) && p->timeline > o->my_timeline &&
            sync_candidate(c, p->name)) {
            decide(d, ACT_WAIT, "", "%s is on a newer timeline (%d > %d)", p->name, p->timeline, o->my_timeline);
            d->clear_failover = to_me;
            return;
        }
        if (p->is_primary) {
            decide(d, ACT_WAIT, "", "no leader key, but %s is still running as primary", p->name);
            return;
        }
        if (!p->pg_running || !eligible_tags(&p->tags))
            continue;
        if (!sync_candidate(c, p->name))
            continue;
        if (p->lsn > o->my_lsn) {
            decide(d, ACT_WAIT, "", "%s is more advanced (%s > %s)", p->name, lsn_format(p->lsn, buf),
                   lsn_format(o->my_lsn, buf2));
            d->clear_failover = to_me;
            return;
        }
        if (!to_me && p->lsn == o->my_lsn && p->tags.failover_priority > o->tags.failover_priority) {
            decide(d, ACT_WAIT, "", "%s is as advanced and has a higher failover_priority", p->name);
            return;
        }
    }
    if (to_me && f->leader[0]) {
        /* switchover: the old leader stopped cleanly and published its shutdown checkpoint;
         * promote only once everything up to it has arrived (bounded: a lost stream must not
         * leave the cluster without a primary) */
        const Member *old = cluster_member(c, f->leader);
        if (old && old->xlog_location && o->my_lsn < old->xlog_location && o->leaderless_ms < SWITCHOVER_RECEIVE_WAIT_MS) {
            decide(d, ACT_WAIT, "", "switchover: waiting to receive everything %s wrote (%s, I have %s)", old->name,
                   lsn_format(old->xlog_location, buf), lsn_format(o->my_lsn, buf2));
            return;
        }
    }
    if (standby_cluster(c)) {
        /* the new standby leader takes the key and re-points to the source: no promotion */
        decide(d, ACT_ACQUIRE, "", "%s: taking the key as standby leader (%s)",
               to_me ? "switchover to me requested" : "leader key is gone, I am the most advanced",
               lsn_format(o->my_lsn, buf));
        return;
    }
    if (to_me)
        decide(d, ACT_PROMOTE, "", "failover to me requested: promoting (%s)", lsn_format(o->my_lsn, buf));
    else
        decide(d, ACT_PROMOTE, "", "leader key is gone, I am the most advanced (%s)%s", lsn_format(o->my_lsn, buf),
               key_leader ? ", and the sync key's leader" : "");
}

static void decide_all(const Observation *o, Decision *d);

bool ha_primary_blocked(const Observation *o)
{
    bool config_unknown = o->dcs_ok && o->cluster && o->cluster->config_invalid;
    bool unconfirmed = o->site_hold_needed && (!o->site_hold_known || o->now_ms >= o->site_hold_until_ms - o->site_margin_ms);
    return o->site_unchecked || config_unknown || unconfirmed;
}

void ha_decide(const Observation *o, Decision *d)
{
    decide_all(o, d);
    bool takes_primary = d->action == ACT_PROMOTE || d->action == ACT_ACQUIRE || d->action == ACT_START_PRIMARY ||
                         d->action == ACT_BOOTSTRAP;
    /* a config key that does not parse, with no valid one known: its defaults could make a
     * standby cluster a primary site or turn synchronous mode off */
    bool config_unknown = o->dcs_ok && o->cluster && o->cluster->config_invalid;
    /* automatic site failover: only while the witness or the other site confirms this site */
    bool unconfirmed = o->site_hold_needed && (!o->site_hold_known || o->now_ms >= o->site_hold_until_ms - o->site_margin_ms);
    if (takes_primary && ha_primary_blocked(o)) {
        Action was = d->action;
        memset(d, 0, sizeof(*d));
        if (unconfirmed && !config_unknown && !o->site_unchecked)
            decide(d, ACT_WAIT, "", "not taking the primary role (%s): %s", ha_action_name(was),
                   o->site_hold_known ? "neither the witness nor the other site confirms this site as the primary site"
                                      : "this site's confirmation by the witness or the other site is not known yet");
        else if (config_unknown)
            decide(d, ACT_WAIT, "", "not taking the primary role (%s): the config key does not parse (fix it with "
                                    "edit-config)", ha_action_name(was));
        else
            /* a site the other one may have been promoted over while it was away looks first */
            decide(d, ACT_WAIT, "", "not taking the primary role (%s) before the other site was read",
                   ha_action_name(was));
    }
}

static void decide_all(const Observation *o, Decision *d)
{
    memset(d, 0, sizeof(*d));
    bool maybe_primary = may_be_primary(o);

    /* Nothing would stop a frozen or dead agent's primary: no writes without a fence. */
    if (!o->fence_ok) {
        if (maybe_primary && o->pg_running)
            decide(d, ACT_DEMOTE, "", "the fencing process is dead and cannot be started again: stopping writes");
        else
            decide(d, ACT_WAIT, "", "the fencing process is dead and cannot be started again: no promotion or start");
        return;
    }

    /* automatic site failover: the other site may promote once the confirmation runs out */
    if (o->site_hold_needed && o->site_hold_known && maybe_primary && o->pg_running &&
        o->now_ms >= o->site_hold_until_ms - o->site_margin_ms) {
        decide(d, ACT_DEMOTE, "", "neither the witness nor the other site confirms this site as the primary site any "
                                  "more (%s): stopping writes before the other site may promote",
               o->site_hold_until_ms > 0 ? "the confirmation is about to run out" : "not confirmed");
        return;
    }

    if (!o->dcs_ok) {
        if (maybe_primary && o->lease_deadline_ms > 0 && o->now_ms >= o->lease_deadline_ms - o->demote_margin_ms) {
            decide(d, ACT_DEMOTE, "", "etcd unreachable and my lease may expire in %lld ms: stopping writes",
                   (long long)(o->lease_deadline_ms - o->now_ms));
            return;
        }
        if (maybe_primary && o->lease_deadline_ms <= 0) {
            decide(d, ACT_DEMOTE, "", "etcd unreachable and I hold no lease: a primary may not run without one");
            return;
        }
        decide(d, ACT_WAIT, "", "etcd unreachable%s", maybe_primary ? "; lease still valid" : "");
        return;
    }
    const Cluster *c = o->cluster;
    bool i_lead = c->leader[0] && strcmp(c->leader, o->name) == 0;

    /* Whatever else is going on (a long action, pause, a foreign or invalid data directory),
     * a leader that cannot renew stops writes before its lease can expire. */
    if (i_lead && maybe_primary && !o->lease_ok && o->now_ms >= o->lease_deadline_ms - o->demote_margin_ms) {
        decide(d, ACT_DEMOTE, "", "cannot renew the leader lease and it may expire in %lld ms: stopping writes",
               (long long)(o->lease_deadline_ms - o->now_ms));
        return;
    }
    if (o->action_running) {
        decide(d, ACT_WAIT, "", "an action is in progress%s", i_lead ? " (holding the leader key)" : "");
        return;
    }
    if (!c->initialized && !c->leader[0]) {
        if (o->data_dir_valid && maybe_primary && o->pg_accepting) {
            decide(d, ACT_BOOTSTRAP, "", "cluster not initialized and I run a primary: registering its data");
            return;
        }
        if (o->data_dir_valid || o->data_dir_foreign) {
            /* only an empty data directory may be initialized; existing data is registered
             * only from a running primary (above), never overwritten */
            decide(d, ACT_WAIT, "", "cluster not initialized, but data_dir already holds data: not bootstrapping over it (start it as a primary to register it, or empty it)");
            return;
        }
        if (!eligible_tags(&o->tags)) {
            decide(d, ACT_WAIT, "", "cluster not initialized; nofailover member waits for another to bootstrap");
            return;
        }
        if (standby_cluster(c)) {
            char src[160];
            source_text(c, src, sizeof(src));
            decide_remote(d, ACT_BOOTSTRAP, "standby cluster not initialized: racing for the initialize key to copy %s",
                          src);
            return;
        }
        decide(d, ACT_BOOTSTRAP, "", "cluster not initialized: racing for the initialize key");
        return;
    }
    if (c->initialized && c->sysid[0] && o->my_sysid && o->my_sysid[0] && strcmp(c->sysid, o->my_sysid) != 0) {
        decide(d, ACT_WAIT, "", "data directory belongs to another cluster (system identifier %s, cluster has %s): not touching it",
               o->my_sysid, c->sysid);
        return;
    }
    if (!o->data_dir_valid) {
        if (o->pg_running) {
            decide(d, ACT_WAIT, "", "postgres runs but the data directory looks invalid");
            return;
        }
        if (i_lead) {
            decide(d, ACT_GIVE_UP_LEADER, "", "I hold the leader key but have no data directory");
            return;
        }
        const Member *lm = c->leader[0] ? cluster_member(c, c->leader) : NULL;
        if (o->data_dir_foreign) {
            decide(d, ACT_WAIT, "", "data_dir holds files but is not a PostgreSQL data directory: refusing to overwrite it (empty it or fix postgresql.data_dir)");
            return;
        }
        if (c->config.pause) {
            decide(d, ACT_WAIT, "", "paused: not creating a replica");
            return;
        }
        if (!lm || strcmp(lm->state, "running") != 0) {
            decide(d, ACT_WAIT, "", "no data directory and no running leader to clone from");
            return;
        }
        decide(d, ACT_CLONE, lm->name, "no usable data directory: cloning from leader %s", lm->name);
        return;
    }
    if (c->config.pause) {
        if (i_lead && maybe_primary)
            decide(d, ACT_KEEP_LEADER, "", "paused: holding the leader key, no automatic actions");
        else if (c->leader[0] && maybe_primary && o->pg_accepting)
            decide(d, ACT_DEMOTE, c->leader, "paused, but %s holds the leader key and I am running as primary: demoting",
                   c->leader);
        else if (!c->leader[0] && maybe_primary && o->pg_accepting)
            decide(d, ACT_ACQUIRE, "", "paused: the running primary takes the leader key");
        else
            decide(d, ACT_WAIT, "", "paused: no automatic actions");
        return;
    }
    if (i_lead)
        decide_leader(o, d);
    else if (c->leader[0])
        decide_follower(o, d);
    else
        decide_no_leader(o, d);
}
