/* The write lead of an active-active group, the agent's side (see aa_leader.h). */
#include "common/common.h"
#include "ha/aa_leader.h"
#include "ha/tcp_peers.h"
#include "common/log.h"
#include "common/lsn.h"
#include "common/timeutil.h"
#include "dcs/aa_group.h"
#include "dcs/cluster.h"
#include "dcs/dcs.h"
#include "pg/pg.h"

#include <errno.h>
#include <signal.h>

#define LOOK_EVERY_MS 100           /* how often postgres is asked and etcd waited on */
#define REREAD_MS 1000              /* the group read again at least this often */
#define QUERY_TIMEOUT_MS 1000
#define INFLIGHT_WAIT_MS 1000       /* a handover waits this long for commits under way */
#define DRAIN_QUIET_MS 20           /* ... and for nothing left to drain for this long, within its drain */
#define DRAIN_MAX_MS 60000          /* (the thread does nothing else meanwhile) */

/* The thread's state (its own; nothing else reads it). */
typedef struct Lead {
    AaLeader *l;
    const AaConfig *aa;
    Dcs *dcs;
    PgNode pg;
    char node[AA_NAME_LEN];         /* pgvigil_aa.local_node.name ("" not known yet) */
    bool writable;
    int failed_looks;               /* consecutive looks that found it cannot take writes */
    char pg_error[256];             /* why it is not writable, as last logged */
    bool lease_ok;
    int64_t renew_at;
    char published[512];            /* the node record as last written */
    bool etcd_down_logged;
} Lead;

static void renew(Lead *d, bool force)
{
    if (!force && d->lease_ok && mono_ms() < d->renew_at)
        return;
    Err err = {{0}};
    bool expired = false;
    bool ok = d->dcs->ops->keepalive(d->dcs, d->aa->ttl, &expired, &err);
    if (!ok && d->lease_ok)
        log_warn("active_active: cannot renew the write-lead lease: %s", err.msg);
    if (ok && expired)
        d->published[0] = '\0';     /* the node record went with the old lease */
    d->lease_ok = ok;
    d->renew_at = mono_ms() + (ok ? d->aa->ttl * 1000 / 3 : 200);
}

/* Can this node take writes now? Learns its node name on the way. */
static void look_at_postgres(Lead *d)
{
    Err err = {{0}};
    /* (the name in a second statement: a query naming a table that does not exist yet would
     * fill the server's log with errors) */
    PGresult *r = pg_query(&d->pg, "select not pg_is_in_recovery(), to_regclass('pgvigil_aa.local_node') is not null",
                           QUERY_TIMEOUT_MS, &err);
    char why[256] = "";
    if (!r) {
        str_copy(why, sizeof(why), err.msg);
    } else if (PQgetvalue(r, 0, 1)[0] != 't') {
        str_copy(why, sizeof(why), "the pgvigil_aa extension is not created in database postgres");
    } else if (PQgetvalue(r, 0, 0)[0] != 't') {
        str_copy(why, sizeof(why), "postgres is in recovery");
    }
    PQclear(r);
    if (!why[0]) {
        r = pg_query(&d->pg, "select name from pgvigil_aa.local_node", QUERY_TIMEOUT_MS, &err);
        if (!r)
            str_copy(why, sizeof(why), err.msg);
        else if (PQntuples(r) != 1)
            str_copy(why, sizeof(why), "pgvigil_aa.local_node has no row (the node's name)");
        else if (!config_aa_name_ok(PQgetvalue(r, 0, 0)))
            str_fmt(why, sizeof(why), "the node's name \"%s\" cannot be a key in etcd (letters, digits, '-', '_', '.')",
                    PQgetvalue(r, 0, 0));
        else
            str_copy(d->node, sizeof(d->node), PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    bool writable = why[0] == '\0';
    /* one failed look is not enough to give the lead up (a slow query under load); two in a
     * row, a tenth of a second apart, are */
    d->failed_looks = writable ? 0 : d->failed_looks + 1;
    if (!writable && d->writable && d->failed_looks < 2)
        return;
    if (!writable && strcmp(why, d->pg_error) != 0)
        log_warn("active_active: this node cannot take writes for group %s: %s", d->aa->group, why);
    else if (writable && !d->writable && d->pg_error[0])
        log_info("active_active: this node can take writes again");
    str_copy(d->pg_error, sizeof(d->pg_error), why);
    d->writable = writable;
}

static void publish_node(Lead *d)
{
    if (!d->node[0] || !d->lease_ok)
        return;
    char *v = aa_node_json(d->l->conn_url, d->aa->location, d->writable, d->l->api_url);
    if (strcmp(v, d->published) != 0) {
        char key[128];
        str_fmt(key, sizeof(key), "aa/nodes/%s", d->node);
        Err err = {{0}};
        if (d->dcs->ops->put(d->dcs, key, v, true, &err))
            str_copy(d->published, sizeof(d->published), v);
        else
            log_warn("active_active: cannot write %s: %s", key, err.msg);
    }
    free(v);
}

/* key := value on our lease (value NULL: delete), if its revision is still rev; extra: one more
 * op (NULL none). */
static bool swap(Lead *d, const char *key, int64_t rev, const char *value, const DcsOp *extra)
{
    DcsCmp cmp = {key, rev};
    DcsOp ops[2] = {{key, value, value != NULL}};
    int n = 1;
    if (extra)
        ops[n++] = *extra;
    bool ok = false;
    Err err = {{0}};
    if (!d->dcs->ops->txn(d->dcs, &cmp, 1, ops, n, &ok, &err))
        log_warn("active_active: cannot write %s: %s", key, err.msg);
    return ok;
}

static const char *where(const char *location, char *buf, size_t sz)
{
    if (str_empty(location))
        str_copy(buf, sz, "");
    else
        str_fmt(buf, sz, " (location %s)", location);
    return buf;
}

/* The group's view now (false: etcd did not answer). */
static bool read_group(Lead *d, Cluster *c)
{
    Err err = {{0}};
    if (!d->dcs->ops->load(d->dcs, c, &err)) {
        if (!d->etcd_down_logged)
            log_warn("active_active: cannot read group %s: %s", d->aa->group, err.msg);
        d->etcd_down_logged = true;
        return false;
    }
    if (d->etcd_down_logged)
        log_info("active_active: group %s can be read again", d->aa->group);
    d->etcd_down_logged = false;
    return true;
}

static const AaLeaderRec *leader_of(const Cluster *c, const char *location)
{
    return aa_group_leader(c->aa, location);
}

static void set_switchover_failed(Lead *d, const AaSwitchoverReq *sw, int64_t rev, const char *error)
{
    char *v = aa_switchover_json(sw->to, sw->location, sw->drain_ms, "failed", error);
    DcsCmp cmp = {"aa/switchover", rev};
    DcsOp op = {"aa/switchover", v, false};
    bool ok;
    Err err = {{0}};
    if (!d->dcs->ops->txn(d->dcs, &cmp, 1, &op, 1, &ok, &err))
        log_warn("active_active: cannot write aa/switchover: %s", err.msg);
    free(v);
}

/* The key of location as it is now: 1 ours without a handover, 2 another node's, 0 absent,
 * -1 unknown (etcd did not answer) or ours still handing over. */
static int key_state(Lead *d, const char *location, AaLeaderRec *out, int64_t *rev)
{
    Cluster c;
    int st = -1;
    if (read_group(d, &c)) {
        if (rev)
            *rev = c.revision;
        const AaLeaderRec *cur = leader_of(&c, location);
        if (out && cur)
            *out = *cur;
        st = !cur ? 0 : strcmp(cur->node, d->node) != 0 ? 2 : cur->handover_to[0] ? -1 : 1;
    }
    cluster_free(&c);
    return st;
}

/* After a handover that did not complete: the key back as ours (from a handover state, or
 * created again when it vanished). True once it is ours again, or another node's. */
static bool take_back(Lead *d, const char *location, const char *key)
{
    for (int attempt = 0; attempt < 5 && !atomic_load(&d->l->stop); attempt++) {
        renew(d, false);
        AaLeaderRec cur;
        memset(&cur, 0, sizeof(cur));
        int st = key_state(d, location, &cur, NULL);
        if (st == 1 || st == 2)
            return true;
        char *v = aa_leader_json(d->node, d->l->conn_url, NULL, NULL, d->aa->ttl);
        bool ok = false, created = false;
        Err err = {{0}};
        if (st == 0 && d->lease_ok)
            ok = d->dcs->ops->create(d->dcs, key, v, true, &created, &err) && created;
        else if (st == -1 && cur.node[0] && strcmp(cur.node, d->node) == 0)
            ok = swap(d, key, cur.mod_revision, v, NULL);
        free(v);
        if (ok)
            return true;
        sleep_ms(200);
    }
    return false;
}

/* Connections postgres accepted and does not report yet (still authenticating): the TCP
 * connections to its port whose other end is no session's client_port. 0 when unknown. */
static int connecting(Lead *d)
{
    int ports[512];
    int n = tcp_peers_on_port(d->pg.port, ports, (int)ARRAY_LEN(ports));
    if (n <= 0)
        return 0;
    Err err = {{0}};
    PGresult *r = pg_query(&d->pg, "select client_port from pg_stat_activity where client_port is not null",
                           QUERY_TIMEOUT_MS, &err);
    if (!r)
        return 0;
    int unknown = 0;
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int k = 0; k < PQntuples(r) && !seen; k++)
            seen = atoi(PQgetvalue(r, k, 0)) == ports[i];
        unknown += !seen;
    }
    PQclear(r);
    return unknown;
}

/* The old leader's part of a switchover; returns with the key handed over, or taken back. */
static void hand_over(Lead *d, const Cluster *c, const AaLeaderRec *rec, const AaSwitchoverReq *sw)
{
    char key[160], w[96], error[256] = "";
    aa_leader_key(rec->location, key, sizeof(key));
    where(rec->location, w, sizeof(w));
    const AaNodeRec *to = aa_group_node(c->aa, sw->to);
    int64_t t0 = mono_ms();
    bool elsewhere = to && rec->location[0] && strcmp(to->location, rec->location) != 0;
    if (!to || !to->writable || to->drained || elsewhere) {
        str_fmt(error, sizeof(error), "node %s %s", sw->to,
                !to ? "is not in the group" : to->drained ? "is drained for maintenance"
                : elsewhere ? "is not in the location" : "cannot take writes now");
        set_switchover_failed(d, sw, sw->mod_revision, error);
        log_warn("active_active: switchover of the write lead%s refused: %s", w, error);
        return;
    }
    log_info("active_active: handing the write lead of group %s%s over to %s", d->aa->group, w, sw->to);
    char *v = aa_leader_json(d->node, d->l->conn_url, sw->to, NULL, d->aa->ttl);
    bool ok = swap(d, key, rec->mod_revision, v, NULL);
    free(v);
    if (!ok)
        return;                     /* the key changed meanwhile: look again */
    Err err = {{0}};
    /* the proxies send no new work here now; what is in flight may end (a transaction open
     * after the drain fails at its next write or commit) */
    int drain_ms = sw->drain_ms < DRAIN_MAX_MS ? sw->drain_ms : DRAIN_MAX_MS;
    int64_t drain_until = mono_ms() + drain_ms, quiet_since = 0;
    char began[64] = "";
    PGresult *hr = drain_ms > 0 ? pg_query(&d->pg, "select extract(epoch from clock_timestamp())", QUERY_TIMEOUT_MS, &err)
                                : NULL;
    if (hr)
        str_copy(began, sizeof(began), PQgetvalue(hr, 0, 0));
    PQclear(hr);
    char drain_sql[640];
    /* what the handover waits for: the transactions open when it began, and the sessions that
     * connected within a second of it (a proxy routed them just before it saw the handover, or
     * they were about to begin); not the older sessions idle then (a pool's), whose next
     * transactions the refusal meets */
    str_fmt(drain_sql, sizeof(drain_sql),
            "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid() "
            "and application_name <> 'pgvigil' and (xact_start < to_timestamp(%s) or backend_start between "
            "to_timestamp(%s) - interval '1 s' and to_timestamp(%s) + interval '1 s')",
            began, began, began);
    while (began[0] && mono_ms() < drain_until && !atomic_load(&d->l->stop)) {
        renew(d, false);
        PGresult *r = pg_query(&d->pg, drain_sql, QUERY_TIMEOUT_MS, &err);
        bool none = r && strcmp(PQgetvalue(r, 0, 0), "0") == 0;
        PQclear(r);
        if (!r)
            break;
        if (none && connecting(d) > 0)
            none = false;
        /* (none for a little while: a session being connected is not seen yet) */
        if (!none)
            quiet_since = 0;
        else if (!quiet_since)
            quiet_since = mono_ms();
        else if (mono_ms() - quiet_since >= DRAIN_QUIET_MS)
            break;
        sleep_ms(5);
    }
    /* (the new leader's time to catch up counts from here, not from the drain's start) */
    t0 = mono_ms();
    char sql[128];
    str_fmt(sql, sizeof(sql), "select pgvigil_aa.handover_block(%d)", AA_HANDOVER_TIMEOUT_MS + 2000);
    char mark[32] = "";
    if (!pg_exec(&d->pg, sql, QUERY_TIMEOUT_MS, &err)) {
        str_fmt(error, sizeof(error), "cannot refuse writes here: %s", err.msg);
    } else {
        /* the commits already past their check when the refusal began: let them end
         * (bounded; any other transaction that wrote is refused at its commit) */
        int64_t until = mono_ms() + INFLIGHT_WAIT_MS;
        for (;;) {
            renew(d, false);
            PGresult *r = pg_query(&d->pg, "select pgvigil_aa.committing()", QUERY_TIMEOUT_MS, &err);
            bool idle = r && strcmp(PQgetvalue(r, 0, 0), "0") == 0;
            PQclear(r);
            if (idle || !r || mono_ms() >= until)
                break;
            sleep_ms(2);
        }
        renew(d, false);
        PGresult *r = pg_query(&d->pg, "select pgvigil_aa.mark()", QUERY_TIMEOUT_MS, &err);
        if (r)
            str_copy(mark, sizeof(mark), PQgetvalue(r, 0, 0));
        else
            str_fmt(error, sizeof(error), "cannot mark the stream: %s", err.msg);
        PQclear(r);
    }
    /* the new leader takes the key once it has applied past the mark */
    AaLeaderRec cur;
    memset(&cur, 0, sizeof(cur));
    int64_t rev = 0;
    if (!error[0]) {
        renew(d, false);
        if (key_state(d, rec->location, &cur, &rev) != -1 || strcmp(cur.node, d->node) != 0 ||
            strcmp(cur.handover_to, sw->to) != 0) {
            str_copy(error, sizeof(error), "the write-lead key changed (or etcd did not answer) during the handover");
        } else {
            v = aa_leader_json(d->node, d->l->conn_url, sw->to, mark, d->aa->ttl);
            if (!swap(d, key, cur.mod_revision, v, NULL))
                str_copy(error, sizeof(error), "cannot write the mark into the write-lead key");
            free(v);
        }
    }
    bool moved = false;
    while (!error[0] && !atomic_load(&d->l->stop) && mono_ms() - t0 < AA_HANDOVER_TIMEOUT_MS) {
        renew(d, false);
        if (!d->lease_ok) {
            str_copy(error, sizeof(error), "this node's write-lead lease could not be renewed");
            break;
        }
        Err werr = {{0}};
        d->dcs->ops->watch(d->dcs, rev, LOOK_EVERY_MS, &werr);
        int st = key_state(d, rec->location, &cur, &rev);
        if (st == 2 && strcmp(cur.node, sw->to) == 0) {
            moved = true;
            log_info("active_active: %s leads group %s%s now (handover %lld ms)", sw->to, d->aa->group, w,
                     (long long)(mono_ms() - t0));
        } else if (st == 0 || st == 2 || st == 1) {
            str_fmt(error, sizeof(error), "the write-lead key %s during the handover",
                    st == 0 ? "vanished" : st == 1 ? "lost its handover" : "went to another node");
        }
        if (moved || error[0])
            break;
    }
    if (moved) {
        /* (not leading any more: writes sent here by a proxy that has not seen the move yet
         * are refused for the lease's time; unless this node leads another key) */
        int other = 0;
        if (d->aa->location && strcmp(rec->location, d->aa->location) != 0)
            other = key_state(d, d->aa->location, NULL, NULL) == 1;
        else if (rec->location[0])
            other = key_state(d, "", NULL, NULL) == 1;
        str_fmt(sql, sizeof(sql), "select pgvigil_aa.handover_block(%d)", other ? 0 : d->aa->ttl * 1000);
        if (!pg_exec(&d->pg, sql, QUERY_TIMEOUT_MS, &err))
            log_warn("active_active: cannot set the refusal of writes after the handover: %s", err.msg);
        return;
    }
    if (!error[0])
        str_fmt(error, sizeof(error), "%s did not apply this node's writes within %d ms", sw->to,
                AA_HANDOVER_TIMEOUT_MS);
    log_warn("active_active: switchover of the write lead%s to %s failed: %s; keeping it", w, sw->to, error);
    if (!take_back(d, rec->location, key)) {
        /* the refusal ends by itself at its deadline; the next look tries again */
        log_warn("active_active: cannot take the write lead%s back yet (etcd?); writes stay refused here until "
                 "it is settled or for %d s", w, (AA_HANDOVER_TIMEOUT_MS + 2000) / 1000);
        return;
    }
    Cluster now;
    if (read_group(d, &now) && now.aa && now.aa->switchover.present)
        set_switchover_failed(d, sw, now.aa->switchover.mod_revision, error);
    cluster_free(&now);
    if (!pg_exec(&d->pg, "select pgvigil_aa.handover_block(0)", QUERY_TIMEOUT_MS, &err))
        log_warn("active_active: cannot lift the refusal of writes (it ends by itself within %d s): %s",
                 (AA_HANDOVER_TIMEOUT_MS + 2000) / 1000, err.msg);
}

/* The new leader's part: take the key once this node has applied the old one's WAL past the
 * mark; given up when the key changes meanwhile (the old leader took it back). */
static void take_over(Lead *d, const AaLeaderRec *rec)
{
    Lsn mark;
    char mark_text[32];
    /* (both go into SQL: only what a node name and an LSN may be) */
    if (!lsn_parse(rec->mark, &mark) || !config_aa_name_ok(rec->node))
        return;
    lsn_format(mark, mark_text);
    char key[160], w[96];
    aa_leader_key(rec->location, key, sizeof(key));
    where(rec->location, w, sizeof(w));
    int64_t t0 = mono_ms(), looked = t0;
    char sql[256];
    str_fmt(sql, sizeof(sql), "select applied_lsn > '%s'::pg_lsn from pgvigil_aa.status() where peer = '%s'", mark_text,
            rec->node);
    char why[256] = "";
    while (!atomic_load(&d->l->stop) && mono_ms() - t0 < AA_HANDOVER_TIMEOUT_MS) {
        Err err = {{0}};
        PGresult *r = pg_query(&d->pg, sql, QUERY_TIMEOUT_MS, &err);
        bool past = r && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
        if (!r)
            str_copy(why, sizeof(why), err.msg);
        else if (PQntuples(r) != 1)
            str_fmt(why, sizeof(why), "this node does not apply from %s (no peer of that name)", rec->node);
        PQclear(r);
        if (past) {
            char *v = aa_leader_json(d->node, d->l->conn_url, NULL, NULL, d->aa->ttl);
            DcsOp done = {"aa/switchover", NULL, false};
            bool ok = swap(d, key, rec->mod_revision, v, &done);
            free(v);
            if (ok)
                log_info("active_active: took the write lead of group %s%s from %s, having applied its writes "
                         "past %s (%lld ms)", d->aa->group, w, rec->node, rec->mark, (long long)(mono_ms() - t0));
            return;
        }
        renew(d, false);
        if (mono_ms() - looked >= LOOK_EVERY_MS) {
            looked = mono_ms();
            int64_t rev = 0;
            Err gerr = {{0}};
            char *v = NULL;
            bool got = d->dcs->ops->get(d->dcs, key, &v, &rev, NULL, &gerr);
            free(v);
            if (got && rev != rec->mod_revision)
                return;             /* taken back, or moved on */
        }
        sleep_ms(10);
    }
    log_warn("active_active: did not apply %s's writes past %s within %d ms%s%s; the write lead%s stays with it",
             rec->node, rec->mark, AA_HANDOVER_TIMEOUT_MS, why[0] ? ": " : "", why, w);
}

/* One look at the leader key of a location ("" the group's). */
static void lead(Lead *d, const Cluster *c, const char *location)
{
    const AaLeaderRec *rec = leader_of(c, location);
    char key[160], w[96];
    aa_leader_key(location, key, sizeof(key));
    where(location, w, sizeof(w));
    bool mine = rec && strcmp(rec->node, d->node) == 0;
    /* (a node drained for maintenance takes no lead) */
    if (!rec && d->writable && d->lease_ok && !aa_group_is_drained(c->aa, d->node)) {
        char *v = aa_leader_json(d->node, d->l->conn_url, NULL, NULL, d->aa->ttl);
        bool created = false;
        Err err = {{0}};
        if (!d->dcs->ops->create(d->dcs, key, v, true, &created, &err))
            log_warn("active_active: cannot write %s: %s", key, err.msg);
        else if (created)
            log_info("active_active: took the vacant write lead of group %s%s", d->aa->group, w);
        free(v);
        return;
    }
    if (mine && !d->writable) {
        if (swap(d, key, rec->mod_revision, NULL, NULL))
            log_warn("active_active: gave up the write lead of group %s%s: %s", d->aa->group, w, d->pg_error);
        return;
    }
    if (mine && rec->handover_to[0]) {
        /* a handover left unfinished (this agent restarted, or could not take the key back) */
        log_warn("active_active: taking back the write lead%s from an unfinished handover to %s", w, rec->handover_to);
        if (take_back(d, location, key)) {
            Err err = {{0}};
            pg_exec(&d->pg, "select pgvigil_aa.handover_block(0)", QUERY_TIMEOUT_MS, &err);
        }
        return;
    }
    int64_t lease = d->dcs->ops->lease_id(d->dcs);
    if (mine && lease != 0 && rec->lease != lease && d->lease_ok) {
        /* ours by name on an earlier lease (this agent restarted): onto the current one */
        char *v = aa_leader_json(d->node, d->l->conn_url, NULL, NULL, d->aa->ttl);
        swap(d, key, rec->mod_revision, v, NULL);
        free(v);
        return;
    }
    const AaSwitchoverReq *sw = c->aa ? &c->aa->switchover : NULL;
    if (mine && sw && sw->present && !sw->state[0] && strcmp(sw->location, location) == 0) {
        if (strcmp(sw->to, d->node) == 0) {
            DcsCmp cmp = {"aa/switchover", sw->mod_revision};
            DcsOp op = {"aa/switchover", NULL, false};
            bool ok;
            Err err = {{0}};
            d->dcs->ops->txn(d->dcs, &cmp, 1, &op, 1, &ok, &err);     /* already there */
        } else {
            hand_over(d, c, rec, sw);
        }
        return;
    }
    if (rec && !mine && strcmp(rec->handover_to, d->node) == 0 && rec->mark[0] && d->writable)
        take_over(d, rec);
}

/* ---- the group's DDL lock ---- */

static void ddl_set_why(Lead *d, const char *why)
{
    pthread_mutex_lock(&d->l->mu);
    str_copy(d->l->ddl_why, sizeof(d->l->ddl_why), why);
    pthread_mutex_unlock(&d->l->mu);
}

/* aa/ddl_lock and aa/ddl_last as etcd has them now, into v (zeroed first). The group's view can
 * be a second old when a watch was slow to answer; deciding from it could release a lock by
 * rewriting only aa/ddl_last (the key itself left behind, blocking the group until the lease
 * ends), or take this node's just-released key for a new holder's. */
static bool ddl_keys_now(Lead *d, AaGroupView *v, char *why, size_t whysz)
{
    static const char *const keys[] = {"aa/ddl_lock", "aa/ddl_last"};
    memset(v, 0, sizeof(*v));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char *value = NULL;
        int64_t rev = 0, lease = 0;
        Err err = {{0}};
        if (!d->dcs->ops->get(d->dcs, keys[i], &value, &rev, &lease, &err)) {
            str_fmt(why, whysz, "cannot read %s: %s", keys[i], err.msg);
            return false;
        }
        char bad[200] = "";
        if (value)
            aa_group_take(v, keys[i], value, rev, lease, bad, sizeof(bad));
        free(value);
        if (bad[0]) {
            /* (never taken for "no key": a grant would then fail for ever as "taken first") */
            str_copy(why, whysz, bad);
            return false;
        }
    }
    return true;
}

/* Release this node's lock; lsn (not "0/0"): where its DDL commit ended, recorded in aa/ddl_last
 * for the next holders to wait for, also when the lock key itself went (with a lease). From the
 * keys as they are now (ddl_keys_now), in one transaction that holds only if they still are. */
static bool ddl_release(Lead *d, const char *lsn)
{
    AaGroupView now;
    char why[300];
    if (!ddl_keys_now(d, &now, why, sizeof(why))) {
        log_warn("active_active: cannot release the group's DDL lock: %s", why);
        return false;
    }
    const AaDdlRec *lk = &now.ddl_lock;
    const AaDdlDone *done = &now.ddl_last;
    bool ours = lk->present && strcmp(lk->node, d->node) == 0;
    bool record = strcmp(lsn, "0/0") != 0;
    if (!ours && !record)
        return true;
    DcsCmp cmps[2];
    DcsOp ops[2];
    int nc = 0, no = 0;
    char *last = NULL;
    if (ours) {
        cmps[nc++] = (DcsCmp){"aa/ddl_lock", lk->mod_revision};
        ops[no++] = (DcsOp){"aa/ddl_lock", NULL, false};
    }
    if (record) {
        last = aa_ddl_done_json(done, d->node, lsn);
        cmps[nc++] = (DcsCmp){"aa/ddl_last", done->present ? done->mod_revision : 0};
        ops[no++] = (DcsOp){"aa/ddl_last", last, false};
    }
    bool ok = false;
    Err err = {{0}};
    if (!d->dcs->ops->txn(d->dcs, cmps, nc, ops, no, &ok, &err))
        log_warn("active_active: cannot release the group's DDL lock: %s", err.msg);
    free(last);
    return ok;
}

/* Has this node applied node's DDL up to lsn? (The replication origin's progress: it survives a
 * restart. A node this one does not apply from, a removed one, is not waited for.) */
static bool applied_up_to(Lead *d, const char *node, const char *lsn_text, char *why, size_t whysz)
{
    Lsn lsn;
    char text[32];
    if (!lsn_parse(lsn_text, &lsn) || !config_aa_name_ok(node))
        return true;                /* (not a record of ours: nothing that can be waited for) */
    lsn_format(lsn, text);
    char sql[400];
    str_fmt(sql, sizeof(sql),
            "select not exists (select 1 from pgvigil_aa.peers where name = '%s') or "
            "coalesce(pg_replication_origin_progress('pgvigil_aa_%s', false) >= '%s'::pg_lsn, false)",
            node, node, text);
    Err err = {{0}};
    PGresult *r = pg_query(&d->pg, sql, QUERY_TIMEOUT_MS, &err);
    bool done = r && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    if (!r)
        str_fmt(why, whysz, "cannot read this node's apply from %s: %s", node, err.msg);
    else if (!done)
        str_fmt(why, whysz, "waiting to apply node %s's DDL (its commit ending at %s)", node, text);
    PQclear(r);
    return done;
}

/* A mark in this node's stream (after anything it committed), as text; false when postgres
 * does not answer. */
static bool mark_now(Lead *d, char *out, size_t sz)
{
    Err err = {{0}};
    PGresult *r = pg_query(&d->pg, "select pgvigil_aa.mark()", QUERY_TIMEOUT_MS, &err);
    if (r)
        str_copy(out, sz, PQgetvalue(r, 0, 0));
    PQclear(r);
    return r != NULL;
}

static void ddl_service(Lead *d)
{
    AaLeader *l = d->l;
    pthread_mutex_lock(&l->mu);
    int holder = l->ddl_holder, first = l->n_ddl_waiting > 0 ? l->ddl_waiting[0] : 0;
    bool release = l->ddl_release;
    char lsn[32];
    str_copy(lsn, sizeof(lsn), l->ddl_release_lsn[0] ? l->ddl_release_lsn : "0/0");
    pthread_mutex_unlock(&l->mu);
    if (holder && !release && kill(holder, 0) != 0 && errno == ESRCH) {
        /* the backend is gone without saying (it may have committed): a mark in the stream
         * after anything it wrote, for the next holders to wait for */
        if (!mark_now(d, lsn, sizeof(lsn)))
            return;                 /* (postgres down: try again) */
        log_warn("active_active: backend %d held the group's DDL lock and is gone; released", holder);
        release = true;
    }
    if (holder && release) {
        if (!ddl_release(d, lsn))
            return;
        pthread_mutex_lock(&l->mu);
        l->ddl_holder = 0;
        l->ddl_release = false;
        l->ddl_release_lsn[0] = '\0';
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        return;
    }
    if (holder || !first || !d->node[0])
        return;
    AaGroupView now;
    char why[300] = "";
    if (!ddl_keys_now(d, &now, why, sizeof(why))) {
        ddl_set_why(d, why);
        return;
    }
    const AaDdlRec *lk = &now.ddl_lock;
    if (lk->present) {
        if (strcmp(lk->node, d->node) == 0) {
            /* left by a backend of this node before the agent restarted: still there, it holds
             * it on (its release comes here); gone, marked and released */
            if (kill(lk->pid, 0) == 0 || errno != ESRCH) {
                pthread_mutex_lock(&l->mu);
                if (!l->ddl_holder)
                    l->ddl_holder = lk->pid;
                pthread_mutex_unlock(&l->mu);
                return;
            }
            char m[32];
            if (mark_now(d, m, sizeof(m)))
                ddl_release(d, m);
            return;
        }
        str_fmt(why, sizeof(why), "node %s holds it (backend %d)", lk->node, lk->pid);
        ddl_set_why(d, why);
        return;
    }
    /* every other node's last DDL applied here first */
    const AaDdlDone *done = &now.ddl_last;
    for (int i = 0; i < done->n; i++)
        if (strcmp(done->node[i], d->node) != 0 && !applied_up_to(d, done->node[i], done->lsn[i], why, sizeof(why))) {
            ddl_set_why(d, why);
            return;
        }
    if (!d->lease_ok) {
        ddl_set_why(d, "this agent has no lease in etcd");
        return;
    }
    /* taken only if aa/ddl_last is still what was checked */
    char *v = aa_ddl_json(d->node, first);
    DcsCmp cmps[2] = {{"aa/ddl_lock", 0}, {"aa/ddl_last", done->present ? done->mod_revision : 0}};
    DcsOp op = {"aa/ddl_lock", v, true};
    bool taken = false;
    Err err = {{0}};
    if (!d->dcs->ops->txn(d->dcs, cmps, 2, &op, 1, &taken, &err))
        str_fmt(why, sizeof(why), "cannot write aa/ddl_lock: %s", err.msg);
    else if (!taken)
        str_copy(why, sizeof(why), "another node took it first");
    if (!taken) {
        free(v);
        ddl_set_why(d, why);
        return;
    }
    pthread_mutex_lock(&l->mu);
    int at = -1;
    for (int i = 0; i < l->n_ddl_waiting; i++)
        if (l->ddl_waiting[i] == first)
            at = i;
    if (at >= 0) {
        l->ddl_holder = first;
        memmove(l->ddl_waiting + at, l->ddl_waiting + at + 1, (size_t)(l->n_ddl_waiting - at - 1) * sizeof(int));
        l->n_ddl_waiting--;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    if (at < 0) {
        /* it gave up meanwhile: the lock goes back */
        bool deleted;
        Err derr = {{0}};
        d->dcs->ops->del(d->dcs, "aa/ddl_lock", v, &deleted, &derr);
    }
    free(v);
}

static bool queued(const AaLeader *l, int pid)
{
    for (int i = 0; i < l->n_ddl_waiting; i++)
        if (l->ddl_waiting[i] == pid)
            return true;
    return false;
}

/* (l->mu held) the waiting thread of pid, if any, returns */
static void unqueue(AaLeader *l, int pid)
{
    for (int i = 0; i < l->n_ddl_waiting; i++)
        if (l->ddl_waiting[i] == pid) {
            memmove(l->ddl_waiting + i, l->ddl_waiting + i + 1, (size_t)(l->n_ddl_waiting - i - 1) * sizeof(int));
            l->n_ddl_waiting--;
            pthread_cond_broadcast(&l->cv);
            return;
        }
}

int aa_leader_ddl_lock(AaLeader *l, int pid, int timeout_ms, char **body)
{
    if (!l->started) {
        *body = str_dup("this node's agent takes no part in an active-active group (active_active.group)");
        return 503;
    }
    pthread_mutex_lock(&l->mu);
    struct timespec until;
    mono_deadline_after(&until, timeout_ms);
    int rc = 0;
    /* its earlier transaction's release is not done yet: after it (the next holder may be
     * another node's) */
    while (l->ddl_holder == pid && l->ddl_release && rc != ETIMEDOUT && !atomic_load(&l->stop))
        rc = pthread_cond_timedwait(&l->cv, &l->mu, &until);
    if (l->ddl_holder == pid) {
        pthread_mutex_unlock(&l->mu);
        *body = str_dup(l->ddl_release ? "not had: this backend's earlier release is not done" : "held");
        return l->ddl_release ? 409 : 200;
    }
    for (int i = 0; i < l->n_ddl_waiting; i++)
        if (l->ddl_waiting[i] == pid) {
            pthread_mutex_unlock(&l->mu);
            *body = str_printf("backend %d waits for the group's DDL lock already", pid);
            return 409;
        }
    if (l->n_ddl_waiting >= AA_DDL_WAITERS) {
        pthread_mutex_unlock(&l->mu);
        *body = str_printf("%d backends of this node wait for the group's DDL lock already", AA_DDL_WAITERS);
        return 503;
    }
    l->ddl_waiting[l->n_ddl_waiting++] = pid;
    while (l->ddl_holder != pid && rc != ETIMEDOUT && !atomic_load(&l->stop) && queued(l, pid))
        rc = pthread_cond_timedwait(&l->cv, &l->mu, &until);
    int status = 200;
    if (l->ddl_holder != pid) {
        unqueue(l, pid);
        *body = rc == ETIMEDOUT ? str_printf("not had within %d ms: %s", timeout_ms, l->ddl_why[0] ? l->ddl_why : "(no reason known)")
                                : str_dup(atomic_load(&l->stop) ? "the agent is stopping" : "the request was withdrawn");
        status = 409;
    } else {
        *body = str_dup("held");
    }
    pthread_mutex_unlock(&l->mu);
    return status;
}

int aa_leader_ddl_unlock(AaLeader *l, int pid, const char *lsn, char **body)
{
    Lsn parsed;
    if (!lsn_parse(lsn, &parsed)) {
        *body = str_printf("lsn: expected an LSN, got \"%s\"", lsn);
        return 400;
    }
    if (!l->started) {
        *body = str_dup("this node's agent takes no part in an active-active group");
        return 503;
    }
    pthread_mutex_lock(&l->mu);
    int status = 200;
    if (l->ddl_holder != pid) {
        /* a backend that gave up waiting (cancelled) says so too: out of the queue */
        unqueue(l, pid);
        *body = str_printf("backend %d does not hold the group's DDL lock here", pid);
    } else {
        Lsn kept = 0;
        lsn_parse(l->ddl_release_lsn, &kept);
        l->ddl_release = true;
        lsn_format(parsed > kept ? parsed : kept, l->ddl_release_lsn);
        *body = str_dup("released");
    }
    pthread_mutex_unlock(&l->mu);
    return status;
}

static void *lead_main(void *arg)
{
    AaLeader *l = arg;
    const Config *cfg = l->cfg;
    Lead d;
    memset(&d, 0, sizeof(d));
    d.l = l;
    d.aa = &cfg->aa;
    char *prefix = dcs_prefix(cfg->namespace_, cfg->aa.group);
    Err err = {{0}};
    d.dcs = dcs_etcd_new(cfg->etcd_hosts, cfg->n_etcd_hosts, prefix, cfg->etcd_username, cfg->etcd_password, 1000,
                         &err);
    free(prefix);
    if (!d.dcs) {
        log_error("active_active: %s; this node takes no part in the write lead", err.msg);
        return NULL;
    }
    pg_node_init(&d.pg, cfg);
    log_info("active_active: taking part in the write lead of group %s%s%s", cfg->aa.group,
             cfg->aa.location ? ", location " : "", cfg->aa.location ? cfg->aa.location : "");
    /* the group's view, read again when the watch saw a change (this thread's own writes
     * included) and at least every second; postgres is asked at every look */
    Cluster c;
    cluster_init(&c);
    bool have = false, changed = true;
    int64_t read_at = 0;
    while (!atomic_load(&l->stop)) {
        look_at_postgres(&d);
        renew(&d, false);
        publish_node(&d);
        if (changed || !have || mono_ms() - read_at >= REREAD_MS) {
            cluster_free(&c);
            have = read_group(&d, &c);
            read_at = mono_ms();
            if (!have) {
                sleep_ms(200);
                continue;
            }
        }
        if (d.node[0]) {
            lead(&d, &c, "");
            if (cfg->aa.location)
                lead(&d, &c, cfg->aa.location);
            ddl_service(&d);
        }
        Err werr = {{0}};
        changed = d.dcs->ops->watch(d.dcs, c.revision, LOOK_EVERY_MS, &werr) || werr.msg[0];
    }
    cluster_free(&c);
    /* the keys on the lease (node record, leader keys) go at once */
    if (d.lease_ok)
        d.dcs->ops->revoke(d.dcs, &err);
    pg_node_close(&d.pg);
    dcs_free(d.dcs);
    return NULL;
}

void aa_leader_start(AaLeader *l, const Config *cfg, const char *conn_host, int conn_port)
{
    memset(l, 0, sizeof(*l));
    l->cfg = cfg;
    if (!cfg->aa.group)
        return;
    str_fmt(l->api_url, sizeof(l->api_url), "http://%s", cfg->restapi_connect_address ? cfg->restapi_connect_address
                                                                                      : cfg->restapi_listen);
    bool v6 = strchr(conn_host, ':') != NULL;
    str_fmt(l->conn_url, sizeof(l->conn_url), "postgres://%s%s%s:%d/postgres", v6 ? "[" : "", conn_host, v6 ? "]" : "",
            conn_port);
    atomic_init(&l->stop, false);
    pthread_mutex_init(&l->mu, NULL);
    mono_cond_init(&l->cv);
    l->started = pthread_create(&l->thread, NULL, lead_main, l) == 0;
    if (!l->started)
        log_error("active_active: cannot start the write-lead thread; this node takes no part in the write lead");
}

void aa_leader_stop(AaLeader *l)
{
    if (!l->started)
        return;
    atomic_store(&l->stop, true);
    pthread_mutex_lock(&l->mu);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->started = false;
}
