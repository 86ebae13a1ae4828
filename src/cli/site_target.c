/* `pgvigil site promote --target-time T`: what the CLI asks of the standby site's leader before
 * it opens that site at T (the agent named in the site record does the promotion itself, see
 * src/ha/agent_promote_at.c). */
#include "common/common.h"
#include "cli/site.h"
#include "pg/pg.h"

#include <ctype.h>

static bool member_addr(const Member *m, char *host, size_t hsz, int *port, Err *err)
{
    cluster_member_host(m->conn_url, host, hsz);
    char *colon = strrchr(host, ':');
    if (!colon) {
        err_set(err, "%s has no postgres address in its member record", m->name);
        return false;
    }
    *colon = '\0';
    *port = atoi(colon + 1);
    return true;
}

static bool ask(const Site *own, const Member *m, const char *sql, char *out, size_t osz, Err *err)
{
    if (!own->ctx.cfg) {
        err_set(err, "needs -c FILE (postgresql.authentication.superuser) to ask %s", m->name);
        return false;
    }
    char host[256];
    int port;
    return member_addr(m, host, sizeof(host), &port, err) &&
           pg_remote_value(host, port, NULL, &own->ctx.cfg->pg_superuser, sql, out, osz, err);
}

int site_target_check(const Site *own, const Member *dl, const char *when, char *norm, size_t nsz, Err *err)
{
    /* a time, not a word PostgreSQL would read as one ('now', 'today', 'epoch', 'infinity': they
     * move, or are not a point before a bad write) */
    bool digit = false;
    for (const char *c = when; *c; c++)
        digit = digit || isdigit((unsigned char)*c);
    if (!pg_timestamp_text_ok(when) || !digit) {
        err_set(err, "--target-time \"%s\" is not a timestamp (e.g. '2026-12-05 11:00:00+00')", when);
        return -2;
    }
    /* read in the server's time zone (what recovery will use), kept as UTC; the replay time is
     * the last replayed commit's, or, with none replayed since it started, its checkpoint's */
    char sql[768], v[128];
    str_fmt(sql, sizeof(sql),
            "SELECT to_char('%s'::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00 ' || "
            "(coalesce(pg_last_xact_replay_timestamp(), (SELECT checkpoint_time FROM pg_control_checkpoint())) "
            "< '%s'::timestamptz)::text",
            when, when);
    if (!ask(own, dl, sql, v, sizeof(v), err)) {
        if (strstr(err->msg, "invalid input syntax") || strstr(err->msg, "out of range")) {
            err_set(err, "--target-time \"%s\" is not a timestamp %s can read", when, dl->name);
            return -2;
        }
        return -1;
    }
    char *sp = strrchr(v, ' ');
    if (!sp) {
        err_set(err, "%s gave an unexpected answer: %s", dl->name, v);
        return -1;
    }
    *sp = '\0';
    str_copy(norm, nsz, v);
    return strcmp(sp + 1, "true") == 0 ? 1 : 0;
}

bool site_target_pause(const Site *own, const Member *dl, bool pause, Err *err)
{
    char v[16];
    return ask(own, dl, pause ? "SELECT pg_wal_replay_pause()::text" : "SELECT pg_wal_replay_resume()::text", v,
               sizeof(v), err);
}
