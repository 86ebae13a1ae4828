/* `pgvigil pause` / `pgvigil resume`: flip "pause" in the cluster's `config` key with a
 * compare-and-swap on its revision, and optionally wait until every agent reports the new mode. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "common/timeutil.h"

#include <jansson.h>

#define PAUSE_WAIT_S 60

static void pause_usage(bool pause, FILE *out)
{
    if (pause)
        fputs("usage: pgvigil pause [--wait] [cluster options]\n\n"
              "Maintenance mode: the agents keep their PostgreSQL as it is and take no automatic action\n"
              "(no failover, no restart, no demotion).\n\n",
              out);
    else
        fputs("usage: pgvigil resume [--wait] [cluster options]\n\nLeave maintenance mode.\n\n", out);
    fputs("options:\n"
          "      --wait            wait (up to 60 s) until every member's REST API reports the new mode\n",
          out);
    fputs(CLI_CONN_USAGE, out);
}

/* Does the member's GET /patroni answer show the wanted pause state? (Patroni omits "pause"
 * when false.) */
static bool member_reports(const CliCtx *ctx, const Member *m, bool pause)
{
    if (!m->api_url[0])
        return false;
    char *base = cli_api_base(m->api_url);
    char *url = str_printf("%s/patroni", base);
    long code = 0;
    char *body = NULL;
    Err err = {{0}};
    bool ok = cli_http("GET", url, NULL, ctx->api_user, ctx->api_password, 2000, &code, &body, &err);
    bool match = false;
    if (ok && body) {
        json_t *v = json_loads(body, 0, NULL);
        if (json_is_object(v)) {
            json_t *p = json_object_get(v, "pause");
            match = (p && json_is_true(p)) == pause;
        }
        json_decref(v);
    }
    free(body);
    free(url);
    free(base);
    return match;
}

static int wait_members(CliCtx *ctx, bool pause)
{
    int64_t deadline = mono_ms() + PAUSE_WAIT_S * 1000;
    char missing[512] = "";
    for (;;) {
        Err err = {{0}};
        if (cli_reload(ctx, &err)) {
            missing[0] = '\0';
            for (int i = 0; i < ctx->cluster.n_members; i++) {
                const Member *m = &ctx->cluster.members[i];
                if (!member_reports(ctx, m, pause)) {
                    size_t l = strlen(missing);
                    str_fmt(missing + l, sizeof(missing) - l, "%s%s", l ? ", " : "", m->name);
                }
            }
            if (!missing[0]) {
                printf("all members %s\n", pause ? "are paused" : "resumed");
                return EXIT_OK;
            }
        }
        if (mono_ms() >= deadline)
            break;
        sleep_ms(500);
    }
    cli_error("check those agents with 'pgvigil list' and their logs",
              "not every member reported %s within %d s: %s", pause ? "pause" : "resume", PAUSE_WAIT_S,
              missing[0] ? missing : "(etcd unreachable)");
    return EXIT_FAILED;
}

static int set_pause(CliCtx *ctx, bool pause, bool wait)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        const Cluster *c = &ctx->cluster;
        if (c->config.pause == pause) {
            printf("%s\n", pause ? "cluster is already paused" : "cluster is not paused");
            return wait ? wait_members(ctx, pause) : EXIT_OK;
        }
        Err err = {{0}};
        char *json = dynconfig_json_set(c->config_json ? c->config_json : "{}",
                                        pause ? "pause=true" : "pause=false", &err);
        if (!json) {
            cli_error("fix it with 'pgvigil edit-config' or etcdctl", "config key: %s", err.msg);
            return EXIT_FAILED;
        }
        bool swapped = false;
        bool ok = ctx->dcs->ops->cas_rev(ctx->dcs, "config", c->has_config ? c->config_mod_revision : 0,
                                         json, &swapped, NULL, &err);
        free(json);
        if (!ok)
            return cli_dcs_error(ctx, &err);
        if (swapped) {
            printf("%s\n", pause ? "cluster paused" : "cluster resumed");
            return wait ? wait_members(ctx, pause) : EXIT_OK;
        }
        /* someone changed the config key between our read and write: read again, retry once */
        if (!cli_reload(ctx, &err))
            return cli_dcs_error(ctx, &err);
    }
    cli_error("try again", "the config key kept changing under us");
    return EXIT_FAILED;
}

static int pause_main(bool pause, int argc, char **argv)
{
    const char *cmd = pause ? "pause" : "resume";
    enum { OPT_WAIT = CLI_OPT_NEXT };
    static const struct option longopts[] = {
        CLI_CONN_LONGOPTS,
        {"wait", no_argument, NULL, OPT_WAIT},
        {NULL, 0, NULL, 0},
    };
    CliConnOpts conn = {0};
    bool wait = false;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS, longopts, NULL)) != -1) {
        if (cli_conn_opt(&conn, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            pause_usage(pause, stdout);
            return EXIT_OK;
        case OPT_WAIT:
            wait = true;
            break;
        default:
            return cli_bad_option(cmd, opt, argv);
        }
    }
    if (optind < argc) {
        char hint[80];
        str_fmt(hint, sizeof(hint), "run 'pgvigil %s --help' for its options", cmd);
        cli_error(hint, "unexpected argument \"%s\"", argv[optind]);
        return EXIT_USAGE;
    }
    CliCtx ctx;
    int rc = cli_open(&conn, &ctx);
    if (rc != EXIT_OK)
        return rc;
    rc = set_pause(&ctx, pause, wait);
    cli_close(&ctx);
    return rc;
}

int cmd_pause(int argc, char **argv)
{
    return pause_main(true, argc, argv);
}

int cmd_resume(int argc, char **argv)
{
    return pause_main(false, argc, argv);
}
