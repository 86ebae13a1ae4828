/* `pgvigil drill failover`: a real unplanned site failover and its failback, under a writer.
 *   1. the operator's --stop-command takes the primary site down (its servers; its etcd too or
 *      not), as a lost data center would go;
 *   2. once that site shows no running primary (or cannot be read), the standby site is promoted
 *      (`site promote --old-site-fenced`: the stop command is the fencing);
 *   3. the writer's first acknowledged write on the new primary site ends the RTO; the
 *      acknowledged writes missing there are the RPO (asynchronous replication: not always 0);
 *   4. --start-command brings the old site back; it rejoins as a standby cluster (`site rejoin`,
 *      which its agents do themselves with site.peer): rewound, its divergent transactions
 *      reported, streaming on the new timeline: the failback time;
 *   5. with --switch-back, a site switchover returns the primary role to it (no write lost). */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/drill.h"
#include "cli/site.h"
#include "common/proc.h"
#include "common/timeutil.h"

static int64_t wall_ms(void)
{
    return (int64_t)(wall_now() * 1000);
}

/* The operator's hook, its output appended to log (not a pipe: a process it leaves in the
 * background must not hold the drill), in a session of its own. */
static bool run_hook(const char *what, const char *cmd, int timeout_s, const char *log, Err *err)
{
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    ProcOpts po = {.timeout_ms = timeout_s * 1000, .log_path = log, .new_session = true};
    int rc = proc_run(argv, &po, NULL, err);
    if (rc > 0)
        err_set(err, "%s exited with %d (its output: %s)", what, rc, log);
    else if (rc < 0)
        err_prefix(err, "%s: ", what);
    return rc == 0;
}

/* Read a site again; one that does not answer is marked not loaded (its last cluster is kept). */
static bool reload(Site *s)
{
    Err e = {{0}};
    s->ctx.loaded = cli_reload(&s->ctx, &e);
    if (!s->ctx.loaded)
        str_copy(s->ctx.load_error, sizeof(s->ctx.load_error), e.msg);
    return s->ctx.loaded;
}

static bool runs_primary(const Cluster *c)
{
    for (int i = 0; i < c->n_members; i++)
        if (strcmp(c->members[i].role, "primary") == 0 && strcmp(c->members[i].state, "running") == 0)
            return true;
    return false;
}

int drill_failover(Site *own, Site *peer, const DrillFailover *fo, json_t *report)
{
    Site *p = site_is_standby(&own->ctx.cluster) ? peer : own, *d = p == own ? peer : own;
    int64_t tmo = (int64_t)fo->timeout_s * 1000;
    Err err = {{0}};
    json_object_set_new(report, "lost_site", json_string(p->ctx.scope));
    json_object_set_new(report, "promoted_site", json_string(d->ctx.scope));
    Writer w;
    drill_writer_start(&w, fo->writer_dsn);
    sleep_ms(1000);
    int rc = EXIT_FAILED;
    bool stopped = false, started_back = false;
    json_t *steps = json_object();
    json_object_set_new(report, "steps", steps);

    /* 1. the primary site goes down */
    int64_t t_lost = wall_ms(), m0 = mono_ms();
    printf("drill: taking %s down (--stop-command; hooks' output in %s)\n", p->ctx.scope, fo->hook_log);
    stopped = true;
    if (!run_hook("--stop-command", fo->stop_cmd, fo->timeout_s, fo->hook_log, &err)) {
        cli_error(NULL, "drill failover: %s", err.msg);
        goto out;
    }
    int64_t deadline = mono_ms() + tmo;
    while (reload(p) && runs_primary(&p->ctx.cluster) && mono_ms() < deadline)
        sleep_ms(200);
    if (p->ctx.loaded && runs_primary(&p->ctx.cluster)) {
        cli_error("the stop command must stop the site's servers", "drill failover: %s still runs a primary %d s after "
                  "--stop-command", p->ctx.scope, fo->timeout_s);
        goto out;
    }
    int64_t m_down = mono_ms(), t_down = wall_ms();
    json_object_set_new(steps, "site_down_seconds", json_real((m_down - m0) / 1000.0));

    /* 2. the standby site is promoted (the stop command fenced the old one) */
    if (site_promote_run(d, p, true, NULL, fo->timeout_s) != EXIT_OK) {
        cli_error(NULL, "drill failover: the promotion of %s failed", d->ctx.scope);
        goto out;
    }
    int64_t m_promoted = mono_ms();
    json_object_set_new(steps, "promote_seconds", json_real((m_promoted - m_down) / 1000.0));
    reload(d);
    const Member *dl = site_leader(&d->ctx.cluster);
    int new_tl = dl ? dl->timeline : 0;

    /* 3. writes resume on the new primary site */
    int64_t t_first = 0;
    deadline = mono_ms() + tmo;
    while (!(t_first = drill_first_write_after(&w, t_down)) && mono_ms() < deadline)
        sleep_ms(100);
    if (!t_first) {
        cli_error("check the writer's address (the proxy must know both sites)",
                  "drill failover: no write was acknowledged within %d s of the promotion", fo->timeout_s);
        goto out;
    }
    sleep_ms((int64_t)fo->pause_s * 1000);
    pthread_mutex_lock(&w.mu);
    double rto = drill_longest_gap(&w, t_lost, wall_ms());
    pthread_mutex_unlock(&w.mu);
    int lost = drill_missing_writes(&w, &err);
    json_object_set_new(report, "rto_seconds", json_real(rto));
    if (lost < 0) {
        cli_error(NULL, "drill failover: cannot count the acknowledged writes on %s: %s", d->ctx.scope, err.msg);
        goto out;
    }
    json_object_set_new(report, "lost_acknowledged_writes", json_integer(lost));
    printf("drill: %s took writes again %.2f s after %s was taken down (RTO: %.2f s without an acknowledged write); "
           "%d acknowledged write(s) lost (RPO)\n", d->ctx.scope, (t_first - t_lost) / 1000.0, p->ctx.scope, rto, lost);

    /* 4. failback: the old site comes back and rejoins by rewind */
    int64_t m_back = mono_ms();
    printf("drill: bringing %s back (--start-command)\n", p->ctx.scope);
    started_back = true;
    if (!run_hook("--start-command", fo->start_cmd, fo->timeout_s, fo->hook_log, &err)) {
        cli_error(NULL, "drill failover: %s", err.msg);
        goto out;
    }
    deadline = mono_ms() + tmo;
    while (!reload(p) && mono_ms() < deadline)
        sleep_ms(200);
    if (!p->ctx.loaded || !reload(d)) {
        cli_error(NULL, "drill failover: %s", !p->ctx.loaded ? p->ctx.load_error : d->ctx.load_error);
        goto out;
    }
    if (site_rejoin_run(p, d) != EXIT_OK)
        goto out;
    if (!site_wait_following(p, new_tl, tmo, &err)) {
        cli_error("see the old site's agents' logs", "drill failover: %s", err.msg);
        goto out;
    }
    int64_t m_rejoined = mono_ms();
    json_object_set_new(steps, "failback_seconds", json_real((m_rejoined - m_back) / 1000.0));
    printf("drill: %s follows %s again, %.1f s after it came back (rejoined in place, no copy)\n", p->ctx.scope, d->ctx.scope,
           (m_rejoined - m_back) / 1000.0);
    char *div = NULL;
    Err de = {{0}};
    if (p->ctx.dcs->ops->get(p->ctx.dcs, "pgvigil_divergence", &div, NULL, NULL, &de) && div) {
        json_t *dj = json_loads(div, 0, NULL);
        if (dj)
            json_object_set_new(report, "divergence", dj);
        printf("drill: divergence report: %s\n", div);
    }
    free(div);

    /* 5. the primary role back where it was */
    if (fo->switch_back) {
        SiteSteps ss;
        int64_t t0 = wall_ms();
        if (site_switchover_run(p, d, fo->timeout_s, &ss) != EXIT_OK)
            goto out;
        sleep_ms((int64_t)fo->pause_s * 1000);
        pthread_mutex_lock(&w.mu);
        double back_rto = drill_longest_gap(&w, t0, wall_ms());
        pthread_mutex_unlock(&w.mu);
        json_object_set_new(steps, "switch_back_seconds", json_real(ss.total));
        json_object_set_new(report, "switch_back_rto_seconds", json_real(back_rto));
        printf("drill: switched back to %s in %.1f s (write-unavailability %.2f s)\n", ss.to, ss.total, back_rto);
    }
    rc = EXIT_OK;
out:
    if (stopped && !started_back) {
        /* the drill stopped half way: the old site comes back (as a standby cluster when the
         * other one was promoted: its agents see the record), whatever failed */
        fprintf(stderr, "drill failover: bringing %s back after the failure (--start-command)\n", p->ctx.scope);
        Err he = {{0}};
        if (!run_hook("--start-command", fo->start_cmd, fo->timeout_s, fo->hook_log, &he))
            fprintf(stderr, "drill failover: %s; bring %s back by hand, then 'pgvigil site status'\n", he.msg,
                    p->ctx.scope);
    }
    drill_writer_stop(&w);
    if (rc == EXIT_OK && fo->switch_back) {
        /* the switch back loses nothing: what is missing now was already missing after the failover */
        int now_missing = drill_missing_writes(&w, &err);
        int before = (int)json_integer_value(json_object_get(report, "lost_acknowledged_writes"));
        if (now_missing < 0) {
            fprintf(stderr, "drill failover: cannot count the acknowledged writes after the switch back: %s\n", err.msg);
            rc = EXIT_FAILED;
        } else {
            json_object_set_new(report, "lost_by_switch_back",
                                json_integer(now_missing > before ? now_missing - before : 0));
        }
        if (now_missing > before) {
            fprintf(stderr, "drill failover: the switch back lost %d acknowledged write(s)\n", now_missing - before);
            rc = EXIT_FAILED;
        }
    }
    json_object_set_new(report, "acknowledged_writes", json_integer(w.n_ok));
    drill_writer_free(&w);
    json_object_set_new(report, "ok", json_boolean(rc == EXIT_OK));
    return rc;
}
