/* `pgvigil history`: the timeline history kept in the `history` key (one row per failover
 * or switchover: timeline, switch LSN, reason, time, new leader). */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"

static void history_usage(FILE *out)
{
    fputs("usage: pgvigil history [cluster options]\n\n"
          "Show the failovers and switchovers recorded in the history key.\n\n",
          out);
    fputs(CLI_CONN_USAGE, out);
}

int cmd_history(int argc, char **argv)
{
    CliConnOpts conn = {0};
    int done = cli_parse_conn_only("history", argc, argv, history_usage, &conn);
    if (done >= 0)
        return done;
    CliCtx ctx;
    int rc = cli_open(&conn, &ctx);
    if (rc != EXIT_OK)
        return rc;
    Err err = {{0}};
    char *out = cli_format_history(ctx.cluster.history_json, &err);
    if (out) {
        fputs(out, stdout);
        free(out);
    } else {
        cli_error("the key was not written by pgvigil or Patroni, or is damaged", "%s", err.msg);
        rc = EXIT_FAILED;
    }
    cli_close(&ctx);
    return rc;
}
