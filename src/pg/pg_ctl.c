/* Running PostgreSQL's own programs for the node: initdb, pg_ctl, pg_basebackup, pg_rewind,
 * pg_controldata; and the fencing kill of a postmaster. */
#include "common/common.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "pg/pg.h"

#include <libgen.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

void pg_node_init(PgNode *pg, const Config *cfg)
{
    memset(pg, 0, sizeof(*pg));
    pg->cfg = cfg;
    char *h = NULL;
    Err err;
    if (config_split_hostport(cfg->pg_listen, &h, &pg->port, &err)) {
        char *comma = strchr(h, ',');
        if (comma)
            *comma = '\0';
        /* "*" or 0.0.0.0 listen: connect locally over loopback */
        str_copy(pg->host, sizeof(pg->host), (strcmp(h, "*") == 0 || strcmp(h, "0.0.0.0") == 0) ? "127.0.0.1" : h);
        free(h);
    }
    h = NULL;
    if (config_split_hostport(cfg->pg_connect_address, &h, &pg->conn_port, &err)) {
        str_copy(pg->conn_host, sizeof(pg->conn_host), h);
        free(h);
    }
    char dd[4096];
    str_copy(dd, sizeof(dd), cfg->pg_data_dir);
    char *parent = dirname(dd);
    str_fmt(pg->log_path, sizeof(pg->log_path), "%s/%s.postgresql.log", parent, cfg->name);
}

static void bin_path(const PgNode *pg, const char *prog, char *out, size_t sz)
{
    str_fmt(out, sz, "%s/%s", pg->cfg->pg_bin_dir, prog);
}

/* Environment for libpq clients connecting with the given credentials, in storage the caller
 * owns (both the loop and the worker thread run programs). */
typedef struct ClientEnv {
    char pw[512];
    const char *env[3];
} ClientEnv;

static const char *const *client_env(ClientEnv *ce, const Credentials *cred)
{
    int i = 0;
    if (cred && cred->password) {
        str_fmt(ce->pw, sizeof(ce->pw), "PGPASSWORD=%s", cred->password);
        ce->env[i++] = ce->pw;
    }
    ce->env[i++] = "PGCONNECT_TIMEOUT=5";
    ce->env[i] = NULL;
    return ce->env;
}

/* Why a PostgreSQL program failed, on one line: from its first "error:" or "FATAL:" line to the
 * end (libpq splits one reason over several lines), or else its last line. Edits `out`. */
static const char *failure_reason(char *out)
{
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    char *from = NULL;
    for (char *line = out; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (memmem(line, len, "error:", 6) || memmem(line, len, "FATAL:", 6)) {
            from = line;
            break;
        }
    }
    if (!from) {
        char *last = strrchr(out, '\n');
        return last ? last + 1 : out;
    }
    for (char *p = from; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    return from;
}

static bool run_pg(const PgNode *pg, const char *const argv[], int timeout_ms, const Credentials *cred,
                   bool log_to_server_log, Err *err)
{
    ClientEnv ce;
    ProcOpts o = {.as_pg_user = true, .timeout_ms = timeout_ms, .env = client_env(&ce, cred),
                  .log_path = log_to_server_log ? pg->log_path : NULL, .new_session = true};
    char *out = NULL;
    char *cmd = proc_argv_str(argv);
    log_debug("running %s", cmd);
    int rc = proc_run(argv, &o, log_to_server_log ? NULL : &out, err);
    if (rc != 0) {
        err_prefix(err, "%s", cmd);
        if (out && err) {
            const char *why = failure_reason(out);
            if (*why)
                snprintf(err->msg + strlen(err->msg), sizeof(err->msg) - strlen(err->msg), ": %s", why);
        } else if (err) {
            snprintf(err->msg + strlen(err->msg), sizeof(err->msg) - strlen(err->msg), " (see %s)", pg->log_path);
        }
    }
    free(out);
    free(cmd);
    return rc == 0;
}

static bool prepare_data_dir_parent(const PgNode *pg, Err *err)
{
    char dd[4096];
    str_copy(dd, sizeof(dd), pg->cfg->pg_data_dir);
    char *parent = dirname(dd);
    if (!dir_make_all(parent, 0755, err))
        return false;
    /* the log file lives beside the data dir; create it so the run-as user can write it */
    FILE *f = fopen(pg->log_path, "a");
    if (f)
        fclose(f);
    proc_chown_run_as(pg->log_path, NULL);
    return true;
}

bool pg_make_data_dir(PgNode *pg, Err *err)
{
    const char *dd = pg->cfg->pg_data_dir;
    if (!prepare_data_dir_parent(pg, err) || !dir_make_all(dd, 0700, err) || !proc_chown_run_as(dd, err))
        return false;
    chmod(dd, 0700);
    return true;
}

int pg_initdb_options(const KvList *opts, char out[][256], int max)
{
    int n = 0;
    bool checksums = true;
    for (int i = 0; i < opts->n; i++) {
        const KeyValue *kv = &opts->items[i];
        bool on;
        if (strcmp(kv->key, "no-data-checksums") == 0) {
            /* PostgreSQL 18's initdb flag; 15's initdb leaves checksums off without a flag */
            checksums = false;
            continue;
        }
        if (strcmp(kv->key, "data-checksums") == 0) {
            /* a flag, or {data-checksums: true|false}: initdb takes no value */
            checksums = str_empty(kv->value) || !config_parse_bool(kv->value, &on) || on;
            continue;
        }
        if (n >= max)
            break;
        if (str_empty(kv->value))
            str_fmt(out[n++], 256, "--%s", kv->key);
        else
            str_fmt(out[n++], 256, "--%s=%s", kv->key, kv->value);
    }
    if (checksums && n < max)
        str_copy(out[n++], 256, "--data-checksums");
    return n;
}

bool pg_initdb(PgNode *pg, Err *err)
{
    const Config *cfg = pg->cfg;
    if (!prepare_data_dir_parent(pg, err))
        return false;
    if (!dir_make_all(cfg->pg_data_dir, 0700, err) || !proc_chown_run_as(cfg->pg_data_dir, err))
        return false;
    chmod(cfg->pg_data_dir, 0700);
    char pwfile[] = "/tmp/pgvigil-pw-XXXXXX";
    int fd = -1;
    if (cfg->pg_superuser.password) {
        fd = mkstemp(pwfile);
        if (fd < 0) {
            err_set(err, "mkstemp %s: %s", pwfile, strerror(errno));
            return false;
        }
        size_t n = strlen(cfg->pg_superuser.password);
        if (write(fd, cfg->pg_superuser.password, n) != (ssize_t)n || write(fd, "\n", 1) != 1) {
            err_set(err, "cannot write %s", pwfile);
            close(fd);
            unlink(pwfile);
            return false;
        }
        close(fd);
        proc_chown_run_as(pwfile, NULL);
    }
    char initdb[4200], user_opt[256], pw_opt[300];
    bin_path(pg, "initdb", initdb, sizeof(initdb));
    str_fmt(user_opt, sizeof(user_opt), "--username=%s", cfg->pg_superuser.username);
    str_fmt(pw_opt, sizeof(pw_opt), "--pwfile=%s", pwfile);
    const char *argv[64];
    char extra[32][256];
    int a = 0;
    argv[a++] = initdb;
    argv[a++] = "-D";
    argv[a++] = cfg->pg_data_dir;
    argv[a++] = user_opt;
    if (fd >= 0)
        argv[a++] = pw_opt;
    argv[a++] = "--auth-local=trust";
    argv[a++] = fd >= 0 ? "--auth-host=scram-sha-256" : "--auth-host=trust";
    int n_extra = pg_initdb_options(&cfg->initdb_options, extra, (int)ARRAY_LEN(extra));
    for (int i = 0; i < n_extra; i++)
        argv[a++] = extra[i];
    argv[a] = NULL;
    bool ok = run_pg(pg, argv, 300000, NULL, false, err);
    if (fd >= 0)
        unlink(pwfile);
    return ok;
}

bool pg_start(PgNode *pg, int timeout_s, Err *err)
{
    char pg_ctl[4200], t[16];
    bin_path(pg, "pg_ctl", pg_ctl, sizeof(pg_ctl));
    str_fmt(t, sizeof(t), "%d", timeout_s);
    if (!prepare_data_dir_parent(pg, err))
        return false;
    const char *argv[] = {pg_ctl, "start", "-D", pg->cfg->pg_data_dir, "-w", "-t", t, "-s", NULL};
    return run_pg(pg, argv, (timeout_s + 10) * 1000, NULL, true, err);
}

/* A standby may take long to become consistent, and may never (it went past a fork): the start
 * waits a little, then leaves a server that runs to the next ticks to judge. */
#define STANDBY_START_WAIT_S 20

bool pg_start_standby(PgNode *pg, int timeout_s, Err *err)
{
    int wait = timeout_s < STANDBY_START_WAIT_S ? timeout_s : STANDBY_START_WAIT_S;
    if (pg_start(pg, wait, err))
        return true;
    if (pg_postmaster_pid(pg->cfg->pg_data_dir) == 0)
        return false;
    log_info("postgres is still recovering after %d s; it keeps starting (%s)", wait, err->msg);
    return true;
}

#define STOP_POLL_MS 10

/* The postmaster removes its pid file last, once the shutdown checkpoint is written and every
 * child has exited. pg_ctl -w looks for that every 100 ms; a switchover waits on it, so look
 * more often. */
static bool wait_stopped(const PgNode *pg, int timeout_s, Err *err)
{
    char pidfile[4200];
    str_fmt(pidfile, sizeof(pidfile), "%s/postmaster.pid", pg->cfg->pg_data_dir);
    int64_t deadline = mono_ms() + (int64_t)timeout_s * 1000;
    /* a pid file left by a postmaster that died (or is an unreaped zombie) means stopped too */
    while (pg_postmaster_pid(pg->cfg->pg_data_dir) != 0) {
        if (mono_ms() >= deadline) {
            err_set(err, "postgres did not stop within %d s (%s still exists)", timeout_s, pidfile);
            return false;
        }
        sleep_ms(STOP_POLL_MS);
    }
    return true;
}

bool pg_stop(PgNode *pg, const char *mode, int timeout_s, Err *err)
{
    char pg_ctl[4200];
    bin_path(pg, "pg_ctl", pg_ctl, sizeof(pg_ctl));
    const char *argv[] = {pg_ctl, "stop", "-D", pg->cfg->pg_data_dir, "-m", mode, "-W", "-s", NULL};
    if (run_pg(pg, argv, 30 * 1000, NULL, true, err) && wait_stopped(pg, timeout_s, err))
        return true;
    if (strcmp(mode, "immediate") == 0)
        return false;
    log_warn("stop -m %s failed (%s); stopping -m immediate", mode, err ? err->msg : "");
    const char *argv2[] = {pg_ctl, "stop", "-D", pg->cfg->pg_data_dir, "-m", "immediate", "-w", "-t", "30", "-s", NULL};
    return run_pg(pg, argv2, 35000, NULL, true, err);
}

bool pg_reload(PgNode *pg, Err *err)
{
    char pg_ctl[4200];
    bin_path(pg, "pg_ctl", pg_ctl, sizeof(pg_ctl));
    const char *argv[] = {pg_ctl, "reload", "-D", pg->cfg->pg_data_dir, "-s", NULL};
    return run_pg(pg, argv, 10000, NULL, true, err);
}

#define PROMOTE_POLL_MS 10

bool pg_promote(PgNode *pg, int timeout_s, Err *err)
{
    char pg_ctl[4200], t[16];
    bin_path(pg, "pg_ctl", pg_ctl, sizeof(pg_ctl));
    str_fmt(t, sizeof(t), "%d", timeout_s);
    const char *argv[] = {pg_ctl, "promote", "-D", pg->cfg->pg_data_dir, "-W", "-s", NULL};
    if (!run_pg(pg, argv, 30 * 1000, NULL, true, err))
        return false;
    /* pg_ctl -w would look every 100 ms; ask the server itself, often, so that the new
     * primary is announced the moment it accepts writes */
    int64_t deadline = mono_ms() + (int64_t)timeout_s * 1000;
    Err qe = {{0}};
    while (mono_ms() < deadline) {
        PGresult *r = pg_query(pg, "SELECT pg_is_in_recovery()", 1000, &qe);
        bool done = r && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "f") == 0;
        PQclear(r);
        if (done)
            return true;
        sleep_ms(PROMOTE_POLL_MS);
    }
    err_set(err, "promotion did not finish within %d s%s%s", timeout_s, qe.msg[0] ? ": " : "", qe.msg);
    return false;
}

bool pg_basebackup(PgNode *pg, const char *host, int port, Err *err)
{
    const Config *cfg = pg->cfg;
    if (!prepare_data_dir_parent(pg, err))
        return false;
    if (!dir_remove_all(cfg->pg_data_dir, err))
        return false;
    if (!dir_make_all(cfg->pg_data_dir, 0700, err) || !proc_chown_run_as(cfg->pg_data_dir, err))
        return false;
    char prog[4200], p[16];
    bin_path(pg, "pg_basebackup", prog, sizeof(prog));
    str_fmt(p, sizeof(p), "%d", port);
    const char *argv[] = {prog, "-D", cfg->pg_data_dir, "-h", host, "-p", p, "-U", cfg->pg_replication.username,
                          "-X", "stream", "-c", "fast", "-w", NULL};
    bool ok = run_pg(pg, argv, 3600 * 1000, &cfg->pg_replication, false, err);
    if (!ok) {
        Err e2;
        dir_remove_all(cfg->pg_data_dir, &e2); /* never leave a half-copied data dir behind */
    }
    return ok;
}

/* One query on a remote server as `cred`, bounded by connect_timeout and statement_timeout.
 * Returns the first column of the first row in out (may be empty) or false + err. */
bool pg_remote_value(const char *host, int port, const char *dbname, const Credentials *cred, const char *sql,
                     char *out, size_t osz, Err *err)
{
    char p[16];
    str_fmt(p, sizeof(p), "%d", port);
    /* keepalives and tcp_user_timeout bound a peer that vanishes mid-query (no server answer) */
    /* a host list (another site's members) means its writable one */
    const char *keys[] = {"host", "port", "dbname", "user", "connect_timeout", "options", "application_name",
                          "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                          "target_session_attrs", cred->password ? "password" : NULL, NULL};
    const char *vals[] = {host, p, dbname ? dbname : "postgres", cred->username, "3", "-c statement_timeout=10000", "pgvigil",
                          "2", "1", "3", "12000", strchr(host, ',') ? "primary" : "any", cred->password, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 0);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        err_set(err, "postgres %s:%d: %s", host, port, c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return false;
    }
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    bool ok = s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK;
    if (ok) {
        str_copy(out, osz, s == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    } else {
        err_set(err, "postgres %s:%d: %s", host, port, PQresultErrorMessage(r));
        size_t n = strlen(err->msg);
        if (n && err->msg[n - 1] == '\n')
            err->msg[n - 1] = '\0';
    }
    PQclear(r);
    PQfinish(c);
    return ok;
}

/* pg_rewind takes the source's timeline from its control file, which a freshly promoted server
 * updates only at the end of its first checkpoint (a spread one, seconds later). Rewinding
 * before that (or before the promotion itself) makes pg_rewind see one timeline, answer "no
 * rewind required", and leave a server whose WAL is ahead of the fork point: it can never
 * stream. So wait until the source is out of recovery, ask it for a checkpoint, and wait until
 * its control file shows its current timeline. */
#define REWIND_SOURCE_WAIT_MS 30000

/* A standby source (a standby cluster's leader) has the same problem in its control file: it
 * shows a new timeline only after a restartpoint on it, which a CHECKPOINT asks for. */
static const char source_state_primary[] =
    "SELECT CASE WHEN pg_is_in_recovery() THEN 'recovery' ELSE"
    " (SELECT (timeline_id = ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int)::text"
    "  FROM pg_control_checkpoint()) END";
static const char source_state_standby[] =
    "SELECT ((SELECT timeline_id FROM pg_control_checkpoint()) >="
    " COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), 0))::text";

static bool rewind_source_ready(PgNode *pg, const char *host, int port, bool standby, Err *err)
{
    const Credentials *cred = &pg->cfg->pg_rewind;
    int64_t deadline = mono_ms() + REWIND_SOURCE_WAIT_MS;
    int64_t asked_at = 0;
    char v[64];
    for (;;) {
        Err e = {{0}};
        if (pg_remote_value(host, port, NULL, cred, standby ? source_state_standby : source_state_primary, v, sizeof(v), &e)) {
            if (strcmp(v, "true") == 0)
                return true;
            /* asked again now and then: a standby's restartpoint needs a checkpoint record of the
             * new timeline to have arrived first */
            if (strcmp(v, "false") == 0 && (!asked_at || mono_ms() - asked_at > 2000)) {
                Err e2 = {{0}};
                asked_at = mono_ms();
                if (pg_remote_value(host, port, NULL, cred, "CHECKPOINT", v, sizeof(v), &e2))
                    continue;  /* check again at once */
                log_warn("rewind: cannot checkpoint the source: %s; waiting for its own checkpoint", e2.msg);
            }
            str_fmt(e.msg, sizeof(e.msg), "%s:%d %s", host, port,
                    strcmp(v, "recovery") == 0 ? "is still in recovery" : "has not checkpointed its new timeline yet");
        }
        if (mono_ms() >= deadline) {
            err_set(err, "rewind source not ready after %d s: %s", REWIND_SOURCE_WAIT_MS / 1000, e.msg);
            return false;
        }
        log_debug("rewind: waiting for the source: %s", e.msg);
        sleep_ms(250);
    }
}

static void rewind_source_arg(const PgNode *pg, const char *host, int port, char *buf, size_t sz)
{
    /* a host list (another site's members) means its writable one */
    str_fmt(buf, sz, "--source-server=host=%s port=%d user=%s dbname=postgres%s", host, port,
            pg->cfg->pg_rewind.username, strchr(host, ',') ? " target_session_attrs=primary" : "");
}

bool pg_finish_crash_recovery(PgNode *pg, Err *err)
{
    ControlInfo ci;
    if (!pg_controldata_info(pg, &ci, err))
        return false;
    if (ci.clean_shutdown)
        return true;
    /* what pg_rewind itself does: single-user mode replays the WAL and shuts down cleanly */
    char prog[4200];
    bin_path(pg, "postgres", prog, sizeof(prog));
    const char *argv[] = {prog, "--single", "-F", "-D", pg->cfg->pg_data_dir, "template1", NULL};
    log_info("finishing the crash recovery of %s in single-user mode", pg->cfg->pg_data_dir);
    return run_pg(pg, argv, 3600 * 1000, NULL, true, err);
}

bool pg_rewind_dry_run(PgNode *pg, const char *host, int port, char **output, Err *err)
{
    const Config *cfg = pg->cfg;
    /* a source promoted a moment ago shows its new timeline only after its first checkpoint:
     * asked before, pg_rewind answers "no rewind required" */
    Err e = {{0}};
    if (!rewind_source_ready(pg, host, port, false, &e))
        log_warn("%s; asking pg_rewind anyway", e.msg);
    char prog[4200], src[700];
    bin_path(pg, "pg_rewind", prog, sizeof(prog));
    rewind_source_arg(pg, host, port, src, sizeof(src));
    const char *argv[] = {prog, "--dry-run", "-D", cfg->pg_data_dir, src, NULL};
    ClientEnv ce;
    ProcOpts o = {.as_pg_user = true, .timeout_ms = 600 * 1000, .env = client_env(&ce, &cfg->pg_rewind),
                  .new_session = true};
    *output = NULL;
    int rc = proc_run(argv, &o, output, err);
    if (rc != 0) {
        const char *why = *output ? failure_reason(*output) : "";
        err_prefix(err, "pg_rewind --dry-run");
        if (*why)
            snprintf(err->msg + strlen(err->msg), sizeof(err->msg) - strlen(err->msg), ": %s", why);
    }
    return rc == 0;
}

bool pg_waldump(PgNode *pg, int timeline, Lsn start, int limit, char **output, Err *err)
{
    char prog[4200], wal[4200], tli[16], from[LSN_BUFSZ], lim[16];
    str_fmt(lim, sizeof(lim), "%d", limit);
    bin_path(pg, "pg_waldump", prog, sizeof(prog));
    str_fmt(wal, sizeof(wal), "%s/pg_wal", pg->cfg->pg_data_dir);
    str_fmt(tli, sizeof(tli), "%d", timeline);
    lsn_format(start, from);
    const char *argv[] = {prog, "-p", wal, "-t", tli, "-s", from, "-n", lim, NULL};
    ProcOpts o = {.as_pg_user = true, .timeout_ms = 600 * 1000, .new_session = true};
    *output = NULL;
    /* pg_waldump ends with an error where the WAL ends (an invalid or missing record): what it
     * printed up to there is the answer */
    int rc = proc_run(argv, &o, output, err);
    if (rc < 0 || !*output) {
        err_prefix(err, "pg_waldump");
        return false;
    }
    return true;
}

enum { PG_BLOCK_REWIND_DONE, PG_BLOCK_REWIND_NOT_DONE, PG_BLOCK_REWIND_FAILED };

/* pgvigil's own rewind (`pgvigil rewind`, as the PostgreSQL user): it copies only what differs,
 * where pg_rewind also copies all the WAL the source keeps. When it changed nothing (a case it
 * leaves to pg_rewind: tablespaces, WAL it cannot find...), pg_rewind runs instead. */
static int block_rewind_run(PgNode *pg, const char *conninfo, bool restore_target_wal, Err *err)
{
    const Config *cfg = pg->cfg;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return PG_BLOCK_REWIND_NOT_DONE;
    self[n] = '\0';
    const char *argv[] = {self, "rewind", "-D", cfg->pg_data_dir, "--source-server", conninfo, "--pg-bin",
                          cfg->pg_bin_dir, restore_target_wal ? "--restore-target-wal" : NULL, NULL};
    ClientEnv ce;
    ProcOpts o = {.as_pg_user = true, .timeout_ms = 3600 * 1000, .env = client_env(&ce, &cfg->pg_rewind),
                  .new_session = true};
    char *out = NULL;
    Err e = {{0}};
    /* it needs a cleanly shut down directory, as pg_rewind makes one first */
    if (!pg_finish_crash_recovery(pg, &e)) {
        log_warn("cannot finish the crash recovery before pgvigil rewind: %s; running pg_rewind", e.msg);
        return PG_BLOCK_REWIND_NOT_DONE;
    }
    log_info("rewinding %s with pgvigil rewind from %s", cfg->pg_data_dir, conninfo);
    int rc = proc_run(argv, &o, &out, &e);
    char *line = out ? out : (char *)"";
    line[strcspn(line, "\n")] = '\0';
    int result;
    if (rc == 0) {
        log_info("%s", line);
        result = PG_BLOCK_REWIND_DONE;
    } else if (rc == 5) {
        log_info("%s; running pg_rewind", line);
        result = PG_BLOCK_REWIND_NOT_DONE;
    } else if (pg_rewind_marked_failed(pg)) {
        /* it changed the directory (the mark it writes first is there): never started so */
        err_set(err, "pgvigil rewind: %s", line[0] ? line : e.msg);
        result = PG_BLOCK_REWIND_FAILED;
    } else {
        /* it stopped before changing anything (no mark) */
        log_warn("pgvigil rewind: %s; running pg_rewind", line[0] ? line : e.msg);
        result = PG_BLOCK_REWIND_NOT_DONE;
    }
    free(out);
    return result;
}

bool pg_rewind(PgNode *pg, const char *host, int port, Err *err)
{
    return pg_rewind_ex(pg, host, port, 0, err);
}

bool pg_rewind_ex(PgNode *pg, const char *host, int port, unsigned flags, Err *err)
{
    const Config *cfg = pg->cfg;
    bool restore_target_wal = flags & PG_REWIND_RESTORE_WAL;
    Err e = {{0}};
    if (!rewind_source_ready(pg, host, port, flags & PG_REWIND_STANDBY_SOURCE, &e))
        log_warn("%s; running pg_rewind anyway", e.msg);
    char prog[4200], src[700];
    bin_path(pg, "pg_rewind", prog, sizeof(prog));
    rewind_source_arg(pg, host, port, src, sizeof(src));
    if (strcmp(cfg->rewind_method, "pgvigil") == 0 && !pg_rewind_marked_failed(pg)) {
        int rc = block_rewind_run(pg, src + strlen("--source-server="), restore_target_wal, err);
        if (rc != PG_BLOCK_REWIND_NOT_DONE)
            return rc == PG_BLOCK_REWIND_DONE;
    }
    /* --restore-target-wal: WAL this data directory no longer has comes through its
     * restore_command (the backup repository) */
    const char *argv[] = {prog, "-D", cfg->pg_data_dir, src, restore_target_wal ? "--restore-target-wal" : NULL,
                          NULL};
    char marker[4200];
    str_fmt(marker, sizeof(marker), "%s/%s", cfg->pg_data_dir, PG_REWIND_FAILED_FILE);
    if (run_pg(pg, argv, 3600 * 1000, &cfg->pg_rewind, false, err)) {
        unlink(marker);
        return true;
    }
    /* the directory may be half rewound; the mark outlives an agent restart (and pg_rewind's
     * recovery has made the control file look cleanly shut down, so nothing else tells) */
    Err me = {{0}};
    char line[600];
    snprintf(line, sizeof(line), "%s\n", err ? err->msg : "pg_rewind failed");
    if (!file_write_atomic(marker, line, strlen(line), 0644, &me))
        log_warn("cannot mark the failed rewind: %s", me.msg);
    return false;
}

bool pg_rewind_marked_failed(const PgNode *pg)
{
    char marker[4200];
    str_fmt(marker, sizeof(marker), "%s/%s", pg->cfg->pg_data_dir, PG_REWIND_FAILED_FILE);
    return file_exists(marker);
}

static bool controldata(PgNode *pg, char **out, Err *err)
{
    char prog[4200];
    bin_path(pg, "pg_controldata", prog, sizeof(prog));
    const char *argv[] = {prog, "-D", pg->cfg->pg_data_dir, NULL};
    ProcOpts o = {.as_pg_user = true, .timeout_ms = 10000, .env = (const char *const[]){"LC_ALL=C", NULL}};
    int rc = proc_run(argv, &o, out, err);
    if (rc != 0) {
        free(*out);
        *out = NULL;
        return false;
    }
    return true;
}

static const char *field(const char *txt, const char *name)
{
    const char *p = strstr(txt, name);
    if (!p)
        return NULL;
    p = strchr(p, ':');
    if (!p)
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

bool pg_read_sysid(PgNode *pg, char *buf, size_t sz, Err *err)
{
    char *out = NULL;
    if (!controldata(pg, &out, err))
        return false;
    const char *v = field(out, "Database system identifier");
    bool ok = v != NULL;
    if (ok) {
        size_t n = strcspn(v, "\n");
        char tmp[64];
        str_copy(tmp, n + 1 < sizeof(tmp) ? n + 1 : sizeof(tmp), v);
        str_copy(buf, sz, tmp);
    } else {
        err_set(err, "pg_controldata %s: no system identifier", pg->cfg->pg_data_dir);
    }
    free(out);
    return ok;
}

bool pg_controldata_info(PgNode *pg, ControlInfo *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    char *txt = NULL;
    if (!controldata(pg, &txt, err))
        return false;
    const char *t = field(txt, "Latest checkpoint's TimeLineID");
    const char *c = field(txt, "Latest checkpoint location");
    const char *s = field(txt, "Database cluster state");
    bool ok = t && c && s;
    if (ok) {
        out->timeline = atoi(t);
        char tmp[48];
        size_t n = strcspn(c, "\n");
        str_copy(tmp, n + 1 < sizeof(tmp) ? n + 1 : sizeof(tmp), c);
        if (!lsn_parse(tmp, &out->checkpoint))
            out->checkpoint = 0;
        n = strcspn(s, "\n");
        str_copy(out->state, n + 1 < sizeof(out->state) ? n + 1 : sizeof(out->state), s);
        out->clean_shutdown = strncmp(out->state, "shut down", 9) == 0;
        const char *id = field(txt, "Database system identifier");
        if (id) {
            n = strcspn(id, "\n");
            str_copy(out->sysid, n + 1 < sizeof(out->sysid) ? n + 1 : sizeof(out->sysid), id);
        }
        out->was_primary = strstr(out->state, "recovery") == NULL || strcmp(out->state, "in crash recovery") == 0;
        const char *seg = field(txt, "Bytes per WAL segment");
        out->wal_segment_size = seg ? strtoll(seg, NULL, 10) : 0;
    } else {
        err_set(err, "pg_controldata %s: unexpected output", pg->cfg->pg_data_dir);
    }
    free(txt);
    return ok;
}

/* SIGKILL every live child of the (stopped) postmaster, again until none is left: one forked
 * just before the stop took effect shows up on the next look. */
static void kill_children(pid_t pm)
{
    pid_t kids[256];
    for (int round = 0; round < 20; round++) {
        kill(pm, SIGSTOP); /* again: someone may have continued it (a SIGCONT to the whole node) */
        int n = proc_children(pm, kids, (int)ARRAY_LEN(kids));
        if (n <= 0)
            return;
        for (int i = 0; i < n && i < (int)ARRAY_LEN(kids); i++)
            kill(kids[i], SIGKILL);
        /* a killed child stays a zombie (not listed) until the postmaster would reap it */
        for (int w = 0; w < 50 && proc_children(pm, kids, (int)ARRAY_LEN(kids)) > 0; w++)
            sleep_ms(1);
    }
}

/* The key of the System V shared memory segment the server of data_dir holds (line 7 of
 * postmaster.pid), 0 when unknown. Every process of that server is attached to it: it is
 * PostgreSQL's own interlock against a second server on the same directory. */
static unsigned long shm_key_of(const char *data_dir)
{
    char path[4200];
    str_fmt(path, sizeof(path), "%s/postmaster.pid", data_dir);
    char *text = file_read_all(path, NULL, NULL);
    unsigned long key = 0;
    const char *line = text;
    for (int i = 1; line && i < 7; i++) {
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    if (line)
        key = strtoul(line, NULL, 10);
    free(text);
    return key;
}

/* SIGKILL every process attached to the segment (found in /proc/PID/maps as /SYSV<key>): a child
 * the postmaster forked while someone else had continued it, and that outlived it. Returns how
 * many there were. */
static int kill_attached(unsigned long key)
{
    if (key == 0)
        return 0;
    char want[32];
    str_fmt(want, sizeof(want), "/SYSV%08lx ", key);
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 1 || (pid_t)pid == getpid())
            continue;
        char path[64];
        str_fmt(path, sizeof(path), "/proc/%ld/maps", pid);
        char *maps = file_read_all(path, NULL, NULL);
        if (maps && strstr(maps, want) && kill((pid_t)pid, SIGKILL) == 0)
            n++;
        free(maps);
    }
    closedir(d);
    return n;
}

bool pg_log_shows_divergence_since(const PgNode *pg, long since)
{
    FILE *f = fopen(pg->log_path, "r");
    if (!f)
        return false;
    char tail[8193];
    size_t n = 0;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    long from = size > (long)sizeof(tail) - 1 ? size - (long)(sizeof(tail) - 1) : 0;
    if (since > from && since <= size)
        from = since;
    if (size < 0 || fseek(f, from, SEEK_SET) != 0) {
        fclose(f);   /* (the start of the file would be old text) */
        return false;
    }
    n = fread(tail, 1, sizeof(tail) - 1, f);
    fclose(f);
    tail[n] = '\0';
    /* the last start's lines come last */
    const char *start = NULL;
    for (const char *p = tail; (p = strstr(p, "starting PostgreSQL")) != NULL; p++)
        start = p;
    const char *text = start ? start : tail;
    /* what a standby says when it went past the fork of the timeline it should follow */
    return strstr(text, "does not contain minimum recovery point") || strstr(text, "is not a child of this server's history") ||
           strstr(text, "is not a child of database system timeline") || strstr(text, "is not in this server's history") ||
           strstr(text, "of the primary is behind recovery timeline") ||
           /* a running standby that replayed past the point where the new timeline forked */
           strstr(text, "forked off current database system timeline");
}

bool pg_log_shows_divergence(const PgNode *pg)
{
    return pg_log_shows_divergence_since(pg, 0);
}

long pg_log_size(const PgNode *pg)
{
    struct stat sb;
    return stat(pg->log_path, &sb) == 0 ? (long)sb.st_size : 0;
}

bool pg_kill_postmaster(const char *data_dir, int timeout_ms)
{
    /* a stale pid file may name a pid reused by another program: never signal that */
    pid_t pid = pg_postmaster_pid(data_dir);
    if (pid == 0)
        return true;
    int64_t deadline = mono_ms() + timeout_ms;
    unsigned long key = shm_key_of(data_dir);
    /* Every backend is its own process group (PostgreSQL calls setsid in each child), so one
     * signal to a group would not reach them, and a postmaster killed alone leaves backends that
     * can still finish what they run, a commit included. Freeze the postmaster so it forks no
     * more and its children stay its children, kill each of them, then the postmaster. SIGKILL,
     * not SIGQUIT: nothing of postgres may run on to handle it, and a stopped or stuck process
     * dies of SIGKILL at once. Crash recovery at the next start makes this as safe as a crash. */
    kill(pid, SIGSTOP);
    while (proc_state(pid) != 'T' && proc_state(pid) != 0 && mono_ms() < deadline)
        sleep_ms(1);
    kill_children(pid);
    kill(pid, SIGKILL);
    /* then whatever of that server is left: killed processes take a moment to let go */
    bool gone = false;
    while (mono_ms() < deadline) {
        int left = kill_attached(key);
        gone = pg_postmaster_pid(data_dir) != pid;
        if (gone && left == 0)
            return true;
        sleep_ms(5);
    }
    return gone && kill_attached(key) == 0;
}
