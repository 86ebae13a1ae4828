/* `pgvigil aa join` and `pgvigil aa remove`: a node into an active-active group with a
 * consistent copy of one node's tables, and a node out of it with its slots and origins.
 *
 * Join, NEW into a group whose nodes are E1..Ek, copying from S (one of them):
 *  1. on each other node Ej: NEW's slot (its stream starts there), then a mark in Ej's stream
 *     (pgvigil_aa.mark()); wait until S has applied Ej past it: S's copy will hold every change
 *     of Ej that NEW's slot on Ej does not;
 *  2. on S: NEW's slot, created with an exported snapshot; in that snapshot, pgvigil_aa.peers
 *     says exactly up to where S had applied each Ej (applied_lsn, written in the applying
 *     commit) and when (applied_commit_ts);
 *  3. the tables, copied in that snapshot, each row written on NEW under the replication origin
 *     and with the commit time of the transaction that wrote it on S (its own rows under S's
 *     origin): to NEW's conflict detection a copied row is the version its writer made, not a
 *     new local write, and NEW's slots never send it on;
 *  4. NEW's origins advanced: S's to its slot's start, Ej's to what the snapshot held of Ej; so
 *     each change reaches NEW exactly once, from the copy or from the stream;
 *  5. peers and slots: NEW reads every node, every node reads NEW.
 * NEW must hold the tables (same names and keys), empty; it takes no writes until the join ends. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/cmd_aa.h"
#include "common/timeutil.h"
#include "config/config.h"

#include <getopt.h>
#include <libpq-fe.h>

#define MAX_NODES 64
#define WAIT_APPLY_MS 60000

typedef struct JNode {
    char name[64];
    const char *conninfo;
    PGconn *c;
} JNode;

enum { OPT_NEW = 0x200, OPT_NODE, OPT_SOURCE, OPT_OFFSET, OPT_DROP };

static void join_usage(FILE *out)
{
    fputs("usage: pgvigil aa join --new NAME=CONNINFO --node NAME=CONNINFO [--node ...]\n"
          "                       [--source NAME] [--sequence-offset N]\n\n"
          "Add node NAME to the active-active group of the --node nodes (every node of the group):\n"
          "copy the tables from --source (default: the first --node) in one snapshot, then stream\n"
          "from every node from exactly where the copy ends. The new node must have the tables\n"
          "(same names and keys), empty, and pgvigil_aa preloaded; the extension and its name are\n"
          "set up here, with the next free sequence offset unless given. Each CONNINFO must also\n"
          "work from the other nodes (it goes into their pgvigil_aa.peers).\n",
          out);
}

static void remove_usage(FILE *out)
{
    fputs("usage: pgvigil aa remove --drop NAME --node NAME=CONNINFO [--node ...]\n\n"
          "Take node NAME out of the group of the --node nodes: every other node stops applying\n"
          "from it and drops its slot and replication origin; when NAME is among the --node\n"
          "nodes (reachable), it stops applying and drops its slots too. Its data stays.\n",
          out);
}

/* First line of libpq's message. */
static const char *first_line(const char *m, char *buf, size_t sz)
{
    str_copy(buf, sz, m ? m : "");
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

static bool connect_node(JNode *n, bool replication, PGconn **out)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", replication ? "replication" : NULL, NULL};
    const char *vals[] = {n->conninfo, "5", "pgvigil_aa_join", "database", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        char b[300];
        cli_error("check the node's CONNINFO and that it runs", "node %s: %s", n->name, first_line(PQerrorMessage(c), b, sizeof(b)));
        PQfinish(c);
        return false;
    }
    *out = c;
    return true;
}

/* Run sql on node n; the first value of the first row into out (may be NULL). False, said, on
 * an error. */
static bool q(JNode *n, PGconn *c, const char *sql, char *out, size_t sz)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        char b[300];
        cli_error(NULL, "node %s: %s", n->name, first_line(PQresultErrorMessage(r), b, sizeof(b)));
        PQclear(r);
        return false;
    }
    if (out && sz) {
        out[0] = '\0';
        if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
            str_copy(out, sz, PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return true;
}

static bool parse_node(const char *arg, JNode *n)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(n->name)) {
        cli_error("give each node as NAME=CONNINFO", "\"%s\" has no NAME=CONNINFO form", arg);
        return false;
    }
    memcpy(n->name, arg, (size_t)(eq - arg));
    n->name[eq - arg] = '\0';
    if (!config_aa_name_ok(n->name)) {
        cli_error("letters, digits, '-', '_', '.'", "\"%s\" is not a node name", n->name);
        return false;
    }
    n->conninfo = eq + 1;
    return true;
}

static void disconnect(JNode *nodes, int n)
{
    for (int i = 0; i < n; i++) {
        PQfinish(nodes[i].c);
        nodes[i].c = NULL;
    }
}

/* A quoted SQL literal of s (the names are checked, conninfos are not). */
static char *lit(PGconn *c, const char *s)
{
    char *e = PQescapeLiteral(c, s, strlen(s));
    char *r = str_dup(e ? e : "''");
    PQfreemem(e);
    return r;
}

/* Each existing node is what it is called, the new one is not in a group. */
static bool check_nodes(JNode *nodes, int n_nodes, JNode *nw, int *offset)
{
    int max_off = 0;
    for (int i = 0; i < n_nodes; i++) {
        char name[64], off[16];
        if (!q(&nodes[i], nodes[i].c, "select name from pgvigil_aa.local_node", name, sizeof(name)))
            return false;
        if (strcmp(name, nodes[i].name) != 0) {
            cli_error("name each node as its pgvigil_aa.local_node does", "node %s calls itself \"%s\"", nodes[i].name,
                      name);
            return false;
        }
        if (!q(&nodes[i], nodes[i].c, "select sequence_offset from pgvigil_aa.local_node", off, sizeof(off)))
            return false;
        max_off = atoi(off) > max_off ? atoi(off) : max_off;
        if (strcmp(nodes[i].name, nw->name) == 0) {
            cli_error("choose another name", "node %s is already in the group", nw->name);
            return false;
        }
    }
    if (*offset == 0)
        *offset = max_off + 1;
    if (*offset < 1 || *offset > 64) {
        cli_error("give --sequence-offset N (1..64) not used by another node", "no free sequence offset");
        return false;
    }
    char has[8];
    if (!q(nw, nw->c, "select count(*) from pg_extension where extname = 'pgvigil_aa'", has, sizeof(has)))
        return false;
    if (strcmp(has, "0") != 0) {
        char rows[16];
        if (!q(nw, nw->c, "select (select count(*) from pgvigil_aa.local_node) + (select count(*) from pgvigil_aa.peers)",
               rows, sizeof(rows)))
            return false;
        if (strcmp(rows, "0") != 0) {
            cli_error("remove it from its group first (pgvigil aa remove), or start from an empty node",
                      "node %s already has a name or peers in pgvigil_aa", nw->name);
            return false;
        }
    }
    return true;
}

/* The tables to copy (S's plain tables and leaf partitions outside the system and pgvigil_aa),
 * each present and empty on the new node; each followed by its column list (the stored
 * columns, by name: the new node's may be in another order). */
static bool list_tables(JNode *src, JNode *nw, char ***tables, int *n_tables)
{
    PGresult *r = PQexec(src->c, "select format('%I.%I', n.nspname, c.relname), (select string_agg(quote_ident(a.attname), "
                                 "', ' order by a.attnum) from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 "
                                 "and not a.attisdropped and a.attgenerated = '') from pg_class c "
                                 "join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'r' "
                                 "and c.relpersistence = 'p' and n.nspname not in ('pg_catalog', "
                                 "'information_schema', 'pgvigil_aa') and n.nspname not like 'pg_toast%' "
                                 "order by 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char b[300];
        cli_error(NULL, "node %s: %s", src->name, first_line(PQresultErrorMessage(r), b, sizeof(b)));
        PQclear(r);
        return false;
    }
    *n_tables = PQntuples(r);
    *tables = xcalloc((size_t)*n_tables * 2 + 1, sizeof(char *));
    bool ok = true;
    for (int i = 0; i < *n_tables && ok; i++) {
        (*tables)[2 * i] = str_dup(PQgetvalue(r, i, 0));
        (*tables)[2 * i + 1] = str_dup(PQgetvalue(r, i, 1));
        const char *table = (*tables)[2 * i];
        char *l = lit(nw->c, table);
        char *sql = str_printf("select case when to_regclass(%s) is null then 'missing' "
                               "when exists (select 1 from %s) then 'not empty' else '' end", l, table);
        char state[16];
        char *sql_exists = str_printf("select case when to_regclass(%s) is null then 'missing' else '' end", l);
        ok = q(nw, nw->c, sql_exists, state, sizeof(state));
        if (ok && !state[0])
            ok = q(nw, nw->c, sql, state, sizeof(state));
        if (ok && state[0]) {
            cli_error("create the tables on the new node first (same names and keys), empty",
                      "node %s: table %s is %s", nw->name, table, state);
            ok = false;
        }
        free(sql_exists);
        free(sql);
        free(l);
    }
    PQclear(r);
    return ok;
}

/* Wait until node s has applied node e's stream past lsn. */
static bool wait_applied(JNode *s, const char *peer, const char *lsn)
{
    char *sql = str_printf("select applied_lsn > '%s'::pg_lsn from pgvigil_aa.status() where peer = '%s'", lsn, peer);
    int64_t t0 = mono_ms();
    bool ok = false;
    while (mono_ms() - t0 < WAIT_APPLY_MS) {
        char v[8];
        if (!q(s, s->c, sql, v, sizeof(v)))
            break;
        if (strcmp(v, "t") == 0) {
            ok = true;
            break;
        }
        sleep_ms(20);
    }
    if (!ok)
        cli_error("is its apply from that node running? see pgvigil aa status",
                  "node %s has not applied node %s's writes past %s within %d s", s->name, peer, lsn,
                  WAIT_APPLY_MS / 1000);
    free(sql);
    return ok;
}

/* One copy group on the new node: rows of one original transaction. */
typedef struct CopyTarget {
    JNode *nw;
    char origin[80];        /* the session's origin now ("" none) */
    char group_origin[80];
    char group_ts[64];
    bool open;              /* a COPY is running */
    long long groups, rows;
} CopyTarget;

static bool end_group(CopyTarget *t)
{
    if (!t->open)
        return true;
    t->open = false;
    PGconn *c = t->nw->c;
    bool ok = PQputCopyEnd(c, NULL) == 1;
    PGresult *r;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            char b[300];
            cli_error(NULL, "node %s: copying: %s", t->nw->name, first_line(PQresultErrorMessage(r), b, sizeof(b)));
            ok = false;
        }
        PQclear(r);
    }
    return ok && q(t->nw, c, ok ? "commit" : "rollback", NULL, 0) && ok;
}

static bool start_group(CopyTarget *t, const char *table, const char *cols, const char *origin, const char *ts)
{
    JNode *nw = t->nw;
    if (strcmp(origin, t->origin) != 0) {
        if (t->origin[0] && !q(nw, nw->c, "select pg_replication_origin_session_reset()", NULL, 0))
            return false;
        char *o = lit(nw->c, origin);
        char *sql = str_printf("select pg_replication_origin_session_setup(%s)", o);
        bool ok = q(nw, nw->c, sql, NULL, 0);
        free(sql);
        free(o);
        if (!ok)
            return false;
        str_copy(t->origin, sizeof(t->origin), origin);
    }
    char *tsl = lit(nw->c, ts);
    char *setup = str_printf("select pg_replication_origin_xact_setup('0/0', %s::timestamptz)", tsl);
    char *copy = str_printf("copy %s (%s) from stdin", table, cols);
    bool ok = q(nw, nw->c, "begin", NULL, 0) && q(nw, nw->c, setup, NULL, 0);
    free(setup);
    free(tsl);
    if (ok) {
        PGresult *r = PQexec(nw->c, copy);
        ok = PQresultStatus(r) == PGRES_COPY_IN;
        if (!ok) {
            char b[300];
            cli_error(NULL, "node %s: %s", nw->name, first_line(PQresultErrorMessage(r), b, sizeof(b)));
        }
        PQclear(r);
    }
    free(copy);
    if (!ok)
        return false;
    t->open = true;
    t->groups++;
    str_copy(t->group_origin, sizeof(t->group_origin), origin);
    str_copy(t->group_ts, sizeof(t->group_ts), ts);
    return true;
}

/* Copy one table in S's snapshot, row by row into groups of one origin and commit time. */
static bool copy_table(JNode *src, const char *table, const char *cols, const char *src_origin, CopyTarget *t)
{
    /* (a row whose writer's time is unknown, frozen or older than track_commit_timestamp: as
     * written by S long ago, a version every node has seen) */
    char *sql = str_printf("copy (select coalesce(o.roname, ''), coalesce(ct.timestamp, '2000-01-01 00:00:00+00'), %s "
                           "from only %s x left join lateral pg_xact_commit_timestamp_origin(x.xmin) ct on true "
                           "left join pg_replication_origin o on o.roident = ct.roident "
                           "order by 2, 1) to stdout", cols, table);
    PGresult *r = PQexec(src->c, sql);
    free(sql);
    if (PQresultStatus(r) != PGRES_COPY_OUT) {
        char b[300];
        cli_error(NULL, "node %s: copying %s: %s", src->name, table, first_line(PQresultErrorMessage(r), b, sizeof(b)));
        PQclear(r);
        return false;
    }
    PQclear(r);
    bool ok = true;
    char *line;
    int n;
    while ((n = PQgetCopyData(src->c, &line, 0)) > 0) {
        if (!ok) {
            PQfreemem(line);
            continue;
        }
        /* roname \t timestamp \t the row (fields of COPY text hold no raw tab) */
        char *tab1 = memchr(line, '\t', (size_t)n);
        char *tab2 = tab1 ? memchr(tab1 + 1, '\t', (size_t)(n - (tab1 + 1 - line))) : NULL;
        if (!tab2) {
            cli_error(NULL, "node %s: copying %s: a row without its origin and time", src->name, table);
            ok = false;
            PQfreemem(line);
            continue;
        }
        *tab1 = *tab2 = '\0';
        /* a row S wrote itself (or under another replication's origin): S's origin here */
        const char *origin = strncmp(line, "pgvigil_aa_", 11) == 0 ? line : src_origin;
        const char *ts = tab1 + 1;
        if (!t->open || strcmp(origin, t->group_origin) != 0 || strcmp(ts, t->group_ts) != 0)
            ok = end_group(t) && start_group(t, table, cols, origin, ts);
        if (ok && PQputCopyData(t->nw->c, tab2 + 1, (int)(n - (tab2 + 1 - line))) != 1) {
            cli_error(NULL, "node %s: copying %s: %s", t->nw->name, table, PQerrorMessage(t->nw->c));
            ok = false;
        }
        t->rows++;
        PQfreemem(line);
    }
    r = PQgetResult(src->c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        char b[300];
        cli_error(NULL, "node %s: copying %s: %s", src->name, table, first_line(PQresultErrorMessage(r), b, sizeof(b)));
        ok = false;
    }
    PQclear(r);
    while ((r = PQgetResult(src->c)))
        PQclear(r);
    return end_group(t) && ok;
}

static int parse_nodes_opt(const char *arg, JNode *nodes, int *n_nodes)
{
    if (*n_nodes >= MAX_NODES) {
        cli_error(NULL, "at most %d nodes", MAX_NODES);
        return EXIT_USAGE;
    }
    if (!parse_node(arg, &nodes[*n_nodes]))
        return EXIT_USAGE;
    (*n_nodes)++;
    return -1;
}

int aa_join_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        {"new", required_argument, NULL, OPT_NEW},       {"node", required_argument, NULL, OPT_NODE},
        {"source", required_argument, NULL, OPT_SOURCE}, {"sequence-offset", required_argument, NULL, OPT_OFFSET},
        {"help", no_argument, NULL, 'h'},                {0},
    };
    JNode nodes[MAX_NODES], nw;
    memset(nodes, 0, sizeof(nodes));
    memset(&nw, 0, sizeof(nw));
    int n_nodes = 0, offset = 0, rc;
    const char *source = NULL;
    bool have_new = false;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            join_usage(stdout);
            return EXIT_OK;
        case OPT_NEW:
            if (!parse_node(optarg, &nw))
                return EXIT_USAGE;
            have_new = true;
            break;
        case OPT_NODE:
            if ((rc = parse_nodes_opt(optarg, nodes, &n_nodes)) >= 0)
                return rc;
            break;
        case OPT_SOURCE:
            source = optarg;
            break;
        case OPT_OFFSET:
            if (!cli_parse_int(optarg, 1, 64, &offset)) {
                cli_error("1 to 64", "--sequence-offset: \"%s\" is not a sequence offset", optarg);
                return EXIT_USAGE;
            }
            break;
        default:
            return cli_bad_option("aa join", opt, argv);
        }
    }
    if (!have_new || n_nodes == 0 || optind < argc) {
        cli_error("see pgvigil aa join --help", "give --new NAME=CONNINFO and every node of the group as --node");
        return EXIT_USAGE;
    }
    JNode *src = &nodes[0];
    if (source) {
        src = NULL;
        for (int i = 0; i < n_nodes; i++)
            if (strcmp(nodes[i].name, source) == 0)
                src = &nodes[i];
        if (!src) {
            cli_error("name one of the --node nodes", "--source %s is not among the --node nodes", source);
            return EXIT_USAGE;
        }
    }
    rc = EXIT_FAILED;
    PGconn *repl = NULL;
    char **tables = NULL;
    int n_tables = 0;
    int64_t t0 = mono_ms();
    for (int i = 0; i < n_nodes; i++)
        if (!connect_node(&nodes[i], false, &nodes[i].c))
            goto out;
    if (!connect_node(&nw, false, &nw.c) || !check_nodes(nodes, n_nodes, &nw, &offset) ||
        !list_tables(src, &nw, &tables, &n_tables))
        goto out;
    /* the new node's name, and an origin per node */
    {
        char *name = lit(nw.c, nw.name);
        char *sql = str_printf("insert into pgvigil_aa.local_node (name, sequence_offset) values (%s, %d)", name, offset);
        bool ok = q(&nw, nw.c, "create extension if not exists pgvigil_aa", NULL, 0) && q(&nw, nw.c, sql, NULL, 0);
        free(sql);
        free(name);
        for (int i = 0; ok && i < n_nodes; i++) {
            sql = str_printf("select pg_replication_origin_create('pgvigil_aa_%s') where not exists "
                             "(select 1 from pg_replication_origin where roname = 'pgvigil_aa_%s')",
                             nodes[i].name, nodes[i].name);
            ok = q(&nw, nw.c, sql, NULL, 0);
            free(sql);
        }
        if (!ok)
            goto out;
    }
    /* 1. the new node's slot on each other node, and S past a mark made after it */
    for (int i = 0; i < n_nodes; i++) {
        JNode *e = &nodes[i];
        if (e == src)
            continue;
        char *sql = str_printf("select pg_create_logical_replication_slot('aa_for_%s', 'pgvigil_aa')", nw.name);
        char mark[32];
        bool ok = q(e, e->c, sql, NULL, 0) && q(e, e->c, "select pgvigil_aa.mark()", mark, sizeof(mark)) &&
                  wait_applied(src, e->name, mark);
        free(sql);
        if (!ok)
            goto out;
    }
    /* 2. the slot on S, with its snapshot */
    char seen_src[64];
    if (!q(src, src->c, "select clock_timestamp()", seen_src, sizeof(seen_src)) || !connect_node(src, true, &repl))
        goto out;
    char consistent[32] = "", snapshot[128] = "";
    {
        char *sql = str_printf("CREATE_REPLICATION_SLOT aa_for_%s LOGICAL pgvigil_aa EXPORT_SNAPSHOT", nw.name);
        PGresult *r = PQexec(repl, sql);
        free(sql);
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        if (ok) {
            str_copy(consistent, sizeof(consistent), PQgetvalue(r, 0, 1));
            str_copy(snapshot, sizeof(snapshot), PQgetvalue(r, 0, 2));
        } else {
            char b[300];
            cli_error(NULL, "node %s: creating the new node's slot: %s", src->name,
                      first_line(PQresultErrorMessage(r), b, sizeof(b)));
        }
        PQclear(r);
        if (!ok)
            goto out;
    }
    /* 3. the copy, in that snapshot */
    char *snap_lit = lit(src->c, snapshot);
    char *set_snap = str_printf("set transaction snapshot %s", snap_lit);
    free(snap_lit);
    bool ok = q(src, src->c, "begin isolation level repeatable read read only", NULL, 0) &&
              q(src, src->c, set_snap, NULL, 0) && q(src, src->c, "set local timezone = 'UTC'", NULL, 0) &&
              q(src, src->c, "set local datestyle = 'ISO'", NULL, 0);
    free(set_snap);
    PGresult *applied = ok ? PQexec(src->c, "select name, applied_lsn, applied_commit_ts from pgvigil_aa.peers") : NULL;
    if (ok && PQresultStatus(applied) != PGRES_TUPLES_OK) {
        char b[300];
        cli_error(NULL, "node %s: %s", src->name, first_line(PQresultErrorMessage(applied), b, sizeof(b)));
        ok = false;
    }
    CopyTarget t;
    memset(&t, 0, sizeof(t));
    t.nw = &nw;
    char src_origin[80];
    str_fmt(src_origin, sizeof(src_origin), "pgvigil_aa_%s", src->name);
    ok = ok && q(&nw, nw.c, "set session_replication_role = replica", NULL, 0);
    for (int i = 0; ok && i < n_tables; i++)
        ok = copy_table(src, tables[2 * i], tables[2 * i + 1], src_origin, &t);
    if (t.origin[0])
        ok = q(&nw, nw.c, "select pg_replication_origin_session_reset()", NULL, 0) && ok;
    q(src, src->c, "commit", NULL, 0);
    PQfinish(repl);
    repl = NULL;
    /* 4. where each stream starts, and what the new node has seen */
    for (int i = 0; ok && i < n_nodes; i++) {
        JNode *e = &nodes[i];
        const char *lsn = consistent, *seen = seen_src;
        if (e != src) {
            lsn = seen = NULL;
            for (int k = 0; k < PQntuples(applied); k++)
                if (strcmp(PQgetvalue(applied, k, 0), e->name) == 0 && !PQgetisnull(applied, k, 1)) {
                    lsn = PQgetvalue(applied, k, 1);
                    seen = PQgetisnull(applied, k, 2) ? NULL : PQgetvalue(applied, k, 2);
                }
            if (!lsn) {
                cli_error("see pgvigil aa status", "node %s does not say up to where it applied node %s", src->name,
                          e->name);
                ok = false;
                break;
            }
        }
        char *ci = lit(nw.c, e->conninfo);
        char *sl = seen ? lit(nw.c, seen) : str_dup("null");
        char *sql = str_printf("select pg_replication_origin_advance('pgvigil_aa_%s', '%s'); "
                               "insert into pgvigil_aa.peers (name, conninfo, slot_name, applied_commit_ts) "
                               "values ('%s', %s, 'aa_for_%s', %s)",
                               e->name, lsn, e->name, ci, nw.name, sl);
        ok = q(&nw, nw.c, sql, NULL, 0);
        free(sql);
        free(sl);
        free(ci);
    }
    PQclear(applied);
    /* 5. every node reads the new one */
    for (int i = 0; ok && i < n_nodes; i++) {
        JNode *e = &nodes[i];
        char *slot = str_printf("select pg_create_logical_replication_slot('aa_for_%s', 'pgvigil_aa')", e->name);
        char *ci = lit(e->c, nw.conninfo);
        char *peer = str_printf("insert into pgvigil_aa.peers (name, conninfo, slot_name) values ('%s', %s, 'aa_for_%s')",
                                nw.name, ci, e->name);
        ok = q(&nw, nw.c, slot, NULL, 0) && q(e, e->c, peer, NULL, 0);
        free(peer);
        free(ci);
        free(slot);
    }
    if (!ok)
        goto out;
    printf("node %s joined the group (sequence offset %d): %d table%s, %lld row%s in %lld transaction%s copied from %s "
           "in %.1f s; it applies %s from %s on\n",
           nw.name, offset, n_tables, n_tables == 1 ? "" : "s", t.rows, t.rows == 1 ? "" : "s", t.groups,
           t.groups == 1 ? "" : "s", src->name, (double)(mono_ms() - t0) / 1000.0, src->name, consistent);
    rc = EXIT_OK;
out:
    if (rc != EXIT_OK)
        fprintf(stderr, "the join did not complete: remove what it made with pgvigil aa remove --drop %s "
                        "(and empty the new node's tables) before trying again\n", nw.name);
    PQfinish(repl);
    for (int i = 0; i < 2 * n_tables; i++)
        free(tables[i]);
    free(tables);
    disconnect(nodes, n_nodes);
    disconnect(&nw, 1);
    return rc;
}

int aa_remove_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        {"drop", required_argument, NULL, OPT_DROP},
        {"node", required_argument, NULL, OPT_NODE},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    JNode nodes[MAX_NODES];
    memset(nodes, 0, sizeof(nodes));
    int n_nodes = 0, rc;
    const char *drop = NULL;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            remove_usage(stdout);
            return EXIT_OK;
        case OPT_DROP:
            drop = optarg;
            break;
        case OPT_NODE:
            if ((rc = parse_nodes_opt(optarg, nodes, &n_nodes)) >= 0)
                return rc;
            break;
        default:
            return cli_bad_option("aa remove", opt, argv);
        }
    }
    if (!drop || n_nodes == 0 || optind < argc) {
        cli_error("see pgvigil aa remove --help", "give --drop NAME and the group's nodes as --node");
        return EXIT_USAGE;
    }
    if (!config_aa_name_ok(drop)) {
        cli_error("letters, digits, '-', '_', '.'", "\"%s\" is not a node name", drop);
        return EXIT_USAGE;
    }
    rc = EXIT_FAILED;
    bool ok = true;
    for (int i = 0; ok && i < n_nodes; i++)
        ok = connect_node(&nodes[i], false, &nodes[i].c);
    /* the removed node first: its workers stop reading the others' slots */
    for (int i = 0; ok && i < n_nodes; i++)
        if (strcmp(nodes[i].name, drop) == 0)
            ok = q(&nodes[i], nodes[i].c, "delete from pgvigil_aa.peers", NULL, 0);
    for (int i = 0; ok && i < n_nodes; i++) {
        JNode *e = &nodes[i];
        if (strcmp(e->name, drop) == 0)
            continue;
        char *sql = str_printf("delete from pgvigil_aa.peers where name = '%s'", drop);
        ok = q(e, e->c, sql, NULL, 0);
        free(sql);
    }
    /* slots and origins, once nothing uses them (the launcher stops a removed peer's worker
     * within a second) */
    for (int i = 0; ok && i < n_nodes; i++) {
        JNode *e = &nodes[i];
        bool dropped_node = strcmp(e->name, drop) == 0;
        char *sql = dropped_node
                        ? str_printf("select count(*) from pg_replication_slots where slot_name like 'aa\\_for\\_%%' and active")
                        : str_printf("select count(*) from pg_replication_slots where slot_name = 'aa_for_%s' and active "
                                     "union all select count(*) from pg_stat_activity where application_name = "
                                     "'pgvigil_aa apply from %s'",
                                     drop, drop);
        int64_t t0 = mono_ms();
        for (;;) {
            PGresult *r = PQexec(e->c, sql);
            bool idle = PQresultStatus(r) == PGRES_TUPLES_OK;
            for (int k = 0; idle && k < PQntuples(r); k++)
                idle = strcmp(PQgetvalue(r, k, 0), "0") == 0;
            PQclear(r);
            if (idle)
                break;
            if (mono_ms() - t0 > 30000) {
                cli_error("stop what still reads it, and run this again",
                          "node %s: a slot or worker of %s is still in use after 30 s", e->name, drop);
                ok = false;
                break;
            }
            sleep_ms(100);
        }
        free(sql);
        if (!ok)
            break;
        sql = dropped_node
                  ? str_printf("select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name like "
                               "'aa\\_for\\_%%'; select pg_replication_origin_drop(roname) from pg_replication_origin "
                               "where roname like 'pgvigil\\_aa\\_%%'")
                  : str_printf("select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = "
                               "'aa_for_%s'; select pg_replication_origin_drop(roname) from pg_replication_origin where "
                               "roname = 'pgvigil_aa_%s'",
                               drop, drop);
        ok = q(e, e->c, sql, NULL, 0);
        free(sql);
    }
    if (ok) {
        printf("node %s left the group: no node applies from it or keeps a slot for it\n", drop);
        rc = EXIT_OK;
    }
    disconnect(nodes, n_nodes);
    return rc;
}
