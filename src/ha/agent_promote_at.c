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
#include "common/timeutil.h"
#include "dcs/site_record.h"
#include "ha/agent.h"

#include <jansson.h>
#include <sys/stat.h>

static void marker_path(const Agent *a, char *buf, size_t sz)
{
    str_fmt(buf, sz, "%s/%s", a->cfg->pg_data_dir, PROMOTE_AT_FILE);
}

/* T, timeline and member from the marker; false when there is none, or it is another member's
 * (a copy taken along by pg_basebackup or pg_rewind) */
static bool read_marker(const Agent *a, char *t, size_t tsz, int *tl)
{
    char path[4200];
    marker_path(a, path, sizeof(path));
    Err err = {{0}};
    char *text = file_read_all(path, NULL, &err);
    if (!text)
        return false;
    char when[80] = "", member[NAME_MAX_LEN] = "";
    int timeline = 0;
    bool ok = sscanf(text, "%79[^\n]\n%d\n%63s", when, &timeline, member) == 3 && strcmp(member, a->cfg->name) == 0 &&
              pg_timestamp_text_ok(when);
    free(text);
    if (ok) {
        str_copy(t, tsz, when);
        *tl = timeline;
    }
    return ok;
}

/* the record's target for this member's site, while it is on the timeline it starts from */
static const char *record_target(const Agent *a, json_t **rec, const char **member)
{
    *rec = a->cluster.site_json ? json_loads(a->cluster.site_json, 0, NULL) : NULL;
    /* the timeline as its member record gives it (what the record was written from) */
    const PgState *st = &a->pgst;
    int tl = st->in_recovery && st->history_tli > st->timeline ? st->history_tli : st->timeline;
    return site_record_target_time(*rec, a->cfg->scope, tl, member);
}

bool agent_promote_at_pending(const Agent *a, char *t, size_t tsz, int *tl)
{
    *tl = 0;
    if (read_marker(a, t, tsz, tl))
        return true;
    json_t *rec;
    const char *member = NULL;
    const char *when = record_target(a, &rec, &member);
    bool mine = when && strcmp(member, a->cfg->name) == 0;
    if (mine)
        str_copy(t, tsz, when);
    json_decref(rec);
    return mine;
}

const char *agent_promote_at_other(const Agent *a, char *out, size_t osz)
{
    json_t *rec;
    const char *member = NULL;
    const char *when = record_target(a, &rec, &member);
    bool other = when && strcmp(member, a->cfg->name) != 0;
    if (other)
        str_copy(out, osz, member);
    json_decref(rec);
    return other ? out : NULL;
}

static bool write_marker(const Agent *a, const char *t, int tl, Err *err)
{
    char path[4200];
    marker_path(a, path, sizeof(path));
    char *text = str_printf("%s\n%d\n%s\n", t, tl, a->cfg->name);
    bool ok = file_write_atomic(path, text, strlen(text), 0600, err);
    free(text);
    return ok;
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
    if (st.running && !st.in_recovery) {
        err_set(err, "promote at %s: postgres already runs as a primary", j->rescue_time);
        return false;
    }
    if (st.running) {
        /* checked again before anything is touched: what it applied is before the target */
        int before = agent_replayed_before(pg, j->rescue_time, err);
        if (before != 1) {
            if (before == 0)
                err_set(err, "promote at %s refused: this standby already replayed past that time", j->rescue_time);
            return false;
        }
    }
    /* (not running with the marker there: only this job started it since, always with the target) */
    if (!write_marker(a, j->rescue_time, j->new_timeline, err) || (st.running && !pg_stop(pg, "fast", 60, err)))
        return false;
    test_hook_stopped(a);
    KvList rec = {0};
    agent_recovery_to_time(cfg, j->rescue_time, &rec);
    /* its own timeline: 'latest' would take the newest history file, one of the markers that
     * reserve the new timeline's number, and find no checkpoint on it */
    kvlist_set(&rec, "recovery_target_timeline", "current");
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
        started = agent_write_job_conf(pg, j, false, false, &rec, err) && pg_start(pg, start_timeout, err) &&
                  agent_wait_promoted(a, pg, err);
    }
    kvlist_free(&rec);
    if (!started)
        return false;
    /* promoted at T: the marker goes, then a primary's configuration (no recovery target left
     * for a later recovery to stop at) */
    char marker[4200];
    marker_path(a, marker, sizeof(marker));
    if (unlink(marker) != 0)
        log_warn("promote: cannot remove %s: %s", marker, strerror(errno));
    Err ce = {{0}};
    if (!agent_write_job_conf(pg, j, false, false, NULL, &ce) || !pg_reload(pg, &ce))
        log_warn("promote: rewriting the configuration after the promotion: %s", ce.msg);
    return true;
}
