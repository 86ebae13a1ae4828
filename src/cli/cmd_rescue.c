/* `pgvigil rescue MEMBER --target-time T`: open a delayed standby (a standby cluster's member
 * that applies WAL recovery_min_apply_delay behind: the DR site) at a time before a bad write,
 * without applying the backlog: its agent stops it, recovers it to T from the WAL it already
 * has, and promotes it, detached from the cluster (no routing, no elections; `pgvigil reinit
 * MEMBER` makes it a replica again). The data of before the bad write can then be read from it. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"

#include <jansson.h>

#define RESCUE_HTTP_TIMEOUT_MS 10000

static void rescue_usage(FILE *out)
{
    fputs("usage: pgvigil rescue MEMBER --target-time TIME [cluster options]\n\n"
          "Open MEMBER, a delayed standby of a standby cluster (recovery_min_apply_delay), as it was at\n"
          "TIME (before a bad write), without applying the rest of its backlog. It is promoted detached\n"
          "from the cluster; 'pgvigil reinit MEMBER' makes it a replica again.\n\n"
          "options:\n"
          "      --target-time TIME    a PostgreSQL timestamp, e.g. '2026-12-05 11:00:00+00'\n",
          out);
    fputs(CLI_CONN_USAGE, out);
}

int cmd_rescue(int argc, char **argv)
{
    enum { OPT_TIME = CLI_OPT_NEXT };
    static const struct option longopts[] = {
        CLI_CONN_LONGOPTS,
        {"target-time", required_argument, NULL, OPT_TIME},
        {NULL, 0, NULL, 0},
    };
    CliConnOpts conn = {0};
    const char *when = NULL;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS, longopts, NULL)) != -1) {
        if (cli_conn_opt(&conn, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            rescue_usage(stdout);
            return EXIT_OK;
        case OPT_TIME:
            when = optarg;
            break;
        default:
            return cli_bad_option("rescue", opt, argv);
        }
    }
    if (optind + 1 != argc || !when) {
        cli_error("run 'pgvigil rescue --help'", "rescue needs one MEMBER and --target-time");
        return EXIT_USAGE;
    }
    CliCtx ctx;
    int rc = cli_open(&conn, &ctx);
    if (rc != EXIT_OK)
        return rc;
    const Member *m = cluster_member(&ctx.cluster, argv[optind]);
    if (!m || !m->api_url[0]) {
        cli_error("run 'pgvigil list' to see the members", "%s is not a member of cluster %s (or has no REST API)",
                  argv[optind], ctx.scope);
        cli_close(&ctx);
        return EXIT_STATE;
    }
    char *base = cli_api_base(m->api_url);
    char *url = str_printf("%s/rescue", base);
    json_t *o = json_pack("{s:s}", "target_time", when);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    long code = 0;
    char *resp = NULL;
    Err err = {{0}};
    if (!cli_http("POST", url, body, ctx.api_user, ctx.api_password, RESCUE_HTTP_TIMEOUT_MS, &code, &resp, &err)) {
        cli_error("is the agent on that member running?", "%s: %s", m->name, err.msg);
        rc = EXIT_FAILED;
    } else if (code < 200 || code > 299) {
        size_t n = strlen(resp);
        while (n && resp[n - 1] == '\n')
            resp[--n] = '\0';
        cli_error(NULL, "%s: rescue refused (HTTP %ld): %s", m->name, code, resp);
        rc = code == 409 ? EXIT_STATE : EXIT_FAILED;
    } else {
        printf("%s: rescue to %s started: it stops, recovers to that time and is promoted, detached (follow its "
               "agent's log; 'pgvigil list' shows it as rescued)\n",
               m->name, when);
    }
    free(resp);
    free(body);
    free(url);
    free(base);
    cli_close(&ctx);
    return rc;
}
