/* `pgvigil aa status`: the state of an active-active group (pgext/aa), read from each node's
 * pgvigil_aa.status(), peers, slots and conflict table: per peer the apply worker, lag in bytes
 * and seconds, the last applied commit, conflicts, clock difference and the error that stopped
 * it; per node the conflicts of the last minute and the WAL its slots hold back. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cmd_aa.h"

#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AA_MAX_NODES 64

static void usage(FILE *out)
{
    fputs("usage: pgvigil aa status --node NAME=CONNINFO [--node NAME=CONNINFO ...] [--json]\n"
          "       pgvigil aa leader [--group NAME] [-c FILE | --dcs-url URLS] [--json]\n"
          "       pgvigil aa switchover --to NODE [--location LOC] [--group NAME] [-c FILE | --dcs-url URLS]\n"
          "       pgvigil aa join --new NAME=CONNINFO --node NAME=CONNINFO [--node ...] [--source NAME]\n"
          "       pgvigil aa remove --drop NAME --node NAME=CONNINFO [--node ...]\n"
          "       pgvigil aa maintenance [--nodes a,b] [--command CMD] [--group NAME] [-c FILE | --dcs-url URLS]\n\n"
          "leader and switchover: the group's write leader; join: a node with a copy of the tables;\n"
          "remove: a node out of the group; maintenance: each node drained, restarted (or CMD run)\n"
          "and caught up in turn (see their --help).\n\n"
          "status: "
          "Show each node of an active-active group: the apply from each peer (worker, lag in\n"
          "bytes and seconds, last applied commit, transactions, conflicts, clock difference,\n"
          "the error that stopped it), the conflicts of the last minute, and the slots with the\n"
          "WAL they hold back. CONNINFO is a libpq connection string to the group's database.\n"
          "Exit 0 when every node answered and every enabled peer's apply runs without error,\n"
          "1 otherwise (the reason on stderr), 2 on a usage error.\n",
          out);
}

/* the value of a result cell as JSON: NULL as null, numbers as numbers when asked */
static json_t *cell(const PGresult *r, int row, int col, char kind)
{
    if (PQgetisnull(r, row, col))
        return json_null();
    const char *v = PQgetvalue(r, row, col);
    switch (kind) {
    case 'i':
        return json_integer(strtoll(v, NULL, 10));
    case 'f':
        return json_real(strtod(v, NULL));
    case 'b':
        return json_boolean(v[0] == 't');
    default:
        return json_string(v);
    }
}

/* rows of a query as an array of objects; kinds: one letter per column (s, i, f, b) */
static json_t *rows_json(PGconn *c, const char *sql, const char *kinds, char *why, size_t whysz)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        str_fmt(why, whysz, "%s", PQresultErrorMessage(r));
        char *nl = strchr(why, '\n');
        if (nl)
            *nl = '\0';
        PQclear(r);
        return NULL;
    }
    json_t *arr = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        for (int j = 0; j < PQnfields(r) && kinds[j]; j++)
            json_object_set_new(o, PQfname(r, j), cell(r, i, j, kinds[j]));
        json_array_append_new(arr, o);
    }
    PQclear(r);
    return arr;
}

static const char PEERS_SQL[] =
    "SELECT p.name AS peer, p.enabled, s.pid, s.applied_commit_ts, s.lag_bytes, s.lag_seconds,"
    " s.last_message_at, s.clock_difference_ms, s.applied_transactions, s.conflicts, s.last_error"
    " FROM pgvigil_aa.peers p LEFT JOIN pgvigil_aa.status() s ON s.peer = p.name ORDER BY p.name";
static const char PEERS_KINDS[] = "sbisifsfiis";
static const char SLOTS_SQL[] =
    "SELECT slot_name AS slot, active, retained_bytes::bigint, unconfirmed_bytes::bigint, wal_status"
    " FROM pgvigil_aa.slots ORDER BY 1";
static const char SLOTS_KINDS[] = "sbiis";
static const char NODE_SQL[] =
    "SELECT (SELECT name FROM pgvigil_aa.local_node) AS name,"
    " (SELECT count(*) FROM pgvigil_aa.conflicts WHERE recorded_at > now() - interval '1 minute')"
    " AS conflicts_last_minute";
static const char NODE_KINDS[] = "si";

/* One node's status; false (and why) when it cannot be read. */
static json_t *node_status(const char *name, const char *conninfo, char *why, size_t whysz)
{
    char full[2048];
    str_fmt(full, sizeof(full), "%s connect_timeout=5 application_name=pgvigil_aa_status", conninfo);
    PGconn *c = PQconnectdb(full);
    if (PQstatus(c) != CONNECTION_OK) {
        str_fmt(why, whysz, "%s", PQerrorMessage(c));
        char *nl = strchr(why, '\n');
        if (nl)
            *nl = '\0';
        PQfinish(c);
        return NULL;
    }
    json_t *node = NULL, *peers = NULL, *slots = NULL;
    json_t *info = rows_json(c, NODE_SQL, NODE_KINDS, why, whysz);
    if (info && json_array_size(info) == 1 && (peers = rows_json(c, PEERS_SQL, PEERS_KINDS, why, whysz)) &&
        (slots = rows_json(c, SLOTS_SQL, SLOTS_KINDS, why, whysz))) {
        node = json_deep_copy(json_array_get(info, 0));
        json_object_set_new(node, "node", json_string(name));
        json_object_set(node, "peers", peers);
        json_object_set(node, "slots", slots);
    }
    json_decref(info);
    json_decref(peers);
    json_decref(slots);
    PQfinish(c);
    return node;
}

/* Is the apply from this peer running without error (or paused on purpose)? */
static bool peer_healthy(json_t *p)
{
    if (!json_is_true(json_object_get(p, "enabled")))
        return true;
    return json_is_integer(json_object_get(p, "pid")) && json_is_null(json_object_get(p, "last_error"));
}

static const char *str_or(json_t *v, const char *dflt)
{
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static void print_text(json_t *nodes)
{
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) {
        json_t *peers = json_object_get(n, "peers"), *slots = json_object_get(n, "slots");
        if (!peers) {
            printf("node %s: unreachable: %s\n", str_or(json_object_get(n, "node"), "?"),
                   str_or(json_object_get(n, "error"), "?"));
            continue;
        }
        printf("node %s (named %s): %" JSON_INTEGER_FORMAT " conflict(s) in the last minute\n",
               str_or(json_object_get(n, "node"), "?"), str_or(json_object_get(n, "name"), "(no name)"),
               json_integer_value(json_object_get(n, "conflicts_last_minute")));
        size_t j;
        json_t *p;
        json_array_foreach(peers, j, p) {
            const char *state = !json_is_true(json_object_get(p, "enabled")) ? "paused"
                                : json_is_integer(json_object_get(p, "pid")) ? "applying" : "STOPPED";
            printf("  from %-12s %-8s lag %" JSON_INTEGER_FORMAT " B / %.1f s, %" JSON_INTEGER_FORMAT
                   " txn applied, last commit %s, %" JSON_INTEGER_FORMAT " conflict(s), clock %+.1f ms\n",
                   str_or(json_object_get(p, "peer"), "?"), state,
                   json_integer_value(json_object_get(p, "lag_bytes")),
                   json_number_value(json_object_get(p, "lag_seconds")),
                   json_integer_value(json_object_get(p, "applied_transactions")),
                   str_or(json_object_get(p, "applied_commit_ts"), "-"),
                   json_integer_value(json_object_get(p, "conflicts")),
                   json_number_value(json_object_get(p, "clock_difference_ms")));
            if (json_is_string(json_object_get(p, "last_error")))
                printf("    stopped by: %s\n", json_string_value(json_object_get(p, "last_error")));
        }
        json_array_foreach(slots, j, p)
            printf("  slot %-16s %-8s holds %" JSON_INTEGER_FORMAT " B of WAL (%s), its reader has %"
                   JSON_INTEGER_FORMAT " B to confirm\n",
                   str_or(json_object_get(p, "slot"), "?"),
                   json_is_true(json_object_get(p, "active")) ? "active" : "inactive",
                   json_integer_value(json_object_get(p, "retained_bytes")),
                   str_or(json_object_get(p, "wal_status"), "-"),
                   json_integer_value(json_object_get(p, "unconfirmed_bytes")));
    }
}

static int aa_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *names[AA_MAX_NODES], *conninfos[AA_MAX_NODES];
    int nn = 0;
    bool as_json = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "n:jh", opts, NULL)) != -1) {
        switch (ch) {
        case 'n': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) {
                cli_error("give each node as NAME=CONNINFO", "--node \"%s\" has no NAME=CONNINFO form", optarg);
                return EXIT_USAGE;
            }
            if (nn == AA_MAX_NODES) {
                cli_error(NULL, "at most %d nodes", AA_MAX_NODES);
                return EXIT_USAGE;
            }
            *eq = '\0';
            names[nn] = optarg;
            conninfos[nn++] = eq + 1;
            break;
        }
        case 'j':
            as_json = true;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (nn == 0 || optind < argc) {
        cli_error("name at least one node: --node a='host=10.0.0.1 dbname=app'",
                  nn == 0 ? "no node given" : "unexpected argument \"%s\"", nn == 0 ? "" : argv[optind]);
        return EXIT_USAGE;
    }
    json_t *nodes = json_array();
    int rc = EXIT_OK;
    for (int i = 0; i < nn; i++) {
        char why[512] = "";
        json_t *n = node_status(names[i], conninfos[i], why, sizeof(why));
        if (!n) {
            cli_error("is it running, and is pgvigil_aa created in that database?", "node %s: %s", names[i], why);
            n = json_pack("{s:s, s:s}", "node", names[i], "error", why);
            rc = EXIT_FAILED;
        } else {
            size_t j;
            json_t *p;
            json_array_foreach(json_object_get(n, "peers"), j, p) {
                if (!peer_healthy(p)) {
                    cli_error(NULL, "node %s: the apply from peer %s %s", names[i], str_or(json_object_get(p, "peer"), "?"),
                              json_is_string(json_object_get(p, "last_error")) ? "stopped on an error" : "is not running");
                    rc = EXIT_FAILED;
                }
            }
        }
        json_array_append_new(nodes, n);
    }
    if (as_json) {
        json_t *doc = json_pack("{s:o}", "nodes", nodes);
        char *s = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (s) {
            puts(s);
            free(s);
        }
        json_decref(doc);
    } else {
        print_text(nodes);
        json_decref(nodes);
    }
    return rc;
}

int cmd_aa(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "status") == 0)
        return aa_status(argc - 1, argv + 1);
    if (strcmp(argv[1], "leader") == 0)
        return aa_leader_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "switchover") == 0)
        return aa_switchover_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "join") == 0)
        return aa_join_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "remove") == 0)
        return aa_remove_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "maintenance") == 0)
        return aa_maintenance_cmd(argc - 1, argv + 1);
    cli_error("the subcommands are status, leader, switchover, join, remove and maintenance",
              "unknown aa subcommand \"%s\"", argv[1]);
    return EXIT_USAGE;
}
