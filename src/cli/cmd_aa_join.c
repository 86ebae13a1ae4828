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
 *  3. the tables, and S's tombstones (deleted keys), copied in that snapshot, each row written
 *     on NEW under the replication origin and with the commit time of the transaction that
 *     wrote it on S (its own rows under S's origin): to NEW's conflict detection a copied row
 *     (or delete) is the version its writer made, not a new local write, and NEW's slots never
 *     send it on; the tables' conflict policies and the nodes' priorities as in that snapshot;
 *  4. NEW's sequences set from S's and made node-distinct above them; NEW's origins advanced:
 *     S's to its slot's start, Ej's to what the snapshot held of Ej; so each change reaches
 *     NEW exactly once, from the copy or from the stream;
 *  5. peers and slots: NEW reads every node, every node reads NEW.
 * NEW must hold the tables (same names and keys), empty; it takes no writes until the join ends. */
#include "common/common.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/cmd_aa.h"
#include "common/strbuf.h"
#include "common/timeutil.h"

#include <getopt.h>
#include <libpq-fe.h>

#define MAX_NODES 64
#define WAIT_APPLY_MS 60000
#define WAIT_IDLE_MS 30000
/* a node's name goes into slot names (aa_for_NAME: at most 63 bytes of [a-z0-9_]) and into
 * its apply workers' application_name ("pgvigil_aa apply from NAME", at most 63 bytes) */
#define MAX_NAME_LEN 40

typedef struct JNode {
    char name[64];
    const char *conninfo;
    PGconn *c;
} JNode;

enum { OPT_NEW = 0x200, OPT_NODE, OPT_SOURCE, OPT_OFFSET, OPT_DROP };

static void join_usage(FILE *out)
{
    fputs("usage: pgvigil aa join --new NAME=CONNINFO [--node NAME=CONNINFO ...]\n"
          "                       [--source NAME] [--sequence-offset N]\n\n"
          "Add node NAME to the active-active group of the --node nodes (every node of the group):\n"
          "copy the tables, their tombstones (deleted keys), conflict policies and the nodes'\n"
          "priorities from --source (default: the first --node) in one snapshot, set the new\n"
          "node's sequences above the source's, then stream from every node from exactly where\n"
          "the copy ends. The new node must have the tables (same names and keys), empty, and\n"
          "pgvigil_aa preloaded; the extension and its name are set up here, with the next free\n"
          "sequence offset unless given. Node names: a-z, 0-9 and '_' (they name replication\n"
          "slots). Each CONNINFO must also work from the other nodes (it goes into their\n"
          "pgvigil_aa.peers). Without --node, NAME is the first node of a new group: its\n"
          "extension and name only (sequence offset 1 unless given).\n",
          out);
}

static void remove_usage(FILE *out)
{
    fputs("usage: pgvigil aa remove --drop NAME --node NAME=CONNINFO [--node ...]\n\n"
          "Take node NAME out of the group of the --node nodes: every other node stops applying\n"
          "from it and drops its slot and replication origin; when NAME is among the --node\n"
          "nodes (reachable), it stops applying, drops its slots and origins and forgets its\n"
          "name (pgvigil_aa.local_node), so that it can join again. Its data stays.\n",
          out);
}

/* First line of libpq's message. */
static const char *first_line(const char *m, char *buf, size_t sz)
{
    str_copy(buf, sz, m ? m : "");
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

/* A node's name as slot and origin names take it: 1..MAX_NAME_LEN of a-z, 0-9, '_'. */
static bool node_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME_LEN)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

static void bad_name(const char *name)
{
    cli_error("a node's name names its replication slots (aa_for_NAME): use 1 to 40 of a-z, 0-9 and '_'",
              "\"%s\" is not a node name", name);
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

/* Run a query on node n: its rows, or NULL (said) on an error. */
static PGresult *rows(JNode *n, PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char b[300];
        cli_error(NULL, "node %s: %s", n->name, first_line(PQresultErrorMessage(r), b, sizeof(b)));
        PQclear(r);
        return NULL;
    }
    return r;
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
    if (!node_name_ok(n->name)) {
        bad_name(n->name);
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

/* The source's and the new node's sessions read and write values alike: the source's
 * encoding on both (no conversion on the way), dates and intervals in one unambiguous style,
 * times in UTC, and every name the source prints qualified (regclass, regprocedure). */
static bool session_settings(JNode *src, JNode *nw)
{
    char enc[64];
    if (!q(src, src->c, "show server_encoding", enc, sizeof(enc)))
        return false;
    if (PQsetClientEncoding(src->c, enc) != 0 || PQsetClientEncoding(nw->c, enc) != 0) {
        cli_error(NULL, "setting client_encoding to the source's encoding %s failed", enc);
        return false;
    }
    return q(src, src->c,
             "set datestyle = 'ISO, YMD'; set timezone = 'UTC'; set intervalstyle = 'postgres'; "
             "set search_path = pg_catalog",
             NULL, 0) &&
           q(nw, nw->c,
             "set datestyle = 'ISO, YMD'; set timezone = 'UTC'; set intervalstyle = 'postgres'; "
             "set client_min_messages = warning",
             NULL, 0);
}

/* Each existing node is what it is called, the new one is not in a group; the new node's
 * sequence offset is free and within the group's sequence step. */
static bool check_nodes(JNode *nodes, int n_nodes, JNode *nw, int *offset, int *step)
{
    int max_off = 0;
    const char *step_of = NULL;
    *step = 0;
    for (int i = 0; i < n_nodes; i++) {
        if (strcmp(nodes[i].name, nw->name) == 0) {
            cli_error("choose another name", "node %s is already in the group", nw->name);
            return false;
        }
        PGresult *r = rows(&nodes[i], nodes[i].c, "select name, sequence_offset, sequence_step from pgvigil_aa.local_node");
        if (!r)
            return false;
        if (PQntuples(r) != 1) {
            cli_error("name each node in its pgvigil_aa.local_node", "node %s has no name in pgvigil_aa.local_node",
                      nodes[i].name);
            PQclear(r);
            return false;
        }
        if (strcmp(PQgetvalue(r, 0, 0), nodes[i].name) != 0) {
            cli_error("name each node as its pgvigil_aa.local_node does", "node %s calls itself \"%s\"", nodes[i].name,
                      PQgetvalue(r, 0, 0));
            PQclear(r);
            return false;
        }
        int off = atoi(PQgetvalue(r, 0, 1)), st = atoi(PQgetvalue(r, 0, 2));
        PQclear(r);
        if (*step && st != *step) {
            cli_error("give every node the same sequence_step (pgvigil_aa.local_node)",
                      "nodes %s and %s step their sequences by %d and %d", step_of, nodes[i].name, *step, st);
            return false;
        }
        *step = st;
        step_of = nodes[i].name;
        if (*offset && off == *offset) {
            cli_error("give --sequence-offset N not used by another node", "sequence offset %d is node %s's", off,
                      nodes[i].name);
            return false;
        }
        max_off = off > max_off ? off : max_off;
    }
    bool given = *offset != 0;
    if (!given)
        *offset = max_off + 1;
    if (*offset < 1 || *offset > *step) {
        if (given)
            cli_error("give --sequence-offset N (1 to the group's sequence_step) not used by another node",
                      "--sequence-offset %d is above the group's sequence_step %d", *offset, *step);
        else
            cli_error("give --sequence-offset N (1 to the group's sequence_step) not used by another node",
                      "no free sequence offset above %d: the group's sequence_step is %d", max_off, *step);
        return false;
    }
    char has[8];
    if (!q(nw, nw->c, "select count(*) from pg_extension where extname = 'pgvigil_aa'", has, sizeof(has)))
        return false;
    if (strcmp(has, "0") != 0) {
        char n_rows[16];
        if (!q(nw, nw->c, "select (select count(*) from pgvigil_aa.local_node) + (select count(*) from pgvigil_aa.peers)",
               n_rows, sizeof(n_rows)))
            return false;
        if (strcmp(n_rows, "0") != 0) {
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
    PGresult *r = rows(src, src->c,
                       "select format('%I.%I', n.nspname, c.relname), (select string_agg(quote_ident(a.attname), "
                       "', ' order by a.attnum) from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 "
                       "and not a.attisdropped and a.attgenerated = '') from pg_class c "
                       "join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'r' "
                       "and c.relpersistence = 'p' and n.nspname not in ('pg_catalog', "
                       "'information_schema', 'pgvigil_aa') and n.nspname not like 'pg_toast%' "
                       "order by 1");
    if (!r)
        return false;
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

/* S's conflict policies (table, policy, resolver: qualified names, the session's search_path
 * being pg_catalog). */
#define POLICIES_SQL                                                                                                   \
    "select format('%I.%I', n.nspname, c.relname), p.policy, p.resolver::text from pgvigil_aa.table_policies p "      \
    "join pg_class c on c.oid = p.relation join pg_namespace n on n.oid = c.relnamespace order by 1"

/* Each table with a policy on S, and each custom policy's resolver function, exist on the new
 * node (checked before anything is made; the policies themselves are copied in the snapshot). */
static bool check_policies(JNode *src, JNode *nw)
{
    PGresult *r = rows(src, src->c, POLICIES_SQL);
    if (!r)
        return false;
    bool ok = true;
    for (int i = 0; ok && i < PQntuples(r); i++) {
        char *rel = lit(nw->c, PQgetvalue(r, i, 0));
        char *fn = PQgetisnull(r, i, 2) ? str_dup("null") : lit(nw->c, PQgetvalue(r, i, 2));
        char *sql = str_printf("select case when to_regclass(%s) is null then 'table' when %s::text is not null "
                               "and to_regprocedure(%s) is null then 'resolver' else '' end",
                               rel, fn, fn);
        char what[16];
        ok = q(nw, nw->c, sql, what, sizeof(what));
        if (ok && strcmp(what, "table") == 0) {
            cli_error("create the table on the new node first", "node %s: table %s, which has a conflict policy on %s, "
                      "is missing", nw->name, PQgetvalue(r, i, 0), src->name);
            ok = false;
        } else if (ok && strcmp(what, "resolver") == 0) {
            cli_error("create the function on the new node first (functions are not replicated)",
                      "node %s: the resolver %s of table %s's conflict policy is missing", nw->name,
                      PQgetvalue(r, i, 2), PQgetvalue(r, i, 0));
            ok = false;
        }
        free(sql);
        free(fn);
        free(rel);
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
    JNode *nodes;           /* the group's nodes: the origins the new node has */
    int n_nodes;
    const char *src_origin; /* S's origin: S's own rows, and those of an origin not a node's */
    char origin[80];        /* the session's origin now ("" none) */
    char group_origin[80];
    char group_ts[64];
    bool open;              /* a COPY is running, in a transaction */
    long long groups, rows;
} CopyTarget;

/* End the open group: commit it, or (commit false) abandon it: its COPY fails and its
 * transaction rolls back. False when it was not committed. */
static bool end_group(CopyTarget *t, bool commit)
{
    if (!t->open)
        return true;
    t->open = false;
    PGconn *c = t->nw->c;
    bool ok = PQputCopyEnd(c, commit ? NULL : "the copy from the source failed") == 1;
    PGresult *r;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            if (commit) {
                char b[300];
                cli_error(NULL, "node %s: copying: %s", t->nw->name, first_line(PQresultErrorMessage(r), b, sizeof(b)));
            }
            ok = false;
        }
        PQclear(r);
    }
    ok = ok && commit;
    /* (always ended: a failed group's transaction is rolled back, never left open) */
    bool ended = q(t->nw, c, ok ? "commit" : "rollback", NULL, 0);
    return ok && ended;
}

static bool start_group(CopyTarget *t, const char *target, const char *cols, const char *origin, const char *ts)
{
    JNode *nw = t->nw;
    if (strcmp(origin, t->origin) != 0) {
        if (t->origin[0] && !q(nw, nw->c, "select pg_replication_origin_session_reset()", NULL, 0))
            return false;
        t->origin[0] = '\0';
        char *o = lit(nw->c, origin);
        char *sql = str_printf("select pg_replication_origin_session_setup(%s)", o);
        bool ok = q(nw, nw->c, sql, NULL, 0);
        free(sql);
        free(o);
        if (!ok)
            return false;
        str_copy(t->origin, sizeof(t->origin), origin);
    }
    if (!q(nw, nw->c, "begin", NULL, 0))
        return false;
    char *tsl = lit(nw->c, ts);
    char *setup = str_printf("select pg_replication_origin_xact_setup('0/0', %s::timestamptz)", tsl);
    char *copy = str_printf("copy %s (%s) from stdin", target, cols);
    bool ok = q(nw, nw->c, setup, NULL, 0);
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
    if (!ok) {
        q(nw, nw->c, "rollback", NULL, 0);
        return false;
    }
    t->open = true;
    t->groups++;
    str_copy(t->group_origin, sizeof(t->group_origin), origin);
    str_copy(t->group_ts, sizeof(t->group_ts), ts);
    return true;
}

/* The origin a row copied with S's origin name roname gets on the new node: a node's of the
 * group as it is; S's own (""), another replication's, or that of a node no longer in the
 * group (the new node has no origin of it): S's. */
static const char *row_origin(const CopyTarget *t, const char *roname)
{
    if (strncmp(roname, "pgvigil_aa_", 11) == 0)
        for (int i = 0; i < t->n_nodes; i++)
            if (strcmp(roname + 11, t->nodes[i].name) == 0)
                return roname;
    return t->src_origin;
}

/* Copy the rows of a query in S's snapshot into target (cols) on the new node, in groups of
 * one origin and commit time: select_sql gives each row's writer's origin name and commit
 * time, then the row's cols, ordered by time and origin. what names it in messages. */
static bool copy_rows(JNode *src, const char *what, const char *select_sql, const char *target, const char *cols,
                      CopyTarget *t)
{
    char *sql = str_printf("copy (%s) to stdout", select_sql);
    PGresult *r = PQexec(src->c, sql);
    free(sql);
    if (PQresultStatus(r) != PGRES_COPY_OUT) {
        char b[300];
        cli_error(NULL, "node %s: copying %s: %s", src->name, what, first_line(PQresultErrorMessage(r), b, sizeof(b)));
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
            cli_error(NULL, "node %s: copying %s: a row without its origin and time", src->name, what);
            ok = false;
            PQfreemem(line);
            continue;
        }
        *tab1 = *tab2 = '\0';
        const char *origin = row_origin(t, line);
        const char *ts = tab1 + 1;
        if (!t->open || strcmp(origin, t->group_origin) != 0 || strcmp(ts, t->group_ts) != 0)
            ok = end_group(t, true) && start_group(t, target, cols, origin, ts);
        if (ok && PQputCopyData(t->nw->c, tab2 + 1, (int)(n - (tab2 + 1 - line))) != 1) {
            char b[300];
            cli_error(NULL, "node %s: copying %s: %s", t->nw->name, what, first_line(PQerrorMessage(t->nw->c), b, sizeof(b)));
            ok = false;
        }
        t->rows++;
        PQfreemem(line);
    }
    r = PQgetResult(src->c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        char b[300];
        cli_error(NULL, "node %s: copying %s: %s", src->name, what, first_line(PQresultErrorMessage(r), b, sizeof(b)));
        ok = false;
    }
    PQclear(r);
    while ((r = PQgetResult(src->c)))
        PQclear(r);
    /* (the open group is committed only when everything of it arrived) */
    return end_group(t, ok) && ok;
}

/* (a row whose writer's time is unknown, frozen or older than track_commit_timestamp: as
 * written by S long ago, a version every node has seen) */
#define WRITER_COLS "coalesce(o.roname, ''), coalesce(ct.timestamp, '2000-01-01 00:00:00+00')"
#define WRITER_JOIN                                                                                                    \
    "left join lateral pg_xact_commit_timestamp_origin(x.xmin) ct on true "                                            \
    "left join pg_replication_origin o on o.roident = ct.roident"

/* Copy one table in S's snapshot, each row under its writer's origin and commit time. */
static bool copy_table(JNode *src, const char *table, const char *cols, CopyTarget *t)
{
    char *sql = str_printf("select " WRITER_COLS ", %s from only %s x " WRITER_JOIN " order by 2, 1", cols, table);
    bool ok = copy_rows(src, table, sql, table, cols, t);
    free(sql);
    return ok;
}

/* The key columns of a table (its replica identity: the primary key, or the index named by
 * REPLICA IDENTITY USING INDEX), in column order, as an array of names: the order a
 * tombstone's key is in. C is the pg_class row. */
#define KEY_NAMES_SQL                                                                                                  \
    "(select array_agg(a.attname::text order by a.attnum) from pg_index i join pg_attribute a "                       \
    "on a.attrelid = i.indrelid and a.attnum = any(i.indkey) where i.indrelid = c.oid and case c.relreplident "        \
    "when 'd' then i.indisprimary when 'i' then i.indisreplident else false end)"

/* Copy S's tombstones in its snapshot, each under its deleter's origin and commit time (its
 * xmin's, as rows are copied). relid is an oid, S's: each becomes the new node's oid of the
 * table of that name, and its key is put in the new node's column order of the key (the
 * columns may be in another order there). Tombstones of a table the new node lacks are left
 * out (counted in skipped). */
static bool copy_tombstones(JNode *src, JNode *nw, CopyTarget *t, long long *copied, int *skipped)
{
    *copied = 0;
    *skipped = 0;
    PGresult *r = rows(src, src->c,
                       "select c.oid, format('%I.%I', n.nspname, c.relname), " KEY_NAMES_SQL "::text "
                       "from (select distinct relid from pgvigil_aa.tombstones) tb join pg_class c on c.oid = tb.relid "
                       "join pg_namespace n on n.oid = c.relnamespace order by 2");
    if (!r)
        return false;
    StrBuf map = {0};
    int mapped = 0;
    bool ok = true;
    for (int i = 0; ok && i < PQntuples(r); i++) {
        char *name = lit(nw->c, PQgetvalue(r, i, 1));
        char *keys = PQgetisnull(r, i, 2) ? str_dup("null") : lit(nw->c, PQgetvalue(r, i, 2));
        /* the new node's oid, where each of its key columns is in S's key, and whether that
         * order differs (not when the keys differ: the apply refuses such a table anyway) */
        char *sql = str_printf("select c.oid, x.p::text, x.p is not null and array_position(x.p, null) is null and "
                               "cardinality(x.p) = cardinality(%s::text[]) and "
                               "x.p <> array(select generate_series(1, cardinality(x.p))) "
                               "from pg_class c, lateral (select array_agg(array_position(%s::text[], k) order by o) p "
                               "from unnest(" KEY_NAMES_SQL ") with ordinality u(k, o)) x where c.oid = to_regclass(%s)",
                               keys, keys, name);
        PGresult *m = rows(nw, nw->c, sql);
        ok = m != NULL;
        if (ok && PQntuples(m) == 0)
            (*skipped)++;
        else if (ok) {
            bool reorder = strcmp(PQgetvalue(m, 0, 2), "t") == 0;
            strbuf_addf(&map, "%s(%s::oid, %s::oid, %s%s%s::int[])", mapped ? ", " : "", PQgetvalue(r, i, 0),
                        PQgetvalue(m, 0, 0), reorder ? "'" : "", reorder ? PQgetvalue(m, 0, 1) : "null",
                        reorder ? "'" : "");
            mapped++;
        }
        PQclear(m);
        free(sql);
        free(keys);
        free(name);
    }
    PQclear(r);
    if (ok && mapped) {
        long long before = t->rows;
        char *sql = str_printf("select " WRITER_COLS ", m.relid, case when m.perm is null or cardinality(x.key) = 0 "
                               "then x.key else array(select x.key[p] from unnest(m.perm) with ordinality u(p, o) "
                               "order by o) end, x.seen from pgvigil_aa.tombstones x join (values %s) m(src_relid, "
                               "relid, perm) on m.src_relid = x.relid " WRITER_JOIN " order by 2, 1",
                               map.s);
        ok = copy_rows(src, "pgvigil_aa.tombstones", sql, "pgvigil_aa.tombstones", "relid, key, seen", t);
        free(sql);
        *copied = t->rows - before;
        t->rows = before;
    }
    strbuf_free(&map);
    return ok;
}

/* Copy S's conflict policies (read in its snapshot) onto the new node, in place of any it had. */
static bool copy_policies(JNode *src, JNode *nw, int *n)
{
    PGresult *r = rows(src, src->c, POLICIES_SQL);
    if (!r)
        return false;
    bool ok = q(nw, nw->c, "delete from pgvigil_aa.table_policies", NULL, 0);
    for (int i = 0; ok && i < PQntuples(r); i++) {
        char *rel = lit(nw->c, PQgetvalue(r, i, 0));
        char *pol = lit(nw->c, PQgetvalue(r, i, 1));
        char *fn = PQgetisnull(r, i, 2) ? str_dup("null") : lit(nw->c, PQgetvalue(r, i, 2));
        char *sql = str_printf("insert into pgvigil_aa.table_policies (relation, policy, resolver) "
                               "values (%s::regclass, %s, %s::regprocedure)",
                               rel, pol, fn);
        ok = q(nw, nw->c, sql, NULL, 0);
        free(sql);
        free(fn);
        free(pol);
        free(rel);
    }
    *n = PQntuples(r);
    PQclear(r);
    return ok;
}

/* The new node's sequences: each set to S's value (read in the snapshot), then made
 * node-distinct above it (pgvigil_aa.distinct_sequence: the new node's next value is above
 * S's and its own modulo the step). A sequence the new node lacks is left out, said. */
static bool set_sequences(JNode *nw, PGresult *seqs, int *n_set)
{
    *n_set = 0;
    for (int i = 0; i < PQntuples(seqs); i++) {
        char *name = lit(nw->c, PQgetvalue(seqs, i, 0));
        char *sql = str_printf("select to_regclass(%s)::oid", name);
        char oid[16];
        bool ok = q(nw, nw->c, sql, oid, sizeof(oid));
        free(sql);
        free(name);
        if (!ok)
            return false;
        if (!oid[0]) {
            fprintf(stderr, "note: node %s has no sequence %s: it was not set\n", nw->name, PQgetvalue(seqs, i, 0));
            continue;
        }
        sql = str_printf("select setval(%s::regclass, %s, true); select pgvigil_aa.distinct_sequence(%s::regclass)", oid,
                         PQgetvalue(seqs, i, 1), oid);
        ok = q(nw, nw->c, sql, NULL, 0);
        free(sql);
        if (!ok)
            return false;
        (*n_set)++;
    }
    return true;
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

/* The group's first node: the extension and its name, nothing to copy or stream yet. */
static int first_node(JNode *nw, int offset)
{
    if (offset > 64) {
        cli_error("1 to 64 (the default sequence_step)", "--sequence-offset %d is above the step of a new group", offset);
        return EXIT_USAGE;
    }
    if (!connect_node(nw, false, &nw->c))
        return EXIT_FAILED;
    char has[8] = "", rows[16] = "";
    bool ok = q(nw, nw->c, "select count(*) from pg_extension where extname = 'pgvigil_aa'", has, sizeof(has));
    if (ok && strcmp(has, "0") != 0)
        ok = q(nw, nw->c, "select (select count(*) from pgvigil_aa.local_node) + (select count(*) from pgvigil_aa.peers)",
               rows, sizeof(rows));
    if (ok && rows[0] && strcmp(rows, "0") != 0) {
        cli_error("remove it from its group first (pgvigil aa remove), or start from an empty node",
                  "node %s already has a name or peers in pgvigil_aa", nw->name);
        ok = false;
    }
    char *name = ok ? lit(nw->c, nw->name) : NULL;
    char *sql = ok ? str_printf("insert into pgvigil_aa.local_node (name, sequence_offset) values (%s, %d)", name,
                                offset ? offset : 1)
                   : NULL;
    ok = ok && q(nw, nw->c, "create extension if not exists pgvigil_aa", NULL, 0) && q(nw, nw->c, sql, NULL, 0);
    free(sql);
    free(name);
    if (ok)
        printf("node %s starts the group (sequence offset %d); add nodes with pgvigil aa join --new NAME=CONNINFO "
               "--node %s=CONNINFO\n", nw->name, offset ? offset : 1, nw->name);
    PQfinish(nw->c);
    nw->c = NULL;
    return ok ? EXIT_OK : EXIT_FAILED;
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
    int n_nodes = 0, offset = 0, step = 0, rc;
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
            /* (its bound is the group's sequence_step, checked on the nodes) */
            if (!cli_parse_int(optarg, 1, 1000000, &offset)) {
                cli_error("1 to the group's sequence_step", "--sequence-offset: \"%s\" is not a sequence offset",
                          optarg);
                return EXIT_USAGE;
            }
            break;
        default:
            return cli_bad_option("aa join", opt, argv);
        }
    }
    if (!have_new || optind < argc) {
        cli_error("see pgvigil aa join --help", "give --new NAME=CONNINFO and every node of the group as --node");
        return EXIT_USAGE;
    }
    if (n_nodes == 0)
        return first_node(&nw, offset);
    for (int i = 0; i < n_nodes; i++)
        for (int k = 0; k < i; k++)
            if (strcmp(nodes[i].name, nodes[k].name) == 0) {
                cli_error("give each node once", "node %s is given twice", nodes[i].name);
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
    bool made = false; /* something was made on a node: the failure hint says how to undo it */
    PGconn *repl = NULL;
    PGresult *applied = NULL, *seqs = NULL;
    char **tables = NULL;
    int n_tables = 0, n_policies = 0, n_seqs = 0, skipped = 0;
    long long n_tombstones = 0;
    int64_t t0 = mono_ms();
    for (int i = 0; i < n_nodes; i++)
        if (!connect_node(&nodes[i], false, &nodes[i].c))
            goto out;
    if (!connect_node(&nw, false, &nw.c) || !session_settings(src, &nw) ||
        !check_nodes(nodes, n_nodes, &nw, &offset, &step) || !list_tables(src, &nw, &tables, &n_tables) ||
        !check_policies(src, &nw))
        goto out;
    /* the new node's name, and an origin per node */
    made = true;
    {
        char *name = lit(nw.c, nw.name);
        char *sql = str_printf("insert into pgvigil_aa.local_node (name, sequence_offset, sequence_step) "
                               "values (%s, %d, %d)",
                               name, offset, step);
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
    /* 2. the slot on S, with its snapshot (S's time before it: what the new node has seen of
     * S, in the session's UTC) */
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
    /* 3. the copy, in that snapshot: what S had applied of each node, the priorities, the
     * sequences, the policies, the tables and the tombstones */
    char *snap_lit = lit(src->c, snapshot);
    char *set_snap = str_printf("set transaction snapshot %s", snap_lit);
    free(snap_lit);
    bool ok = q(src, src->c, "begin isolation level repeatable read read only", NULL, 0) &&
              q(src, src->c, set_snap, NULL, 0);
    free(set_snap);
    applied = ok ? rows(src, src->c,
                        "select name, applied_lsn, applied_commit_ts, priority from pgvigil_aa.peers "
                        "union all select name, null, null, priority from pgvigil_aa.local_node")
                 : NULL;
    /* (a sequence's value is not in the snapshot: read now, it is at least what it was then) */
    seqs = applied ? rows(src, src->c,
                          "select format('%I.%I', schemaname, sequencename), last_value from pg_sequences "
                          "where schemaname <> 'pgvigil_aa' and last_value is not null order by 1")
                   : NULL;
    ok = seqs != NULL;
    CopyTarget t;
    memset(&t, 0, sizeof(t));
    t.nw = &nw;
    t.nodes = nodes;
    t.n_nodes = n_nodes;
    char src_origin[80];
    str_fmt(src_origin, sizeof(src_origin), "pgvigil_aa_%s", src->name);
    t.src_origin = src_origin;
    /* (the new node's tombstones and policies are of no group: a tombstone left by emptying
     * its tables would count as a delete made here) */
    ok = ok && q(&nw, nw.c, "set session_replication_role = replica; set synchronous_commit = off", NULL, 0) &&
         q(&nw, nw.c, "delete from pgvigil_aa.tombstones", NULL, 0) && copy_policies(src, &nw, &n_policies);
    for (int i = 0; ok && i < n_tables; i++)
        ok = copy_table(src, tables[2 * i], tables[2 * i + 1], &t);
    ok = ok && copy_tombstones(src, &nw, &t, &n_tombstones, &skipped);
    if (t.origin[0])
        ok = q(&nw, nw.c, "select pg_replication_origin_session_reset()", NULL, 0) && ok;
    q(src, src->c, "commit", NULL, 0);
    PQfinish(repl);
    repl = NULL;
    if (skipped)
        fprintf(stderr, "note: the tombstones of %d table%s node %s lacks were not copied\n", skipped,
                skipped == 1 ? "" : "s", nw.name);
    /* 4. the sequences; where each stream starts, what the new node has seen, the priorities
     * (S's of each node; S's own for S). From here on, each commit is durable before the next
     * step: it flushes the copy's too. */
    ok = ok && q(&nw, nw.c, "reset synchronous_commit", NULL, 0) && set_sequences(&nw, seqs, &n_seqs);
    for (int i = 0; ok && i < n_nodes; i++) {
        JNode *e = &nodes[i];
        const char *lsn = e == src ? consistent : NULL, *seen = e == src ? seen_src : NULL, *prio = "0";
        for (int k = 0; k < PQntuples(applied); k++)
            if (strcmp(PQgetvalue(applied, k, 0), e->name) == 0) {
                prio = PQgetvalue(applied, k, 3);
                if (e != src && !PQgetisnull(applied, k, 1)) {
                    lsn = PQgetvalue(applied, k, 1);
                    seen = PQgetisnull(applied, k, 2) ? NULL : PQgetvalue(applied, k, 2);
                }
            }
        if (!lsn) {
            cli_error("see pgvigil aa status", "node %s does not say up to where it applied node %s", src->name,
                      e->name);
            ok = false;
            break;
        }
        char *ci = lit(nw.c, e->conninfo);
        char *sl = seen ? lit(nw.c, seen) : str_dup("null");
        char *sql = str_printf("select pg_replication_origin_advance('pgvigil_aa_%s', '%s'); "
                               "insert into pgvigil_aa.peers (name, conninfo, slot_name, applied_commit_ts, priority) "
                               "values ('%s', %s, 'aa_for_%s', %s, %d)",
                               e->name, lsn, e->name, ci, nw.name, sl, atoi(prio));
        ok = q(&nw, nw.c, sql, NULL, 0);
        free(sql);
        free(sl);
        free(ci);
    }
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
    printf("node %s joined the group (sequence offset %d): %d table%s, %lld row%s and %lld tombstone%s in %lld "
           "transaction%s copied from %s in %.1f s, %d conflict polic%s, %d sequence%s set; it applies %s from %s on\n",
           nw.name, offset, n_tables, n_tables == 1 ? "" : "s", t.rows, t.rows == 1 ? "" : "s", n_tombstones,
           n_tombstones == 1 ? "" : "s", t.groups, t.groups == 1 ? "" : "s", src->name,
           (double)(mono_ms() - t0) / 1000.0, n_policies, n_policies == 1 ? "y" : "ies", n_seqs, n_seqs == 1 ? "" : "s",
           src->name, consistent);
    rc = EXIT_OK;
out:
    if (rc != EXIT_OK && made)
        fprintf(stderr, "the join did not complete: remove what it made with pgvigil aa remove --drop %s, giving "
                        "every node as --node and %s too (--node %s=CONNINFO), then empty the new node's tables "
                        "and join again\n",
                nw.name, nw.name, nw.name);
    PQclear(applied);
    PQclear(seqs);
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
    if (!node_name_ok(drop)) {
        bad_name(drop);
        return EXIT_USAGE;
    }
    rc = EXIT_FAILED;
    bool ok = true;
    /* the dropped node, when given: whether it has the extension (a join that failed early
     * made none) */
    bool has_ext[MAX_NODES];
    for (int i = 0; ok && i < n_nodes; i++) {
        ok = connect_node(&nodes[i], false, &nodes[i].c);
        has_ext[i] = true;
        if (ok && strcmp(nodes[i].name, drop) == 0) {
            char n[8];
            ok = q(&nodes[i], nodes[i].c, "select count(*) from pg_extension where extname = 'pgvigil_aa'", n, sizeof(n));
            has_ext[i] = strcmp(n, "0") != 0;
        }
    }
    /* the removed node first: its workers stop reading the others' slots */
    for (int i = 0; ok && i < n_nodes; i++)
        if (strcmp(nodes[i].name, drop) == 0 && has_ext[i])
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
     * within a second; an origin is in use while a worker applies under it) */
    for (int i = 0; ok && i < n_nodes; i++) {
        JNode *e = &nodes[i];
        bool dropped_node = strcmp(e->name, drop) == 0;
        char *sql = dropped_node
                        ? str_printf("select count(*) from pg_replication_slots where slot_name like 'aa\\_for\\_%%' "
                                     "and database = current_database() and active "
                                     "union all select count(*) from pg_stat_activity where application_name like "
                                     "'pgvigil\\_aa apply from %%'")
                        : str_printf("select count(*) from pg_replication_slots where slot_name = 'aa_for_%s' "
                                     "and database = current_database() and active "
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
            if (mono_ms() - t0 > WAIT_IDLE_MS) {
                if (dropped_node)
                    cli_error("stop what still reads it, and run this again",
                              "node %s: a slot or apply worker of it is still in use after %d s", e->name,
                              WAIT_IDLE_MS / 1000);
                else
                    cli_error("stop what still reads it, and run this again",
                              "node %s: a slot or apply worker for %s is still in use after %d s", e->name, drop,
                              WAIT_IDLE_MS / 1000);
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
                               "'aa\\_for\\_%%' and database = current_database(); "
                               "select pg_replication_origin_drop(roname) from pg_replication_origin "
                               "where roname like 'pgvigil\\_aa\\_%%'%s",
                               has_ext[i] ? "; delete from pgvigil_aa.local_node" : "")
                  : str_printf("select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = "
                               "'aa_for_%s' and database = current_database(); "
                               "select pg_replication_origin_drop(roname) from pg_replication_origin where "
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
