/* Tables of situations -> expected decision for ha_decide(), the pure HA brain, plus a seeded
 * random sweep that checks the DESIGN.md safety rules hold in every combination it visits. */
#include "common/common.h"
#include "ha/ha_decide.h"
#include "ha/sync_plan.h"

#include <inttypes.h>
#include <setjmp.h>

#include <cmocka.h>

/* ---- the fixture: a healthy 3-node cluster, node1 leader, node2 and node3 streaming ---- */

#define NOW ((int64_t)1000000)
#define TTL_MS ((int64_t)10000)
#define MARGIN ((int64_t)3500)
#define SYSID "7301234567890123456"
#define MAX_LAG ((Lsn)1048576)     /* dynconfig default maximum_lag_on_failover */
#define L_PRIMARY ((Lsn)0x5000000)
#define L_NODE2 ((Lsn)0x4FFFF00)
#define L_NODE3 ((Lsn)0x4FFFE00)

typedef struct Fx {
    Cluster c;
    Observation o;
    PeerPos peers[3];
} Fx;

typedef void (*Tweak)(Fx *f);

static Tags default_tags(void)
{
    Tags t;
    memset(&t, 0, sizeof(t));
    t.failover_priority = 1;
    return t;
}

static void set_member(Member *m, const char *name, const char *role, Lsn lsn)
{
    str_copy(m->name, sizeof(m->name), name);
    str_copy(m->state, sizeof(m->state), "running");
    str_copy(m->role, sizeof(m->role), role);
    str_copy(m->replication_state, sizeof(m->replication_state), strcmp(role, "replica") == 0 ? "streaming" : "");
    m->xlog_location = lsn;
    m->timeline = 2;
    m->tags = default_tags();
}

static void set_peer(PeerPos *p, const char *name, bool reachable, bool primary, Lsn lsn)
{
    memset(p, 0, sizeof(*p));
    str_copy(p->name, sizeof(p->name), name);
    p->reachable = reachable;
    p->pg_running = reachable;
    p->is_primary = primary;
    p->lsn = lsn;
    p->timeline = 2;
    p->tags = default_tags();
}

/* Base: I am node1, the leader, a healthy primary with a fresh lease. */
static void fx_init(Fx *f)
{
    memset(f, 0, sizeof(*f));
    Cluster *c = &f->c;
    cluster_init(c);
    c->initialized = true;
    str_copy(c->sysid, sizeof(c->sysid), SYSID);
    str_copy(c->leader, sizeof(c->leader), "node1");
    c->members = xcalloc(3, sizeof(Member));
    c->n_members = 3;
    set_member(&c->members[0], "node1", "primary", L_PRIMARY);
    set_member(&c->members[1], "node2", "replica", L_NODE2);
    set_member(&c->members[2], "node3", "replica", L_NODE3);
    c->status_optime = L_PRIMARY;

    /* positions as an election would report them; only passed in when there is no leader */
    set_peer(&f->peers[0], "node1", true, true, L_PRIMARY);
    set_peer(&f->peers[1], "node3", true, false, L_NODE3);
    set_peer(&f->peers[2], "node2", true, false, L_NODE2);

    Observation *o = &f->o;
    o->name = "node1";
    o->tags = default_tags();
    o->now_ms = NOW;
    o->data_dir_valid = true;
    o->pg_running = true;
    o->pg_accepting = true;
    o->pg_in_recovery = false;
    o->my_lsn = L_PRIMARY;
    o->my_timeline = 2;
    o->my_sysid = SYSID;
    o->following = "";
    o->fence_ok = true;
    o->dcs_ok = true;
    o->lease_ok = true;
    o->lease_deadline_ms = NOW + TTL_MS;
    o->demote_margin_ms = MARGIN;
    o->cluster = c;
}

static Member *member(Fx *f, const char *name)
{
    for (int i = 0; i < f->c.n_members; i++)
        if (strcmp(f->c.members[i].name, name) == 0)
            return &f->c.members[i];
    fail_msg("fixture has no member %s", name);
    return NULL;
}

static PeerPos *peer(Fx *f, const char *name)
{
    for (int i = 0; i < (int)ARRAY_LEN(f->peers); i++)
        if (strcmp(f->peers[i].name, name) == 0)
            return &f->peers[i];
    fail_msg("fixture has no peer %s", name);
    return NULL;
}

/* ---- perspectives (the base of each row) ---- */

static void as_leader(Fx *f)
{
    (void)f;
}

/* node2: a streaming replica of node1 */
static void as_replica(Fx *f)
{
    f->o.name = "node2";
    f->o.pg_in_recovery = true;
    f->o.my_lsn = L_NODE2;
    f->o.following = "node1";
}

/* node2 after node1's lease expired: leader key and node1's member key are gone, node1 does
 * not answer; node3 is reachable and a little behind node2. */
static void as_election(Fx *f)
{
    as_replica(f);
    f->c.leader[0] = '\0';
    f->c.members[0] = f->c.members[2];
    f->c.n_members = 2;
    set_peer(&f->peers[0], "node1", false, false, 0);
    f->o.peers = f->peers;
    f->o.n_peers = 2;   /* node1, node3 (peers[2] is node2 itself, not passed) */
}

/* node1 on a fresh etcd: no initialize key, no members, empty data directory */
static void as_uninit(Fx *f)
{
    f->c.initialized = false;
    f->c.sysid[0] = '\0';
    f->c.leader[0] = '\0';
    f->c.n_members = 0;
    f->c.status_optime = 0;
    f->o.data_dir_valid = false;
    f->o.pg_running = false;
    f->o.pg_accepting = false;
    f->o.my_lsn = 0;
    f->o.my_sysid = "";
}

/* node3 with an empty data directory (a new or wiped member) */
static void as_empty(Fx *f)
{
    f->o.name = "node3";
    f->o.data_dir_valid = false;
    f->o.pg_running = false;
    f->o.pg_accepting = false;
    f->o.my_lsn = 0;
    f->o.my_sysid = "";
    f->o.pg_down_ms = 60000;
}

/* ---- tweaks ---- */

/* etcd: the read failed, so there is no cluster to look at */
static void t_dcs_down(Fx *f) { f->o.dcs_ok = false; f->o.lease_ok = false; f->o.cluster = NULL; }
static void t_lease_fail(Fx *f) { f->o.lease_ok = false; }
static void t_past_margin(Fx *f) { f->o.lease_deadline_ms = NOW + MARGIN - 1; }
static void t_at_margin(Fx *f) { f->o.lease_deadline_ms = NOW + MARGIN; }
static void t_margin_plus1(Fx *f) { f->o.lease_deadline_ms = NOW + MARGIN + 1; }
static void t_expired(Fx *f) { f->o.lease_deadline_ms = NOW - 1; }
static void t_no_lease(Fx *f) { f->o.lease_deadline_ms = 0; }
static void t_busy(Fx *f) { f->o.action_running = true; }
static void t_no_fence(Fx *f) { f->o.fence_ok = false; }

/* local PostgreSQL */
static void t_pg_down(Fx *f)
{
    f->o.pg_running = false;
    f->o.pg_accepting = false;
    f->o.pg_in_recovery = false;
    f->o.pg_down_ms = 5000;
}
static void t_down_limit(Fx *f) { f->o.pg_down_ms = 300000; }
static void t_down_long(Fx *f) { f->o.pg_down_ms = 300001; }
static void t_start_failed(Fx *f) { f->o.start_failed = true; }
static void t_start_failed_long_ago(Fx *f) { f->o.start_failed = true; f->o.start_failed_ago_ms = 60000; }
static void t_start_failed_3x(Fx *f) { f->o.start_failed = true; f->o.start_failures = 3; f->o.start_failed_ago_ms = 2000; }
static void t_foreign_dir(Fx *f) { f->o.data_dir_foreign = true; }
static void t_m2_not_streaming(Fx *f)
{
    for (int i = 0; i < f->c.n_members; i++)
        if (strcmp(f->c.members[i].name, "node2") == 0)
            str_copy(f->c.members[i].replication_state, sizeof(f->c.members[i].replication_state), "in archive recovery");
}
static void t_start_timeout0(Fx *f) { f->c.config.primary_start_timeout = 0; f->o.pg_down_ms = 1; }
static void t_not_accepting(Fx *f) { f->o.pg_accepting = false; }
static void t_in_recovery(Fx *f) { f->o.pg_in_recovery = true; }
static void t_me_primary(Fx *f) { f->o.pg_in_recovery = false; f->o.my_lsn = L_NODE2 + 100; }
static void t_data_valid(Fx *f) { f->o.data_dir_valid = true; }
static void t_no_data(Fx *f) { f->o.data_dir_valid = false; f->o.my_sysid = ""; }
static void t_running_primary(Fx *f)
{
    f->o.data_dir_valid = true;
    f->o.pg_running = true;
    f->o.pg_accepting = true;
    f->o.pg_in_recovery = false;
    f->o.my_sysid = SYSID;
}
static void t_running_replica(Fx *f) { t_running_primary(f); f->o.pg_in_recovery = true; }
static void t_pg_running(Fx *f) { f->o.pg_running = true; }
static void t_was_primary(Fx *f) { t_pg_down(f); f->o.was_primary = true; f->o.following = ""; }
static void t_rewind_failed(Fx *f) { f->o.rewind_failed = true; }
static void t_start_diverged(Fx *f) { f->o.pg_running = false; f->o.start_failed = true; f->o.start_diverged = true; }
static void t_reinit_on(Fx *f) { f->o.reinit_on_rewind_failure = true; }
/* a replica (started with standby.signal) whose recovery stopped at the fork of the leader's timeline */
static void t_diverged_running(Fx *f) { f->o.start_diverged = true; f->o.standby_signal = true; }
static void t_no_pg_rewind(Fx *f) { f->c.config.use_pg_rewind = false; }
static void t_follow_node3(Fx *f) { f->o.following = "node3"; }
static void t_follow_none(Fx *f) { f->o.following = ""; }
static void t_not_streaming(Fx *f) { f->o.not_streaming_ms = 15001; }
static void t_not_streaming_limit(Fx *f) { f->o.not_streaming_ms = 15000; }
static void t_not_streaming_short(Fx *f) { f->o.not_streaming_ms = 6000; }
static void t_follow_diverged(Fx *f) { f->o.follow_diverged = true; }

/* my identity */
static void t_nofailover(Fx *f) { f->o.tags.nofailover = true; }
static void t_prio0(Fx *f) { f->o.tags.failover_priority = 0; }
static void t_sysid_other(Fx *f) { f->o.my_sysid = "7300000000000000001"; }
static void t_sysid_unknown(Fx *f) { f->o.my_sysid = ""; }
static void t_sysid_null(Fx *f) { f->o.my_sysid = NULL; }
static void t_cluster_sysid_empty(Fx *f) { f->c.sysid[0] = '\0'; }

/* cluster keys */
static void t_no_leader(Fx *f) { f->c.leader[0] = '\0'; }
static void t_no_initialize(Fx *f) { f->c.initialized = false; f->c.sysid[0] = '\0'; }
static void t_leader_node3(Fx *f) { str_copy(f->c.leader, sizeof(f->c.leader), "node3"); }
static void t_leader_stopped(Fx *f) { str_copy(member(f, "node1")->state, 32, "stopped"); }
static void t_leader_no_record(Fx *f) { str_copy(member(f, "node1")->name, NAME_MAX_LEN, "node9"); }
static void t_pause(Fx *f) { f->c.config.pause = true; }
static void t_lag_over(Fx *f) { f->c.status_optime = L_NODE2 + MAX_LAG + 1; }
static void t_lag_at(Fx *f) { f->c.status_optime = L_NODE2 + MAX_LAG; }
static void t_no_status(Fx *f) { f->c.status_optime = 0; }

static void sync_add(Fx *f, const char *name)
{
    SyncState *s = &f->c.sync;
    str_copy(s->members[s->n_members++], NAME_MAX_LEN, name);
}
static void t_sync_mode(Fx *f)
{
    f->c.config.synchronous_mode = true;
    f->c.sync.present = true;
    str_copy(f->c.sync.leader, NAME_MAX_LEN, "node1");
}
static void t_sync_me(Fx *f) { sync_add(f, "node2"); }
static void t_sync_me_upper(Fx *f) { sync_add(f, "NODE2"); }
static void t_sync_node3(Fx *f) { sync_add(f, "node3"); }
static void t_sync_key_gone(Fx *f) { f->c.sync.present = false; }
static void t_sync_leader_me(Fx *f) { str_copy(f->c.sync.leader, NAME_MAX_LEN, "NODE2"); }
static void t_sync_leader_node3(Fx *f) { str_copy(f->c.sync.leader, NAME_MAX_LEN, "node3"); }

/* election peers */
static void t_p3_ahead(Fx *f) { peer(f, "node3")->lsn = L_NODE2 + 1; }
static void t_p3_newer_tl(Fx *f) { peer(f, "node3")->timeline = 3; peer(f, "node3")->lsn = 1; }
static void t_history_tl3(Fx *f) { f->c.history_timeline = 3; }
/* the old leader (removed by as_election) is back as a stopped member whose shutdown
 * checkpoint I have not received yet */
static void t_old_leader_ahead(Fx *f)
{
    Member *m = &f->c.members[f->c.n_members++];
    memset(m, 0, sizeof(*m));
    str_copy(m->name, sizeof(m->name), "node1");
    str_copy(m->state, sizeof(m->state), "stopped");
    str_copy(m->role, sizeof(m->role), "replica");
    m->tags.failover_priority = 1;
    m->xlog_location = f->o.my_lsn + 100;
}
static void t_leaderless_long(Fx *f) { f->o.leaderless_ms = 60000; }
static void t_history_tl2(Fx *f) { f->c.history_timeline = 2; }
static void t_p3_equal(Fx *f) { peer(f, "node3")->lsn = L_NODE2; }
static void t_p3_prio2(Fx *f) { peer(f, "node3")->tags.failover_priority = 2; }
static void t_p3_prio0(Fx *f) { peer(f, "node3")->tags.failover_priority = 0; }
static void t_p3_nofailover(Fx *f) { peer(f, "node3")->tags.nofailover = true; }
static void t_p3_unreachable(Fx *f) { peer(f, "node3")->reachable = false; }
static void t_p3_stopped(Fx *f) { peer(f, "node3")->pg_running = false; }
static void t_p3_primary(Fx *f) { peer(f, "node3")->is_primary = true; }
/* as leader node1: its peers node3 and node2, node3 still running as primary */
static void t_leader_peer3_primary(Fx *f)
{
    f->o.peers = &f->peers[1];
    f->o.n_peers = 2;
    t_p3_primary(f);
}
static void t_p1_primary_unreachable(Fx *f) { peer(f, "node1")->is_primary = true; peer(f, "node1")->pg_running = true; }
static void t_prio2(Fx *f) { f->o.tags.failover_priority = 2; }

/* switchover / failover requests */
static void set_failover(Fx *f, const char *leader, const char *candidate)
{
    f->c.failover.present = true;
    str_copy(f->c.failover.leader, NAME_MAX_LEN, leader);
    str_copy(f->c.failover.candidate, NAME_MAX_LEN, candidate);
}
static void t_so_node2(Fx *f) { set_failover(f, "node1", "node2"); }
static void t_so_node3(Fx *f) { set_failover(f, "node1", "node3"); }
static void t_so_any(Fx *f) { set_failover(f, "node1", ""); }
static void t_so_node9(Fx *f) { set_failover(f, "node1", "node9"); }
static void t_so_to_me(Fx *f) { set_failover(f, "node1", "node1"); }
static void t_so_other_leader(Fx *f) { set_failover(f, "node3", "node2"); }
static void t_fo_node2(Fx *f) { set_failover(f, "", "node2"); }
static void t_fo_node3(Fx *f) { set_failover(f, "", "node3"); }
static void t_fo_node9(Fx *f) { set_failover(f, "", "node9"); }

/* member records, as the leader sees them */
static void t_m2_stopped(Fx *f) { str_copy(member(f, "node2")->state, 32, "stopped"); }
static void t_m2_starting(Fx *f) { str_copy(member(f, "node2")->state, 32, "starting"); }
static void t_m2_nofailover(Fx *f) { member(f, "node2")->tags.nofailover = true; }
static void t_m2_prio0(Fx *f) { member(f, "node2")->tags.failover_priority = 0; }
static void t_m2_primary(Fx *f) { str_copy(member(f, "node2")->role, 32, "primary"); }
static void t_m3_ahead(Fx *f) { member(f, "node3")->xlog_location = L_NODE2 + 1; }
static void t_m3_nofailover(Fx *f) { member(f, "node3")->tags.nofailover = true; }
static void t_m3_stopped(Fx *f) { str_copy(member(f, "node3")->state, 32, "stopped"); }

/* standby cluster: this site follows another one at 10.9.0.1:5432 */
static void t_standby(Fx *f)
{
    StandbyCluster *sc = &f->c.config.standby;
    sc->present = true;
    sc->host = str_dup("10.9.0.1");
    sc->port = 5432;
}
/* ... and I am its standby leader (node1 holds the key), in recovery, following the source */
static void t_standby_leader(Fx *f)
{
    t_standby(f);
    f->o.pg_in_recovery = true;
    f->o.following_remote = true;
    f->o.remote_sysid = SYSID;
}
static void t_not_following_source(Fx *f) { f->o.following_remote = false; }
static void t_source_other_cluster(Fx *f) { f->o.remote_sysid = "7300000000000000001"; }
static void t_source_unknown(Fx *f) { f->o.remote_sysid = ""; }
static void t_source_tl3(Fx *f) { f->o.remote_timeline = 3; }
static void t_site_unchecked(Fx *f) { f->o.site_unchecked = true; }
static void t_config_invalid(Fx *f) { f->c.config_invalid = true; }
static void t_diverged_flag(Fx *f) { f->o.start_diverged = true; }
/* the new timeline's history file is in pg_wal (my_timeline counts it) while postgres still runs on its own */
static void t_history_fetched(Fx *f) { f->o.pg_timeline = f->o.my_timeline; f->o.my_timeline = 3; }
/* automatic site failover: the site's confirmation, held, about to run out, or never had */
static void t_site_held(Fx *f)
{
    f->o.site_hold_needed = true;
    f->o.site_hold_known = true;
    f->o.site_hold_until_ms = NOW + 8000;
    f->o.site_margin_ms = 1800;
}
static void t_site_expiring(Fx *f) { t_site_held(f); f->o.site_hold_until_ms = NOW + 1799; }
static void t_site_not_held(Fx *f) { t_site_held(f); f->o.site_hold_until_ms = 0; }
static void t_site_unknown(Fx *f) { t_site_not_held(f); f->o.site_hold_known = false; }

/* ---- the table runner ---- */

#define MAX_TWEAKS 5

typedef struct Row {
    const char *what;
    Tweak base;
    Tweak tw[MAX_TWEAKS];
    Action want;
    const char *target;   /* NULL means ""; "@source" the standby_cluster source */
    const char *reason;   /* substring; NULL: not checked */
    bool clear_failover;
} Row;

static bool run_row(const Row *r)
{
    Fx f;
    fx_init(&f);
    r->base(&f);
    for (int i = 0; i < MAX_TWEAKS && r->tw[i]; i++)
        r->tw[i](&f);
    Decision d;
    memset(&d, 0x5a, sizeof(d));   /* ha_decide must fill every field */
    ha_decide(&f.o, &d);
    cluster_free(&f.c);

    /* "@source": the standby_cluster source, not a member */
    bool want_remote = r->target && strcmp(r->target, "@source") == 0;
    const char *want_target = r->target && !want_remote ? r->target : "";
    bool ok = d.action == r->want && strcmp(d.target, want_target) == 0 && d.remote == want_remote &&
              (!r->reason || strstr(d.reason, r->reason)) && d.clear_failover == r->clear_failover &&
              d.reason[0] != '\0';
    if (!ok)
        print_error("row \"%s\":\n  want %s target \"%s\" reason ~\"%s\" clear_failover=%d\n"
                    "  got  %s target \"%s\" reason \"%s\" clear_failover=%d\n",
                    r->what, ha_action_name(r->want), want_target, r->reason ? r->reason : "*",
                    r->clear_failover, ha_action_name(d.action), d.target, d.reason, d.clear_failover);
    return ok;
}

static void run_table(const Row *rows, size_t n)
{
    int failed = 0;
    for (size_t i = 0; i < n; i++)
        if (!run_row(&rows[i]))
            failed++;
    if (failed)
        fail_msg("%d of %zu rows failed", failed, n);
}

#define RUN(rows) run_table(rows, ARRAY_LEN(rows))

/* ---- tables ---- */

static void test_etcd_unreachable(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"primary, etcd down, lease has time left", as_leader, {t_dcs_down}, ACT_WAIT, NULL, "lease still valid", false},
        {"primary, etcd down, one ms before the margin", as_leader, {t_dcs_down, t_margin_plus1}, ACT_WAIT, NULL, "etcd unreachable", false},
        {"primary, etcd down, exactly at the margin", as_leader, {t_dcs_down, t_at_margin}, ACT_DEMOTE, NULL, "etcd unreachable", false},
        {"primary, etcd down, past the margin", as_leader, {t_dcs_down, t_past_margin}, ACT_DEMOTE, NULL, "may expire", false},
        {"primary, etcd down, lease already expired", as_leader, {t_dcs_down, t_expired}, ACT_DEMOTE, NULL, "etcd unreachable", false},
        {"primary, etcd down, never had a lease", as_leader, {t_dcs_down, t_no_lease}, ACT_DEMOTE, NULL, "no lease", false},
        {"primary not answering, etcd down, past the margin", as_leader, {t_dcs_down, t_not_accepting, t_past_margin}, ACT_DEMOTE, NULL, NULL, false},
        {"primary, etcd down past the margin, even mid-action", as_leader, {t_dcs_down, t_busy, t_past_margin}, ACT_DEMOTE, NULL, NULL, false},
        {"primary, etcd down past the margin, even paused", as_leader, {t_pause, t_dcs_down, t_past_margin}, ACT_DEMOTE, NULL, NULL, false},
        {"replica, etcd down", as_replica, {t_dcs_down}, ACT_WAIT, NULL, "etcd unreachable", false},
        {"replica, etcd down, lease past expiry", as_replica, {t_dcs_down, t_expired}, ACT_WAIT, NULL, "etcd unreachable", false},
        {"replica, etcd down, no lease", as_replica, {t_dcs_down, t_no_lease}, ACT_WAIT, NULL, NULL, false},
        {"stopped node, etcd down", as_replica, {t_dcs_down, t_pg_down, t_no_lease}, ACT_WAIT, NULL, NULL, false},
        {"empty node, etcd down", as_empty, {t_dcs_down}, ACT_WAIT, NULL, NULL, false},
    };
    RUN(rows);
}

/* A fencing process that died and cannot be started again leaves nothing to stop a frozen or
 * dead agent's primary: no writes, no promotion, whatever else is going on. */
static void test_fence_dead(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"primary, fence dead", as_leader, {t_no_fence}, ACT_DEMOTE, NULL, "fencing process", false},
        {"primary, fence dead, even paused", as_leader, {t_pause, t_no_fence}, ACT_DEMOTE, NULL, "fencing process", false},
        {"primary, fence dead, even mid-action", as_leader, {t_busy, t_no_fence}, ACT_DEMOTE, NULL, "fencing process", false},
        {"primary, fence dead, etcd down", as_leader, {t_dcs_down, t_no_fence}, ACT_DEMOTE, NULL, "fencing process", false},
        {"replica in an election, fence dead: no promotion", as_election, {t_no_fence}, ACT_WAIT, NULL, "fencing process", false},
        {"replica, fence dead", as_replica, {t_no_fence}, ACT_WAIT, NULL, "fencing process", false},
        {"stopped node, fence dead: no start", as_replica, {t_pg_down, t_no_fence}, ACT_WAIT, NULL, "fencing process", false},
    };
    RUN(rows);
}

static void test_action_in_progress(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"replica mid-action", as_replica, {t_busy}, ACT_WAIT, NULL, "in progress", false},
        {"leader mid-action", as_leader, {t_busy}, ACT_WAIT, NULL, "holding the leader key", false},
        {"leader mid-action, postgres down", as_leader, {t_busy, t_pg_down, t_down_long}, ACT_WAIT, NULL, "in progress", false},
        {"election mid-action", as_election, {t_busy}, ACT_WAIT, NULL, "in progress", false},
        {"new node mid-clone", as_empty, {t_busy}, ACT_WAIT, NULL, "in progress", false},
        {"leader mid-action, lease renewal failed, time left", as_leader, {t_busy, t_lease_fail}, ACT_WAIT, NULL, NULL, false},
        /* a long action must not keep a primary writing past its lease */
        {"leader mid-action, lease renewal failed past the margin", as_leader, {t_busy, t_lease_fail, t_past_margin}, ACT_DEMOTE, NULL, "lease", false},
        {"leader mid-action, lease renewal failed, exactly at the margin", as_leader, {t_busy, t_lease_fail, t_at_margin}, ACT_DEMOTE, NULL, "lease", false},
        {"leader mid-action, lease renewal failed, one ms before the margin", as_leader, {t_busy, t_lease_fail, t_margin_plus1}, ACT_WAIT, NULL, "in progress", false},
        {"promoting leader mid-action, lease renewal failed past the margin", as_leader, {t_busy, t_not_accepting, t_lease_fail, t_past_margin}, ACT_DEMOTE, NULL, "lease", false},
        {"replica of leader mid-action, lease renewal failed past the margin", as_leader, {t_busy, t_in_recovery, t_lease_fail, t_past_margin}, ACT_WAIT, NULL, "in progress", false},
    };
    RUN(rows);
}

static void test_not_initialized(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"fresh cluster, empty node", as_uninit, {0}, ACT_BOOTSTRAP, NULL, "initialize key", false},
        {"fresh cluster, stopped data directory is never bootstrapped over", as_uninit, {t_data_valid}, ACT_WAIT, NULL, "not bootstrapping over it", false},
        {"fresh cluster, nofailover member", as_uninit, {t_nofailover}, ACT_WAIT, NULL, "nofailover", false},
        {"fresh cluster, failover_priority 0 member", as_uninit, {t_prio0}, ACT_WAIT, NULL, "bootstrap", false},
        {"fresh cluster, running primary with data registers it", as_uninit, {t_running_primary}, ACT_BOOTSTRAP, NULL, "registering its data", false},
        {"fresh cluster, running nofailover primary still registers", as_uninit, {t_running_primary, t_nofailover}, ACT_BOOTSTRAP, NULL, "registering", false},
        {"fresh cluster, running replica keeps its data", as_uninit, {t_running_replica}, ACT_WAIT, NULL, "not bootstrapping over it", false},
        {"fresh cluster, primary not answering yet waits", as_uninit, {t_running_primary, t_not_accepting}, ACT_WAIT, NULL, NULL, false},
        /* initialize key deleted by hand while a leader runs: no new cluster */
        {"initialize key gone but a leader exists", as_replica, {t_no_initialize}, ACT_WAIT, NULL, "following leader node1", false},
        {"initialize key gone, I lead", as_leader, {t_no_initialize}, ACT_KEEP_LEADER, NULL, NULL, false},
    };
    RUN(rows);
}

/* a data directory of another cluster is never rewound, cloned over, wiped or promoted */
static void test_sysid_mismatch(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"replica of another cluster", as_replica, {t_sysid_other}, ACT_WAIT, NULL, "another cluster", false},
        {"stopped former primary of another cluster", as_replica, {t_sysid_other, t_was_primary, t_rewind_failed, t_reinit_on}, ACT_WAIT, NULL, "not touching it", false},
        {"stopped former primary of another cluster, leader running", as_replica, {t_sysid_other, t_was_primary}, ACT_WAIT, NULL, "not touching it", false},
        {"stopped node of another cluster", as_replica, {t_sysid_other, t_pg_down}, ACT_WAIT, NULL, "system identifier", false},
        {"not streaming node of another cluster", as_replica, {t_sysid_other, t_not_streaming}, ACT_WAIT, NULL, "another cluster", false},
        {"election, node of another cluster", as_election, {t_sysid_other}, ACT_WAIT, NULL, "another cluster", false},
        {"sysid unknown: normal rules", as_replica, {t_sysid_unknown}, ACT_WAIT, NULL, "following leader node1", false},
        {"sysid NULL: normal rules", as_replica, {t_sysid_null}, ACT_WAIT, NULL, "following leader node1", false},
        {"initialize key still empty: normal rules", as_replica, {t_sysid_other, t_cluster_sysid_empty}, ACT_WAIT, NULL, "following leader node1", false},
    };
    RUN(rows);
}

static void test_no_data_directory(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"empty node, running leader", as_empty, {0}, ACT_CLONE, "node1", "cloning from leader node1", false},
        {"empty node, no leader", as_empty, {t_no_leader}, ACT_WAIT, NULL, "no running leader", false},
        {"empty node, leader stopped", as_empty, {t_leader_stopped}, ACT_WAIT, NULL, "no running leader", false},
        {"empty node, leader has no member record", as_empty, {t_leader_no_record}, ACT_WAIT, NULL, "no running leader", false},
        {"empty node, paused", as_empty, {t_pause}, ACT_WAIT, NULL, "paused", false},
        {"empty node, nofailover still clones", as_empty, {t_nofailover}, ACT_CLONE, "node1", NULL, false},
        {"invalid data directory but postgres runs", as_empty, {t_pg_running}, ACT_WAIT, NULL, "invalid", false},
        {"leader lost its data directory", as_leader, {t_pg_down, t_no_data}, ACT_GIVE_UP_LEADER, NULL, "no data directory", false},
        {"leader lost its data directory, paused", as_leader, {t_pause, t_pg_down, t_no_data}, ACT_GIVE_UP_LEADER, NULL, NULL, false},
        {"leader with no data directory gives up the key", as_empty, {t_leader_node3}, ACT_GIVE_UP_LEADER, NULL, "no data directory", false},
        {"foreign files in data_dir are never overwritten", as_empty, {t_foreign_dir}, ACT_WAIT, NULL, "refusing to overwrite", false},
    };
    RUN(rows);
}

/* a failed start is retried with a pause, not in a tight loop */
static void test_start_retry(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"replica start just failed: wait", as_replica, {t_pg_down, t_start_failed}, ACT_WAIT, NULL, "retrying in", false},
        {"replica start failed long ago: retry", as_replica, {t_pg_down, t_start_failed_long_ago}, ACT_START_REPLICA, "node1", NULL, false},
        {"election start just failed: wait", as_election, {t_pg_down, t_start_failed}, ACT_WAIT, NULL, "retrying in", false},
        {"election start failed long ago: retry", as_election, {t_pg_down, t_start_failed_long_ago}, ACT_START_REPLICA, "", NULL, false},
    };
    RUN(rows);
}

static void test_leader(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"healthy leader", as_leader, {0}, ACT_KEEP_LEADER, NULL, "live lease", false},
        {"leader, postgres down", as_leader, {t_pg_down}, ACT_START_PRIMARY, NULL, "restarting", false},
        {"leader, postgres down exactly primary_start_timeout", as_leader, {t_pg_down, t_down_limit}, ACT_START_PRIMARY, NULL, NULL, false},
        {"leader, postgres down longer than primary_start_timeout", as_leader, {t_pg_down, t_down_long}, ACT_GIVE_UP_LEADER, NULL, "primary_start_timeout", false},
        {"leader, start just failed: retry shortly", as_leader, {t_pg_down, t_start_failed}, ACT_WAIT, NULL, "retrying", false},
        {"leader, start failed a while ago: restart again", as_leader, {t_pg_down, t_start_failed_long_ago}, ACT_START_PRIMARY, NULL, NULL, false},
        {"leader, start failed three times", as_leader, {t_pg_down, t_start_failed_3x}, ACT_GIVE_UP_LEADER, NULL, "start failed", false},
        {"leader, primary_start_timeout 0", as_leader, {t_pg_down, t_start_timeout0}, ACT_GIVE_UP_LEADER, NULL, NULL, false},
        {"leader in recovery", as_leader, {t_in_recovery}, ACT_PROMOTE, NULL, "in recovery", false},
        {"leader in recovery, the old primary still runs", as_leader, {t_in_recovery, t_leader_peer3_primary}, ACT_WAIT, NULL, "node3 still runs as primary", false},
        {"leader not answering yet", as_leader, {t_not_accepting}, ACT_WAIT, NULL, "not answering", false},
        {"leader, renewal failed, time left", as_leader, {t_lease_fail}, ACT_WAIT, NULL, "cannot renew", false},
        {"leader, renewal failed, one ms before the margin", as_leader, {t_lease_fail, t_margin_plus1}, ACT_WAIT, NULL, "cannot renew", false},
        {"leader, renewal failed, at the margin", as_leader, {t_lease_fail, t_at_margin}, ACT_DEMOTE, NULL, "cannot renew", false},
        {"leader, renewal failed, past the margin", as_leader, {t_lease_fail, t_past_margin}, ACT_DEMOTE, NULL, "stopping writes", false},
        {"leader, renewal failed, expired", as_leader, {t_lease_fail, t_expired}, ACT_DEMOTE, NULL, NULL, false},
        {"leader not answering, renewal failed past the margin", as_leader, {t_lease_fail, t_past_margin, t_not_accepting}, ACT_DEMOTE, NULL, NULL, false},
        /* without a renewed lease nothing may start writing */
        {"leader, renewal failed, postgres down: no start", as_leader, {t_lease_fail, t_past_margin, t_pg_down}, ACT_WAIT, NULL, NULL, false},
        {"leader, renewal failed, in recovery: no promote", as_leader, {t_lease_fail, t_in_recovery}, ACT_WAIT, NULL, NULL, false},
        {"leader, renewal failed, switchover pending: no release", as_leader, {t_lease_fail, t_so_node2}, ACT_WAIT, NULL, NULL, false},
        {"leader, renewal failed past the margin, switchover pending", as_leader, {t_lease_fail, t_past_margin, t_so_node2}, ACT_DEMOTE, NULL, NULL, false},
    };
    RUN(rows);
}

static void test_follower(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"healthy replica", as_replica, {0}, ACT_WAIT, NULL, "following leader node1", false},
        /* split brain: two members claim leadership */
        {"another member holds the key, I run as primary", as_replica, {t_me_primary}, ACT_DEMOTE, "node1", "holds the leader key", false},
        {"another member holds the key, I run as primary, lease fine", as_leader, {t_leader_node3}, ACT_DEMOTE, "node3", "demoting", false},
        {"another member holds the key, I run but do not answer", as_replica, {t_not_accepting, t_me_primary}, ACT_DEMOTE, "node1", NULL, false},
        {"another member holds the key, I run as primary with nofailover", as_replica, {t_me_primary, t_nofailover}, ACT_DEMOTE, "node1", NULL, false},
        {"stopped after unclean primary run", as_replica, {t_was_primary}, ACT_REWIND, "node1", "pg_rewind from node1", false},
        {"former primary, leader not running yet", as_replica, {t_was_primary, t_leader_stopped}, ACT_WAIT, NULL, "waiting for leader", false},
        {"former primary, rewind failed, reinit allowed", as_replica, {t_was_primary, t_rewind_failed, t_reinit_on}, ACT_REINIT, "node1", "rebuilding", false},
        {"former primary, rewind failed, reinit not allowed", as_replica, {t_was_primary, t_rewind_failed}, ACT_WAIT, NULL, "pgvigil reinit node2", false},
        {"rewind failed after pg_rewind marked the control file clean, reinit allowed", as_replica, {t_pg_down, t_rewind_failed, t_reinit_on}, ACT_REINIT, "node1", "rebuilding", false},
        {"rewind failed after pg_rewind marked the control file clean", as_replica, {t_pg_down, t_rewind_failed}, ACT_WAIT, NULL, "pgvigil reinit node2", false},
        {"rewind failed, no leader: no election", as_election, {t_pg_down, t_rewind_failed, t_reinit_on}, ACT_WAIT, NULL, "pg_rewind failed", false},
        {"former primary, pg_rewind disabled", as_replica, {t_was_primary, t_no_pg_rewind}, ACT_START_REPLICA, "node1", NULL, false},
        {"stopped replica", as_replica, {t_pg_down}, ACT_START_REPLICA, "node1", "starting as a replica of node1", false},
        {"start failed past the fork of the leader's timeline", as_replica, {t_pg_down, t_start_diverged}, ACT_REWIND, "node1", "went past the fork", false},
        {"start failed past the fork, leader not running", as_replica, {t_pg_down, t_start_diverged, t_leader_stopped}, ACT_WAIT, NULL, "waiting for leader", false},
        {"start failed past the fork, pg_rewind disabled", as_replica, {t_pg_down, t_start_diverged, t_no_pg_rewind}, ACT_WAIT, NULL, "retrying", false},
        {"running, not consistent, past the fork of the leader's timeline", as_replica, {t_not_accepting, t_diverged_running}, ACT_REWIND, "node1", "cannot recover past the fork", false},
        {"running, not consistent, past the fork, leader not running", as_replica, {t_not_accepting, t_diverged_running, t_leader_stopped}, ACT_WAIT, NULL, "starting", false},
        {"running, not consistent, past the fork, pg_rewind disabled", as_replica, {t_not_accepting, t_diverged_running, t_no_pg_rewind}, ACT_WAIT, NULL, "starting", false},
        {"stopped replica, leader down too", as_replica, {t_pg_down, t_leader_stopped}, ACT_START_REPLICA, "node1", NULL, false},
        {"replica following the wrong member", as_replica, {t_follow_node3}, ACT_FOLLOW, "node1", "was following node3", false},
        {"replica following nobody", as_replica, {t_follow_none}, ACT_FOLLOW, "node1", "nobody", false},
        {"replica not streaming for long", as_replica, {t_not_streaming}, ACT_REWIND, "node1", "not streaming from node1", false},
        {"replica not streaming, exactly the limit", as_replica, {t_not_streaming_limit}, ACT_WAIT, NULL, NULL, false},
        {"replica not streaming, leader not running", as_replica, {t_not_streaming, t_leader_stopped}, ACT_WAIT, NULL, NULL, false},
        {"replica not streaming, pg_rewind disabled", as_replica, {t_not_streaming, t_no_pg_rewind}, ACT_WAIT, NULL, NULL, false},
        {"replica not streaming whose log shows the fork: rewinds before the limit", as_replica, {t_not_streaming_short, t_follow_diverged}, ACT_REWIND, "node1", "cannot follow the timeline of node1", false},
        {"replica not streaming for a moment, nothing in its log: waits", as_replica, {t_not_streaming_short}, ACT_WAIT, NULL, NULL, false},
        {"replica's log shows the fork, streaming now: no rewind", as_replica, {t_follow_diverged}, ACT_WAIT, NULL, NULL, false},
        {"replica's log shows the fork, leader not running", as_replica, {t_not_streaming_short, t_follow_diverged, t_leader_stopped}, ACT_WAIT, NULL, NULL, false},
        {"replica's log shows the fork, pg_rewind disabled", as_replica, {t_not_streaming_short, t_follow_diverged, t_no_pg_rewind}, ACT_WAIT, NULL, NULL, false},
        {"replica, renewal failed", as_replica, {t_lease_fail, t_past_margin}, ACT_WAIT, NULL, NULL, false},
        {"replica ignores a switchover request", as_replica, {t_so_node2}, ACT_WAIT, NULL, "following", false},
        {"replica ignores a failover request to itself while a leader exists", as_replica, {t_fo_node2}, ACT_WAIT, NULL, "following", false},
    };
    RUN(rows);
}

static void test_election(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"most advanced replica", as_election, {0}, ACT_PROMOTE, NULL, "most advanced", false},
        {"a peer is more advanced", as_election, {t_p3_ahead}, ACT_WAIT, NULL, "node3 is more advanced", false},
        {"a peer on a newer timeline wins even with a lower LSN", as_election, {t_p3_newer_tl}, ACT_WAIT, NULL, "newer timeline", false},
        {"behind the cluster's timeline: never promoted on LSN alone", as_election, {t_history_tl3}, ACT_WAIT, NULL, "reached timeline 3", false},
        {"on the cluster's timeline: promoted", as_election, {t_history_tl2}, ACT_PROMOTE, NULL, "most advanced", false},
        {"equal LSN, peer has higher failover_priority", as_election, {t_p3_equal, t_p3_prio2}, ACT_WAIT, NULL, "higher failover_priority", false},
        {"equal LSN, same priority", as_election, {t_p3_equal}, ACT_PROMOTE, NULL, "most advanced", false},
        {"equal LSN, I have the higher priority", as_election, {t_p3_equal, t_prio2}, ACT_PROMOTE, NULL, NULL, false},
        {"behind a peer even with a higher priority", as_election, {t_p3_ahead, t_prio2}, ACT_WAIT, NULL, "more advanced", false},
        {"lag beyond maximum_lag_on_failover", as_election, {t_lag_over}, ACT_WAIT, NULL, "maximum_lag_on_failover", false},
        {"lag exactly maximum_lag_on_failover", as_election, {t_lag_at}, ACT_PROMOTE, NULL, NULL, false},
        {"no status key: no lag bound", as_election, {t_no_status}, ACT_PROMOTE, NULL, NULL, false},
        {"nofailover", as_election, {t_nofailover}, ACT_WAIT, NULL, "nofailover", false},
        {"failover_priority 0", as_election, {t_prio0}, ACT_WAIT, NULL, "may not be promoted", false},
        {"more advanced peer unreachable", as_election, {t_p3_ahead, t_p3_unreachable}, ACT_PROMOTE, NULL, NULL, false},
        {"more advanced peer with nofailover", as_election, {t_p3_ahead, t_p3_nofailover}, ACT_PROMOTE, NULL, NULL, false},
        {"more advanced peer with priority 0", as_election, {t_p3_ahead, t_p3_prio0}, ACT_PROMOTE, NULL, NULL, false},
        {"more advanced peer not running", as_election, {t_p3_ahead, t_p3_stopped}, ACT_PROMOTE, NULL, NULL, false},
        {"a peer still runs as primary", as_election, {t_p3_primary}, ACT_WAIT, NULL, "still running as primary", false},
        {"a peer still runs as primary behind me", as_election, {t_p3_primary, t_p3_stopped}, ACT_WAIT, NULL, "still running as primary", false},
        {"a peer runs as primary but is unreachable", as_election, {t_p1_primary_unreachable}, ACT_PROMOTE, NULL, NULL, false},
        {"lease renewal failing does not block an election", as_election, {t_lease_fail}, ACT_PROMOTE, NULL, NULL, false},
        {"stopped member, no leader", as_election, {t_pg_down}, ACT_START_REPLICA, NULL, "election", false},
        {"stopped former primary, no leader", as_election, {t_was_primary}, ACT_START_REPLICA, NULL, NULL, false},
        {"running, not answering, no leader", as_election, {t_not_accepting}, ACT_WAIT, NULL, "not answering", false},
        {"I run as primary, no leader key", as_election, {t_me_primary}, ACT_ACQUIRE, NULL, "taking the key", false},
        {"I run as primary on an old timeline, no leader key", as_election, {t_me_primary, t_history_tl3}, ACT_DEMOTE, NULL, "reached timeline 3", false},
        {"I run as primary, another peer too", as_election, {t_me_primary, t_p3_primary}, ACT_DEMOTE, NULL, "node3 is also running as primary", false},
        {"I run as primary, unreachable peer is primary", as_election, {t_me_primary, t_p1_primary_unreachable}, ACT_ACQUIRE, NULL, NULL, false},
        {"I run as primary, not answering", as_election, {t_me_primary, t_not_accepting}, ACT_WAIT, NULL, "not answering", false},
        {"I run as primary with nofailover", as_election, {t_me_primary, t_nofailover}, ACT_ACQUIRE, NULL, NULL, false},
        {"stale switchover key without candidate", as_election, {t_so_any}, ACT_PROMOTE, NULL, "most advanced", false},
    };
    RUN(rows);
}

static void test_sync_election(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"sync mode, not in the sync key", as_election, {t_sync_mode, t_sync_node3}, ACT_WAIT, NULL, "synchronous standby", false},
        {"sync mode, sync key lists nobody", as_election, {t_sync_mode}, ACT_WAIT, NULL, "synchronous", false},
        {"sync mode, no sync key", as_election, {t_sync_mode, t_sync_me, t_sync_key_gone}, ACT_WAIT, NULL, "synchronous", false},
        {"sync mode, in the sync key", as_election, {t_sync_mode, t_sync_me}, ACT_PROMOTE, NULL, "most advanced", false},
        {"sync mode, in the sync key, other case", as_election, {t_sync_mode, t_sync_me_upper}, ACT_PROMOTE, NULL, NULL, false},
        {"sync mode, async peer more advanced is ignored", as_election, {t_sync_mode, t_sync_me, t_p3_ahead}, ACT_PROMOTE, NULL, NULL, false},
        {"sync mode, sync peer more advanced", as_election, {t_sync_mode, t_sync_me, t_sync_node3, t_p3_ahead}, ACT_WAIT, NULL, "more advanced", false},
        {"sync mode, sync peer more advanced but unreachable", as_election, {t_sync_mode, t_sync_me, t_sync_node3, t_p3_ahead, t_p3_unreachable}, ACT_PROMOTE, NULL, NULL, false},
        {"sync mode, sync peer more advanced but nofailover", as_election, {t_sync_mode, t_sync_me, t_sync_node3, t_p3_ahead, t_p3_nofailover}, ACT_PROMOTE, NULL, NULL, false},
        {"sync mode, sync peer more advanced but stopped", as_election, {t_sync_mode, t_sync_me, t_sync_node3, t_p3_ahead, t_p3_stopped}, ACT_PROMOTE, NULL, NULL, false},
        {"sync mode, async peer still primary", as_election, {t_sync_mode, t_sync_me, t_p3_primary}, ACT_WAIT, NULL, "still running as primary", false},
        {"sync mode, in the sync key but nofailover", as_election, {t_sync_mode, t_sync_me, t_nofailover}, ACT_WAIT, NULL, "nofailover", false},
        {"sync mode, the key names me as leader, no standby listed", as_election, {t_sync_mode, t_sync_leader_me}, ACT_PROMOTE, NULL, "the sync key's leader", false},
        {"sync mode, the key names me as leader, its standby more advanced", as_election, {t_sync_mode, t_sync_leader_me, t_sync_node3, t_p3_ahead}, ACT_WAIT, NULL, "more advanced", false},
        {"sync mode, the key names me as leader, an async peer more advanced", as_election, {t_sync_mode, t_sync_leader_me, t_p3_ahead}, ACT_PROMOTE, NULL, NULL, false},
        {"sync mode, the key names me as leader but the key is gone", as_election, {t_sync_mode, t_sync_leader_me, t_sync_key_gone}, ACT_WAIT, NULL, "synchronous", false},
        {"sync mode, the key names me as leader, behind the cluster's timeline", as_election, {t_sync_mode, t_sync_leader_me, t_history_tl3}, ACT_WAIT, NULL, "timeline", false},
        {"sync mode, the key's leader peer more advanced", as_election, {t_sync_mode, t_sync_me, t_sync_leader_node3, t_p3_ahead}, ACT_WAIT, NULL, "more advanced", false},
        {"sync mode, the key's leader peer on a newer timeline", as_election, {t_sync_mode, t_sync_me, t_sync_leader_node3, t_p3_newer_tl}, ACT_WAIT, NULL, "newer timeline", false},
        {"sync mode, in the sync key but lagging", as_election, {t_sync_mode, t_sync_me, t_lag_over}, ACT_WAIT, NULL, "maximum_lag_on_failover", false},
        {"sync key ignored without sync mode", as_election, {t_sync_node3}, ACT_PROMOTE, NULL, NULL, false},
    };
    RUN(rows);
}

static void test_pause(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"paused leader", as_leader, {t_pause}, ACT_KEEP_LEADER, NULL, "paused", false},
        {"paused replica", as_replica, {t_pause}, ACT_WAIT, NULL, "paused", false},
        {"paused, leader key gone: nobody promotes", as_election, {t_pause}, ACT_WAIT, NULL, "paused", false},
        {"paused, leader key gone, sync standby: nobody promotes", as_election, {t_pause, t_sync_mode, t_sync_me}, ACT_WAIT, NULL, "paused", false},
        {"paused, leader key gone, failover to me: no promote", as_election, {t_pause, t_fo_node2}, ACT_WAIT, NULL, "paused", false},
        {"paused, no leader key, running primary takes it", as_election, {t_pause, t_me_primary}, ACT_ACQUIRE, NULL, "paused", false},
        {"paused leader, postgres down: no restart", as_leader, {t_pause, t_pg_down, t_down_long}, ACT_WAIT, NULL, "paused", false},
        {"paused leader in recovery: no promote", as_leader, {t_pause, t_in_recovery}, ACT_WAIT, NULL, "paused", false},
        {"paused leader, switchover request waits", as_leader, {t_pause, t_so_node2}, ACT_KEEP_LEADER, NULL, "paused", false},
        {"paused former primary: no rewind", as_replica, {t_pause, t_was_primary}, ACT_WAIT, NULL, "paused", false},
        {"paused replica following the wrong member", as_replica, {t_pause, t_follow_node3}, ACT_WAIT, NULL, "paused", false},
        {"paused replica not streaming: no rewind", as_replica, {t_pause, t_not_streaming}, ACT_WAIT, NULL, "paused", false},
        {"paused leader, renewal failed, time left", as_leader, {t_pause, t_lease_fail}, ACT_KEEP_LEADER, NULL, "paused", false},
        /* the lease rules hold in pause too */
        {"paused leader, renewal failed past the margin", as_leader, {t_pause, t_lease_fail, t_past_margin}, ACT_DEMOTE, NULL, "lease", false},
        {"paused, another member holds the key, I run as primary", as_replica, {t_pause, t_me_primary}, ACT_DEMOTE, "node1", "node1 holds the leader key", false},
        {"paused, another member holds the key, I run but do not answer", as_replica, {t_pause, t_me_primary, t_not_accepting}, ACT_WAIT, NULL, "paused", false},
    };
    RUN(rows);
}

static void test_switchover(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"switchover to a healthy replica", as_leader, {t_so_node2}, ACT_RELEASE, "node2", "switchover to node2", false},
        {"switchover to the less advanced healthy replica", as_leader, {t_so_node3}, ACT_RELEASE, "node3", "switchover to node3", false},
        {"failover request (no leader named) to a healthy replica", as_leader, {t_fo_node3}, ACT_RELEASE, "node3", NULL, false},
        {"switchover to a stopped replica", as_leader, {t_so_node2, t_m2_stopped}, ACT_KEEP_LEADER, NULL, "not a healthy eligible replica", true},
        {"switchover to a starting replica", as_leader, {t_so_node2, t_m2_starting}, ACT_KEEP_LEADER, NULL, "refused", true},
        {"switchover to a nofailover replica", as_leader, {t_so_node2, t_m2_nofailover}, ACT_KEEP_LEADER, NULL, "refused", true},
        {"switchover to a failover_priority 0 replica", as_leader, {t_so_node2, t_m2_prio0}, ACT_KEEP_LEADER, NULL, "refused", true},
        {"switchover to a member that says it is primary", as_leader, {t_so_node2, t_m2_primary}, ACT_KEEP_LEADER, NULL, "refused", true},
        {"switchover to an unknown member", as_leader, {t_so_node9}, ACT_KEEP_LEADER, NULL, "not a member", true},
        {"switchover to a replica that does not stream", as_leader, {t_so_node2, t_m2_not_streaming}, ACT_KEEP_LEADER, NULL, "not streaming", true},
        {"switchover, no candidate: the streaming one", as_leader, {t_so_any, t_m2_not_streaming}, ACT_RELEASE, "node3", NULL, false},
        {"switchover to myself", as_leader, {t_so_to_me}, ACT_KEEP_LEADER, NULL, "does not apply", true},
        {"switchover for another leader", as_leader, {t_so_other_leader}, ACT_KEEP_LEADER, NULL, "does not apply", true},
        {"switchover, no candidate: most advanced healthy replica", as_leader, {t_so_any}, ACT_RELEASE, "node2", NULL, false},
        {"switchover, no candidate: node3 more advanced", as_leader, {t_so_any, t_m3_ahead}, ACT_RELEASE, "node3", NULL, false},
        {"switchover, no candidate: most advanced is nofailover", as_leader, {t_so_any, t_m3_ahead, t_m3_nofailover}, ACT_RELEASE, "node2", NULL, false},
        {"switchover, no candidate: most advanced is stopped", as_leader, {t_so_any, t_m3_ahead, t_m3_stopped}, ACT_RELEASE, "node2", NULL, false},
        {"switchover, no candidate, no healthy replica", as_leader, {t_so_any, t_m2_stopped, t_m3_stopped}, ACT_KEEP_LEADER, NULL, "no healthy replica", true},
        {"sync mode, candidate not a sync standby", as_leader, {t_sync_mode, t_sync_node3, t_so_node2}, ACT_KEEP_LEADER, NULL, "not a synchronous standby", true},
        {"sync mode, candidate is a sync standby", as_leader, {t_sync_mode, t_sync_me, t_so_node2}, ACT_RELEASE, "node2", NULL, false},
        {"sync mode, no candidate: the sync standby, not the more advanced async one", as_leader, {t_sync_mode, t_sync_me, t_so_any, t_m3_ahead}, ACT_RELEASE, "node2", NULL, false},
        {"sync mode, no candidate, no sync standby", as_leader, {t_sync_mode, t_so_any}, ACT_KEEP_LEADER, NULL, "no healthy replica", true},
        {"switchover while promoting: promote first", as_leader, {t_so_node2, t_in_recovery}, ACT_PROMOTE, NULL, NULL, false},
    };
    RUN(rows);
}

static void test_manual_failover(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"failover to me, no leader", as_election, {t_fo_node2}, ACT_PROMOTE, NULL, "failover to me", false},
        {"switchover to me after the leader released", as_election, {t_so_node2}, ACT_PROMOTE, NULL, "failover to me", false},
        {"switchover to me, old leader's last WAL not received yet", as_election, {t_so_node2, t_old_leader_ahead}, ACT_WAIT, NULL, "waiting to receive everything node1 wrote", false},
        {"switchover to me, waited long enough: promote anyway", as_election, {t_so_node2, t_old_leader_ahead, t_leaderless_long}, ACT_PROMOTE, NULL, "failover to me", false},
        {"failover to me, equal LSN peer with a higher priority", as_election, {t_fo_node2, t_p3_equal, t_p3_prio2}, ACT_PROMOTE, NULL, "failover to me", false},
        {"failover to me, sync mode, in the sync key", as_election, {t_fo_node2, t_sync_mode, t_sync_me}, ACT_PROMOTE, NULL, NULL, false},
        {"failover to me, sync mode, not in the sync key", as_election, {t_fo_node2, t_sync_mode, t_sync_node3}, ACT_WAIT, NULL, "synchronous", true},
        /* a named candidate obeys the promotion rules; refusing clears the key so the
         * others, who wait for it, hold a normal election */
        {"failover to me with nofailover", as_election, {t_fo_node2, t_nofailover}, ACT_WAIT, NULL, "nofailover", true},
        {"failover to me with failover_priority 0", as_election, {t_fo_node2, t_prio0}, ACT_WAIT, NULL, NULL, true},
        {"failover to me beyond maximum_lag_on_failover", as_election, {t_fo_node2, t_lag_over}, ACT_WAIT, NULL, "maximum_lag_on_failover", true},
        {"failover to me while a peer still runs as primary", as_election, {t_fo_node2, t_p3_primary}, ACT_WAIT, NULL, "still running as primary", false},
        {"failover to me while a peer is more advanced", as_election, {t_fo_node2, t_p3_ahead}, ACT_WAIT, NULL, "more advanced", true},
        {"failover to me, more advanced peer unreachable", as_election, {t_fo_node2, t_p3_ahead, t_p3_unreachable}, ACT_PROMOTE, NULL, NULL, false},
        {"failover to a reachable member", as_election, {t_fo_node3}, ACT_WAIT, NULL, "waiting for it", false},
        {"failover to a reachable member, I have nofailover", as_election, {t_fo_node3, t_nofailover}, ACT_WAIT, NULL, "waiting for it", false},
        {"failover to an unreachable member: normal election", as_election, {t_fo_node3, t_p3_unreachable}, ACT_PROMOTE, NULL, "most advanced", false},
        {"failover to a stopped member: normal election", as_election, {t_fo_node3, t_p3_stopped}, ACT_PROMOTE, NULL, "most advanced", false},
        {"failover to an unknown member: normal election", as_election, {t_fo_node9}, ACT_PROMOTE, NULL, "most advanced", false},
        {"failover to an unreachable member, another peer ahead", as_election, {t_fo_node9, t_p3_ahead}, ACT_WAIT, NULL, "more advanced", false},
        {"failover to an unreachable member, I have nofailover", as_election, {t_fo_node9, t_nofailover}, ACT_WAIT, NULL, "nofailover", false},
    };
    RUN(rows);
}

static void test_standby_cluster(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"standby leader following the source", as_leader, {t_standby_leader}, ACT_KEEP_LEADER, NULL, "standby leader, following 10.9.0.1:5432", false},
        {"standby leader, source not reachable (identity unknown)", as_leader, {t_standby_leader, t_source_unknown}, ACT_KEEP_LEADER, NULL, "standby leader", false},
        {"standby leader not pointed at the source", as_leader, {t_standby_leader, t_not_following_source}, ACT_FOLLOW, "@source", "replicating from 10.9.0.1:5432", false},
        {"standby leader not pointed at a source that does not answer", as_leader, {t_standby_leader, t_not_following_source, t_source_unknown}, ACT_WAIT, NULL, "waiting to verify the system identifier of 10.9.0.1:5432", false},
        {"standby leader not streaming from a source on a newer timeline, diverged", as_leader, {t_standby_leader, t_not_streaming, t_source_tl3, t_diverged_flag}, ACT_REWIND, "@source", "timelines diverged", false},
        {"standby leader diverged, the source's history file already fetched", as_leader, {t_standby_leader, t_not_streaming, t_source_tl3, t_diverged_flag, t_history_fetched}, ACT_REWIND, "@source", "timelines diverged", false},
        {"standby leader not streaming, newer timeline, postgres says nothing of a fork: no rewind", as_leader, {t_standby_leader, t_not_streaming, t_source_tl3}, ACT_KEEP_LEADER, NULL, NULL, false},
        {"standby leader diverged, said so after a few seconds: no wait for the limit", as_leader, {t_standby_leader, t_not_streaming_short, t_source_tl3, t_diverged_flag}, ACT_REWIND, "@source", "timelines diverged", false},
        {"standby leader diverged once, streaming now: no rewind", as_leader, {t_standby_leader, t_source_tl3, t_diverged_flag}, ACT_KEEP_LEADER, NULL, NULL, false},
        {"standby leader runs but cannot recover past the fork", as_leader, {t_standby_leader, t_not_accepting, t_diverged_running}, ACT_REWIND, "@source", "cannot recover past the fork", false},
        {"standby leader not streaming from a source on its own timeline: no rewind", as_leader, {t_standby_leader, t_not_streaming}, ACT_KEEP_LEADER, NULL, NULL, false},
        {"standby leader: the last rewind attempt never ran, retry later", as_leader, {t_standby_leader, t_was_primary, t_start_failed}, ACT_WAIT, NULL, "retrying in", false},
        {"standby leader, postgres down", as_leader, {t_standby_leader, t_pg_down}, ACT_START_REPLICA, "@source", "following 10.9.0.1", false},
        {"standby leader, postgres down too long", as_leader, {t_standby_leader, t_pg_down, t_down_long}, ACT_GIVE_UP_LEADER, NULL, NULL, false},
        {"standby leader, start just failed", as_leader, {t_standby_leader, t_pg_down, t_start_failed}, ACT_WAIT, NULL, "retrying", false},
        {"standby leader was an uncleanly stopped primary", as_leader, {t_standby_leader, t_was_primary}, ACT_REWIND, "@source", "pg_rewind from 10.9.0.1:5432", false},
        {"standby leader went past the fork of the source", as_leader, {t_standby_leader, t_start_diverged, t_start_failed_long_ago}, ACT_REWIND, "@source", "went past the fork", false},
        {"standby leader went past the fork a moment ago: retry shortly", as_leader, {t_standby_leader, t_start_diverged}, ACT_WAIT, NULL, "retrying in", false},
        {"standby leader, rewind failed", as_leader, {t_standby_leader, t_was_primary, t_rewind_failed}, ACT_WAIT, NULL, "pg_rewind from 10.9.0.1:5432 failed", false},
        /* a primary site turned into a standby cluster: stops cleanly and follows */
        {"leader running as primary, standby_cluster set", as_leader, {t_standby}, ACT_STANDBY_DEMOTE, "@source", "stopping cleanly", false},
        {"leader running as primary, source of another cluster", as_leader, {t_standby, t_source_other_cluster}, ACT_KEEP_LEADER, NULL, "refusing to follow it", false},
        {"standby leader, source of another cluster", as_leader, {t_standby_leader, t_source_other_cluster}, ACT_WAIT, NULL, "system identifier 7300000000000000001", false},
        {"standby leader stopped, source of another cluster", as_leader, {t_standby_leader, t_source_other_cluster, t_pg_down}, ACT_WAIT, NULL, "refusing", false},
        {"standby leader, renewal failed: keeps replicating", as_leader, {t_standby_leader, t_lease_fail, t_past_margin}, ACT_WAIT, NULL, "cannot renew", false},
        {"standby leader, switchover to node2", as_leader, {t_standby_leader, t_so_node2}, ACT_RELEASE, "node2", "switchover to node2", false},
        {"standby leader ignores synchronous mode", as_leader, {t_standby_leader, t_sync_mode}, ACT_KEEP_LEADER, NULL, "standby leader", false},
        /* removing standby_cluster is the site promotion */
        {"standby_cluster removed: the standby leader promotes", as_leader, {t_in_recovery}, ACT_PROMOTE, NULL, "in recovery", false},
        {"replica of a standby leader", as_replica, {t_standby}, ACT_WAIT, NULL, "following leader node1", false},
        {"stopped replica of a standby leader", as_replica, {t_standby, t_pg_down}, ACT_START_REPLICA, "node1", NULL, false},
        {"election in a standby cluster: no promotion", as_election, {t_standby}, ACT_ACQUIRE, NULL, "taking the key as standby leader", false},
        {"election in a standby cluster ignores synchronous mode", as_election, {t_standby, t_sync_mode}, ACT_ACQUIRE, NULL, "standby leader", false},
        {"election in a standby cluster, a peer is ahead", as_election, {t_standby, t_p3_ahead}, ACT_WAIT, NULL, "more advanced", false},
        {"switchover to me in a standby cluster", as_election, {t_standby, t_fo_node2}, ACT_ACQUIRE, NULL, "switchover to me requested", false},
        {"the other site not read yet: no promotion", as_election, {t_site_unchecked}, ACT_WAIT, NULL, "before the other site was read", false},
        {"a config key that does not parse: no promotion", as_election, {t_config_invalid}, ACT_WAIT, NULL, "the config key does not parse", false},
        {"a config key that does not parse: a running primary keeps its key", as_leader, {t_config_invalid}, ACT_KEEP_LEADER, NULL, NULL, false},
        {"the other site not read yet: no restart as primary", as_leader, {t_pg_down, t_site_unchecked}, ACT_WAIT, NULL, "start as primary", false},
        {"the other site not read yet: a running primary keeps its key", as_leader, {t_site_unchecked}, ACT_KEEP_LEADER, NULL, NULL, false},
        {"the other site not read yet: a standby leader still follows", as_leader, {t_standby_leader, t_not_following_source, t_site_unchecked}, ACT_FOLLOW, "@source", NULL, false},
        {"uninitialized standby cluster copies its source", as_uninit, {t_standby}, ACT_BOOTSTRAP, "@source", "copy 10.9.0.1:5432", false},
    };
    RUN(rows);
}

static void test_site_witness(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"confirmed primary site: the leader keeps its key", as_leader, {t_site_held}, ACT_KEEP_LEADER, NULL, NULL, false},
        {"confirmation about to run out: stop writes", as_leader, {t_site_expiring}, ACT_DEMOTE, NULL, "neither the witness nor the other site", false},
        {"not confirmed: stop writes", as_leader, {t_site_not_held}, ACT_DEMOTE, NULL, "not confirmed", false},
        {"not confirmed, etcd down too: stop writes", as_leader, {t_site_not_held, t_dcs_down}, ACT_DEMOTE, NULL, "neither the witness", false},
        {"not tried yet: a running primary is left alone", as_leader, {t_site_unknown}, ACT_KEEP_LEADER, NULL, NULL, false},
        {"not confirmed: no promotion", as_election, {t_site_not_held}, ACT_WAIT, NULL, "confirms this site", false},
        {"not tried yet: no promotion", as_election, {t_site_unknown}, ACT_WAIT, NULL, "not known yet", false},
        {"confirmed: promotion", as_election, {t_site_held}, ACT_PROMOTE, NULL, NULL, false},
        {"about to run out: no promotion", as_election, {t_site_expiring}, ACT_WAIT, NULL, "confirms this site", false},
        {"not confirmed: no restart as primary", as_leader, {t_pg_down, t_site_not_held}, ACT_WAIT, NULL, "start as primary", false},
        {"not confirmed: no bootstrap", as_uninit, {t_site_not_held}, ACT_WAIT, NULL, "bootstrap", false},
        {"not confirmed: a replica still follows", as_replica, {t_site_not_held}, ACT_WAIT, NULL, NULL, false},
    };
    RUN(rows);
}

static void test_action_names(void **state)
{
    (void)state;
    static const struct {
        Action a;
        const char *name;
    } names[] = {
        {ACT_WAIT, "wait"},
        {ACT_BOOTSTRAP, "bootstrap"},
        {ACT_CLONE, "clone"},
        {ACT_START_REPLICA, "start as replica"},
        {ACT_START_PRIMARY, "start as primary"},
        {ACT_KEEP_LEADER, "keep leader"},
        {ACT_ACQUIRE, "acquire leader key"},
        {ACT_PROMOTE, "promote"},
        {ACT_DEMOTE, "demote"},
        {ACT_FOLLOW, "follow"},
        {ACT_REWIND, "rewind"},
        {ACT_REINIT, "reinitialize"},
        {ACT_RELEASE, "release leader key"},
        {ACT_GIVE_UP_LEADER, "give up leader key"},
        {ACT_STANDBY_DEMOTE, "demote to standby leader"},
    };
    assert_int_equal(ARRAY_LEN(names), ACT__COUNT);
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        assert_int_equal(names[i].a, (int)i);   /* the table covers every action once */
        assert_string_equal(ha_action_name(names[i].a), names[i].name);
    }
    assert_string_equal(ha_action_name(ACT__COUNT), "unknown");
    assert_string_equal(ha_action_name((Action)(ACT__COUNT + 7)), "unknown");
    assert_string_equal(ha_action_name((Action)-1), "unknown");
}

/* ---- sweep: random situations, safety invariants ---- */

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static const char *const node_names[] = {"node1", "node2", "node3"};

static Tags random_tags(void)
{
    Tags t = default_tags();
    t.nofailover = rnd(4) == 0;
    t.failover_priority = (int)rnd(3);
    return t;
}

static bool tags_ok(const Tags *t)
{
    return !t->nofailover && t->failover_priority > 0;
}

static void randomize(Fx *f)
{
    fx_init(f);
    Cluster *c = &f->c;
    Observation *o = &f->o;
    int me = (int)rnd(3);
    o->name = node_names[me];

    o->fence_ok = rnd(16) != 0;
    c->initialized = rnd(8) != 0;
    if (!c->initialized || rnd(8) == 0)
        c->sysid[0] = '\0';
    switch (rnd(4)) {
    case 0: c->leader[0] = '\0'; break;
    case 1: str_copy(c->leader, sizeof(c->leader), o->name); break;
    default: str_copy(c->leader, sizeof(c->leader), node_names[(me + 1 + (int)rnd(2)) % 3]); break;
    }
    for (int i = 0; i < c->n_members; i++) {
        Member *m = &c->members[i];
        str_copy(m->state, sizeof(m->state), rnd(4) == 0 ? "stopped" : "running");
        str_copy(m->role, sizeof(m->role), rnd(3) == 0 ? "primary" : "replica");
        m->xlog_location = L_NODE3 + rnd(0x300);
        m->tags = random_tags();
    }
    c->n_members = (int)rnd(4);
    c->config.pause = rnd(4) == 0;
    c->config.synchronous_mode = rnd(3) == 0;
    c->config.use_pg_rewind = rnd(4) != 0;
    c->config.primary_start_timeout = rnd(5) == 0 ? 0 : 300;
    if (rnd(4) == 0)
        t_standby(f);
    c->sync.present = rnd(4) != 0;
    str_copy(c->sync.leader, NAME_MAX_LEN, rnd(4) == 0 ? "" : node_names[rnd(3)]);
    for (int i = 0; i < 3; i++)
        if (rnd(2))
            sync_add(f, node_names[i]);
    c->status_optime = rnd(3) == 0 ? 0 : L_NODE3 + rnd(0x300) + (rnd(4) == 0 ? MAX_LAG : 0);
    if (rnd(3) == 0) {
        static const char *const fo[] = {"", "node1", "node2", "node3", "node9"};
        set_failover(f, fo[rnd(5)], fo[rnd(5)]);
    }

    o->tags = random_tags();
    o->action_running = rnd(8) == 0;
    o->data_dir_valid = rnd(8) != 0;
    o->pg_running = rnd(4) != 0;
    o->pg_accepting = o->pg_running && rnd(5) != 0;
    o->pg_in_recovery = o->pg_running && rnd(2);
    o->was_primary = !o->pg_running && rnd(2);
    o->my_lsn = L_NODE3 + rnd(0x300);
    static const char *const sysids[] = {SYSID, SYSID, SYSID, "7300000000000000001", ""};
    o->my_sysid = rnd(8) == 0 ? NULL : sysids[rnd(5)];
    static const int64_t downs[] = {0, 5000, 300000, 300001};
    o->pg_down_ms = o->pg_running ? 0 : downs[rnd(4)];
    static const char *const follows[] = {"", "node1", "node2", "node3"};
    o->following = follows[rnd(4)];
    o->rewind_failed = rnd(4) == 0;
    o->start_failed = rnd(4) == 0;
    o->not_streaming_ms = rnd(3) == 0 ? 20000 : rnd(2) == 0 ? 6000 : 0;
    o->follow_diverged = rnd(4) == 0;
    o->reinit_on_rewind_failure = rnd(2);
    o->following_remote = rnd(2);
    o->site_unchecked = rnd(6) == 0;
    o->site_hold_needed = rnd(4) == 0;
    o->site_hold_known = rnd(3) != 0;
    static const int64_t holds[] = {NOW + TTL_MS, NOW + MARGIN + 1, NOW + MARGIN, NOW + MARGIN - 1, 0};
    o->site_hold_until_ms = holds[rnd(5)];
    o->site_margin_ms = MARGIN;
    c->config_invalid = rnd(8) == 0;
    o->remote_sysid = sysids[rnd(5)];

    o->dcs_ok = rnd(6) != 0;
    o->lease_ok = rnd(3) != 0;
    static const int64_t deadlines[] = {NOW + TTL_MS, NOW + MARGIN + 1, NOW + MARGIN, NOW + MARGIN - 1, NOW - 1, 0};
    o->lease_deadline_ms = deadlines[rnd(6)];
    if (!o->dcs_ok && rnd(2))
        o->cluster = NULL;   /* must not be looked at */

    /* peers: the two other members, whatever their state */
    int np = 0;
    for (int i = 0; i < 3; i++) {
        if (i == me)
            continue;
        PeerPos *p = &f->peers[np++];
        set_peer(p, node_names[i], rnd(4) != 0, false, L_NODE3 + rnd(0x300));
        p->pg_running = p->reachable && rnd(5) != 0;
        p->is_primary = p->pg_running && rnd(4) == 0;
        p->tags = random_tags();
    }
    o->peers = f->peers;
    o->n_peers = rnd(5) == 0 ? 0 : np;
}

static void describe(const Fx *f, const Decision *d, char *buf, size_t sz)
{
    const Observation *o = &f->o;
    const Cluster *c = &f->c;
    char peers[256] = "";
    size_t off = 0;
    for (int i = 0; i < o->n_peers && off < sizeof(peers); i++) {
        const PeerPos *p = &o->peers[i];
        int n = snprintf(peers + off, sizeof(peers) - off, " %s(reach=%d run=%d prim=%d lsn=%" PRIx64 " nof=%d prio=%d)",
                         p->name, p->reachable, p->pg_running, p->is_primary, p->lsn, p->tags.nofailover,
                         p->tags.failover_priority);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    str_fmt(buf, sz,
            "me=%s dcs=%d lease=%d deadline=%+" PRId64 " busy=%d init=%d sysid=%s/%s leader=%s pause=%d sync=%d(%d) "
            "data=%d run=%d acc=%d rec=%d was_prim=%d nof=%d prio=%d lsn=%" PRIx64 " optime=%" PRIx64
            " failover=%d(%s->%s) peers:%s\n  -> %s target=%s clear=%d: %s",
            o->name, o->dcs_ok, o->lease_ok, o->lease_deadline_ms - NOW, o->action_running, c->initialized,
            o->my_sysid ? o->my_sysid : "(null)", c->sysid, c->leader, c->config.pause, c->config.synchronous_mode,
            c->sync.present, o->data_dir_valid, o->pg_running, o->pg_accepting, o->pg_in_recovery, o->was_primary,
            o->tags.nofailover, o->tags.failover_priority, o->my_lsn, c->status_optime, c->failover.present,
            c->failover.leader, c->failover.candidate, peers, ha_action_name(d->action), d->target,
            d->clear_failover, d->reason);
}

static bool is_node_name(const char *s)
{
    for (size_t i = 0; i < ARRAY_LEN(node_names); i++)
        if (strcmp(s, node_names[i]) == 0)
            return true;
    return false;
}

/* Returns the violated rule, or NULL. */
static const char *check_invariants(const Fx *f, const Decision *d)
{
    const Observation *o = &f->o;
    const Cluster *c = o->dcs_ok ? &f->c : NULL;
    Action a = d->action;
    bool maybe_primary = o->pg_running && !(o->pg_accepting && o->pg_in_recovery);
    bool surely_primary = o->pg_running && o->pg_accepting && !o->pg_in_recovery;
    bool past_margin = o->now_ms >= o->lease_deadline_ms - o->demote_margin_ms;

    if ((int)a < 0 || a >= ACT__COUNT)
        return "action out of range";
    if (!d->reason[0] || !memchr(d->reason, '\0', sizeof(d->reason)))
        return "reason empty or unterminated";
    if (!memchr(d->target, '\0', sizeof(d->target)))
        return "target unterminated";
    if (d->target[0] && (!is_node_name(d->target) || strcmp(d->target, o->name) == 0))
        return "target is not another member";

    if (!o->fence_ok) {
        if (maybe_primary && a != ACT_DEMOTE)
            return "no fencing process: a primary keeps running";
        if (!maybe_primary && a != ACT_WAIT)
            return "no fencing process: a non-primary acted";
        return NULL;
    }

    if (!c) {
        if (a != ACT_WAIT && a != ACT_DEMOTE)
            return "etcd unreachable: only wait or demote";
        if (maybe_primary && (past_margin || o->lease_deadline_ms <= 0) && a != ACT_DEMOTE)
            return "etcd unreachable: primary past the demote margin keeps running";
        if (!maybe_primary && a != ACT_WAIT)
            return "etcd unreachable: a non-primary was stopped";
        return NULL;
    }

    bool i_lead = c->leader[0] && strcmp(c->leader, o->name) == 0;
    bool other_leads = c->leader[0] && !i_lead;
    bool sysid_mismatch = c->initialized && c->sysid[0] && o->my_sysid && o->my_sysid[0] &&
                          strcmp(c->sysid, o->my_sysid) != 0;

    if (d->clear_failover && !c->failover.present)
        return "clears a failover key that does not exist";
    if (i_lead && maybe_primary && !o->lease_ok && past_margin && a != ACT_DEMOTE)
        return "leader that cannot renew keeps a primary past the demote margin";
    if (i_lead && !o->lease_ok &&
        (a == ACT_START_PRIMARY || a == ACT_PROMOTE || a == ACT_RELEASE || a == ACT_ACQUIRE || a == ACT_BOOTSTRAP))
        return "leader without a renewed lease starts writing";
    if (other_leads && (a == ACT_BOOTSTRAP || a == ACT_START_PRIMARY || a == ACT_KEEP_LEADER || a == ACT_ACQUIRE ||
                        a == ACT_PROMOTE || a == ACT_RELEASE || a == ACT_GIVE_UP_LEADER))
        return "acts as leader while another member holds the key";
    if (other_leads && surely_primary && !o->action_running && o->data_dir_valid && !sysid_mismatch &&
        a != ACT_DEMOTE)
        return "second primary while another member holds the key";
    if (o->rewind_failed && !o->pg_running && !i_lead && a == ACT_START_REPLICA)
        return "starts a data directory whose pg_rewind failed";
    if (sysid_mismatch && a != ACT_WAIT && a != ACT_DEMOTE)
        return "touches a data directory of another cluster";
    bool standby = c->config.standby.present;
    bool source_other = standby && o->remote_sysid && o->remote_sysid[0] && c->sysid[0] &&
                        strcmp(o->remote_sysid, c->sysid) != 0;
    if (d->remote) {
        /* only a standby cluster's leader (or its bootstrap) follows the source */
        if (!standby)
            return "follows a source outside a standby cluster";
        if (a == ACT_BOOTSTRAP ? c->initialized || c->leader[0] : !i_lead || !o->lease_ok)
            return "follows the source without holding the leader key";
        if (a != ACT_BOOTSTRAP && a != ACT_FOLLOW && a != ACT_REWIND && a != ACT_START_REPLICA &&
            a != ACT_STANDBY_DEMOTE)
            return "remote target on an action that has none";
        if (source_other)
            return "follows a source of another cluster";
        if (a == ACT_FOLLOW && str_empty(o->remote_sysid))
            return "re-points a running standby at a source it could not identify";
    }
    if (standby && (a == ACT_PROMOTE || a == ACT_START_PRIMARY))
        return "a standby cluster writes without a site promotion";
    if (o->site_unchecked && (a == ACT_PROMOTE || a == ACT_START_PRIMARY || a == ACT_ACQUIRE || a == ACT_BOOTSTRAP))
        return "takes the primary role before the other site was read";
    bool unconfirmed = o->site_hold_needed && (!o->site_hold_known || o->now_ms >= o->site_hold_until_ms - o->site_margin_ms);
    if (unconfirmed && (a == ACT_PROMOTE || a == ACT_START_PRIMARY || a == ACT_ACQUIRE || a == ACT_BOOTSTRAP))
        return "takes the primary role without the witness's or the other site's confirmation";
    if (unconfirmed && o->site_hold_known && maybe_primary && o->pg_running && a != ACT_DEMOTE)
        return "keeps writing after the site's confirmation ran out";
    if (c->config_invalid && (a == ACT_PROMOTE || a == ACT_START_PRIMARY || a == ACT_ACQUIRE || a == ACT_BOOTSTRAP))
        return "takes the primary role on a config key that does not parse";
    if (a == ACT_STANDBY_DEMOTE && (!standby || !i_lead || !surely_primary))
        return "demotes to standby leader outside that situation";
    if (!d->remote && (a == ACT_CLONE || a == ACT_REWIND || a == ACT_REINIT || a == ACT_FOLLOW ||
         (a == ACT_START_REPLICA && d->target[0])) && strcmp(d->target, c->leader) != 0)
        return "replicates from someone other than the leader";
    if (!d->remote && (a == ACT_CLONE || a == ACT_REWIND || a == ACT_REINIT || a == ACT_FOLLOW))
        if (!other_leads)
            return "replica action without another leader";
    if (c->config.pause && (a == ACT_PROMOTE || a == ACT_CLONE || a == ACT_REWIND || a == ACT_REINIT ||
                            a == ACT_START_PRIMARY || a == ACT_START_REPLICA || a == ACT_FOLLOW || a == ACT_RELEASE))
        return "automatic action while paused";
    if (a == ACT_RELEASE) {
        const Member *m = cluster_member(c, d->target);
        if (!i_lead || !o->lease_ok || !m || strcmp(m->state, "running") != 0 || strcmp(m->role, "replica") != 0 ||
            !tags_ok(&m->tags) || (c->config.synchronous_mode && !standby && !sync_has(&c->sync, m->name)))
            return "releases to an unfit candidate";
    }
    if (a == ACT_ACQUIRE && standby && !surely_primary) {
        /* a standby cluster's election: the winner takes the key in recovery */
        if (c->leader[0] || !o->pg_running || !o->pg_accepting || !o->pg_in_recovery || o->action_running ||
            !tags_ok(&o->tags))
            return "takes the standby leader key without being a healthy eligible standby";
    } else if (a == ACT_ACQUIRE) {
        if (c->leader[0] || !surely_primary || o->action_running)
            return "acquires without being the running primary of a leaderless cluster";
        if (!c->config.pause)
            for (int i = 0; i < o->n_peers; i++)
                if (o->peers[i].reachable && o->peers[i].is_primary)
                    return "acquires while a reachable peer is primary";
    }
    if (a == ACT_PROMOTE && i_lead && (!o->lease_ok || !o->pg_in_recovery || c->config.pause))
        return "leader promotes without a lease or outside recovery";
    if (a == ACT_PROMOTE && i_lead)
        for (int i = 0; i < o->n_peers; i++)
            if (o->peers[i].reachable && o->peers[i].is_primary)
                return "leader promotes while a reachable peer is primary";
    if (a == ACT_PROMOTE && !i_lead) {
        if (c->leader[0])
            return "promotes while a leader key exists";
        if (!tags_ok(&o->tags))
            return "promotes with nofailover or failover_priority 0";
        if (c->config.synchronous_mode && !sync_has(&c->sync, o->name) && !sync_names_leader(&c->sync, o->name))
            return "promotes in synchronous mode without being in the sync key or its leader";
        if (c->status_optime > o->my_lsn && c->status_optime - o->my_lsn > MAX_LAG)
            return "promotes beyond maximum_lag_on_failover";
        if (!o->pg_running || !o->pg_accepting || !o->pg_in_recovery || o->action_running || sysid_mismatch)
            return "promotes without a healthy standby";
        for (int i = 0; i < o->n_peers; i++) {
            const PeerPos *p = &o->peers[i];
            if (!p->reachable)
                continue;
            if (p->is_primary)
                return "promotes while a reachable peer is primary";
            if (p->pg_running && tags_ok(&p->tags) && p->lsn > o->my_lsn &&
                (!c->config.synchronous_mode || sync_has(&c->sync, p->name) || sync_names_leader(&c->sync, p->name)))
                return "promotes while an eligible peer is more advanced";
        }
    }
    return NULL;
}

/* The invariants fail on the bad decisions they are there to catch. */
static void test_invariants_catch(void **state)
{
    (void)state;
    static const struct {
        Tweak base, tweak;
        Action bad;
        const char *want;
    } cases[] = {
        {as_election, t_site_not_held, ACT_PROMOTE, "confirmation"},
        {as_leader, t_site_expiring, ACT_KEEP_LEADER, "confirmation ran out"},
        {as_election, t_site_unchecked, ACT_PROMOTE, "other site was read"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        Fx f;
        fx_init(&f);
        cases[i].base(&f);
        cases[i].tweak(&f);
        Decision d;
        memset(&d, 0, sizeof(d));
        d.action = cases[i].bad;
        str_copy(d.reason, sizeof(d.reason), "planted");
        const char *bad = check_invariants(&f, &d);
        cluster_free(&f.c);
        if (!bad || !strstr(bad, cases[i].want))
            fail_msg("case %zu: the invariants let %s through (%s)", i, ha_action_name(cases[i].bad), bad ? bad : "none");
    }
}

static void test_sweep_invariants(void **state)
{
    (void)state;
    rng = 0x9e3779b97f4a7c15ull;
    int counts[ACT__COUNT] = {0};
    for (int iter = 0; iter < 100000; iter++) {
        Fx f;
        randomize(&f);
        Decision d;
        memset(&d, 0x5a, sizeof(d));
        ha_decide(&f.o, &d);
        const char *bad = check_invariants(&f, &d);
        if (bad) {
            char desc[1024];
            describe(&f, &d, desc, sizeof(desc));
            cluster_free(&f.c);
            fail_msg("iteration %d: %s\n  %s", iter, bad, desc);
        }
        /* pure: the same observation gives the same decision */
        Decision again;
        ha_decide(&f.o, &again);
        if (d.action != again.action || strcmp(d.target, again.target) != 0 ||
            strcmp(d.reason, again.reason) != 0 || d.clear_failover != again.clear_failover) {
            cluster_free(&f.c);
            fail_msg("iteration %d: two calls disagree", iter);
        }
        if ((int)d.action >= 0 && d.action < ACT__COUNT)
            counts[d.action]++;
        cluster_free(&f.c);
    }
    /* the sweep reaches every action, so the invariants are not vacuous */
    for (int a = 0; a < ACT__COUNT; a++)
        if (counts[a] == 0)
            fail_msg("sweep never produced %s", ha_action_name((Action)a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etcd_unreachable),
        cmocka_unit_test(test_fence_dead),
        cmocka_unit_test(test_action_in_progress),
        cmocka_unit_test(test_not_initialized),
        cmocka_unit_test(test_sysid_mismatch),
        cmocka_unit_test(test_no_data_directory),
        cmocka_unit_test(test_start_retry),
        cmocka_unit_test(test_leader),
        cmocka_unit_test(test_follower),
        cmocka_unit_test(test_election),
        cmocka_unit_test(test_sync_election),
        cmocka_unit_test(test_pause),
        cmocka_unit_test(test_switchover),
        cmocka_unit_test(test_manual_failover),
        cmocka_unit_test(test_standby_cluster),
        cmocka_unit_test(test_site_witness),
        cmocka_unit_test(test_invariants_catch),
        cmocka_unit_test(test_action_names),
        cmocka_unit_test(test_sweep_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
