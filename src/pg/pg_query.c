/* libpq access to the local server with hard deadlines (a frozen postmaster must not freeze
 * the agent), plus observation, slots and the replication role. */
#include "common/common.h"
#include "common/strbuf.h"
#include "common/fileutil.h"
#include "common/lease_file.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "pg/pg.h"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

static bool wait_socket(PGconn *c, bool for_write, int64_t deadline)
{
    int fd = PQsocket(c);
    if (fd < 0)
        return false;
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = fd, .events = for_write ? POLLOUT : POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
    }
}

static PGconn *connect_deadline(PgNode *pg, int64_t deadline, Err *err)
{
    const Config *cfg = pg->cfg;
    char port[16];
    str_fmt(port, sizeof(port), "%d", pg->port);
    const char *keys[] = {"host", "port", "dbname", "user", "password", "application_name",
                          "connect_timeout", NULL};
    const char *vals[] = {pg->host, port, "postgres", cfg->pg_superuser.username,
                          cfg->pg_superuser.password, "pgvigil", "3", NULL};
    if (!vals[4]) { /* no password: stop the list there */
        keys[4] = "application_name";
        vals[4] = "pgvigil";
        keys[5] = NULL;
        vals[5] = NULL;
    }
    PGconn *c = PQconnectStartParams(keys, vals, 0);
    if (!c || PQstatus(c) == CONNECTION_BAD) {
        err_set(err, "postgres %s:%d: %s", pg->host, pg->port, c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return NULL;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            char *m = PQerrorMessage(c);
            size_t n = strlen(m);
            char msg[256];
            str_copy(msg, sizeof(msg), m);
            if (n && n < sizeof(msg) && msg[n - 1] == '\n')
                msg[n - 1] = '\0';
            err_set(err, "postgres %s:%d: %s", pg->host, pg->port, msg);
            PQfinish(c);
            return NULL;
        }
        if (!wait_socket(c, st == PGRES_POLLING_WRITING, deadline)) {
            err_set(err, "postgres %s:%d: connection timed out", pg->host, pg->port);
            PQfinish(c);
            return NULL;
        }
        st = PQconnectPoll(c);
    }
    return c;
}

void pg_node_close(PgNode *pg)
{
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
}

PGresult *pg_query(PgNode *pg, const char *sql, int timeout_ms, Err *err)
{
    int64_t now = mono_ms(), deadline = now + timeout_ms;
    if (pg->deadline_cap_ms && deadline > pg->deadline_cap_ms) {
        if (pg->deadline_cap_ms <= now) {
            err_set(err, "postgres %s:%d: not asked: this round's time for postgres is spent", pg->host, pg->port);
            return NULL;
        }
        deadline = pg->deadline_cap_ms;
    }
    if (pg->conn && PQstatus(pg->conn) != CONNECTION_OK)
        pg_node_close(pg);
    if (!pg->conn) {
        pg->conn = connect_deadline(pg, deadline, err);
        if (!pg->conn)
            return NULL;
    }
    if (!PQsendQuery(pg->conn, sql)) {
        err_set(err, "postgres %s:%d: %s", pg->host, pg->port, PQerrorMessage(pg->conn));
        pg_node_close(pg);
        return NULL;
    }
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy(pg->conn)) {
            if (!wait_socket(pg->conn, false, deadline)) {
                err_set(err, "postgres %s:%d: query timed out after %lld ms", pg->host, pg->port,
                        (long long)(mono_ms() - now));
                PQclear(last);
                pg_node_close(pg); /* never reuse a connection with a query in flight */
                return NULL;
            }
            if (!PQconsumeInput(pg->conn)) {
                err_set(err, "postgres %s:%d: %s", pg->host, pg->port, PQerrorMessage(pg->conn));
                PQclear(last);
                pg_node_close(pg);
                return NULL;
            }
        }
        PGresult *r = PQgetResult(pg->conn);
        if (!r)
            break;
        PQclear(last);
        last = r;
    }
    if (!last) {
        err_set(err, "postgres %s:%d: no result", pg->host, pg->port);
        return NULL;
    }
    ExecStatusType s = PQresultStatus(last);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        char msg[300];
        str_copy(msg, sizeof(msg), PQresultErrorMessage(last));
        size_t n = strlen(msg);
        if (n && msg[n - 1] == '\n')
            msg[n - 1] = '\0';
        err_set(err, "postgres %s:%d: %s", pg->host, pg->port, msg);
        PQclear(last);
        if (PQstatus(pg->conn) != CONNECTION_OK)
            pg_node_close(pg);
        return NULL;
    }
    return last;
}

bool pg_exec(PgNode *pg, const char *sql, int timeout_ms, Err *err)
{
    PGresult *r = pg_query(pg, sql, timeout_ms, err);
    PQclear(r);
    return r != NULL;
}

pid_t pg_postmaster_pid(const char *data_dir)
{
    char path[4096];
    str_fmt(path, sizeof(path), "%s/postmaster.pid", data_dir);
    char *txt = file_read_all(path, NULL, NULL);
    if (!txt)
        return 0;
    long pid = strtol(txt, NULL, 10);
    free(txt);
    if (pid <= 0)
        return 0;
    /* a postmaster killed with its agent stays a zombie where nothing reaps it */
    if ((kill((pid_t)pid, 0) != 0 && errno == ESRCH) || proc_is_zombie((pid_t)pid))
        return 0;
    /* a live postmaster runs in its data directory; a stale pid file can name a pid reused by
     * another process, even another cluster's postgres */
    char cwd[4096], real[4096];
    str_fmt(path, sizeof(path), "/proc/%ld/cwd", pid);
    ssize_t n = readlink(path, cwd, sizeof(cwd) - 1);
    if (n > 0 && realpath(data_dir, real)) {
        cwd[n] = '\0';
        return strcmp(cwd, real) == 0 ? (pid_t)pid : 0;
    }
    if (n < 0 && errno == ENOENT)
        return 0;
    /* cwd not readable here: a stale pid file can name a reused pid: check it is a postgres process */
    char comm[64];
    str_fmt(path, sizeof(path), "/proc/%ld/comm", pid);
    char *c = file_read_all(path, NULL, NULL);
    if (!c)
        return 0;
    str_copy(comm, sizeof(comm), c);
    free(c);
    if (strncmp(comm, "postgres", 8) != 0 && strncmp(comm, "postmaster", 10) != 0)
        return 0;
    return (pid_t)pid;
}

/* The newest timeline this data directory has a history file for: a standby that followed a
 * promotion has the new timeline's history file even before any restartpoint. */
static int wal_history_tli(const char *data_dir)
{
    char path[4096];
    str_fmt(path, sizeof(path), "%s/pg_wal", data_dir);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int max = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strlen(n) != 16 || strcmp(n + 8, ".history") != 0)
            continue;
        char *end = NULL;
        long t = strtol(n, &end, 16);
        if (end == n + 8 && t > max && t < INT32_MAX)
            max = (int)t;
    }
    closedir(d);
    return max;
}

static Lsn col_lsn(PGresult *r, int row, int col)
{
    Lsn l = 0;
    if (!PQgetisnull(r, row, col))
        lsn_parse(PQgetvalue(r, row, col), &l);
    return l;
}

/* An active-active node: the apply from each peer, and the conflicts of the last minute. */
static void observe_aa(PgNode *pg, PgState *st)
{
    Err err = {{0}};
    PGresult *r = pg_query(pg,
        "SELECT p.name, p.enabled, s.pid IS NOT NULL, s.last_error IS NOT NULL, COALESCE(s.lag_bytes, -1),"
        " COALESCE(s.lag_seconds, -1), COALESCE(s.applied_transactions, 0), COALESCE(s.conflicts, 0),"
        " COALESCE(s.clock_difference_ms, 0),"
        " (SELECT count(*) FROM pgvigil_aa.conflicts WHERE recorded_at > now() - interval '1 minute')"
        " FROM pgvigil_aa.peers p LEFT JOIN pgvigil_aa.status() s ON s.peer = p.name ORDER BY p.name",
        2000, &err);
    if (!r) {
        log_debug("observe (active-active): %s", err.msg);
        return;
    }
    for (int i = 0; i < PQntuples(r) && PQnfields(r) == 10 && st->n_aa_peers < (int)ARRAY_LEN(st->aa_peers); i++) {
        AaPeerObs *o = &st->aa_peers[st->n_aa_peers++];
        str_copy(o->peer, sizeof(o->peer), PQgetvalue(r, i, 0));
        o->enabled = strcmp(PQgetvalue(r, i, 1), "t") == 0;
        o->running = strcmp(PQgetvalue(r, i, 2), "t") == 0;
        o->failed = strcmp(PQgetvalue(r, i, 3), "t") == 0;
        o->lag_bytes = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        o->lag_seconds = atof(PQgetvalue(r, i, 5));
        o->applied_transactions = strtoll(PQgetvalue(r, i, 6), NULL, 10);
        o->conflicts = strtoll(PQgetvalue(r, i, 7), NULL, 10);
        o->clock_difference_ms = atof(PQgetvalue(r, i, 8));
        st->aa_conflicts_last_minute = strtoll(PQgetvalue(r, i, 9), NULL, 10);
    }
    PQclear(r);
}

void pg_observe(PgNode *pg, PgState *st)
{
    memset(st, 0, sizeof(*st));
    st->replay_age_s = -1;
    const char *dd = pg->cfg->pg_data_dir;
    char path[4096];
    st->data_dir_nonempty = !dir_is_empty_or_missing(dd);
    str_fmt(path, sizeof(path), "%s/PG_VERSION", dd);
    bool has_version = file_exists(path);
    str_fmt(path, sizeof(path), "%s/global/pg_control", dd);
    st->data_dir_valid = has_version && file_exists(path);
    st->data_dir_foreign = st->data_dir_nonempty && !has_version;
    str_fmt(path, sizeof(path), "%s/standby.signal", dd);
    st->standby_signal = file_exists(path);
    st->history_tli = st->data_dir_valid ? wal_history_tli(dd) : 0;
    st->postmaster_pid = st->data_dir_valid ? pg_postmaster_pid(dd) : 0;
    st->running = st->postmaster_pid > 0;
    if (!st->running) {
        pg_node_close(pg);
        return;
    }
    Err err = {{0}};
    PGresult *r = pg_query(pg,
        "SELECT pg_is_in_recovery(),"
        " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,"
        " pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
        " CASE WHEN pg_is_in_recovery() THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver),"
        "   (SELECT timeline_id FROM pg_control_checkpoint()))"
        "  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,"
        " extract(epoch from pg_postmaster_start_time())::float8,"
        " current_setting('server_version_num')::int,"
        " (SELECT status FROM pg_stat_wal_receiver),"
        " (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver),"
        " (SELECT count(*) > 0 FROM pg_settings WHERE pending_restart),"
        " (SELECT system_identifier::text FROM pg_control_system()),"
        " COALESCE(current_setting('" LEASE_FILE_GUC "', true), '') <> '',"
        " COALESCE(extract(epoch from now() - pg_last_xact_replay_timestamp())::float8, -1),"
        " to_regprocedure('pgvigil_aa.status()') IS NOT NULL",
        2000, &err);
    if (!r) {
        log_debug("observe: %s", err.msg);
        return;
    }
    if (PQntuples(r) == 1 && PQnfields(r) == 14) {
        st->accepting = true;
        st->in_recovery = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        st->wal_lsn = col_lsn(r, 0, 1);
        st->receive_lsn = col_lsn(r, 0, 2);
        st->replay_lsn = col_lsn(r, 0, 3);
        st->timeline = atoi(PQgetvalue(r, 0, 4));
        st->postmaster_start_time = atof(PQgetvalue(r, 0, 5));
        st->server_version = atoi(PQgetvalue(r, 0, 6));
        st->streaming = !PQgetisnull(r, 0, 7) && strcmp(PQgetvalue(r, 0, 7), "streaming") == 0;
        str_copy(st->upstream, sizeof(st->upstream), PQgetisnull(r, 0, 8) ? "" : PQgetvalue(r, 0, 8));
        st->pending_restart = strcmp(PQgetvalue(r, 0, 9), "t") == 0;
        str_copy(st->sysid, sizeof(st->sysid), PQgetvalue(r, 0, 10));
        st->commit_guard = strcmp(PQgetvalue(r, 0, 11), "t") == 0;
        st->replay_age_s = st->in_recovery ? atof(PQgetvalue(r, 0, 12)) : -1;
        st->aa_present = strcmp(PQgetvalue(r, 0, 13), "t") == 0;
    }
    PQclear(r);
    if (st->accepting && st->aa_present)
        observe_aa(pg, st);
    if (st->accepting && !st->in_recovery) {
        r = pg_query(pg, "SELECT application_name, state, sync_state, flush_lsn::text, replay_lsn::text"
                         " FROM pg_stat_replication ORDER BY application_name", 2000, &err);
        if (r) {
            for (int i = 0; i < PQntuples(r) && st->n_senders < (int)ARRAY_LEN(st->senders); i++) {
                WalSender *w = &st->senders[st->n_senders++];
                str_copy(w->application_name, sizeof(w->application_name), PQgetvalue(r, i, 0));
                str_copy(w->state, sizeof(w->state), PQgetvalue(r, i, 1));
                str_copy(w->sync_state, sizeof(w->sync_state), PQgetvalue(r, i, 2));
                w->flush_lsn = col_lsn(r, i, 3);
                w->replay_lsn = col_lsn(r, i, 4);
            }
            PQclear(r);
        }
    }
}

bool pg_may_be_primary(const PgState *st)
{
    return st->running && (st->accepting ? !st->in_recovery : !st->standby_signal);
}

void pg_slot_name(const char *member, char *out, size_t sz)
{
    size_t j = 0;
    for (size_t i = 0; member[i] && j + 1 < sz; i++) {
        char c = member[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            c = '_';
        out[j++] = c;
    }
    out[j] = '\0';
}

bool pg_sync_slots(PgNode *pg, char names[][64], int n, Err *err)
{
    PGresult *r = pg_query(pg, "SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical'",
                           2000, err);
    if (!r)
        return false;
    bool ok = true;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *slot = PQgetvalue(r, i, 0);
        bool wanted = false;
        for (int j = 0; j < n; j++)
            if (strcmp(names[j], slot) == 0)
                wanted = true;
        if (!wanted && strcmp(PQgetvalue(r, i, 1), "f") == 0) {
            char sql[256];
            str_fmt(sql, sizeof(sql), "SELECT pg_drop_replication_slot('%s')", slot);
            if (pg_exec(pg, sql, 2000, err))
                log_info("dropped replication slot %s", slot);
        }
    }
    for (int j = 0; j < n; j++) {
        bool have = false;
        for (int i = 0; i < PQntuples(r); i++)
            if (strcmp(PQgetvalue(r, i, 0), names[j]) == 0)
                have = true;
        if (have)
            continue;
        char sql[256];
        str_fmt(sql, sizeof(sql), "SELECT pg_create_physical_replication_slot('%s', true)", names[j]);
        if (pg_exec(pg, sql, 2000, err))
            log_info("created replication slot %s", names[j]);
        else
            ok = false;
    }
    PQclear(r);
    return ok;
}

bool pg_advance_slots(PgNode *pg, char names[][64], int n, Err *err)
{
    if (n <= 0)
        return true;
    StrBuf q = {0};
    /* up to the redo point of its last restartpoint: the WAL from there is what it keeps anyway,
     * and what a failback needs (the other site recovers from the last checkpoint before the fork) */
    strbuf_adds(&q, "SELECT count(pg_replication_slot_advance(slot_name, c.redo_lsn)) "
                    "FROM pg_replication_slots, pg_control_checkpoint() c WHERE slot_type = 'physical' AND NOT active "
                    "AND restart_lsn < c.redo_lsn AND c.redo_lsn <= pg_last_wal_replay_lsn() AND slot_name IN (");
    for (int i = 0; i < n; i++) {
        char *lit = PQescapeLiteral(pg->conn, names[i], strlen(names[i]));
        if (!lit) {
            strbuf_free(&q);
            err_set(err, "cannot quote the slot name %s", names[i]);
            return false;
        }
        strbuf_addf(&q, "%s%s", i ? ", " : "", lit);
        PQfreemem(lit);
    }
    strbuf_adds(&q, ")");
    char *sql = strbuf_take(&q);
    bool ok = pg_exec(pg, sql, 2000, err);
    free(sql);
    return ok;
}

bool pg_timestamp_text_ok(const char *t)
{
    if (!t || !t[0] || strlen(t) > 64)
        return false;
    for (const char *c = t; *c; c++)
        if (*c < 0x20 || *c > 0x7e || *c == '\'' || *c == '\\')
            return false;
    return true;
}

bool pg_ensure_replication_role(PgNode *pg, Err *err)
{
    const Credentials *rep = &pg->cfg->pg_replication;
    if (!pg->conn && !pg_exec(pg, "SELECT 1", 3000, err))
        return false;
    char *ident = PQescapeIdentifier(pg->conn, rep->username, strlen(rep->username));
    char *lit = PQescapeLiteral(pg->conn, rep->username, strlen(rep->username));
    char *pw = rep->password ? PQescapeLiteral(pg->conn, rep->password, strlen(rep->password)) : NULL;
    bool ok = false;
    if (ident && lit && (pw || !rep->password)) {
        char *sql = str_printf("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s) THEN "
                               "CREATE ROLE %s; END IF; END$$; ALTER ROLE %s WITH REPLICATION LOGIN%s%s",
                               lit, ident, ident, pw ? " PASSWORD " : "", pw ? pw : "");
        ok = pg_exec(pg, sql, 5000, err);
        free(sql);
    } else {
        err_set(err, "cannot quote replication role name");
    }
    PQfreemem(ident);
    PQfreemem(lit);
    PQfreemem(pw);
    return ok;
}

bool pg_checkpoint(PgNode *pg, Err *err)
{
    return pg_exec(pg, "CHECKPOINT", 60000, err);
}
