/* `pgvigil aa maintenance`: rolling maintenance of an active-active group, one node at a time.
 * For each node: drain it (aa/drain/<node>: it takes no lead and the proxies send it no new
 * work), move the leads it holds to another node by planned switchover (the transactions in
 * flight end first), wait for its clients' sessions to end, restart it through its agent (or
 * run --command), wait until it takes writes again and every stream to and from it has caught
 * up, undrain it, and go on with the next one. Applications that connect through the proxy and
 * open a session per transaction (or whose pool reconnects) see no failed transaction. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/cmd_aa.h"
#include "common/timeutil.h"
#include "dcs/aa_group.h"

#include <getopt.h>
#include <libpq-fe.h>
#include <time.h>

enum { OPT_GROUP = CLI_OPT_NEXT, OPT_NODES, OPT_COMMAND, OPT_DRAIN, OPT_TIMEOUT, OPT_UNDRAIN };

static void usage(FILE *out)
{
    fputs("usage: pgvigil aa maintenance [--nodes a,b,...] [--command CMD] [--drain-timeout S]\n"
          "                              [--timeout S] [--group NAME] [-c FILE | --dcs-url URLS]\n"
          "       pgvigil aa maintenance --undrain NODE [--group NAME] [-c FILE | --dcs-url URLS]\n\n"
          "Rolling maintenance of an active-active group, one node at a time (default: every node,\n"
          "the write leaders last): drain it (the proxies send it no new work, its leads move to\n"
          "another node once the transactions in flight end), wait up to --drain-timeout (default\n"
          "30 s) for its sessions to end, restart it through its agent, or run CMD (through\n"
          "/bin/sh, with PGVIGIL_NODE and PGVIGIL_CONN_URL set: an upgrade, say), wait up to\n"
          "--timeout (default 300 s) until it takes writes and every stream to and from it has\n"
          "caught up, then undrain it and go on. A node that fails stays drained and the command\n"
          "stops (exit 1); --undrain NODE gives it back. The nodes' postgres are reached with\n"
          "their conn_url and libpq's defaults (PGUSER, PGPASSWORD, ~/.pgpass).\n\n"
          "group selection: --group NAME with --dcs-url URLS (or -c FILE: its etcd3.hosts and\n"
          "active_active.group); --namespace NS (default /service/)\n",
          out);
}

static char *drain_key(const char *node)
{
    return str_printf("aa/drain/%s", node);
}

#define SWITCHOVER_DRAIN_S 5         /* the drain of a lead's switchover, at most */

static bool set_drained(CliCtx *ctx, const char *node, bool on)
{
    char *key = drain_key(node);
    Err err = {{0}};
    bool ok;
    if (on) {
        char *v = str_printf("{\"since\": %lld}", (long long)time(NULL));
        ok = ctx->dcs->ops->put(ctx->dcs, key, v, false, &err);
        free(v);
    } else {
        bool deleted;
        ok = ctx->dcs->ops->del(ctx->dcs, key, NULL, &deleted, &err);
    }
    if (!ok)
        cli_error("check etcd", "%s: %s", key, err.msg);
    else if (!(ok = cli_reload(ctx, &err)))
        cli_error("check etcd", "reading group %s: %s", ctx->scope, err.msg);
    free(key);
    return ok;
}

/* One value of a query on node's postgres ("" NULL), false when it cannot be had. */
static bool node_query(const AaNodeRec *n, const char *sql, char *out, size_t sz, char *why, size_t whysz)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {n->conn_url, "3", "pgvigil", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    bool ok = false;
    if (PQstatus(c) != CONNECTION_OK) {
        str_copy(why, whysz, PQerrorMessage(c));
    } else {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            str_copy(out, sz, PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
            ok = true;
        } else {
            str_copy(why, whysz, PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    PQfinish(c);
    why[strcspn(why, "\n")] = '\0';
    return ok;
}

/* The node to take a lead of location ("" the group's) from node `from`: writable, not drained,
 * of that location; NULL when there is none. */
static const AaNodeRec *lead_target(const AaGroupView *v, const char *from, const char *location)
{
    const AaNodeRec *any = NULL;
    for (int i = 0; i < v->n_nodes; i++) {
        const AaNodeRec *n = &v->nodes[i];
        if (strcmp(n->name, from) == 0 || !n->writable || n->drained)
            continue;
        if (location[0] && strcmp(n->location, location) != 0)
            continue;           /* (a location's lead stays in the location) */
        if (!any)
            any = n;
    }
    return any;
}

static const char CLIENTS_SQL[] =
    "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid() "
    "and application_name not like 'pgvigil%'";

/* Every stream to and from node caught up: its apply from each peer runs with nothing left,
 * and each peer's apply from it too. */
static bool caught_up(const AaGroupView *v, const AaNodeRec *node, char *why, size_t whysz)
{
    char val[32];
    char *sql = str_printf("select count(*) from pgvigil_aa.status() s join pgvigil_aa.peers p on p.name = s.peer "
                           "where p.enabled and (s.pid is null or s.lag_bytes > 0)");
    bool ok = node_query(node, sql, val, sizeof(val), why, whysz);
    if (ok && strcmp(val, "0") != 0)
        str_fmt(why, whysz, "%s still applies from %s peer(s)", node->name, val);
    ok = ok && strcmp(val, "0") == 0;
    free(sql);
    for (int i = 0; ok && i < v->n_nodes; i++) {
        const AaNodeRec *o = &v->nodes[i];
        /* (a node that cannot take writes now, its postgres down say, is not waited for) */
        if (strcmp(o->name, node->name) == 0 || !o->writable)
            continue;
        sql = str_printf("select count(*) from pgvigil_aa.status() s join pgvigil_aa.peers p on p.name = s.peer "
                         "where s.peer = '%s' and p.enabled and (s.pid is null or s.lag_bytes > 0)",
                         node->name);
        ok = node_query(o, sql, val, sizeof(val), why, whysz);
        if (ok && strcmp(val, "0") != 0) {
            str_fmt(why, whysz, "%s still applies from %s", o->name, node->name);
            ok = false;
        }
        free(sql);
    }
    return ok;
}

/* The maintenance of one node; false (said) when it failed: the node stays drained. */
static bool one_node(CliCtx *ctx, const char *name, const char *command, int drain_s, int timeout_s)
{
    int64_t t0 = mono_ms();
    printf("node %s: draining\n", name);
    fflush(stdout);
    if (!set_drained(ctx, name, true))
        return false;
    /* its leads, to other nodes (their transactions in flight end first) */
    const AaGroupView *v = ctx->cluster.aa;
    for (int i = 0; v && i < v->n_leaders; i++) {
        if (strcmp(v->leaders[i].node, name) != 0)
            continue;
        char location[AA_NAME_LEN];
        str_copy(location, sizeof(location), v->leaders[i].location);
        const AaNodeRec *to = lead_target(v, name, location);
        if (!to && location[0]) {
            /* no other node there: the key goes when its postgres stops, the location's route
             * follows the group's leader meanwhile */
            printf("node %s: no other node of location %s takes its lead; the location's writes go to the group's "
                   "leader while it is away\n", name, location);
            continue;
        }
        if (!to) {
            cli_error("bring another node of the group up first", "no other node can take the write lead of %s", name);
            return false;
        }
        char to_name[AA_NAME_LEN];
        str_copy(to_name, sizeof(to_name), to->name);
        /* (the switchover's drain is short: new sessions wait for it in the proxies) */
        int sw_drain = drain_s < SWITCHOVER_DRAIN_S ? drain_s : SWITCHOVER_DRAIN_S;
        if (aa_switchover_to(ctx, location, to_name, sw_drain * 1000, sw_drain + 30) != EXIT_OK)
            return false;
        Err err = {{0}};
        if (!cli_reload(ctx, &err)) {
            cli_error("check etcd", "reading group %s: %s", ctx->scope, err.msg);
            return false;
        }
        v = ctx->cluster.aa;
        i = -1;                     /* the view changed: look again from the start */
    }
    const AaNodeRec *n = aa_group_node(v, name);
    if (!n) {
        cli_error("see pgvigil aa leader", "node %s has no aa/nodes record (its agent is not running?)", name);
        return false;
    }
    AaNodeRec node = *n;
    /* its sessions end (the proxies send it no new ones) */
    char val[64], why[512] = "";
    int64_t until = mono_ms() + (int64_t)drain_s * 1000;
    for (;;) {
        if (!node_query(&node, CLIENTS_SQL, val, sizeof(val), why, sizeof(why))) {
            cli_error("the node's postgres is reached with its conn_url and libpq's defaults (PGUSER, PGPASSWORD)",
                      "node %s: %s", name, why);
            return false;
        }
        if (strcmp(val, "0") == 0)
            break;
        if (mono_ms() >= until) {
            printf("node %s: %s session(s) still open after %d s; going on\n", name, val, drain_s);
            break;
        }
        sleep_ms(50);
    }
    int64_t drained_ms = mono_ms() - t0;
    char started[64] = "";
    if (!node_query(&node, "select pg_postmaster_start_time()", started, sizeof(started), why, sizeof(why))) {
        cli_error(NULL, "node %s: %s", name, why);
        return false;
    }
    /* the work */
    int64_t t1 = mono_ms();
    if (command) {
        setenv("PGVIGIL_NODE", name, 1);
        setenv("PGVIGIL_CONN_URL", node.conn_url, 1);
        printf("node %s: running %s\n", name, command);
        fflush(stdout);
        int st = system(command);
        if (st != 0) {
            cli_error("fix the node, then pgvigil aa maintenance --undrain it", "node %s: %s exited with status %d",
                      name, command, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            return false;
        }
    } else {
        if (!node.api_url[0]) {
            cli_error("upgrade its agent, or give --command", "node %s's record has no api_url", name);
            return false;
        }
        char *url = str_printf("%s/restart", node.api_url);
        long code = 0;
        char *resp = NULL;
        Err err = {{0}};
        bool ok = cli_http("POST", url, NULL, ctx->api_user, ctx->api_password, 60000, &code, &resp, &err);
        /* (202: the agent restarts it at its next turn) */
        bool accepted = ok && (code == 200 || code == 202);
        if (!accepted)
            cli_error("see the node's agent log", "node %s: %s: %s", name, url,
                      ok ? (resp && resp[0] ? resp : "refused") : err.msg);
        free(resp);
        free(url);
        if (!accepted)
            return false;
    }
    /* back: it takes writes, restarted when we restarted it, every stream caught up */
    until = mono_ms() + (int64_t)timeout_s * 1000;
    int64_t back_ms = -1;
    for (;;) {
        Err err = {{0}};
        bool ok = cli_reload(ctx, &err);
        v = ctx->cluster.aa;
        n = ok ? aa_group_node(v, name) : NULL;
        char now[64] = "";
        if (n && n->writable && node_query(&node, "select pg_postmaster_start_time()", now, sizeof(now), why, sizeof(why))) {
            if (command || strcmp(now, started) != 0) {
                if (back_ms < 0)
                    back_ms = mono_ms() - t1;
                if (caught_up(v, n, why, sizeof(why)))
                    break;
            } else {
                str_fmt(why, sizeof(why), "%s has not restarted yet", name);
            }
        } else if (n && !n->writable) {
            str_fmt(why, sizeof(why), "%s cannot take writes yet", name);
        }
        if (mono_ms() >= until) {
            cli_error("see the node's agent log; then pgvigil aa maintenance --undrain it", "node %s: not back after %d s: %s",
                      name, timeout_s, why);
            return false;
        }
        sleep_ms(200);
    }
    if (!set_drained(ctx, name, false))
        return false;
    printf("node %s: done in %.1f s (drained in %.1f s, back in %.1f s, caught up in %.1f s)\n", name,
           (double)(mono_ms() - t0) / 1000, (double)drained_ms / 1000, (double)back_ms / 1000,
           (double)(mono_ms() - t1 - back_ms) / 1000);
    fflush(stdout);
    return true;
}

int aa_maintenance_cmd(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_CONN_LONGOPTS,
        {"group", required_argument, NULL, OPT_GROUP},
        {"nodes", required_argument, NULL, OPT_NODES},
        {"command", required_argument, NULL, OPT_COMMAND},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"undrain", required_argument, NULL, OPT_UNDRAIN},
        {0},
    };
    CliConnOpts conn;
    memset(&conn, 0, sizeof(conn));
    conn.aa_group = true;
    const char *nodes = NULL, *command = NULL, *undrain = NULL;
    int drain_s = 30, timeout_s = 300;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_CONN_SHORTOPTS, longopts, NULL)) != -1) {
        if (cli_conn_opt(&conn, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case OPT_GROUP:
            conn.scope = optarg;
            break;
        case OPT_NODES:
            nodes = optarg;
            break;
        case OPT_COMMAND:
            command = optarg;
            break;
        case OPT_UNDRAIN:
            undrain = optarg;
            break;
        case OPT_DRAIN:
        case OPT_TIMEOUT:
            if (!cli_parse_int(optarg, 0, 86400, opt == OPT_DRAIN ? &drain_s : &timeout_s)) {
                cli_error("give seconds", "%s: \"%s\" is not a number of seconds",
                          opt == OPT_DRAIN ? "--drain-timeout" : "--timeout", optarg);
                return EXIT_USAGE;
            }
            break;
        default:
            return cli_bad_option("aa maintenance", opt, argv);
        }
    }
    if (optind < argc) {
        cli_error("see --help", "unexpected argument \"%s\"", argv[optind]);
        return EXIT_USAGE;
    }
    CliCtx ctx;
    int rc = cli_open(&conn, &ctx);
    if (rc != EXIT_OK)
        return rc;
    if (undrain) {
        if (!config_aa_name_ok(undrain))
            cli_error("letters, digits, '-', '_', '.'", "--undrain: \"%s\" is not a node name", undrain);
        rc = config_aa_name_ok(undrain) && set_drained(&ctx, undrain, false) ? EXIT_OK : EXIT_FAILED;
        if (rc == EXIT_OK)
            printf("node %s: undrained\n", undrain);
        cli_close(&ctx);
        return rc;
    }
    /* the order: as given, or every node with the leaders last (fewer moves of the lead) */
    char order[AA_MAX_GROUP_NODES][AA_NAME_LEN];
    int n_order = 0;
    const AaGroupView *v = ctx.cluster.aa;
    if (nodes) {
        char *copy = str_dup(nodes), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok && n_order < AA_MAX_GROUP_NODES; tok = strtok_r(NULL, ",", &save)) {
            if (!config_aa_name_ok(tok) || !aa_group_node(v, tok)) {
                cli_error("see pgvigil aa leader", "--nodes: \"%s\" is not a node of group %s", tok, ctx.scope);
                free(copy);
                cli_close(&ctx);
                return EXIT_USAGE;
            }
            str_copy(order[n_order++], AA_NAME_LEN, tok);
        }
        free(copy);
    } else {
        for (int pass = 0; pass < 2 && v; pass++)
            for (int i = 0; i < v->n_nodes; i++) {
                bool leads = false;
                for (int k = 0; k < v->n_leaders; k++)
                    leads = leads || strcmp(v->leaders[k].node, v->nodes[i].name) == 0;
                if (leads == (pass == 1))
                    str_copy(order[n_order++], AA_NAME_LEN, v->nodes[i].name);
            }
    }
    if (!v || v->n_nodes < 2) {
        cli_error("a group of one node cannot be maintained without downtime", "group %s has %d node(s)", ctx.scope,
                  v ? v->n_nodes : 0);
        cli_close(&ctx);
        return EXIT_STATE;
    }
    int64_t t0 = mono_ms();
    rc = EXIT_OK;
    for (int i = 0; i < n_order && rc == EXIT_OK; i++)
        if (!one_node(&ctx, order[i], command, drain_s, timeout_s))
            rc = EXIT_FAILED;
    if (rc == EXIT_OK)
        printf("maintenance of group %s done: %d node(s) in %.1f s\n", ctx.scope, n_order, (double)(mono_ms() - t0) / 1000);
    cli_close(&ctx);
    return rc;
}
