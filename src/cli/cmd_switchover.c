/* `pgvigil switchover` and `pgvigil failover`: check the request against the cluster as read
 * from etcd, write the `failover` key the agents act on, then watch the leader key change. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "common/timeutil.h"

#define POLL_MS 200
/* The leader removing the failover key while keeping the leader key for this long means it
 * turned the request down (a slow clean shutdown never keeps both for that long). */
#define CANCEL_GRACE_MS 10000

typedef struct SwitchReq {
    bool failover;            /* `failover` command: candidate required, leader optional */
    const char *leader;       /* --leader */
    const char *candidate;    /* --candidate */
    bool force;
    int wait_s;
} SwitchReq;

static void switch_usage(bool failover, FILE *out)
{
    if (failover)
        fputs("usage: pgvigil failover --candidate NAME [--force] [--wait SECONDS] [cluster options]\n\n"
              "Make NAME the primary, even when the cluster has no leader (manual failover).\n\n"
              "options:\n"
              "      --candidate NAME  the member to promote (required)\n",
              out);
    else
        fputs("usage: pgvigil switchover [--leader NAME] [--candidate NAME] [--force] [--wait SECONDS]\n"
              "                          [cluster options]\n\n"
              "Planned change of primary: the leader shuts down cleanly and a healthy replica takes over.\n\n"
              "options:\n"
              "      --leader NAME     the current leader (checked; refused when it is not)\n"
              "      --candidate NAME  the member to promote (default: the best eligible one)\n",
              out);
    fputs("      --force           do not ask for confirmation (needed when stdin is not a terminal)\n"
          "      --wait SECONDS    how long to wait for the new leader (default 60, 0 = do not wait)\n",
          out);
    fputs(CLI_CONN_USAGE, out);
}

/* Why m cannot become leader by switchover, or NULL when it can. Writes into why. */
static const char *ineligible(const Cluster *c, const Member *m, char *why, size_t sz)
{
    if (c->leader[0] && strcmp(m->name, c->leader) == 0)
        str_fmt(why, sz, "%s is already the leader", m->name);
    else if (m->tags.nofailover || m->tags.failover_priority <= 0)
        str_fmt(why, sz, "%s has the nofailover tag (or failover_priority 0)", m->name);
    else if (strcmp(m->state, "running") != 0)
        str_fmt(why, sz, "%s is not running (state: %s)", m->name, m->state[0] ? m->state : "unknown");
    else if (c->config.synchronous_mode && !sync_has(&c->sync, m->name))
        str_fmt(why, sz, "%s is not a synchronous standby and synchronous_mode is on", m->name);
    else
        return NULL;
    return why;
}

/* Validate; returns EXIT_OK or the code after printing the error. */
static int check_switchover(const CliCtx *ctx, const SwitchReq *rq)
{
    const Cluster *c = &ctx->cluster;
    char why[256];
    if (!c->leader[0]) {
        cli_error("with no leader use 'pgvigil failover --candidate NAME'",
                  "cluster %s has no leader: nothing to switch over from", ctx->scope);
        return EXIT_STATE;
    }
    if (rq->leader && strcmp(rq->leader, c->leader) != 0) {
        cli_error("run 'pgvigil list' to see the cluster", "%s is not the leader of cluster %s (the leader is %s)",
                  rq->leader, ctx->scope, c->leader);
        return EXIT_STATE;
    }
    if (rq->candidate) {
        const Member *m = cluster_member(c, rq->candidate);
        if (!m) {
            cli_error("run 'pgvigil list' to see the members", "%s is not a member of cluster %s",
                      rq->candidate, ctx->scope);
            return EXIT_STATE;
        }
        if (ineligible(c, m, why, sizeof(why))) {
            cli_error("choose another --candidate (see 'pgvigil list')", "cannot switch over to %s: %s",
                      rq->candidate, why);
            return EXIT_STATE;
        }
        return EXIT_OK;
    }
    for (int i = 0; i < c->n_members; i++)
        if (!ineligible(c, &c->members[i], why, sizeof(why)))
            return EXIT_OK;
    cli_error("a candidate must be running, without nofailover (and listed in the sync key in "
              "synchronous mode); see 'pgvigil list'",
              "no member of cluster %s can take over from %s", ctx->scope, c->leader);
    return EXIT_STATE;
}

static int check_failover(const CliCtx *ctx, const SwitchReq *rq)
{
    const Cluster *c = &ctx->cluster;
    const Member *m = cluster_member(c, rq->candidate);
    if (!m) {
        cli_error("run 'pgvigil list' to see the members", "%s is not a member of cluster %s",
                  rq->candidate, ctx->scope);
        return EXIT_STATE;
    }
    if (c->leader[0] && strcmp(c->leader, rq->candidate) == 0) {
        cli_error(NULL, "%s is already the leader of cluster %s", rq->candidate, ctx->scope);
        return EXIT_STATE;
    }
    if (m->tags.nofailover || m->tags.failover_priority <= 0) {
        cli_error("remove the tag in its configuration first, or choose another --candidate",
                  "%s has the nofailover tag (or failover_priority 0): it never promotes", rq->candidate);
        return EXIT_STATE;
    }
    if (strcmp(m->state, "running") != 0)
        fprintf(stderr, "warning: %s is not running (state: %s)\n", m->name,
                m->state[0] ? m->state : "unknown");
    return EXIT_OK;
}

/* Poll the leader key until the switch happened, failed or timed out. */
static int wait_for_leader(CliCtx *ctx, const SwitchReq *rq, const char *old_leader)
{
    const char *what = rq->failover ? "failover" : "switchover";
    int64_t deadline = mono_ms() + (int64_t)rq->wait_s * 1000;
    int64_t cancelled_since = 0;
    while (mono_ms() < deadline) {
        sleep_ms(POLL_MS);
        Err err = {{0}};
        if (!cli_reload(ctx, &err))
            continue;   /* etcd hiccup during the switch: keep polling until the deadline */
        const Cluster *c = &ctx->cluster;
        if (c->leader[0] && strcmp(c->leader, old_leader) != 0) {
            if (!rq->candidate || strcmp(c->leader, rq->candidate) == 0) {
                printf("%s completed: new leader %s\n", what, c->leader);
                return EXIT_OK;
            }
            cli_error("see the agents' logs; 'pgvigil list' shows the cluster now",
                      "%s ended with %s as leader instead of %s", what, c->leader, rq->candidate);
            return EXIT_FAILED;
        }
        if (!c->failover.present && c->leader[0] && strcmp(c->leader, old_leader) == 0) {
            if (!cancelled_since) {
                cancelled_since = mono_ms();
            } else if (mono_ms() - cancelled_since >= CANCEL_GRACE_MS) {
                char hint[160];
                str_fmt(hint, sizeof(hint), "the reason is in the log of the agent on %s", c->leader);
                cli_error(hint, "%s was turned down: the failover key was removed and %s is still the leader",
                          what, c->leader);
                return EXIT_FAILED;
            }
        } else {
            cancelled_since = 0;
        }
    }
    cli_error("the request stays in the failover key until an agent acts on it; see 'pgvigil list'",
              "%s did not complete in %d s", what, rq->wait_s);
    return EXIT_FAILED;
}

static int run_switch(CliCtx *ctx, const SwitchReq *rq)
{
    const Cluster *c = &ctx->cluster;
    const char *cmd = rq->failover ? "failover" : "switchover";
    int rc = rq->failover ? check_failover(ctx, rq) : check_switchover(ctx, rq);
    if (rc != EXIT_OK)
        return rc;
    if (c->failover.present && !rq->force) {
        char pending[200];
        str_fmt(pending, sizeof(pending), "%s -> %s", c->failover.leader[0] ? c->failover.leader : "(none)",
                c->failover.candidate[0] ? c->failover.candidate : "(any)");
        cli_error("wait for it to finish, or use --force to replace it", "a switchover or failover is already pending (%s)",
                  pending);
        return EXIT_STATE;
    }

    char old_leader[NAME_MAX_LEN];
    str_copy(old_leader, sizeof(old_leader), c->leader);
    const char *target = rq->candidate ? rq->candidate : "any eligible member";
    if (!rq->force) {
        char question[300];
        if (old_leader[0])
            str_fmt(question, sizeof(question), "%s from %s to %s?", cmd, old_leader, target);
        else
            str_fmt(question, sizeof(question), "%s to %s?", cmd, target);
        int yes = cli_confirm(question);
        if (yes < 0) {
            cli_error("add --force to run it without a terminal", "stdin is not a terminal: cannot ask for confirmation");
            return EXIT_USAGE;
        }
        if (!yes) {
            fprintf(stderr, "%s aborted\n", cmd);
            return EXIT_FAILED;
        }
    }

    FailoverReq f;
    memset(&f, 0, sizeof(f));
    f.present = true;
    if (!rq->failover)
        str_copy(f.leader, sizeof(f.leader), old_leader);
    if (rq->candidate)
        str_copy(f.candidate, sizeof(f.candidate), rq->candidate);
    char *json = failover_to_json(&f);
    Err err = {{0}};
    bool ok = ctx->dcs->ops->put(ctx->dcs, "failover", json, false, &err);
    free(json);
    if (!ok)
        return cli_dcs_error(ctx, &err);
    printf("%s requested: %s -> %s\n", cmd, old_leader[0] ? old_leader : "(no leader)", target);
    fflush(stdout);
    if (rq->wait_s == 0)
        return EXIT_OK;
    return wait_for_leader(ctx, rq, old_leader);
}

static int switch_main(bool failover, int argc, char **argv)
{
    const char *cmd = failover ? "failover" : "switchover";
    enum { OPT_LEADER = CLI_OPT_NEXT, OPT_CANDIDATE, OPT_FORCE, OPT_WAIT };
    static const struct option longopts[] = {
        CLI_CONN_LONGOPTS,
        {"leader", required_argument, NULL, OPT_LEADER},
        {"primary", required_argument, NULL, OPT_LEADER},
        {"candidate", required_argument, NULL, OPT_CANDIDATE},
        {"force", no_argument, NULL, OPT_FORCE},
        {"wait", required_argument, NULL, OPT_WAIT},
        {NULL, 0, NULL, 0},
    };
    char hint[80];
    str_fmt(hint, sizeof(hint), "run 'pgvigil %s --help' for its options", cmd);
    CliConnOpts conn = {0};
    SwitchReq rq = {.failover = failover, .wait_s = 60};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS, longopts, NULL)) != -1) {
        if (cli_conn_opt(&conn, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            switch_usage(failover, stdout);
            return EXIT_OK;
        case OPT_LEADER:
            if (failover) {
                cli_error(hint, "failover takes no --leader (it works without one); use switchover");
                return EXIT_USAGE;
            }
            rq.leader = optarg;
            break;
        case OPT_CANDIDATE:
            rq.candidate = optarg;
            break;
        case OPT_FORCE:
            rq.force = true;
            break;
        case OPT_WAIT:
            if (!cli_parse_int(optarg, 0, 86400, &rq.wait_s)) {
                cli_error(hint, "--wait: \"%s\" is not a number of seconds", optarg);
                return EXIT_USAGE;
            }
            break;
        default:
            return cli_bad_option(cmd, opt, argv);
        }
    }
    if (optind < argc) {
        cli_error(hint, "unexpected argument \"%s\"", argv[optind]);
        return EXIT_USAGE;
    }
    if (rq.candidate && !rq.candidate[0])
        rq.candidate = NULL;
    if (failover && !rq.candidate) {
        cli_error(hint, "failover needs --candidate NAME");
        return EXIT_USAGE;
    }

    CliCtx ctx;
    int rc = cli_open(&conn, &ctx);
    if (rc != EXIT_OK)
        return rc;
    rc = run_switch(&ctx, &rq);
    cli_close(&ctx);
    return rc;
}

int cmd_switchover(int argc, char **argv)
{
    return switch_main(false, argc, argv);
}

int cmd_failover(int argc, char **argv)
{
    return switch_main(true, argc, argv);
}
