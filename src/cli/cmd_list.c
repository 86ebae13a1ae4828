/* `pgvigil list`: one etcd read, then the member table (or --json) with roles, states,
 * timelines and lag; the formatting itself lives in cli_common.c so it can be unit-tested. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"

static void list_usage(FILE *out)
{
    fputs("usage: pgvigil list [-c FILE | --dcs-url URL --scope NAME] [--json]\n\n"
          "Show the cluster members: host, role, state, timeline, lag behind the leader and tags.\n\n"
          "options:\n"
          "      --json            print a JSON array of members instead of a table\n",
          out);
    fputs(CLI_CONN_USAGE, out);
}

int cmd_list(int argc, char **argv)
{
    enum { OPT_JSON = CLI_OPT_NEXT };
    static const struct option longopts[] = {
        CLI_CONN_LONGOPTS,
        {"json", no_argument, NULL, OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    CliConnOpts conn = {0};
    bool json = false;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS, longopts, NULL)) != -1) {
        if (cli_conn_opt(&conn, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            list_usage(stdout);
            return EXIT_OK;
        case OPT_JSON:
            json = true;
            break;
        default:
            return cli_bad_option("list", opt, argv);
        }
    }
    if (optind < argc) {
        cli_error("run 'pgvigil list --help' for its options", "unexpected argument \"%s\"", argv[optind]);
        return EXIT_USAGE;
    }

    CliCtx ctx;
    int rc = cli_open(&conn, &ctx);
    if (rc != EXIT_OK)
        return rc;
    char *out = json ? cli_members_json(&ctx.cluster, ctx.scope)
                     : cli_format_members(&ctx.cluster, ctx.scope);
    fputs(out, stdout);
    if (json)
        fputc('\n', stdout);
    free(out);
    cli_close(&ctx);
    return EXIT_OK;
}
