/* `pgvigil site promote --target-time T` on the member the site record names (job worker thread
 * for the promotion, loop thread for the checks): a delayed standby leader opened as it was at
 * T, before a bad write, as its site's primary.
 *
 * What must never happen is a start of this server without the target once it may have the
 * bad write in its pg_wal: a plain standby start (standby.signal, no apply delay once
 * standby_cluster is gone) would apply it. So the job writes a marker into the data directory
 * (PROMOTE_AT_FILE: T, the reserved timeline, the member) before it stops postgres, and removes
 * it only once postgres has promoted at T. While the marker is there the agent does nothing
 * but finish that promotion (agent.c), every other start is refused (agent_act.c), and no
 * configuration is reloaded. */
#include "common/common.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "dcs/site_record.h"
#include "ha/agent.h"

#include <jansson.h>
#include <sys/stat.h>

static void marker_path(const Agent *a, char *buf, size_t sz)
{
    str_fmt(buf, sz, "%s/%s", a->cfg->pg_data_dir, PROMOTE_AT_FILE);
}

typedef struct Marker {
    char t[80];
    int new_tl;     /* the timeline reserved for it, 0 until the job started */
    int start_tl;   /* the timeline it recovers along */
} Marker;

/* 1: this member's marker; 0: none (a copy another member's pg_basebackup or pg_rewind took
 * along is removed); -1: one that cannot be read (treated as pending: nothing starts) */
static int read_marker(const Agent *a, Marker *m)
{
    char path[4200];
    marker_path(a, path, sizeof(path));
    if (!file_exists(path))
        return 0;
    Err err = {{0}};
    char *text = file_read_all(path, NULL, &err);
    if (!text)
        return -1;
    char *lines[4] = {0};
    int n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < 4; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    int rc = -1;
    if (n == 4 && strcmp(lines[3], a->cfg->name) != 0) {
        log_info("promote: removing %s, a copy of %s's marker", path, lines[3]);
        unlink(path);
        rc = 0;
    } else if (n == 4 && pg_timestamp_text_ok(lines[0]) && strlen(lines[0]) < sizeof(m->t)) {
        str_copy(m->t, sizeof(m->t), lines[0]);
        m->new_tl = atoi(lines[1]);
        m->start_tl = atoi(lines[2]);
        rc = 1;
    }
    free(text);
    return rc;
}

static bool write_marker(const Agent *a, const Marker *m, Err *err)
{
    char path[4200];
    marker_path(a, path, sizeof(path));
    char *text = str_printf("%s\n%d\n%d\n%s\n", m->t, m->new_tl, m->start_tl, a->cfg->name);
    bool ok = file_write_atomic(path, text, strlen(text), 0600, err) && proc_chown_run_as(path, err);
    free(text);
    return ok;
}

static void remove_marker(const Agent *a, const char *why)
{
    char path[4200];
    marker_path(a, path, sizeof(path));
    if (unlink(path) == 0)
        log_info("promote: %s: marker removed", why);
    else if (errno != ENOENT)
        log_warn("promote: cannot remove %s: %s", path, strerror(errno));
}

/* the record's target for this site while that promotion is not over, and the member it names */
static const char *record_target(const Agent *a, json_t **rec, const char **member, int *start_tl)
{
    *rec = a->cluster.site_json ? json_loads(a->cluster.site_json, 0, NULL) : NULL;
    const char *t = site_record_target_time(*rec, a->cfg->scope, 0, member);
    if (t && start_tl)
        *start_tl = (int)json_integer_value(json_object_get(*rec, "timeline"));
    return t;
}

/* The promotion at T is over: the record says so (target_done), for every member of the site. */
static void record_done(Agent *a, json_t *rec, const char *t)
{
    json_t *o = json_deep_copy(rec);
    json_object_set_new(o, "target_done", json_true());
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    Err err = {{0}};
    if (text && a->dcs->ops->put(a->dcs, "pgvigil_site", text, false, &err))
        log_info("promote: opened at %s: the site record says the promotion is over", t);
    else
        log_warn("promote: cannot write pgvigil_site (retrying): %s", err.msg);
    free(text);
}

/* This member's postgres was promoted (the job succeeded; the record may not say so yet): it
 * runs as a primary, or pg_controldata says it last ran as one. */
static bool promoted_already(const Agent *a)
{
    const PgState *ps = &a->pgst;
    if (ps->running)
        return ps->accepting && !ps->in_recovery;
    ControlInfo ci;
    Err err = {{0}};
    PgNode pg;
    pg_node_init(&pg, a->cfg);
    bool was = pg_controldata_info(&pg, &ci, &err) && ci.was_primary;
    pg_node_close(&pg);
    return was;
}

bool agent_promote_at_state(const Agent *a, char *t, size_t tsz, int *tl, int *start_tl, bool *marker)
{
    *tl = 0;
    *start_tl = 0;
    *marker = false;
    Marker m = {.new_tl = 0};
    int r = read_marker(a, &m);
    if (r != 0) {
        *marker = true;
        str_copy(t, tsz, r > 0 ? m.t : "(unreadable marker)");
        *tl = r > 0 ? m.new_tl : -1;
        *start_tl = m.start_tl;
        return true;
    }
    json_t *rec;
    const char *member = NULL;
    const char *when = record_target(a, &rec, &member, start_tl);
    bool mine = when && strcmp(member, a->cfg->name) == 0;
    if (mine)
        str_copy(t, tsz, when);
    json_decref(rec);
    if (mine && promoted_already(a))
        return false;   /* over: the tick records it once postgres runs */
    return mine;
}

bool agent_promote_at_pending(const Agent *a, char *t, size_t tsz, int *tl)
{
    int start_tl;
    bool marker;
    return agent_promote_at_state(a, t, tsz, tl, &start_tl, &marker);
}

const char *agent_promote_at_other(const Agent *a, char *out, size_t osz)
{
    json_t *rec;
    const char *member = NULL;
    const char *when = record_target(a, &rec, &member, NULL);
    bool other = when && strcmp(member, a->cfg->name) != 0;
    if (other)
        str_copy(out, osz, member);
    json_decref(rec);
    return other ? out : NULL;
}

/* a marker for T along start_tl, written only while this standby has applied nothing at or
 * after T (logged once when it has) */
static bool prepare(Agent *a, const char *when, int start_tl)
{
    Err err = {{0}};
    int before = agent_replayed_before(&a->pg, when, &err);
    Marker nm = {.new_tl = 0};
    str_copy(nm.t, sizeof(nm.t), when);
    nm.start_tl = start_tl;
    if (before == 1 && write_marker(a, &nm, &err)) {
        log_info("promote: ready to open this site at %s (marker written): waiting for standby_cluster to go", when);
        return true;
    }
    if (strcmp(a->promote_at_refused, when) != 0) {
        log_error("promote at %s refused: %s", when, before == 0 ? "this standby already replayed past that time" : err.msg);
        str_copy(a->promote_at_refused, sizeof(a->promote_at_refused), when);
    }
    return false;
}

void agent_promote_at_tick(Agent *a)
{
    a->promote_at_seen[0] = '\0';
    if (!a->pgst.data_dir_valid)
        return;
    Marker m = {.new_tl = 0};
    int r = read_marker(a, &m);
    json_t *rec;
    const char *member = NULL;
    int start_tl = 0;
    const char *when = record_target(a, &rec, &member, &start_tl);
    bool named = when && strcmp(member, a->cfg->name) == 0;
    const char *st = json_string_value(json_object_get(rec, "state"));
    const PgState *ps = &a->pgst;
    bool standby_running = ps->running && ps->accepting && ps->in_recovery;
    if (ps->running && ps->accepting && !ps->in_recovery) {
        if (r > 0)
            remove_marker(a, "postgres runs promoted");
        if (named && a->dcs_ok)
            record_done(a, rec, when);
    } else if (r > 0 && m.new_tl == 0 && !named && a->dcs_ok) {
        /* rolled back, superseded or done: the job never started */
        remove_marker(a, "the site record no longer asks for this promotion");
    } else if (r > 0 && m.new_tl == 0 && named && (strcmp(m.t, when) != 0 || m.start_tl != start_tl)) {
        /* a new request (another time, or a timeline the CLI updated after the catch-up) */
        if (standby_running)
            prepare(a, when, start_tl);
    } else if (r == 0 && named && st && strcmp(st, "promoting") == 0 && standby_running) {
        prepare(a, when, start_tl);
    }
    if (read_marker(a, &m) > 0)
        str_copy(a->promote_at_seen, sizeof(a->promote_at_seen), m.t);
    json_decref(rec);
}

/* PostgreSQL 15 stops with this when the WAL ends before the target: then no commit at or
 * after T exists in it, and its end is the state at T */
static bool target_not_reached(const PgNode *pg, size_t log_from)
{
    Err err = {{0}};
    size_t len = 0;
    char *log = file_read_all(pg->log_path, &len, &err);
    bool seen = log && len > log_from && strstr(log + log_from, "recovery ended before configured recovery target was reached");
    free(log);
    return seen;
}

static size_t log_size(const PgNode *pg)
{
    struct stat sb;
    return stat(pg->log_path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

#ifdef PGVIGIL_TEST_HOOKS
/* Test builds only: with the file named by PGVIGIL_TEST_PROMOTE_AT_STOP there, the job waits
 * (at most 60 s) right after it wrote the marker and stopped postgres, so that a test can kill
 * the agent there and check that its next start finishes the promotion at the target. */
static void test_hook_stopped(const Agent *a)
{
    const char *path = getenv("PGVIGIL_TEST_PROMOTE_AT_STOP");
    if (!path || !path[0] || !file_exists(path))
        return;
    log_warn("test hook: promote at a time: stopped, waiting until %s is removed", path);
    for (int i = 0; i < 6000 && file_exists(path) && !a->cancel_jobs; i++)
        sleep_ms(10);
}
#else
static void test_hook_stopped(const Agent *a)
{
    (void)a;
}
#endif

bool agent_promote_at(Agent *a, Job *j, PgNode *pg, int start_timeout, Err *err)
{
    const Config *cfg = a->cfg;
    PgState st;
    pg_observe(pg, &st);
    if (st.running && st.accepting && !st.in_recovery) {
        remove_marker(a, "postgres already runs promoted");
        return true;
    }
    if (!st.running) {
        ControlInfo ci;
        if (!pg_controldata_info(pg, &ci, err))
            return false;
        if (ci.was_primary) {
            /* promoted at T by an earlier run of this job, stopped since: it starts as a primary */
            remove_marker(a, "postgres was promoted already");
            return agent_write_job_conf(pg, j, false, false, NULL, err) && pg_start(pg, start_timeout, err);
        }
    } else {
        /* checked again before anything is touched: what it applied is before the target */
        int before = agent_replayed_before(pg, j->rescue_time, err);
        if (before != 1) {
            if (before == 0)
                err_set(err, "promote at %s refused: this standby already replayed past that time", j->rescue_time);
            return false;
        }
    }
    /* (stopped in recovery with the marker there: only this job starts it, always with the
     * target) */
    Marker m = {.new_tl = 0};
    str_copy(m.t, sizeof(m.t), j->rescue_time);
    m.new_tl = j->new_timeline;
    m.start_tl = j->target_start_tl;
    if (!write_marker(a, &m, err) || (st.running && !pg_stop(pg, "fast", 60, err)))
        return false;
    test_hook_stopped(a);
    KvList rec = {0};
    agent_recovery_to_time(cfg, j->rescue_time, &rec);
    /* the timeline the promotion starts from, by number: 'latest' would take the newest history
     * file (one of the markers that reserve the new timeline's number), 'current' the last
     * restartpoint's, which may be older than the one holding T */
    char tl[16] = "current";
    if (j->target_start_tl > 0)
        str_fmt(tl, sizeof(tl), "%d", j->target_start_tl);
    kvlist_set(&rec, "recovery_target_timeline", tl);
    log_info("promote: recovering to %s from the WAL received (no apply delay), then promoting as this site's "
             "primary", j->rescue_time);
    /* no primary_conninfo: the WAL it has (and the repository's) is all it needs to reach T */
    bool ok = agent_write_signal(cfg->pg_data_dir, "recovery.signal", err) &&
              agent_write_job_conf(pg, j, false, false, &rec, err) &&
              (j->new_timeline <= 0 || agent_place_timeline_markers(pg, j->new_timeline, err));
    size_t log_from = log_size(pg);
    bool started = ok && pg_start(pg, start_timeout, err) && agent_wait_promoted(a, pg, err);
    if (ok && !started && target_not_reached(pg, log_from)) {
        log_info("promote: the WAL here ends before %s (no commit at or after it): promoting at its end",
                 j->rescue_time);
        memset(err, 0, sizeof(*err));
        kvlist_set(&rec, "recovery_target_time", "");   /* (empty: no target) */
        /* only the WAL the first start saw: the repository may have received more since */
        kvlist_set(&rec, "restore_command", "/bin/false");
        started = agent_write_job_conf(pg, j, false, false, &rec, err) && pg_start(pg, start_timeout, err) &&
                  agent_wait_promoted(a, pg, err);
    }
    kvlist_free(&rec);
    if (!started)
        return false;
    /* promoted at T: the marker goes, then a primary's configuration (no recovery target left
     * for a later recovery to stop at) */
    remove_marker(a, "promoted");
    Err ce = {{0}};
    if (!agent_write_job_conf(pg, j, false, false, NULL, &ce) || !pg_reload(pg, &ce))
        log_warn("promote: rewriting the configuration after the promotion: %s", ce.msg);
    return true;
}
