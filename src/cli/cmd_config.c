/* `pgvigil show-config` and `pgvigil edit-config --set key=value`: the dynamic cluster
 * configuration in the `config` key, validated before it is written back with a revision check. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"

#define MAX_SETS 64

static void show_usage(FILE *out)
{
    fputs("usage: pgvigil show-config [cluster options]\n\n"
          "Print the dynamic cluster configuration (the config key; the defaults when it is absent).\n\n",
          out);
    fputs(CLI_CONN_USAGE, out);
}

static void edit_usage(FILE *out)
{
    fputs("usage: pgvigil edit-config --set KEY=VALUE [--set ...] [--force] [cluster options]\n\n"
          "Change the dynamic cluster configuration. KEY is a dotted path, e.g.\n"
          "  --set ttl=20 --set synchronous_mode=true --set postgresql.parameters.work_mem=8MB\n\n"
          "options:\n"
          "  -s, --set KEY=VALUE   one change (repeatable)\n"
          "      --force           do not ask for confirmation (needed when stdin is not a terminal)\n",
          out);
    fputs(CLI_CONN_USAGE, out);
}

int cmd_show_config(int argc, char **argv)
{
    CliConnOpts conn = {0};
    int done = cli_parse_conn_only("show-config", argc, argv, show_usage, &conn);
    if (done >= 0)
        return done;
    CliCtx ctx;
    int rc = cli_open(&conn, &ctx);
    if (rc != EXIT_OK)
        return rc;
    char *defaults = ctx.cluster.config_json ? NULL : dynconfig_to_json(&ctx.cluster.config);
    Err err = {{0}};
    char *out = cli_json_pretty(ctx.cluster.config_json ? ctx.cluster.config_json : defaults, &err);
    if (out) {
        fputs(out, stdout);
        free(out);
    } else {
        /* show what is there anyway: the operator needs to see it to fix it */
        fprintf(stdout, "%s\n", ctx.cluster.config_json);
        cli_error("fix it with 'pgvigil edit-config' or etcdctl", "config key is not valid JSON: %s", err.msg);
        rc = EXIT_FAILED;
    }
    free(defaults);
    cli_close(&ctx);
    return rc;
}

/* Apply the --set assignments to the current JSON and validate the result. Returns the new
 * JSON or NULL after printing the error (*rc set). */
static char *apply_sets(const char *current, char **sets, int n_sets, int *rc)
{
    char *json = str_dup(current);
    for (int i = 0; i < n_sets; i++) {
        Err err = {{0}};
        char *next = dynconfig_json_set(json, sets[i], &err);
        free(json);
        if (!next) {
            cli_error("values are JSON scalars or plain text, e.g. --set ttl=20", "--set %s: %s", sets[i], err.msg);
            *rc = EXIT_CONFIG;
            return NULL;
        }
        json = next;
    }
    DynConfig dc;
    memset(&dc, 0, sizeof(dc));
    Err err = {{0}};
    bool ok = dynconfig_from_json(json, &dc, &err);
    dynconfig_free(&dc);
    if (!ok) {
        cli_error("nothing was written", "invalid configuration: %s", err.msg);
        free(json);
        *rc = EXIT_CONFIG;
        return NULL;
    }
    return json;
}

static int edit_config(CliCtx *ctx, char **sets, int n_sets, bool force)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        const Cluster *c = &ctx->cluster;
        const char *current = c->config_json ? c->config_json : "{}";
        int rc = EXIT_OK;
        char *json = apply_sets(current, sets, n_sets, &rc);
        if (!json)
            return rc;
        char *fallback = dynconfig_to_json(&c->config);
        char *diff = cli_config_diff(current, json, fallback);
        free(fallback);
        if (!diff[0]) {
            printf("no changes\n");
            free(diff);
            free(json);
            return EXIT_OK;
        }
        fputs(diff, stdout);
        free(diff);
        if (!force && attempt == 0) {
            int yes = cli_confirm("apply these changes?");
            if (yes <= 0) {
                free(json);
                if (yes < 0) {
                    cli_error("add --force to run it without a terminal",
                              "stdin is not a terminal: cannot ask for confirmation");
                    return EXIT_USAGE;
                }
                fprintf(stderr, "edit-config aborted\n");
                return EXIT_FAILED;
            }
        }
        bool swapped = false;
        Err err = {{0}};
        bool ok = ctx->dcs->ops->cas_rev(ctx->dcs, "config", c->has_config ? c->config_mod_revision : 0,
                                         json, &swapped, NULL, &err);
        free(json);
        if (!ok)
            return cli_dcs_error(ctx, &err);
        if (swapped) {
            printf("configuration changed\n");
            return EXIT_OK;
        }
        /* changed by someone else since we read it: apply our edits to the new version */
        fprintf(stderr, "config key changed concurrently; applying the changes to the new version\n");
        if (!cli_reload(ctx, &err))
            return cli_dcs_error(ctx, &err);
    }
    cli_error("try again", "the config key kept changing under us");
    return EXIT_FAILED;
}

int cmd_edit_config(int argc, char **argv)
{
    enum { OPT_FORCE = CLI_OPT_NEXT };
    static const struct option longopts[] = {
        CLI_CONN_LONGOPTS,
        {"set", required_argument, NULL, 's'},
        {"force", no_argument, NULL, OPT_FORCE},
        {NULL, 0, NULL, 0},
    };
    const char *hint = "run 'pgvigil edit-config --help' for its options";
    CliConnOpts conn = {0};
    char *sets[MAX_SETS];
    int n_sets = 0;
    bool force = false;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS "s:", longopts, NULL)) != -1) {
        if (cli_conn_opt(&conn, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            edit_usage(stdout);
            return EXIT_OK;
        case 's':
            if (!strchr(optarg, '=') || optarg[0] == '=') {
                cli_error(hint, "--set \"%s\": expected KEY=VALUE", optarg);
                return EXIT_USAGE;
            }
            if (n_sets == MAX_SETS) {
                cli_error(NULL, "at most %d --set options at once", MAX_SETS);
                return EXIT_USAGE;
            }
            sets[n_sets++] = optarg;
            break;
        case OPT_FORCE:
            force = true;
            break;
        default:
            return cli_bad_option("edit-config", opt, argv);
        }
    }
    if (optind < argc) {
        cli_error(hint, "unexpected argument \"%s\"", argv[optind]);
        return EXIT_USAGE;
    }
    if (n_sets == 0) {
        cli_error(hint, "nothing to change: give --set KEY=VALUE");
        return EXIT_USAGE;
    }
    CliCtx ctx;
    int rc = cli_open(&conn, &ctx);
    if (rc != EXIT_OK)
        return rc;
    rc = edit_config(&ctx, sets, n_sets, force);
    cli_close(&ctx);
    return rc;
}
