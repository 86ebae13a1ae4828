/* `pgvigil site`: two data centers, each an ordinary pgvigil cluster with its own etcd, one the
 * primary site and the other a standby cluster following it (standby_cluster in its config).
 *   site status      which site is primary, each site's leader, the DR site's position
 *   site switchover  hand the primary role to the other site and back, with no lost commit and
 *                    no re-clone: the primary site's leader stops cleanly and restarts as a standby
 *                    leader following the other site (its shutdown checkpoint is its last record);
 *                    once the other site's standby leader has received everything up to that
 *                    checkpoint it is promoted (its standby_cluster removed). Every step is
 *                    recorded in both sites' pgvigil_site key; running the command again resumes
 *                    an interrupted switchover, and once done switches back.
 * The other site is given by --peer-dcs-url/--peer-scope or the file's site.peer section. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/site.h"
#include "dcs/site_record.h"
#include "common/lsn.h"
#include "common/strbuf.h"
#include "common/timeutil.h"
#include "pg/pg.h"

#include <jansson.h>

#define SITE_POLL_MS 100


static void site_usage(FILE *out)
{
    fputs("usage: pgvigil site status|switchover|promote|rejoin [options] [cluster options]\n\n"
          "Two sites (data centers), each its own pgvigil cluster and etcd; one is the primary site, the\n"
          "other a standby cluster following it (standby_cluster in its dynamic configuration).\n"
          "  status       both sites: which is primary, their leaders, the standby site's lag\n"
          "  switchover   make the standby site the primary site, and this one its standby cluster:\n"
          "               no lost commit, no re-clone; run it again to switch back\n"
          "  promote      the primary site is lost: make the standby site the primary site. Refused while\n"
          "               the other site runs a primary; without --old-site-fenced, refused while the\n"
          "               other site cannot be checked\n"
          "  rejoin       the old primary site is back: make it a standby cluster of the promoted one (its\n"
          "               leader rewinds, listing what the other site never had). Agents with site.peer in\n"
          "               their file do it themselves when they can read the other site's etcd, and take\n"
          "               no primary role before they tried once\n\n"
          "options:\n"
          "      --peer-dcs-url URLS   the other site's etcd (default: site.peer.etcd3.hosts of -c FILE)\n"
          "      --peer-scope NAME     the other site's cluster name (default: site.peer.scope)\n"
          "      --peer-namespace NS   its key namespace (default: site.peer.namespace, else this one's)\n"
          "      --timeout SECONDS     how long each step may take (default 60)\n"
          "      --json                status: print JSON\n"
          "      --old-site-fenced     promote: the operator confirms the other site is stopped or cut off\n"
          "      --target-time TIME    promote: open the standby site as it was at TIME (a delayed DR site, before\n"
          "                            a bad write): its standby leader recovers to TIME only; a primary site that\n"
          "                            still runs is demoted first and rejoins by rewind, its later writes listed\n",
          out);
    fputs(CLI_CONN_USAGE, out);
}

const Member *site_leader(const Cluster *c)
{
    return c->leader[0] ? cluster_member(c, c->leader) : NULL;
}

bool site_is_standby(const Cluster *c)
{
    return c->config.standby.present;
}

/* Merge a JSON patch into a site's config key (retrying when it changed under us); the result
 * must be a valid dynamic configuration. */
static bool patch_config(CliCtx *ctx, const char *patch, Err *err)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        const Cluster *c = &ctx->cluster;
        char *json = dynconfig_json_merge(c->config_json ? c->config_json : "{}", patch, err);
        if (!json)
            return false;
        DynConfig dc;
        bool ok = dynconfig_from_json(json, &dc, err);
        dynconfig_free(&dc);
        if (!ok) {
            err_prefix(err, "%s: the new configuration is invalid: ", ctx->scope);
            free(json);
            return false;
        }
        bool swapped = false;
        ok = ctx->dcs->ops->cas_rev(ctx->dcs, "config", c->has_config ? c->config_mod_revision : 0, json, &swapped,
                                    NULL, err);
        free(json);
        if (!ok)
            return false;
        if (swapped) {
            Err re = {{0}};
            cli_reload(ctx, &re);   /* the next wait reloads anyway */
            return true;
        }
        if (!cli_reload(ctx, err))
            return false;
    }
    err_set(err, "%s: the config key kept changing under us", ctx->scope);
    return false;
}

/* pgvigil_site of one site: what happened last (the switchover's steps, in both sites) */
static bool put_site_record(CliCtx *ctx, json_t *rec, Err *err)
{
    char *s = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    bool ok = s && ctx->dcs->ops->put(ctx->dcs, "pgvigil_site", s, false, err);
    free(s);
    return ok;
}

/* The epoch of a site's record: every change of the primary site raises it, in both sites when
 * both are reachable; a site whose record's epoch is below the other's was superseded. */
static int64_t record_epoch(const CliCtx *ctx)
{
    return ctx->loaded ? cluster_site_epoch(&ctx->cluster) : 0;
}

static int64_t next_epoch(const Site *a, const Site *b)
{
    int64_t x = record_epoch(&a->ctx), y = record_epoch(&b->ctx);
    return (x > y ? x : y) + 1;
}

static bool record_both(Site *p, Site *d, int64_t epoch, const char *state, json_t *extra, Err *err)
{
    json_t *rec = json_pack("{s:s, s:s, s:s, s:I, s:I}", "state", state, "from", p->ctx.scope, "to", d->ctx.scope,
                            "at", (json_int_t)wall_now(), "epoch", (json_int_t)epoch);
    if (extra)
        json_object_update(rec, extra);
    bool ok = put_site_record(&p->ctx, rec, err) && put_site_record(&d->ctx, rec, err);
    json_decref(rec);
    return ok;
}

/* The record's state and destination ("" when absent). */
static void site_record(const Cluster *c, char *state, size_t ssz, char *to, size_t tsz)
{
    state[0] = to[0] = '\0';
    json_t *o = c->site_json ? json_loads(c->site_json, 0, NULL) : NULL;
    const char *s = json_string_value(json_object_get(o, "state"));
    const char *t = json_string_value(json_object_get(o, "to"));
    str_copy(state, ssz, s ? s : "");
    str_copy(to, tsz, t ? t : "");
    json_decref(o);
}

typedef bool (*SiteCond)(const Cluster *c, const void *arg, char *why, size_t wsz);

/* The site's record is a site promote's (a failover, or one at a target time) not finished. */
static bool interrupted_promote(const Cluster *c)
{
    json_t *o = c->site_json ? json_loads(c->site_json, 0, NULL) : NULL;
    const char *st = json_string_value(json_object_get(o, "state"));
    bool yes = st && strcmp(st, "promoting") == 0 &&
               (json_object_get(o, "kind") || (json_object_get(o, "target_time") && !json_is_true(json_object_get(o, "target_done"))));
    json_decref(o);
    return yes;
}

/* Reload the site until cond holds, or the deadline; false + err naming what was awaited. */
static bool wait_for(Site *s, SiteCond cond, const void *arg, const char *what, int64_t timeout_ms, Err *err)
{
    int64_t deadline = mono_ms() + timeout_ms;
    char why[256] = "";
    for (;;) {
        Err e = {{0}};
        if (cli_reload(&s->ctx, &e)) {
            if (cond(&s->ctx.cluster, arg, why, sizeof(why)))
                return true;
        } else {
            str_copy(why, sizeof(why), e.msg);
        }
        if (mono_ms() >= deadline) {
            err_set(err, "%s: %s did not happen within %lld s%s%s", s->ctx.scope, what, (long long)(timeout_ms / 1000),
                    why[0] ? ": " : "", why);
            return false;
        }
        sleep_ms(SITE_POLL_MS);
    }
}

/* the demoted site's leader runs again, as a standby leader; the very member that was its
 * primary ("" when not known: a resumed switchover), since only its position says where the
 * site's WAL ended */
static bool demoted(const Cluster *c, const void *arg, char *why, size_t wsz)
{
    const char *was = arg;
    const Member *l = site_leader(c);
    if (!l) {
        str_copy(why, wsz, "no leader");
        return false;
    }
    str_fmt(why, wsz, "leader %s is %s, %s", l->name, l->role, l->state);
    if (was[0] && strcmp(l->name, was) != 0) {
        str_fmt(why, wsz, "the leader changed from %s to %s during the demotion", was, l->name);
        return false;
    }
    return strcmp(l->role, "standby_leader") == 0 && strcmp(l->state, "running") == 0 && l->xlog_location > 0;
}

typedef struct Position {
    Lsn lsn;
    int timeline;
} Position;

/* the standby site's leader has received everything up to the demoted site's last record */
static bool caught_up(const Cluster *c, const void *arg, char *why, size_t wsz)
{
    const Position *want = arg;
    const Member *l = site_leader(c);
    if (!l) {
        str_copy(why, wsz, "no leader");
        return false;
    }
    char a[LSN_BUFSZ], b[LSN_BUFSZ];
    str_fmt(why, wsz, "leader %s has %s on timeline %d, the other site ended at %s on timeline %d", l->name,
            lsn_format(l->xlog_location, a), l->timeline, lsn_format(want->lsn, b), want->timeline);
    return l->timeline == want->timeline && l->xlog_location >= want->lsn;
}

static bool promoted(const Cluster *c, const void *arg, char *why, size_t wsz)
{
    (void)arg;
    const Member *l = site_leader(c);
    if (!l) {
        str_copy(why, wsz, "no leader");
        return false;
    }
    str_fmt(why, wsz, "leader %s is %s, %s", l->name, l->role, l->state);
    return strcmp(l->role, "primary") == 0 && strcmp(l->state, "running") == 0;
}

/* the new standby site streams from the new primary site, on its timeline */
static bool following(const Cluster *c, const void *arg, char *why, size_t wsz)
{
    const int *timeline = arg;
    const Member *l = site_leader(c);
    if (!l) {
        str_copy(why, wsz, "no leader");
        return false;
    }
    str_fmt(why, wsz, "leader %s: %s, timeline %d", l->name, l->replication_state[0] ? l->replication_state : l->state,
            l->timeline);
    /* running too: a switchover back (drill failover --switch-back) starts right after */
    return strcmp(l->role, "standby_leader") == 0 && strcmp(l->state, "running") == 0 &&
           strcmp(l->replication_state, "streaming") == 0 && l->timeline >= *timeline;
}

bool site_wait_following(Site *s, int timeline, int64_t timeout_ms, Err *err)
{
    return wait_for(s, following, &timeline, "streaming as a standby cluster on the new timeline", timeout_ms, err);
}

/* Does the standby leader reach its source now? Its agent checks every couple of seconds (a
 * walreceiver cut off silently says "streaming" until wal_receiver_timeout). */
/* A member's GET /patroni, parsed (NULL when it does not answer). */
json_t *site_member_status(const CliCtx *ctx, const Member *m)
{
    char *base = cli_api_base(m->api_url);
    char *url = str_printf("%s/patroni", base);
    long code = 0;
    char *resp = NULL;
    Err err = {{0}};
    bool ok = cli_http("GET", url, NULL, ctx->api_user, ctx->api_password, 3000, &code, &resp, &err) && code == 200;
    json_t *o = ok ? json_loads(resp, 0, NULL) : NULL;
    free(resp);
    free(url);
    free(base);
    return o;
}

static bool source_reachable(const CliCtx *ctx, const Member *leader)
{
    json_t *o = site_member_status(ctx, leader);
    bool ok = json_is_true(json_object_get(json_object_get(o, "standby_cluster"), "source_reachable"));
    json_decref(o);
    return ok;
}

/* The standby site never received the demoted site's last record: make the demoted site the
 * primary site again (its standby leader is promoted, on a new timeline the standby site then
 * follows). Nothing was lost: the standby site was never promoted. */
static int roll_back(Site *p, Site *d, int64_t epoch, const Err *why, int64_t tmo)
{
    fprintf(stderr, "site switchover: %s\nrolling back: %s becomes the primary site again\n", why->msg, p->ctx.scope);
    Err err = {{0}};
    if (!record_both(p, d, epoch, "rolled back", NULL, &err) || !cli_reload(&p->ctx, &err) ||
        !patch_config(&p->ctx, "{\"standby_cluster\":null}", &err) ||
        !wait_for(p, promoted, NULL, "the promotion of its standby leader", tmo, &err)) {
        cli_error("remove standby_cluster from one site by hand (edit-config --set standby_cluster=null)",
                  "site switchover: the rollback failed: %s", err.msg);
        return EXIT_FAILED;
    }
    cli_error("find out why the standby site did not receive the primary site's WAL, then try again",
              "site switchover failed and was rolled back: %s is the primary site again (timeline %d)", p->ctx.scope,
              site_leader(&p->ctx.cluster)->timeline);
    return EXIT_FAILED;
}

static int fail_step(const char *hint, const Err *err)
{
    cli_error(hint, "site switchover: %s", err->msg);
    return EXIT_FAILED;
}

/* The last step: the demoted site p streams from the new primary site d on new_tl. */
static int finish_switchover(Site *p, Site *d, int64_t epoch, int new_tl, json_t *extra, int64_t t0, int64_t tmo,
                             SiteSteps *steps)
{
    Err err = {{0}};
    if (!wait_for(p, following, &new_tl, "its standby leader streaming from the new primary site", tmo, &err)) {
        fprintf(stderr, "warning: %s\n", err.msg);
        return EXIT_FAILED;
    }
    int64_t t_end = mono_ms();
    if (steps) {
        steps->follow = (t_end - t0) / 1000.0 - steps->demote - steps->catch_up - steps->promote;
        steps->total = (t_end - t0) / 1000.0;
        steps->new_timeline = new_tl;
        str_copy(steps->from, sizeof(steps->from), p->ctx.scope);
        str_copy(steps->to, sizeof(steps->to), d->ctx.scope);
    }
    json_object_set_new(extra, "seconds", json_real((t_end - t0) / 1000.0));
    json_object_set_new(extra, "new_timeline", json_integer(new_tl));
    if (!record_both(p, d, epoch, "done", extra, &err))
        fprintf(stderr, "warning: cannot record the end of the switchover: %s\n", err.msg);
    printf("  %s: %s streams from %s\n", p->ctx.scope, site_leader(&p->ctx.cluster)->name, d->ctx.scope);
    printf("site switchover done in %.1f s: %s is the primary site, %s its standby cluster\n", (t_end - t0) / 1000.0,
           d->ctx.scope, p->ctx.scope);
    return EXIT_OK;
}

int site_switchover_run(Site *own, Site *peer, int timeout_s, SiteSteps *steps)
{
    if (steps)
        memset(steps, 0, sizeof(*steps));
    int64_t tmo = (int64_t)timeout_s * 1000;
    Cluster *oc = &own->ctx.cluster, *pc = &peer->ctx.cluster;
    Site *p, *d;   /* the primary site (to demote) and the standby site (to promote) */
    bool resume = false;
    if (!site_is_standby(oc) && site_is_standby(pc)) {
        p = own;
        d = peer;
    } else if (site_is_standby(oc) && !site_is_standby(pc)) {
        p = peer;
        d = own;
    } else if (site_is_standby(oc) && site_is_standby(pc)) {
        /* both follow: a switchover stopped between its demotion and its promotion */
        char st[32], to[128];
        site_record(oc, st, sizeof(st), to, sizeof(to));
        if (strcmp(st, "demoting") != 0 && strcmp(st, "promoting") != 0) {
            cli_error("promote one of them ('pgvigil site promote'), or remove standby_cluster from one with "
                      "edit-config", "site switchover: %s and %s are both standby clusters and no switchover between "
                      "them is under way", own->ctx.scope, peer->ctx.scope);
            return EXIT_STATE;
        }
        if (interrupted_promote(oc) || interrupted_promote(pc)) {
            /* a site promote's record: finishing it as a switchover would promote at the end of
             * the WAL, past the time it was asked to open at */
            cli_error("run the same 'pgvigil site promote' again (with --old-site-fenced: the other site is a standby "
                      "cluster already)",
                      "site switchover: %s and %s are both standby clusters because a site promote was interrupted",
                      own->ctx.scope, peer->ctx.scope);
            return EXIT_STATE;
        }
        d = strcmp(to, own->ctx.scope) == 0 ? own : peer;
        p = d == own ? peer : own;
        resume = true;
        printf("resuming the switchover from %s to %s (%s)\n", p->ctx.scope, d->ctx.scope, st);
    } else {
        cli_error("make one of them a standby cluster (standby_cluster in its dynamic configuration)",
                  "site switchover: neither %s nor %s is a standby cluster: both are primary sites", own->ctx.scope,
                  peer->ctx.scope);
        return EXIT_STATE;
    }
    Cluster *P = &p->ctx.cluster, *D = &d->ctx.cluster;
    if (!resume) {
        /* a switchover to p that stopped after promoting it: only its last step is left */
        char st[32], to[128];
        site_record(P, st, sizeof(st), to, sizeof(to));
        const Member *pl = site_leader(P);
        if (strcmp(st, "promoting") == 0 && strcmp(to, p->ctx.scope) == 0 && pl && interrupted_promote(P)) {
            cli_error("run the same 'pgvigil site promote' again", "site switchover: %s's promotion by a site promote "
                      "is not finished", p->ctx.scope);
            return EXIT_STATE;
        }
        if (strcmp(st, "promoting") == 0 && strcmp(to, p->ctx.scope) == 0 && pl) {
            printf("completing the switchover from %s to %s\n", d->ctx.scope, p->ctx.scope);
            json_t *extra = json_object();
            int rc = finish_switchover(d, p, record_epoch(&p->ctx), pl->timeline, extra, mono_ms(),
                                       (int64_t)timeout_s * 1000, steps);
            json_decref(extra);
            return rc;
        }
    }
    if (P->sysid[0] && D->sysid[0] && strcmp(P->sysid, D->sysid) != 0) {
        cli_error("a standby cluster copies its primary site: these two are different databases",
                  "site switchover: %s has system identifier %s but %s has %s", p->ctx.scope, P->sysid, d->ctx.scope,
                  D->sysid);
        return EXIT_STATE;
    }
    const Member *dl = site_leader(D);
    if (!dl || strcmp(dl->role, "standby_leader") != 0 || strcmp(dl->state, "running") != 0) {
        cli_error("wait until it has a running standby leader (pgvigil list)",
                  "site switchover: %s has no running standby leader%s%s", d->ctx.scope, dl ? ": " : "",
                  dl ? dl->name : "");
        return EXIT_STATE;
    }
    Err err = {{0}};
    int64_t t0 = mono_ms(), t_demoted = t0, t_caught = t0, t_promoted = t0;
    int64_t epoch = resume ? record_epoch(&own->ctx) : next_epoch(p, d);
    char was_primary[NAME_MAX_LEN] = "";
    if (!resume) {
        const Member *pl = site_leader(P);
        if (!pl || strcmp(pl->role, "primary") != 0 || strcmp(pl->state, "running") != 0) {
            cli_error("wait until it has a running primary (pgvigil list)", "site switchover: %s has no running primary",
                      p->ctx.scope);
            return EXIT_STATE;
        }
        if (strcmp(dl->replication_state, "streaming") != 0 || !source_reachable(&d->ctx, dl)) {
            cli_error("a clean stop hands the last WAL only to a standby connected at that moment",
                      "site switchover refused: %s's standby leader %s is not streaming from %s", d->ctx.scope,
                      dl->name, p->ctx.scope);
            return EXIT_STATE;
        }
        str_copy(was_primary, sizeof(was_primary), pl->name);
        json_t *sc = site_standby_for(D, d->ctx.scope, &D->config.standby, &err);
        if (!sc)
            return fail_step("nothing was changed", &err);
        json_t *patch = json_pack("{s:o}", "standby_cluster", sc);
        char *text = json_dumps(patch, JSON_COMPACT);
        json_decref(patch);
        printf("switching the primary site from %s to %s\n", p->ctx.scope, d->ctx.scope);
        bool ok = record_both(p, d, epoch, "demoting", NULL, &err) && patch_config(&p->ctx, text, &err);
        free(text);
        if (!ok)
            return fail_step("nothing was changed in the clusters; run it again", &err);
        printf("  %s: standby_cluster set; its leader stops cleanly and restarts as a standby leader\n", p->ctx.scope);
    }
    if (!wait_for(p, demoted, was_primary, "its leader restarting as a standby leader", tmo, &err))
        return fail_step("run 'pgvigil site switchover' again to resume; to undo, remove standby_cluster from the "
                         "demoted site (edit-config --set standby_cluster=null)", &err);
    const Member *pl = site_leader(P);
    Position end = {pl->xlog_location, pl->timeline};
    t_demoted = mono_ms();
    char lsn[LSN_BUFSZ];
    printf("  %s: %s stopped cleanly at %s on timeline %d (%.1f s)\n", p->ctx.scope, pl->name,
           lsn_format(end.lsn, lsn), end.timeline, (t_demoted - t0) / 1000.0);
    if (!wait_for(d, caught_up, &end, "its standby leader receiving everything the other site wrote", tmo, &err))
        return roll_back(p, d, epoch, &err, tmo);
    t_caught = mono_ms();
    dl = site_leader(D);
    printf("  %s: %s has received everything up to %s (%.1f s)\n", d->ctx.scope, dl->name, lsn, (t_caught - t_demoted) / 1000.0);
    json_t *extra = json_pack("{s:s, s:i}", "lsn", lsn, "timeline", end.timeline);
    bool ok = record_both(p, d, epoch, "promoting", extra, &err) &&
              patch_config(&d->ctx, "{\"standby_cluster\":null}", &err);
    if (!ok) {
        json_decref(extra);
        return fail_step("run 'pgvigil site switchover' again to resume", &err);
    }
    if (!wait_for(d, promoted, NULL, "the promotion of its standby leader", tmo, &err)) {
        json_decref(extra);
        return fail_step("see the agents' logs; run 'pgvigil site switchover' again to resume", &err);
    }
    t_promoted = mono_ms();
    dl = site_leader(D);
    printf("  %s: %s promoted, timeline %d: %s is the primary site (%.1f s)\n", d->ctx.scope, dl->name, dl->timeline,
           d->ctx.scope, (t_promoted - t_caught) / 1000.0);
    if (steps) {
        steps->demote = (t_demoted - t0) / 1000.0;
        steps->catch_up = (t_caught - t_demoted) / 1000.0;
        steps->promote = (t_promoted - t_caught) / 1000.0;
    }
    int rc = finish_switchover(p, d, epoch, dl->timeline, extra, t0, tmo, steps);
    json_decref(extra);
    return rc;
}

/* A member of the site runs a writable PostgreSQL (as its records say). */
static const Member *running_primary(const Cluster *c)
{
    for (int i = 0; i < c->n_members; i++)
        if (strcmp(c->members[i].role, "primary") == 0 && strcmp(c->members[i].state, "running") == 0)
            return &c->members[i];
    return NULL;
}

/* What a superseded site becomes: a standby cluster of the promoted one, with the settings the
 * promoted site had as a standby cluster (restore_command, delay, methods). */
static json_t *rejoin_as(const Site *newp, const StandbyCluster *old, Err *err)
{
    return site_standby_for(&newp->ctx.cluster, newp->ctx.scope, old, err);
}

/* the old primary site runs no writable server any more (demoted to follow the other one) */
/* the old primary site writes no more: no member with the primary role (whatever its state: a
 * demotion in progress still takes writes), its leader a running standby leader */
static bool stopped_writing(const Cluster *c, const void *arg, char *why, size_t wsz)
{
    const char *was = arg;   /* its primary: only its position says where the site's WAL ended */
    for (int i = 0; i < c->n_members; i++)
        if (strcmp(c->members[i].role, "primary") == 0) {
            str_fmt(why, wsz, "%s is still a primary (%s)", c->members[i].name, c->members[i].state);
            return false;
        }
    const Member *l = site_leader(c);
    if (!l) {
        str_copy(why, wsz, "no leader");
        return false;
    }
    str_fmt(why, wsz, "leader %s is %s, %s", l->name, l->role, l->state);
    if (strcmp(l->name, was) != 0) {
        str_fmt(why, wsz, "the leader changed from %s to %s during the demotion", was, l->name);
        return false;
    }
    return strcmp(l->role, "standby_leader") == 0 && strcmp(l->state, "running") == 0 && l->xlog_location > 0;
}

/* site promote: the standby site becomes the primary site while the primary site is lost. Never
 * while the other site is known to run a primary; without --old-site-fenced, never while it
 * cannot be checked (it could come back and take writes of its own).
 * With target_time T (a delayed DR site opened before a bad write): the standby leader recovers
 * to T only, then is promoted; a primary site that still runs is demoted first (made a standby
 * cluster of this one: it rejoins by rewind once this one is promoted, and its agents list what
 * it had after T before rewinding it away). */
static int promote_run(Site *own, Site *peer, bool fenced, const char *target_time, int timeout_s, Member *paused,
                       bool *promoting);

/* A promotion given up before the standby site was changed: both records say "rolled back"
 * (the named member's agent removes its marker), and with unmark the old site's standby_cluster
 * is removed again; false when that last step failed. Frees rec. */
static bool abandon(Site *p, Site *d, json_t *rec, bool unmark)
{
    Err ue = {{0}};
    json_object_set_new(rec, "state", json_string("rolled back"));
    if (!put_site_record(&d->ctx, rec, &ue))
        fprintf(stderr, "warning: %s's pgvigil_site record still says \"promoting\" (%s): its standby leader stays "
                        "held for the promotion; write the record again or run site promote again\n",
                d->ctx.scope, ue.msg);
    if (p->ctx.loaded)
        put_site_record(&p->ctx, rec, &ue);
    json_decref(rec);
    return !unmark || patch_config(&p->ctx, "{\"standby_cluster\":null}", &ue);
}

/* the member to open at T says it is ready: its marker is written (GET /patroni: promote_at) */
typedef struct MemberOf {
    const CliCtx *ctx;   /* (its REST credentials) */
    const char *name;
    const char *when;    /* the target time its marker must hold */
} MemberOf;

static bool marker_ready(const Cluster *c, const void *arg, char *why, size_t wsz)
{
    const MemberOf *mo = arg;
    const char *name = mo->name;
    const Member *m = cluster_member(c, name);
    if (!m) {
        str_fmt(why, wsz, "%s has no member record", name);
        return false;
    }
    json_t *o = site_member_status(mo->ctx, m);
    const char *at = json_string_value(json_object_get(o, "promote_at"));
    bool ready = at && strcmp(at, mo->when) == 0;
    str_fmt(why, wsz, "%s: %s", name, ready ? "ready" : o ? "no marker yet" : "its REST API does not answer");
    json_decref(o);
    return ready;
}

int site_promote_run(Site *own, Site *peer, bool fenced, const char *target_time, int timeout_s)
{
    Member paused = {0};
    bool promoting = false;
    int rc = promote_run(own, peer, fenced, target_time, timeout_s, &paused, &promoting);
    if (rc != EXIT_OK && paused.name[0] && !promoting) {
        /* refused or rolled back before the standby site was changed: it applies WAL again */
        Err err = {{0}};
        if (!site_target_pause(own, &paused, false, &err))
            fprintf(stderr, "warning: %s's replay is still paused (SELECT pg_wal_replay_resume() there): %s\n",
                    paused.name, err.msg);
    }
    return rc;
}

static int promote_run(Site *own, Site *peer, bool fenced, const char *target_time, int timeout_s, Member *paused,
                       bool *promoting)
{
    Site *d, *p;
    if (site_is_standby(&own->ctx.cluster)) {
        d = own;
        p = peer;
    } else if (peer->ctx.loaded && site_is_standby(&peer->ctx.cluster)) {
        d = peer;
        p = own;
    } else {
        cli_error("run it against the standby cluster (the DR site)",
                  "site promote: %s is not a standby cluster%s%s", own->ctx.scope,
                  peer->ctx.loaded ? " and neither is " : "", peer->ctx.loaded ? peer->ctx.scope : "");
        return EXIT_STATE;
    }
    if (!d->ctx.loaded) {
        cli_error("the standby site's etcd must answer", "site promote: cannot read %s: %s", d->ctx.scope,
                  d->ctx.load_error);
        return EXIT_DCS;
    }
    Cluster *D = &d->ctx.cluster;
    const Member *dl = site_leader(D);
    if (!dl || strcmp(dl->role, "standby_leader") != 0 || strcmp(dl->state, "running") != 0) {
        cli_error("wait until it has a running standby leader (pgvigil list)",
                  "site promote: %s has no running standby leader", d->ctx.scope);
        return EXIT_STATE;
    }
    Err err = {{0}};
    char at[96] = "";
    if (target_time) {
        int before = site_target_check(own, dl, target_time, at, sizeof(at), &err);
        if (before != 1) {
            cli_error(before == 0    ? "choose a later time, or rescue another member ('pgvigil rescue')"
                      : before == -2 ? "e.g. --target-time '2026-12-05 11:00:00+00'"
                                     : NULL,
                      "site promote refused: %s",
                      before == 0 ? "its standby leader already applied commits at or after that time" : err.msg);
            return before == 0 ? EXIT_STATE : before == -2 ? EXIT_USAGE : EXIT_FAILED;
        }
        /* nothing more is applied from here on (the other site may be demoted first) */
        if (!site_target_pause(own, dl, true, &err)) {
            cli_error(NULL, "site promote: cannot pause %s's replay: %s", dl->name, err.msg);
            return EXIT_FAILED;
        }
        *paused = *dl;
        target_time = at;
    }
    char target_name[NAME_MAX_LEN], was[NAME_MAX_LEN] = "";
    str_copy(target_name, sizeof(target_name), dl->name);
    int tl = dl->timeline;   /* (dl is not read again: the waits below reload the member records) */
    if (p->ctx.loaded) {
        const Member *pm = running_primary(&p->ctx.cluster);
        if (pm && target_time) {
            printf("  %s runs a primary (%s): it is demoted first, to follow %s; what it has after %s is listed by "
                   "its agents when it rejoins\n", p->ctx.scope, pm->name, d->ctx.scope, target_time);
            str_copy(was, sizeof(was), pm->name);
        } else if (pm) {
            cli_error("use 'pgvigil site switchover' while both sites run (it loses no commit), or stop that site first",
                      "site promote refused: %s is reachable and its member %s runs as a writable primary", p->ctx.scope,
                      pm->name);
            return EXIT_STATE;
        }
        if (!fenced && !was[0] && p->ctx.cluster.n_members > 0) {
            cli_error("confirm with --old-site-fenced once its servers are stopped or cut off from clients",
                      "site promote refused: %s still has %d member(s) registered in its etcd", p->ctx.scope,
                      p->ctx.cluster.n_members);
            return EXIT_STATE;
        }
    } else if (!fenced) {
        cli_error("confirm with --old-site-fenced that it is fenced or gone: a site that comes back by itself "
                  "would take writes of its own",
                  "site promote refused: cannot reach %s to check it is down (%s)", p->ctx.scope, p->ctx.load_error);
        return EXIT_STATE;
    }
    int64_t t0 = mono_ms();
    int64_t epoch = next_epoch(p, d);
    char lsn[LSN_BUFSZ];
    lsn_format(dl->xlog_location, lsn);
    json_t *extra = json_pack("{s:s, s:i, s:s}", "lsn", lsn, "timeline", dl->timeline, "kind", "failover");
    if (target_time) {
        /* the one member to open at T: the others may have applied the bad write already */
        json_object_set_new(extra, "target_time", json_string(target_time));
        json_object_set_new(extra, "target_member", json_string(target_name));
    }
    json_t *back = rejoin_as(d, &D->config.standby, &err);
    if (!back) {
        json_decref(extra);
        cli_error(NULL, "site promote: %s", err.msg);
        return EXIT_FAILED;
    }
    json_object_set_new(extra, "rejoin_as", back);
    /* the order keeps every failure safe: "promoting" first (the old site's agents act only on
     * "promoted"), then the old site marked as following (when its etcd answers), then the
     * promotion, and "promoted" last */
    json_t *rec = json_pack("{s:s, s:s, s:s, s:I, s:I}", "state", "promoting", "from", p->ctx.scope, "to", d->ctx.scope,
                            "at", (json_int_t)wall_now(), "epoch", (json_int_t)epoch);
    json_object_update(rec, extra);
    json_decref(extra);
    if (!put_site_record(&d->ctx, rec, &err)) {
        json_decref(rec);
        cli_error("nothing was promoted; run it again", "site promote: %s", err.msg);
        return EXIT_FAILED;
    }
    if (!site_reserve_timeline_gap(d->ctx.dcs, D, p->ctx.loaded ? site_max_timeline(&p->ctx.cluster) : 0, &err)) {
        abandon(p, d, rec, false);
        cli_error("nothing was promoted; run it again",
                  "site promote: cannot reserve a timeline clear of %s's: %s", p->ctx.scope, err.msg);
        return EXIT_FAILED;
    }
    bool marked = false;
    if (p->ctx.loaded) {
        /* the old site's etcd answers: it follows the new primary site as soon as its agents run */
        char *sc = json_dumps(json_object_get(rec, "rejoin_as"), JSON_COMPACT);
        char *patch = str_printf("{\"standby_cluster\":%s}", sc);
        free(sc);
        Err pe = {{0}};
        marked = put_site_record(&p->ctx, rec, &pe) && patch_config(&p->ctx, patch, &pe);
        free(patch);
        if (!marked) {
            /* its etcd answers, so its agents could come back as a primary site: not promoting
             * before it is marked as following */
            abandon(p, d, rec, false);
            cli_error("run it again; nothing was promoted",
                      "site promote: %s answers but cannot be made a standby cluster: %s", p->ctx.scope, pe.msg);
            return EXIT_FAILED;
        }
        printf("  %s: standby_cluster set: it rejoins as a standby cluster of %s when its agents run\n", p->ctx.scope,
               d->ctx.scope);
        Position end = {0};
        bool demoted_ok = !was[0] || wait_for(p, stopped_writing, was, "the demotion of its primary",
                                              (int64_t)timeout_s * 1000, &err);
        if (was[0] && demoted_ok) {
            /* everything it committed before T must reach this site before the promotion: its
             * last record, the demoted primary's shutdown checkpoint */
            const Member *ol = site_leader(&p->ctx.cluster);
            end.lsn = ol->xlog_location;
            end.timeline = ol->timeline;
            demoted_ok = wait_for(d, caught_up, &end, "receiving the demoted site's last record",
                                  (int64_t)timeout_s * 1000, &err);
        }
        if (!demoted_ok) {
            /* nothing was promoted: it stays the primary site */
            bool unmarked = abandon(p, d, rec, true);
            cli_error(unmarked ? "nothing was promoted; see its agents' logs" : "remove it by hand: edit-config --set standby_cluster=null",
                      "site promote: %s%s", err.msg, unmarked ? "" : "; and its standby_cluster could not be removed again");
            return EXIT_FAILED;
        }
    }
    if (target_time && was[0]) {
        /* the timeline the standby leader is on now (the catch-up may have taken it to the old
         * site's newer one): the one its recovery to T follows */
        const Member *nl = site_leader(D);
        if (!nl || strcmp(nl->name, target_name) != 0) {
            bool unmarked = abandon(p, d, rec, marked);
            cli_error("run it again", "site promote: %s's leader changed from %s to %s meanwhile%s", d->ctx.scope,
                      target_name, nl ? nl->name : "nobody", unmarked ? "; nothing was promoted" : "");
            return EXIT_FAILED;
        }
        json_object_set_new(rec, "timeline", json_integer(nl->timeline));
        if (!put_site_record(&d->ctx, rec, &err)) {
            bool unmarked = abandon(p, d, rec, marked);
            cli_error(unmarked ? "nothing was promoted; run it again" : "remove it by hand: edit-config --set standby_cluster=null",
                      "site promote: %s", err.msg);
            return EXIT_FAILED;
        }
    }
    MemberOf target = {&d->ctx, target_name, target_time};
    if (target_time && !wait_for(d, marker_ready, &target, "the target member's readiness (its marker)",
                                 (int64_t)timeout_s * 1000, &err)) {
        /* its agent never wrote the marker that keeps anything but the promotion at T from
         * starting postgres: the standby site is not changed */
        bool unmarked = abandon(p, d, rec, marked);
        cli_error(unmarked ? "nothing was promoted; see the target member's agent log" : "remove it by hand: edit-config --set standby_cluster=null",
                  "site promote: %s%s", err.msg, unmarked ? "" : "; and the old site's standby_cluster could not be removed again");
        return EXIT_FAILED;
    }
    const char *name = target_name;
    bool removed = patch_config(&d->ctx, "{\"standby_cluster\":null}", &err);
    if (!removed) {
        /* an answer lost after etcd took the change: then it is under way, not given up */
        Err re = {{0}};
        removed = cli_reload(&d->ctx, &re) && !site_is_standby(&d->ctx.cluster);
    }
    if (!removed) {
        Err ue = {{0}};
        abandon(p, d, json_incref(rec), false);
        if (marked && !patch_config(&p->ctx, "{\"standby_cluster\":null}", &ue))
            cli_error("remove standby_cluster from one of them (edit-config --set standby_cluster=null)",
                      "site promote: %s could not be promoted (%s), and %s, already marked as following, could not be "
                      "unmarked (%s): both sites are standby clusters", d->ctx.scope, err.msg, p->ctx.scope, ue.msg);
        else
            cli_error("nothing was promoted; run it again", "site promote: %s", err.msg);
        json_decref(rec);
        return EXIT_FAILED;
    }
    *promoting = true;   /* (from here on the standby site's replay stays paused: the promotion needs it) */
    /* now the record the old site's agents act on */
    json_object_set_new(rec, "state", json_string("promoted"));
    bool recorded = false;
    for (int attempt = 0; attempt < 5 && !recorded; attempt++) {
        recorded = put_site_record(&d->ctx, rec, &err);
        if (!recorded)
            sleep_ms(500);
    }
    if (p->ctx.loaded) {
        Err pe = {{0}};
        put_site_record(&p->ctx, rec, &pe);
    }
    if (!recorded)
        fprintf(stderr, "warning: %s was promoted but its record could not be written (%s): the old site's agents "
                        "will not see it; run 'pgvigil site rejoin' before they start\n", d->ctx.scope, err.msg);
    if (target_time)
        printf("opening %s at %s (its standby leader %s recovers to that time from the WAL it received, then is "
               "promoted)\n", d->ctx.scope, target_time, name);
    else
        printf("promoting %s (its standby leader %s had received up to %s on timeline %d)\n", d->ctx.scope, name, lsn, tl);
    if (!wait_for(d, promoted, NULL, "the promotion of its standby leader", (int64_t)timeout_s * 1000, &err)) {
        json_decref(rec);
        cli_error("see the agents' logs", "site promote: %s", err.msg);
        return EXIT_FAILED;
    }
    dl = site_leader(D);
    if (target_time && strcmp(dl->name, name) != 0) {
        json_decref(rec);
        cli_error("see the agents' logs", "site promote: %s was promoted, not %s, the member to open at %s", dl->name,
                  name, target_time);
        return EXIT_FAILED;
    }
    if (target_time) {
        /* over (its agent records it too): the record no longer holds the site's members back */
        Err re = {{0}};
        json_object_set_new(rec, "target_done", json_true());
        put_site_record(&d->ctx, rec, &re);
        if (p->ctx.loaded)
            put_site_record(&p->ctx, rec, &re);
    }
    json_decref(rec);
    printf("site promote done in %.1f s: %s is the primary site (leader %s, timeline %d)\n", (mono_ms() - t0) / 1000.0,
           d->ctx.scope, dl->name, dl->timeline);
    return EXIT_OK;
}

/* site rejoin: the old primary site, back after a site promotion, becomes a standby cluster of
 * the promoted one (its agents do it themselves when they can read the other site's etcd). */
int site_rejoin_run(Site *own, Site *peer)
{
    if (!peer->ctx.loaded) {
        cli_error("both sites' etcd must answer", "site rejoin: cannot read %s: %s", peer->ctx.scope,
                  peer->ctx.load_error);
        return EXIT_DCS;
    }
    bool so = site_is_standby(&own->ctx.cluster), sp = site_is_standby(&peer->ctx.cluster);
    if (so != sp) {
        printf("%s is already a standby cluster of %s\n", so ? own->ctx.scope : peer->ctx.scope,
               so ? peer->ctx.scope : own->ctx.scope);
        return EXIT_OK;
    }
    if (so && sp) {
        cli_error("promote one of them ('pgvigil site promote')", "site rejoin: both sites are standby clusters");
        return EXIT_STATE;
    }
    /* both are primary sites: the one promoted later (the higher epoch) stays */
    int64_t eo = record_epoch(&own->ctx), ep = record_epoch(&peer->ctx);
    if (ep == eo) {
        cli_error("use 'pgvigil site status'", "site rejoin: neither site's record says it was promoted over the other");
        return EXIT_STATE;
    }
    Site *newp = ep > eo ? peer : own, *old = newp == peer ? own : peer;
    json_t *rec = json_loads(newp->ctx.cluster.site_json, 0, NULL);
    json_t *back = json_object_get(rec, "rejoin_as");
    Err err = {{0}};
    json_t *sc = back ? json_incref(back) : rejoin_as(newp, &newp->ctx.cluster.config.standby, &err);
    if (!sc) {
        json_decref(rec);
        cli_error(NULL, "site rejoin: %s", err.msg);
        return EXIT_FAILED;
    }
    char *text = json_dumps(sc, JSON_COMPACT);
    char *patch = str_printf("{\"standby_cluster\":%s}", text);
    bool ok = put_site_record(&old->ctx, rec, &err) && patch_config(&old->ctx, patch, &err);
    free(text);
    free(patch);
    json_decref(sc);
    json_decref(rec);
    if (!ok) {
        cli_error(NULL, "site rejoin: %s", err.msg);
        return EXIT_FAILED;
    }
    printf("%s rejoins as a standby cluster of %s: its leader rewinds what the other site never had (see the "
           "divergence report in its agent's log) and follows\n", old->ctx.scope, newp->ctx.scope);
    return EXIT_OK;
}

static void status_of(StrBuf *b, json_t *arr, Site *s)
{
    const Cluster *c = &s->ctx.cluster;
    if (!s->ctx.loaded) {
        strbuf_addf(b, "%s: unreachable (%s)\n", s->ctx.scope, s->ctx.load_error);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "scope", s->ctx.scope, "role", "unknown", "error",
                                             s->ctx.load_error));
        return;
    }
    const Member *l = site_leader(c);
    const char *kind = site_is_standby(c) ? "standby site" : "primary site";
    char lsn[LSN_BUFSZ];
    strbuf_addf(b, "%s: %s, leader %s", s->ctx.scope, kind, l ? l->name : "(none)");
    if (l)
        strbuf_addf(b, " (%s, %s, timeline %d, %s)", l->role, l->state, l->timeline, lsn_format(l->xlog_location, lsn));
    if (site_is_standby(c) && c->config.standby.host)
        strbuf_addf(b, ", following %s:%d", c->config.standby.host, c->config.standby.port);
    json_t *sc = NULL;
    if (site_is_standby(c) && l) {
        /* its standby leader measures the lag: bytes against the source, seconds by its heartbeats */
        json_t *st = site_member_status(&s->ctx, l);
        sc = json_incref(json_object_get(st, "standby_cluster"));
        json_decref(st);
        json_t *lb = json_object_get(sc, "lag_bytes"), *ls = json_object_get(sc, "lag_seconds");
        if (json_is_integer(lb))
            strbuf_addf(b, ", lag %" JSON_INTEGER_FORMAT " bytes", json_integer_value(lb));
        if (json_is_number(ls))
            strbuf_addf(b, " / %.1f s", json_number_value(ls));
        if (sc && !json_is_true(json_object_get(sc, "source_reachable")))
            strbuf_adds(b, " (source not reachable)");
    }
    strbuf_adds(b, "\n");
    json_t *o = json_pack("{s:s, s:s, s:s}", "scope", s->ctx.scope, "role", site_is_standby(c) ? "standby" : "primary",
                          "leader", l ? l->name : "");
    if (l) {
        json_object_set_new(o, "leader_role", json_string(l->role));
        json_object_set_new(o, "timeline", json_integer(l->timeline));
        json_object_set_new(o, "lsn", json_string(lsn));
    }
    if (c->site_json) {
        json_t *r = json_loads(c->site_json, 0, NULL);
        if (r)
            json_object_set_new(o, "last_change", r);
    }
    if (sc)
        json_object_set_new(o, "standby_cluster", sc);
    json_array_append_new(arr, o);
}

static int site_status(Site *own, Site *peer, bool as_json)
{
    StrBuf b = {0};
    json_t *arr = json_array();
    status_of(&b, arr, own);
    status_of(&b, arr, peer);
    char *text = strbuf_take(&b);
    if (as_json) {
        char *s = json_dumps(arr, JSON_COMPACT);
        puts(s ? s : "[]");
        free(s);
    } else {
        fputs(text, stdout);
    }
    free(text);
    json_decref(arr);
    return EXIT_OK;
}

/* The other site's connection options: flags first, then the file's site.peer section. */
static int open_peer(const CliCtx *own, const char *url, const char *scope, const char *ns, bool tolerate, Site *peer)
{
    char *built = NULL;
    const SiteConfig *sc = own->cfg ? &own->cfg->site : NULL;
    if (!url && sc && sc->n_peer_etcd_hosts > 0) {
        StrBuf b = {0};
        for (int i = 0; i < sc->n_peer_etcd_hosts; i++)
            strbuf_addf(&b, "%shttp://%s", i ? "," : "", sc->peer_etcd_hosts[i]);
        url = built = strbuf_take(&b);
    }
    if (!scope && sc)
        scope = sc->peer_scope;
    if (!ns && sc && sc->peer_namespace)
        ns = sc->peer_namespace;
    if (!ns && own->cfg)
        ns = own->cfg->namespace_;
    if (!url || !scope) {
        free(built);
        cli_error("give --peer-dcs-url and --peer-scope, or site.peer.etcd3.hosts and site.peer.scope in -c FILE",
                  "no other site given");
        return EXIT_USAGE;
    }
    CliConnOpts o = {.dcs_url = url, .scope = scope, .namespace_ = ns, .allow_unreachable = tolerate};
    int rc = cli_open(&o, &peer->ctx);
    free(built);
    peer->open = rc == EXIT_OK;
    return rc;
}

bool site_peer_opt(SitePeerOpts *o, int opt, const char *arg)
{
    switch (opt) {
    case SITE_OPT_PEER_URL: o->url = arg; return true;
    case SITE_OPT_PEER_SCOPE: o->scope = arg; return true;
    case SITE_OPT_PEER_NS: o->ns = arg; return true;
    default: return false;
    }
}

int site_open_pair(const CliConnOpts *conn, const SitePeerOpts *po, bool tolerate, Site *own, Site *peer)
{
    memset(own, 0, sizeof(*own));
    memset(peer, 0, sizeof(*peer));
    int rc = cli_open(conn, &own->ctx);
    if (rc != EXIT_OK)
        return rc;
    own->open = true;
    rc = open_peer(&own->ctx, po->url, po->scope, po->ns, tolerate, peer);
    if (rc == EXIT_OK && strcmp(own->ctx.scope, peer->ctx.scope) == 0) {
        cli_error("give each site's cluster its own scope (name)", "both sites are named %s: the sites' records could not "
                  "be told apart", own->ctx.scope);
        rc = EXIT_USAGE;
    }
    if (rc != EXIT_OK)
        site_close_pair(own, peer);
    return rc;
}

void site_close_pair(Site *own, Site *peer)
{
    if (peer->open)
        cli_close(&peer->ctx);
    if (own->open)
        cli_close(&own->ctx);
    peer->open = own->open = false;
}

int cmd_site(int argc, char **argv)
{
    enum { OPT_TIMEOUT = CLI_OPT_NEXT, OPT_JSON, OPT_FENCED, OPT_TARGET_TIME };
    static const struct option longopts[] = {
        CLI_CONN_LONGOPTS,
        SITE_PEER_LONGOPTS,
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"json", no_argument, NULL, OPT_JSON},
        {"old-site-fenced", no_argument, NULL, OPT_FENCED},
        {"target-time", required_argument, NULL, OPT_TARGET_TIME},
        {NULL, 0, NULL, 0},
    };
    CliConnOpts conn = {0};
    SitePeerOpts po = {0};
    int timeout_s = 60;
    bool as_json = false, fenced = false;
    const char *target_time = NULL;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS, longopts, NULL)) != -1) {
        if (cli_conn_opt(&conn, opt, optarg) || site_peer_opt(&po, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            site_usage(stdout);
            return EXIT_OK;
        case OPT_JSON: as_json = true; break;
        case OPT_FENCED: fenced = true; break;
        case OPT_TARGET_TIME: target_time = optarg; break;
        case OPT_TIMEOUT:
            if (!cli_parse_int(optarg, 1, 86400, &timeout_s)) {
                cli_error("e.g. --timeout 120", "--timeout: expected seconds (1-86400), got \"%s\"", optarg);
                return EXIT_USAGE;
            }
            break;
        default:
            return cli_bad_option("site", opt, argv);
        }
    }
    if (optind >= argc) {
        cli_error("run 'pgvigil site --help'", "site: which one? status, switchover, promote or rejoin");
        return EXIT_USAGE;
    }
    const char *sub = argv[optind];
    if (strcmp(sub, "status") != 0 && strcmp(sub, "switchover") != 0 && strcmp(sub, "promote") != 0 &&
        strcmp(sub, "rejoin") != 0) {
        cli_error("run 'pgvigil site --help'", "site: unknown subcommand \"%s\"", sub);
        return EXIT_USAGE;
    }
    if (target_time && strcmp(sub, "promote") != 0) {
        cli_error("run 'pgvigil site --help'", "--target-time goes with site promote only");
        return EXIT_USAGE;
    }
    if (optind + 1 < argc) {
        cli_error("run 'pgvigil site --help'", "unexpected argument \"%s\"", argv[optind + 1]);
        return EXIT_USAGE;
    }
    Site own = {0}, peer = {0};
    /* status and promote go on without the other site's etcd (it may be what was lost) */
    bool tolerate = strcmp(sub, "status") == 0 || strcmp(sub, "promote") == 0;
    int rc = site_open_pair(&conn, &po, tolerate, &own, &peer);
    if (rc != EXIT_OK)
        return rc;
    if (rc == EXIT_OK) {
        if (strcmp(sub, "status") == 0)
            rc = site_status(&own, &peer, as_json);
        else if (strcmp(sub, "promote") == 0)
            rc = site_promote_run(&own, &peer, fenced, target_time, timeout_s);
        else if (strcmp(sub, "rejoin") == 0)
            rc = site_rejoin_run(&own, &peer);
        else
            rc = site_switchover_run(&own, &peer, timeout_s, NULL);
    }
    site_close_pair(&own, &peer);
    return rc;
}
