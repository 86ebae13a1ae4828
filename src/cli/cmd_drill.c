/* `pgvigil drill`: disaster-recovery drills between two sites (see cmd_site.c).
 *   drill observe     safe to schedule: checks that the standby site could be promoted now (its
 *                     standby leader runs, streams, reaches its source with its credentials, lags
 *                     little, same system identifier), the slot the primary site keeps for it,
 *                     free space for WAL, clock skew between the sites' leaders, the backup
 *                     repository's WAL from its newest backup on (no gap, not far behind);
 *                     exit 1 when a check fails
 *   drill switchover  a real drill: a site switchover and back while a writer commits through
 *                     --writer-dsn (the applications' address: a proxy); measures the RTO (the
 *                     longest time without an acknowledged write), the RPO (acknowledged writes
 *                     missing afterwards: 0 when none) and each step
 *   drill failover    a real unplanned site failover and failback under a writer (drill_failover.c)
 *   drill restore     the newest backup restored into a scratch instance and opened, timed
 *                     (drill_restore.c)
 * Both write a JSON report (--report) and a generated runbook (--runbook): the exact commands for
 * these two sites, in order, with what to check after each. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/drill.h"
#include "cli/site.h"
#include "common/lsn.h"
#include "common/strbuf.h"
#include "common/timeutil.h"
#include "pg/pg.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

typedef struct DrillOpts {
    int64_t max_lag_bytes;
    double max_lag_seconds;
    double max_skew_seconds;
    int64_t min_wal_free;
    int max_archive_behind; /* complete WAL segments the repository may lack behind the primary */
    const char *writer_dsn;
    const char *report;
    const char *runbook;
    int timeout_s;
    int pause_s;            /* between the switchover and the switch back */
    bool timeout_given;
    const char *target_dir; /* restore: where the scratch instance goes (default: under /var/tmp) */
    bool keep;              /* restore: leave the scratch directory */
    const char *stop_cmd, *start_cmd;   /* failover: take the primary site down, bring it back */
    bool switch_back;       /* failover: a site switchover back at the end */
    /* for the runbook: how this drill was pointed at the sites */
    const char *cmd_site_args;
} DrillOpts;

/* ---- checks ------------------------------------------------------------------------------ */

static void check(json_t *checks, bool *all, const char *name, bool ok, const char *fmt, ...) PRINTF_LIKE(5, 6);
static void check(json_t *checks, bool *all, const char *name, bool ok, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    json_array_append_new(checks, json_pack("{s:s, s:b, s:s}", "check", name, "ok", ok, "detail", detail));
    printf("%-4s %-22s %s\n", ok ? "ok" : "FAIL", name, detail);
    if (!ok)
        *all = false;
}

/* One value from a leader's PostgreSQL, with the superuser of the file (-c): both sites are one
 * database, with the same roles (the drill reads, never writes). */
static bool leader_query(const Config *cfg, const Member *m, const char *sql, char *out, size_t osz, Err *err)
{
    char hp[256];
    cluster_member_host(m->conn_url, hp, sizeof(hp));
    char *colon = strrchr(hp, ':');
    if (!colon || !cfg) {
        err_set(err, "needs -c FILE (postgresql.authentication.superuser) to connect to %s", m->name);
        return false;
    }
    *colon = '\0';
    return pg_remote_value(hp, atoi(colon + 1), NULL, &cfg->pg_superuser, sql, out, osz, err);
}

/* Clock offset of a leader from this machine: its now() against the middle of the query. */
static bool clock_offset(const Config *cfg, const Member *m, double *offset, Err *err)
{
    char v[64];
    double before = wall_now();
    if (!leader_query(cfg, m, "SELECT extract(epoch FROM clock_timestamp())::float8", v, sizeof(v), err))
        return false;
    double after = wall_now();
    *offset = atof(v) - (before + after) / 2;
    return true;
}

static int observe(Site *own, Site *peer, const DrillOpts *o, json_t *report)
{
    json_t *checks = json_array();
    json_object_set_new(report, "checks", checks);
    bool all = true;
    if (!peer->ctx.loaded) {
        check(checks, &all, "sites", false, "%s: %s", peer->ctx.scope, peer->ctx.load_error);
        return EXIT_FAILED;
    }
    Site *p = NULL, *d = NULL;
    bool so = site_is_standby(&own->ctx.cluster), sp = site_is_standby(&peer->ctx.cluster);
    if (so != sp) {
        p = so ? peer : own;
        d = so ? own : peer;
    }
    if (p)
        check(checks, &all, "sites", true, "%s is the primary site, %s its standby cluster", p->ctx.scope, d->ctx.scope);
    else
        check(checks, &all, "sites", false, "%s",
              so ? "both sites are standby clusters" : "neither site is a standby cluster");
    if (!p)
        return EXIT_FAILED;
    json_object_set_new(report, "primary_site", json_string(p->ctx.scope));
    json_object_set_new(report, "standby_site", json_string(d->ctx.scope));
    Cluster *P = &p->ctx.cluster, *D = &d->ctx.cluster;
    check(checks, &all, "system_identifier", P->sysid[0] && strcmp(P->sysid, D->sysid) == 0, "%s: %s, %s: %s",
          p->ctx.scope, P->sysid, d->ctx.scope, D->sysid);
    const Member *pl = site_leader(P), *dl = site_leader(D);
    bool p_ok = pl && strcmp(pl->role, "primary") == 0 && strcmp(pl->state, "running") == 0;
    check(checks, &all, "primary", p_ok, "%s: leader %s%s%s", p->ctx.scope, pl ? pl->name : "(none)",
          pl ? ", " : "", pl ? pl->state : "");
    bool d_ok = dl && strcmp(dl->role, "standby_leader") == 0 && strcmp(dl->state, "running") == 0;
    check(checks, &all, "standby_leader", d_ok, "%s: %s%s%s", d->ctx.scope, dl ? dl->name : "(none)",
          dl ? ", " : "", dl ? dl->state : "");
    json_t *st = dl ? site_member_status(&d->ctx, dl) : NULL;
    json_t *sc = json_object_get(st, "standby_cluster");
    bool reach = json_is_true(json_object_get(sc, "source_reachable"));
    bool streaming = dl && strcmp(dl->replication_state, "streaming") == 0;
    /* the source answers IDENTIFY_SYSTEM with the replication credentials: they work */
    check(checks, &all, "source_and_credentials", reach && streaming, "%s %s %s with its replication credentials%s",
          dl ? dl->name : "the standby leader", reach ? "reaches" : "does not reach", p->ctx.scope,
          streaming ? ", streaming" : ", not streaming");
    json_t *lb = json_object_get(sc, "lag_bytes"), *ls = json_object_get(sc, "lag_seconds");
    int64_t lag_b = json_is_integer(lb) ? (int64_t)json_integer_value(lb) : -1;
    double lag_s = json_is_number(ls) ? json_number_value(ls) : -1;
    check(checks, &all, "lag", lag_b >= 0 && lag_b <= o->max_lag_bytes && lag_s >= 0 && lag_s <= o->max_lag_seconds,
          "%lld bytes (at most %lld), %.1f s (at most %.0f)", (long long)lag_b, (long long)o->max_lag_bytes, lag_s,
          o->max_lag_seconds);
    json_object_set_new(report, "lag_bytes", json_integer(lag_b));
    json_object_set_new(report, "lag_seconds", json_real(lag_s));
    /* the slot the primary site keeps for the standby site */
    const char *slot = D->config.standby.primary_slot_name;
    if (slot && pl) {
        char sql[256], v[128] = "";
        Err err = {{0}};
        str_fmt(sql, sizeof(sql),
                "SELECT active::text || ' ' || coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, -1) "
                "FROM pg_replication_slots WHERE slot_name = '%s' UNION ALL SELECT 'missing' LIMIT 1",
                slot);
        bool q = leader_query(own->ctx.cfg, pl, sql, v, sizeof(v), &err);
        bool active = q && strncmp(v, "true ", 5) == 0;
        check(checks, &all, "slot", active, "%s on %s: %s", slot, pl->name,
              !q ? err.msg : active ? "active" : strcmp(v, "missing") == 0 ? "missing" : "not active");
    } else {
        check(checks, &all, "slot", true, "no primary_slot_name in %s's standby_cluster (WAL kept by wal_keep_size "
              "and the repository only)", d->ctx.scope);
    }
    /* free space for WAL on both leaders (the primary keeps WAL for the slot while the DR site lags) */
    for (int i = 0; i < 2; i++) {
        const Member *m = i == 0 ? pl : dl;
        const CliCtx *ctx = i == 0 ? &p->ctx : &d->ctx;
        if (!m)
            continue;
        json_t *ms = i == 0 ? site_member_status(ctx, m) : json_incref(st);
        json_t *fb = json_object_get(ms, "wal_free_bytes");
        int64_t free_b = json_is_integer(fb) ? (int64_t)json_integer_value(fb) : -1;
        char name[96];
        str_fmt(name, sizeof(name), "wal_space_%s", m->name);
        check(checks, &all, name, free_b >= o->min_wal_free, "%lld MB free for pg_wal (at least %lld MB)",
              (long long)(free_b / 1048576), (long long)(o->min_wal_free / 1048576));
        json_decref(ms);
    }
    json_decref(st);
    /* clock skew: last-writer-wins elsewhere and the lag in seconds here both read clocks */
    if (pl && dl) {
        double op, od;
        Err e1 = {{0}}, e2 = {{0}};
        bool q = clock_offset(own->ctx.cfg, pl, &op, &e1) && clock_offset(own->ctx.cfg, dl, &od, &e2);
        double skew = q ? (op > od ? op - od : od - op) : -1;
        if (q)
            check(checks, &all, "clock_skew", skew <= o->max_skew_seconds, "%.3f s between %s and %s (at most %.1f)",
                  skew, pl->name, dl->name, o->max_skew_seconds);
        else
            check(checks, &all, "clock_skew", false, "%s%s", e1.msg, e2.msg);
        json_object_set_new(report, "clock_skew_seconds", json_real(skew));
    }
    /* the repository: a restore (or the standby site, when the stream breaks) finds every WAL
     * segment from the newest backup on */
    {
        char wf[64] = "", detail[512];
        Err err = {{0}};
        if (pl && !leader_query(own->ctx.cfg, pl, "SELECT pg_walfile_name(pg_current_wal_lsn())", wf, sizeof(wf), &err))
            wf[0] = '\0';
        bool rok = drill_repo_wal(own->ctx.cfg, wf[0] ? wf : NULL, o->max_archive_behind, detail, sizeof(detail));
        check(checks, &all, "repository_wal", rok, "%s", detail);
    }
    check(checks, &all, "promotable_now", all, "%s %s", d->ctx.scope,
          all ? "could be promoted now" : "could not be promoted safely now");
    json_object_set_new(report, "ok", json_boolean(all));
    return all ? EXIT_OK : EXIT_FAILED;
}

/* ---- the runbook ----------------------------------------------------------------------------- */

static char *runbook(const Site *own, const Site *peer, const DrillOpts *o, const json_t *report)
{
    StrBuf b = {0};
    const char *a = own->ctx.scope, *z = peer->ctx.scope;
    const char *args = o->cmd_site_args;
    const char *primary = json_string_value(json_object_get(report, "primary_site"));
    const char *standby = json_string_value(json_object_get(report, "standby_site"));
    char now[64];
    time_t t = (time_t)wall_now();
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%d %H:%M UTC", &tm);
    strbuf_addf(&b, "# Runbook: sites %s and %s\n\nGenerated by `pgvigil drill` on %s. ", a, z, now);
    strbuf_addf(&b, "At that moment %s was the primary site and %s its standby cluster.\n\n",
                primary ? primary : "(unknown)", standby ? standby : "(unknown)");
    strbuf_addf(&b, "Every command below is run from a host that reaches both sites' etcd.\n\n");
    strbuf_addf(&b, "## 0. Before anything: look\n\n```\npgvigil site status %s\npgvigil drill observe %s\n```\n\n", args,
                args);
    strbuf_adds(&b, "Check: one primary site and one standby site; every check `ok`; the lag small. If "
                    "`source_and_credentials` fails, the standby site cannot follow: fix that first.\n\n");
    strbuf_addf(&b, "## 1. Planned: switch the primary site (maintenance, drills)\n\n```\npgvigil site switchover %s\n```\n\n",
                args);
    strbuf_adds(&b, "Check: it ends with `site switchover done ...: <other> is the primary site`. Applications "
                    "going through the proxy wait a second or two, nothing is lost. If it says it rolled back, the "
                    "standby site did not receive the last WAL in time: the old primary site is primary again "
                    "(on a new timeline), nothing was lost; find out why (network, `pgvigil drill observe`) and "
                    "retry. Switching back is the same command.\n\n");
    strbuf_addf(&b, "Then:\n\n```\npgvigil site status %s\n```\n\nCheck: the old primary site is a standby site, "
                    "following, with a small lag.\n\n", args);
    strbuf_addf(&b, "## 2. Unplanned: the primary site is lost\n\n1. Make sure it cannot take writes: its servers are "
                    "down, or cut off from every client and from the other site. (With `site.peer` in its agents' "
                    "files, a site that comes back makes itself a standby cluster as soon as it can read the other "
                    "site's etcd; before that read it takes no primary role.)\n2. Promote the standby site:\n\n"
                    "```\npgvigil site promote --old-site-fenced %s\n```\n\n", args);
    strbuf_adds(&b, "Check: `site promote done`. It is refused while the old site's etcd shows a running primary: "
                    "then the old site is not lost; use `site switchover`.\n\n");
    strbuf_addf(&b, "## 3. After an unplanned promotion: the old site comes back\n\n1. Start its etcd, then its "
                    "agents. With `site.peer` in their files they make it a standby cluster themselves; otherwise "
                    "run:\n\n```\npgvigil site rejoin %s\n```\n\n", args);
    strbuf_adds(&b, "2. Its leader rewinds from the new primary site (no copy). Before that it keeps the WAL the "
                    "other site never had beside its server log (`pgvigil-divergence-<time>/`, with `report.json`: "
                    "the committed transactions, their ids and tables). Read it: those commits are not in the new "
                    "primary site.\n3. Check: `pgvigil site status` shows it following.\n4. To make it the primary "
                    "site again, run step 1 (a planned switchover).\n\n");
    strbuf_addf(&b, "## Measured by this drill\n\n```json\n");
    char *js = json_dumps(report, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    strbuf_adds(&b, js ? js : "{}");
    free(js);
    strbuf_adds(&b, "\n```\n");
    return strbuf_take(&b);
}

static bool write_text(const char *path, const char *text, const char *what)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        cli_error(NULL, "%s %s: %s", what, path, strerror(errno));
        return false;
    }
    return true;
}

/* Before a real drill: the writer's table, and the checks of observe (the sites must be ready). */
static int drill_ready(Site *own, Site *peer, const DrillOpts *o, json_t *report, const char *kind)
{
    Err err = {{0}};
    if (!drill_writer_prepare(o->writer_dsn, &err)) {
        cli_error(NULL, "%s", err.msg);
        return EXIT_FAILED;
    }
    json_t *pre = json_object();
    printf("checks before the drill:\n");
    int rc = observe(own, peer, o, pre);
    json_object_set_new(report, "before", pre);
    if (rc != EXIT_OK)
        cli_error("fix what failed, then run the drill again", "drill %s: the sites are not ready", kind);
    return rc;
}

static int switchover_drill(Site *own, Site *peer, const DrillOpts *o, json_t *report)
{
    if (!o->writer_dsn) {
        cli_error("give the applications' address, e.g. --writer-dsn 'host=proxy port=5000 dbname=postgres'",
                  "drill switchover needs --writer-dsn");
        return EXIT_USAGE;
    }
    Err err = {{0}};
    int rc = drill_ready(own, peer, o, report, "switchover");
    if (rc != EXIT_OK)
        return rc;
    Writer w;
    drill_writer_start(&w, o->writer_dsn);
    sleep_ms(1000);
    json_t *steps = json_array();
    json_object_set_new(report, "switchovers", steps);
    for (int round = 0; round < 2 && rc == EXIT_OK; round++) {
        SiteSteps ss;
        int64_t t0 = (int64_t)(wall_now() * 1000);
        rc = site_switchover_run(own, peer, o->timeout_s, &ss);
        int64_t t1 = (int64_t)(wall_now() * 1000);
        sleep_ms((int64_t)o->pause_s * 1000);   /* writes resume; their gap is measured up to here */
        int64_t t2 = (int64_t)(wall_now() * 1000);
        pthread_mutex_lock(&w.mu);
        double rto = drill_longest_gap(&w, t0, t2);
        int after = drill_writes_between(&w, t1, t2);
        pthread_mutex_unlock(&w.mu);
        json_t *one = json_pack("{s:s, s:s, s:b, s:f, s:f, s:f, s:f, s:f, s:f, s:i}", "from", ss.from, "to", ss.to,
                                "ok", rc == EXIT_OK, "rto_seconds", rto, "total_seconds", (t1 - t0) / 1000.0,
                                "demote_seconds", ss.demote, "catch_up_seconds", ss.catch_up, "promote_seconds",
                                ss.promote, "follow_seconds", ss.follow, "new_timeline", ss.new_timeline);
        json_object_set_new(one, "writes_after", json_integer(after));
        json_array_append_new(steps, one);
        if (rc == EXIT_OK && after == 0) {
            fprintf(stderr, "drill: no write was acknowledged in the %d s after the switch to %s\n", o->pause_s, ss.to);
            rc = EXIT_FAILED;
        }
        printf("drill: switchover %s -> %s: %s, write-unavailability (RTO) %.2f s\n", ss.from, ss.to,
               rc == EXIT_OK ? "done" : "FAILED", rto);
        Err re = {{0}};
        cli_reload(&own->ctx, &re);
        cli_reload(&peer->ctx, &re);
    }
    drill_writer_stop(&w);
    int missing = drill_missing_writes(&w, &err);
    json_object_set_new(report, "acknowledged_writes", json_integer(w.n_ok));
    json_object_set_new(report, "failed_writes", json_integer(w.n_failed));
    json_object_set_new(report, "lost_acknowledged_writes", json_integer(missing));
    json_object_set_new(report, "rpo", json_string(missing == 0 ? "0" : missing < 0 ? "unknown" : "writes lost"));
    printf("drill: %d acknowledged writes, %d lost (RPO %s)\n", w.n_ok, missing,
           missing == 0 ? "0" : missing < 0 ? "unknown" : "NOT 0");
    if (missing < 0)
        fprintf(stderr, "warning: %s\n", err.msg);
    drill_writer_free(&w);
    json_object_set_new(report, "ok", json_boolean(rc == EXIT_OK && missing == 0));
    return rc == EXIT_OK && missing == 0 ? EXIT_OK : EXIT_FAILED;
}

/* The checks first (the sites must be ready, as for a switchover), then drill_failover.c. */
static int failover_drill(Site *own, Site *peer, const DrillOpts *o, json_t *report)
{
    int rc = drill_ready(own, peer, o, report, "failover");
    if (rc != EXIT_OK)
        return rc;
    char log[64];
    str_fmt(log, sizeof(log), "/tmp/pgvigil-drill-hooks.%d.log", (int)getpid());
    DrillFailover f = {.writer_dsn = o->writer_dsn, .stop_cmd = o->stop_cmd, .start_cmd = o->start_cmd,
                       .switch_back = o->switch_back, .hook_log = log, .timeout_s = o->timeout_s, .pause_s = o->pause_s};
    return drill_failover(own, peer, &f, report);
}

static void drill_usage(FILE *out)
{
    fputs("usage: pgvigil drill observe|switchover|failover|restore [options] [cluster options]\n\n"
          "Disaster-recovery drills between two sites (see 'pgvigil site --help').\n"
          "  observe      safe to schedule: could the standby site be promoted now? (standby leader\n"
          "               running and streaming, source and credentials, lag, slot, WAL space, clock\n"
          "               skew, the repository's WAL); exit 1 when a check fails\n"
          "  switchover   a real drill: site switchover and back under a writer through --writer-dsn;\n"
          "               measures write-unavailability (RTO), lost acknowledged writes (RPO) and steps\n"
          "  failover     a real drill: the primary site taken down by --stop-command, the standby\n"
          "               site promoted, the old site brought back by --start-command and rejoined by\n"
          "               rewind (--switch-back: then a site switchover back to it); measures RTO,\n"
          "               RPO, the failback time, and the divergent transactions reported\n"
          "  restore      the newest backup of -c FILE's repository restored into a scratch instance\n"
          "               (no TCP port, no archiving), recovered to the end of the archive and opened;\n"
          "               times each step, then stops and removes it\n\n"
          "options:\n"
          "      --peer-dcs-url URLS, --peer-scope NAME, --peer-namespace NS   the other site\n"
          "      --report FILE         write the results as JSON\n"
          "      --runbook FILE        write a runbook (Markdown) with the exact commands for these sites\n"
          "      --writer-dsn DSN      switchover: where the writer connects (the applications' address)\n"
          "      --max-lag-bytes N     observe: default 16777216\n"
          "      --max-lag-seconds S   observe: default 30\n"
          "      --max-skew-seconds S  observe: default 1\n"
          "      --min-wal-free-mb N   observe: default 1024\n"
          "      --max-archive-behind N  observe: complete WAL segments the repository (-c FILE's\n"
          "                            backup.repository) may lack behind the primary (default 8)\n"
          "      --pause SECONDS       switchover: writes measured this long after each switch (default 3)\n"
          "      --timeout SECONDS     switchover: per step (default 60); restore: for recovery (600)\n"
          "      --target-dir DIR      restore: the scratch directory (empty or missing; default: a new\n"
          "                            one under /var/tmp)\n"
          "      --keep                restore: leave the scratch directory (stopped) for a look\n"
          "      --stop-command CMD    failover: takes the primary site down (run with /bin/sh; e.g. ssh\n"
          "                            to its hosts and stop pgvigil and postgres, or cut its network)\n"
          "      --start-command CMD   failover: brings it back\n"
          "      --switch-back         failover: end with a site switchover back to the old site\n",
          out);
    fputs(CLI_CONN_USAGE, out);
}

int cmd_drill(int argc, char **argv)
{
    enum { OPT_REPORT = CLI_OPT_NEXT, OPT_RUNBOOK, OPT_DSN, OPT_LAG_B, OPT_LAG_S, OPT_SKEW, OPT_WALFREE, OPT_PAUSE,
           OPT_TIMEOUT, OPT_ARCH, OPT_TARGET, OPT_KEEP, OPT_STOP, OPT_START, OPT_BACK };
    static const struct option longopts[] = {
        CLI_CONN_LONGOPTS,
        SITE_PEER_LONGOPTS,
        {"report", required_argument, NULL, OPT_REPORT},
        {"runbook", required_argument, NULL, OPT_RUNBOOK},
        {"writer-dsn", required_argument, NULL, OPT_DSN},
        {"max-lag-bytes", required_argument, NULL, OPT_LAG_B},
        {"max-lag-seconds", required_argument, NULL, OPT_LAG_S},
        {"max-skew-seconds", required_argument, NULL, OPT_SKEW},
        {"min-wal-free-mb", required_argument, NULL, OPT_WALFREE},
        {"max-archive-behind", required_argument, NULL, OPT_ARCH},
        {"target-dir", required_argument, NULL, OPT_TARGET},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"stop-command", required_argument, NULL, OPT_STOP},
        {"start-command", required_argument, NULL, OPT_START},
        {"switch-back", no_argument, NULL, OPT_BACK},
        {"pause", required_argument, NULL, OPT_PAUSE},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {NULL, 0, NULL, 0},
    };
    CliConnOpts conn = {0};
    SitePeerOpts po = {0};
    DrillOpts o = {.max_lag_bytes = 16 * 1024 * 1024, .max_lag_seconds = 30, .max_skew_seconds = 1,
                   .min_wal_free = 1024LL * 1048576, .max_archive_behind = 8, .timeout_s = 60, .pause_s = 3};
    int opt, n;
    double x;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS, longopts, NULL)) != -1) {
        if (cli_conn_opt(&conn, opt, optarg) || site_peer_opt(&po, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            drill_usage(stdout);
            return EXIT_OK;
        case OPT_REPORT: o.report = optarg; break;
        case OPT_RUNBOOK: o.runbook = optarg; break;
        case OPT_DSN: o.writer_dsn = optarg; break;
        case OPT_TARGET: o.target_dir = optarg; break;
        case OPT_KEEP: o.keep = true; break;
        case OPT_STOP: o.stop_cmd = optarg; break;
        case OPT_START: o.start_cmd = optarg; break;
        case OPT_BACK: o.switch_back = true; break;
        case OPT_LAG_B:
        case OPT_WALFREE:
        case OPT_ARCH:
        case OPT_PAUSE:
        case OPT_TIMEOUT:
            if (!cli_parse_int(optarg, 0, opt == OPT_TIMEOUT || opt == OPT_PAUSE ? 86400 : INT32_MAX, &n)) {
                cli_error("run 'pgvigil drill --help'", "expected a whole number, got \"%s\"", optarg);
                return EXIT_USAGE;
            }
            if (opt == OPT_LAG_B)
                o.max_lag_bytes = n;
            else if (opt == OPT_WALFREE)
                o.min_wal_free = (int64_t)n * 1048576;
            else if (opt == OPT_ARCH)
                o.max_archive_behind = n;
            else if (opt == OPT_PAUSE)
                o.pause_s = n;
            else {
                o.timeout_s = n > 0 ? n : 1;
                o.timeout_given = true;
            }
            break;
        case OPT_LAG_S:
        case OPT_SKEW:
            if (!config_parse_seconds(optarg, &x)) {
                cli_error("run 'pgvigil drill --help'", "expected seconds, got \"%s\"", optarg);
                return EXIT_USAGE;
            }
            if (opt == OPT_LAG_S)
                o.max_lag_seconds = x;
            else
                o.max_skew_seconds = x;
            break;
        default:
            return cli_bad_option("drill", opt, argv);
        }
    }
    if (optind + 1 != argc || (strcmp(argv[optind], "observe") != 0 && strcmp(argv[optind], "switchover") != 0 &&
                               strcmp(argv[optind], "restore") != 0 && strcmp(argv[optind], "failover") != 0)) {
        cli_error("run 'pgvigil drill --help'", "drill: which one? observe, switchover, failover or restore");
        return EXIT_USAGE;
    }
    const char *kind = argv[optind];
    if (strcmp(kind, "failover") == 0 && (!o.writer_dsn || !o.stop_cmd || !o.start_cmd)) {
        cli_error("run 'pgvigil drill --help'", "drill failover needs --writer-dsn, --stop-command and --start-command");
        return EXIT_USAGE;
    }
    if (strcmp(argv[optind], "restore") == 0) {
        /* one site's repository: no other site involved */
        if (!conn.config_path) {
            cli_error("give the node file whose backup section names the repository",
                      "drill restore: -c FILE is required");
            return EXIT_USAGE;
        }
        if (o.target_dir && o.target_dir[0] != '/') {
            cli_error(NULL, "drill restore: --target-dir must be an absolute path");
            return EXIT_USAGE;
        }
        json_t *report = json_pack("{s:s, s:I}", "drill", "restore", "at", (json_int_t)wall_now());
        int rc = drill_restore(conn.config_path, o.target_dir, o.keep, o.timeout_given ? o.timeout_s : 600, report);
        if (o.report) {
            char *js = json_dumps(report, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            if (!js || !write_text(o.report, js, "--report"))
                rc = EXIT_FAILED;
            free(js);
        }
        json_decref(report);
        return rc;
    }
    bool sw = strcmp(kind, "switchover") == 0, fo = strcmp(kind, "failover") == 0;
    Site own, peer;
    int rc = site_open_pair(&conn, &po, !sw && !fo, &own, &peer);
    if (rc != EXIT_OK)
        return rc;
    /* how the runbook's commands name the two sites: as this drill was run */
    StrBuf args = {0};
    if (conn.config_path)
        strbuf_addf(&args, "-c %s", conn.config_path);
    else
        strbuf_addf(&args, "--dcs-url %s --scope %s", conn.dcs_url ? conn.dcs_url : CLI_DEFAULT_DCS_URL, own.ctx.scope);
    if (po.url)
        strbuf_addf(&args, " --peer-dcs-url %s", po.url);
    if (po.scope)
        strbuf_addf(&args, " --peer-scope %s", po.scope);
    char *args_text = strbuf_take(&args);
    o.cmd_site_args = args_text;
    json_t *report = json_pack("{s:s, s:I, s:s, s:s}", "drill", kind, "at", (json_int_t)wall_now(), "site",
                               own.ctx.scope, "peer", peer.ctx.scope);
    rc = sw ? switchover_drill(&own, &peer, &o, report)
         : fo ? failover_drill(&own, &peer, &o, report)
              : observe(&own, &peer, &o, report);
    if (o.report) {
        char *js = json_dumps(report, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!js || !write_text(o.report, js, "--report"))
            rc = EXIT_FAILED;
        free(js);
    }
    if (o.runbook) {
        char *md = runbook(&own, &peer, &o, report);
        if (!write_text(o.runbook, md, "--runbook"))
            rc = EXIT_FAILED;
        free(md);
    }
    json_decref(report);
    free(args_text);
    site_close_pair(&own, &peer);
    return rc;
}
