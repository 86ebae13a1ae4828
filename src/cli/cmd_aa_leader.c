/* `pgvigil aa leader` and `pgvigil aa switchover`: an active-active group's write lead, as the
 * agents keep it in etcd (src/ha/aa_leader.c, keys in src/dcs/aa_group.h). */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/cmd_aa.h"
#include "common/timeutil.h"
#include "dcs/aa_group.h"

#include <jansson.h>

enum { OPT_GROUP = CLI_OPT_NEXT, OPT_TO, OPT_LOCATION, OPT_TIMEOUT, OPT_DRAIN, OPT_JSON };

#define AA_GROUP_USAGE \
    "group selection: --group NAME with --dcs-url URLS (or -c FILE: its etcd3.hosts and\n" \
    "active_active.group); --namespace NS (default /service/)\n"

static void leader_usage(FILE *out)
{
    fputs("usage: pgvigil aa leader [--group NAME] [-c FILE | --dcs-url URLS] [--json]\n\n"
          "Show an active-active group's write leader, each location's, the nodes that can take\n"
          "the lead, a switchover asked or failed, and who holds the group's DDL lock.\n\n" AA_GROUP_USAGE,
          out);
}

static void switchover_usage(FILE *out)
{
    fputs("usage: pgvigil aa switchover --to NODE [--location LOC] [--timeout SECONDS]\n"
          "                             [--drain-timeout SECONDS] [--group NAME] [-c FILE | --dcs-url URLS]\n\n"
          "Move the write lead of the group (or of location LOC) to NODE. The proxies send the\n"
          "leader no new work and its transactions in flight end (up to --drain-timeout, default\n"
          "5 s); then it stops taking writes, NODE takes the lead once it has applied everything\n"
          "the leader committed, and the proxies' write_leader routes follow. Waits until it is\n"
          "done (default 30 s).\n"
          "Exit 0 when NODE leads, 1 when the switchover failed (the reason on stderr).\n\n" AA_GROUP_USAGE,
          out);
}

/* Parse the options shared by both commands; returns -1 to go on, else the exit code. */
static int parse(int argc, char **argv, const char *cmd, void (*usage)(FILE *), CliConnOpts *conn, const char **to,
                 const char **location, int *timeout, int *drain, bool *json)
{
    static const struct option longopts[] = {
        CLI_CONN_LONGOPTS,
        {"group", required_argument, NULL, OPT_GROUP},
        {"to", required_argument, NULL, OPT_TO},
        {"location", required_argument, NULL, OPT_LOCATION},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN},
        {"json", no_argument, NULL, OPT_JSON},
        {0},
    };
    memset(conn, 0, sizeof(*conn));
    conn->aa_group = true;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS, longopts, NULL)) != -1) {
        if (cli_conn_opt(conn, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case OPT_GROUP:
            conn->scope = optarg;
            break;
        case OPT_TO:
            if (!to)
                goto bad;
            *to = optarg;
            break;
        case OPT_LOCATION:
            if (!location)
                goto bad;
            *location = optarg;
            break;
        case OPT_TIMEOUT:
            if (!timeout)
                goto bad;
            if (!cli_parse_int(optarg, 1, 3600, timeout)) {
                cli_error("give seconds, 1 to 3600", "--timeout: \"%s\" is not a number of seconds", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_DRAIN:
            if (!drain)
                goto bad;
            if (!cli_parse_int(optarg, 0, 3600, drain)) {
                cli_error("give seconds, 0 to 3600", "--drain-timeout: \"%s\" is not a number of seconds", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_JSON:
            if (!json)
                goto bad;
            *json = true;
            break;
        default:
            return cli_bad_option(cmd, opt, argv);
        }
        continue;
    bad:
        return cli_bad_option(cmd, '?', argv);
    }
    if (optind < argc) {
        cli_error("see --help", "unexpected argument \"%s\"", argv[optind]);
        return EXIT_USAGE;
    }
    if (conn->scope && !config_aa_name_ok(conn->scope)) {
        cli_error("letters, digits, '-', '_', '.'", "--group: \"%s\" is not a group name", conn->scope);
        return EXIT_USAGE;
    }
    return -1;
}

static json_t *leader_json(const AaLeaderRec *l)
{
    json_t *o = json_pack("{s:s, s:s}", "node", l->node, "conn_url", l->conn_url);
    if (l->handover_to[0])
        json_object_set_new(o, "handover_to", json_string(l->handover_to));
    return o;
}

int aa_leader_cmd(int argc, char **argv)
{
    CliConnOpts conn;
    bool json = false;
    int rc = parse(argc, argv, "aa leader", leader_usage, &conn, NULL, NULL, NULL, NULL, &json);
    if (rc >= 0)
        return rc;
    CliCtx ctx;
    if ((rc = cli_open(&conn, &ctx)) != EXIT_OK)
        return rc;
    const AaGroupView *v = ctx.cluster.aa;
    AaGroupView none;
    memset(&none, 0, sizeof(none));
    if (!v)
        v = &none;
    const AaLeaderRec *gl = aa_group_leader(v, "");
    if (json) {
        json_t *o = json_pack("{s:s}", "group", ctx.scope);
        json_object_set_new(o, "write_leader", gl ? leader_json(gl) : json_null());
        json_t *locs = json_object();
        for (int i = 0; i < v->n_leaders; i++)
            if (v->leaders[i].location[0])
                json_object_set_new(locs, v->leaders[i].location, leader_json(&v->leaders[i]));
        json_object_set_new(o, "locations", locs);
        json_t *nodes = json_array();
        for (int i = 0; i < v->n_nodes; i++)
            json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:b}", "name", v->nodes[i].name, "conn_url",
                                                   v->nodes[i].conn_url, "location", v->nodes[i].location,
                                                   "writable", v->nodes[i].writable));
        json_object_set_new(o, "nodes", nodes);
        const AaSwitchoverReq *sw = &v->switchover;
        json_object_set_new(o, "switchover",
                            sw->present ? json_pack("{s:s, s:s, s:s, s:s}", "to", sw->to, "location", sw->location,
                                                    "state", sw->state[0] ? sw->state : "asked", "error", sw->error)
                                        : json_null());
        json_object_set_new(o, "ddl_lock", v->ddl_lock.present ? json_pack("{s:s, s:i}", "node", v->ddl_lock.node, "pid",
                                                                         v->ddl_lock.pid)
                                                               : json_null());
        json_t *done = json_object();
        for (int i = 0; i < v->ddl_last.n; i++)
            json_object_set_new(done, v->ddl_last.node[i], json_string(v->ddl_last.lsn[i]));
        json_object_set_new(o, "ddl_last", done);
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(o);
        if (s)
            puts(s);
        free(s);
    } else {
        printf("group %s\n", ctx.scope);
        if (gl)
            printf("write leader: %s (%s)%s%s\n", gl->node, gl->conn_url, gl->handover_to[0] ? ", handing over to " : "",
                   gl->handover_to);
        else
            printf("write leader: none\n");
        for (int i = 0; i < v->n_leaders; i++)
            if (v->leaders[i].location[0])
                printf("location %s: %s%s%s\n", v->leaders[i].location, v->leaders[i].node,
                       v->leaders[i].handover_to[0] ? ", handing over to " : "", v->leaders[i].handover_to);
        for (int i = 0; i < v->n_nodes; i++)
            printf("node %s: %s%s%s\n", v->nodes[i].name, v->nodes[i].writable ? "can take writes" : "cannot take writes",
                   v->nodes[i].location[0] ? ", location " : "", v->nodes[i].location);
        if (v->ddl_lock.present)
            printf("DDL lock: held by %s (backend %d)\n", v->ddl_lock.node, v->ddl_lock.pid);
        if (v->switchover.present)
            printf("switchover to %s%s%s: %s%s%s\n", v->switchover.to, v->switchover.location[0] ? " in " : "",
                   v->switchover.location, v->switchover.state[0] ? v->switchover.state : "asked",
                   v->switchover.error[0] ? ": " : "", v->switchover.error);
    }
    cli_close(&ctx);
    return EXIT_OK;
}

/* Remove the request (whatever became of it). */
static void drop_request(CliCtx *ctx)
{
    Err err = {{0}};
    bool deleted;
    ctx->dcs->ops->del(ctx->dcs, "aa/switchover", NULL, &deleted, &err);
}

int aa_switchover_to(CliCtx *ctx, const char *location, const char *to, int drain_ms, int timeout)
{
    char w[96] = "";
    if (location[0])
        str_fmt(w, sizeof(w), " (location %s)", location);
    const AaGroupView *v = ctx->cluster.aa;
    const AaLeaderRec *l = aa_group_leader(v, location);
    const AaNodeRec *n = aa_group_node(v, to);
    if (!l) {
        cli_error("a node takes a vacant lead by itself once it can take writes", "group %s%s has no write leader",
                  ctx->scope, w);
        return EXIT_STATE;
    }
    if (strcmp(l->node, to) == 0) {
        printf("%s already leads group %s%s\n", to, ctx->scope, w);
        return EXIT_OK;
    }
    if (!n) {
        cli_error("see pgvigil aa leader", "%s is not a node of group %s (no aa/nodes/%s: its agent runs with "
                  "active_active.group?)", to, ctx->scope, to);
        return EXIT_STATE;
    }
    if (location[0] && strcmp(n->location, location) != 0) {
        cli_error("choose a node of that location", "%s is not in location %s", to, location);
        return EXIT_STATE;
    }
    if (!n->writable || n->drained) {
        cli_error("see its agent's log", "%s %s", to, n->drained ? "is drained for maintenance" : "cannot take writes now");
        return EXIT_STATE;
    }
    if (v->switchover.present && !v->switchover.state[0]) {
        cli_error("wait for it to end", "a switchover to %s is already under way", v->switchover.to);
        return EXIT_STATE;
    }
    char from[AA_NAME_LEN];
    str_copy(from, sizeof(from), l->node);
    char *req = aa_switchover_json(to, location, drain_ms, NULL, NULL);
    bool ok = false;
    Err err = {{0}};
    /* (over a failed request left by an earlier one: its revision, else the key must be absent) */
    if (!ctx->dcs->ops->cas_rev(ctx->dcs, "aa/switchover", v->switchover.present ? v->switchover.mod_revision : 0, req,
                                &ok, NULL, &err)) {
        free(req);
        return cli_dcs_error(ctx, &err);
    }
    free(req);
    if (!ok) {
        cli_error("try again", "another switchover was asked at the same time");
        return EXIT_STATE;
    }
    int64_t t0 = mono_ms();
    int rc = EXIT_FAILED;
    while (mono_ms() - t0 < (int64_t)timeout * 1000) {
        Err werr = {{0}};
        ctx->dcs->ops->watch(ctx->dcs, ctx->cluster.revision, 500, &werr);
        if (!cli_reload(ctx, &err))
            continue;
        v = ctx->cluster.aa;
        l = aa_group_leader(v, location);
        if (l && strcmp(l->node, to) == 0) {
            printf("write leader of group %s%s: %s -> %s (%lld ms)\n", ctx->scope, w, from, to,
                   (long long)(mono_ms() - t0));
            rc = EXIT_OK;
            break;
        }
        if (v && v->switchover.present && strcmp(v->switchover.state, "failed") == 0) {
            cli_error(NULL, "the switchover to %s failed: %s", to, v->switchover.error);
            break;
        }
        if (!l) {
            cli_error("see pgvigil aa leader", "the write leader%s went away during the switchover", w);
            break;
        }
    }
    if (rc != EXIT_OK && mono_ms() - t0 >= (int64_t)timeout * 1000)
        cli_error("see pgvigil aa leader and the agents' logs", "%s does not lead group %s%s after %d s", to,
                  ctx->scope, w, timeout);
    if (rc != EXIT_OK)
        drop_request(ctx);
    return rc;
}

int aa_switchover_cmd(int argc, char **argv)
{
    CliConnOpts conn;
    const char *to = NULL, *location = "";
    int timeout = 30, drain = 5;
    int rc = parse(argc, argv, "aa switchover", switchover_usage, &conn, &to, &location, &timeout, &drain, NULL);
    if (rc >= 0)
        return rc;
    if (!to) {
        cli_error("name the new write leader", "--to NODE is required");
        return EXIT_USAGE;
    }
    if (location[0] && !config_aa_name_ok(location)) {
        cli_error("letters, digits, '-', '_', '.'", "--location: \"%s\" is not a location name", location);
        return EXIT_USAGE;
    }
    CliCtx ctx;
    if ((rc = cli_open(&conn, &ctx)) != EXIT_OK)
        return rc;
    rc = aa_switchover_to(&ctx, location, to, drain * 1000, timeout);
    cli_close(&ctx);
    return rc;
}
