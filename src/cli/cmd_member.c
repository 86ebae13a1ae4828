/* `pgvigil restart MEMBER...` and `pgvigil reinit MEMBER...`: find each member's REST API in
 * etcd and POST /restart or /reinitialize to it, printing the agent's answer. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"

/* Restart waits for pg_ctl on the agent; reinitialize only starts the rebuild. */
#define MEMBER_HTTP_TIMEOUT_MS 120000

static void member_usage(bool reinit, FILE *out)
{
    if (reinit)
        fputs("usage: pgvigil reinit MEMBER... [--force] [cluster options]\n\n"
              "Rebuild each MEMBER (a replica) from the primary: its data directory is thrown away.\n\n"
              "options:\n"
              "      --force           do not ask for confirmation, and cancel an operation already\n"
              "                        running on the member\n",
              out);
    else
        fputs("usage: pgvigil restart MEMBER... [cluster options]\n\n"
              "Restart PostgreSQL on each MEMBER through its agent's REST API.\n\n",
              out);
    fputs(CLI_CONN_USAGE, out);
}

static char *trim_body(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        s[--n] = '\0';
    return s;
}

static int post_member(const CliCtx *ctx, const Member *m, bool reinit, bool force)
{
    char *base = cli_api_base(m->api_url);
    char *url = str_printf("%s/%s", base, reinit ? "reinitialize" : "restart");
    const char *body = reinit ? (force ? "{\"force\":true}" : "{\"force\":false}") : "{}";
    long code = 0;
    char *resp = NULL;
    Err err = {{0}};
    int rc = EXIT_OK;
    if (!cli_http("POST", url, body, ctx->api_user, ctx->api_password, MEMBER_HTTP_TIMEOUT_MS, &code,
                  &resp, &err)) {
        cli_error("is the agent on that member running? its api_url comes from its member key",
                  "%s: %s", m->name, err.msg);
        rc = EXIT_FAILED;
    } else if (code < 200 || code > 299) {
        const char *hint = NULL;
        if (code == 401 || code == 403)
            hint = "the REST API wants credentials: restapi.authentication in -c FILE "
                   "(or PGVIGIL_RESTAPI_USER/PGVIGIL_RESTAPI_PASSWORD)";
        cli_error(hint, "%s: POST %s: HTTP %ld: %s", m->name, url, code,
                  resp[0] ? trim_body(resp) : "(empty answer)");
        rc = EXIT_FAILED;
    } else {
        printf("%s: %s\n", m->name, resp[0] ? trim_body(resp) : (reinit ? "reinitialize started" : "restarted"));
    }
    free(resp);
    free(url);
    free(base);
    return rc;
}

static int member_main(bool reinit, int argc, char **argv)
{
    const char *cmd = reinit ? "reinit" : "restart";
    enum { OPT_FORCE = CLI_OPT_NEXT };
    static const struct option restart_opts[] = {
        CLI_CONN_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    static const struct option reinit_opts[] = {
        CLI_CONN_LONGOPTS,
        {"force", no_argument, NULL, OPT_FORCE},
        {NULL, 0, NULL, 0},
    };
    char hint[80];
    str_fmt(hint, sizeof(hint), "run 'pgvigil %s --help' for its options", cmd);
    CliConnOpts conn = {0};
    bool force = false;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS, reinit ? reinit_opts : restart_opts, NULL)) != -1) {
        if (cli_conn_opt(&conn, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            member_usage(reinit, stdout);
            return EXIT_OK;
        case OPT_FORCE:
            force = true;
            break;
        default:
            return cli_bad_option(cmd, opt, argv);
        }
    }
    if (optind >= argc) {
        cli_error(hint, "%s needs a MEMBER name", cmd);
        return EXIT_USAGE;
    }

    CliCtx ctx;
    int rc = cli_open(&conn, &ctx);
    if (rc != EXIT_OK)
        return rc;
    /* check every name before touching any member */
    for (int i = optind; i < argc && rc == EXIT_OK; i++) {
        const Member *m = cluster_member(&ctx.cluster, argv[i]);
        if (!m) {
            cli_error("run 'pgvigil list' to see the members", "%s is not a member of cluster %s", argv[i],
                      ctx.scope);
            rc = EXIT_STATE;
        } else if (!m->api_url[0]) {
            cli_error("its agent publishes no api_url in its member key", "%s has no REST API address",
                      argv[i]);
            rc = EXIT_STATE;
        }
    }
    if (rc == EXIT_OK && reinit && !force) {
        char question[400] = "reinitialize";
        for (int i = optind; i < argc; i++) {
            size_t l = strlen(question);
            str_fmt(question + l, sizeof(question) - l, "%s%s", i == optind ? " " : ", ", argv[i]);
        }
        size_t l = strlen(question);
        str_fmt(question + l, sizeof(question) - l, "? its data directory is rebuilt from the leader");
        int yes = cli_confirm(question);
        if (yes < 0) {
            cli_error("add --force to run it without a terminal", "stdin is not a terminal: cannot ask for confirmation");
            rc = EXIT_USAGE;
        } else if (!yes) {
            fprintf(stderr, "reinit aborted\n");
            rc = EXIT_FAILED;
        }
    }
    if (rc == EXIT_OK) {
        for (int i = optind; i < argc; i++) {
            int one = post_member(&ctx, cluster_member(&ctx.cluster, argv[i]), reinit, force);
            if (one != EXIT_OK)
                rc = one;
        }
    }
    cli_close(&ctx);
    return rc;
}

int cmd_restart(int argc, char **argv)
{
    return member_main(false, argc, argv);
}

int cmd_reinit(int argc, char **argv)
{
    return member_main(true, argc, argv);
}
