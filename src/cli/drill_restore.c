/* `pgvigil drill restore`: restore the newest backup into a scratch instance, start it (no TCP,
 * no archiving: it touches nothing of the cluster's), let it recover from the repository to the
 * end of the archive and open, read what it holds, stop it, and time each step. */
#include "common/common.h"
#include "backup/base_backup.h"
#include "backup/repo.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/drill.h"
#include "common/fileutil.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "pg/pg.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <unistd.h>

#define SCRATCH_PORT 5432   /* only its socket file's name: the scratch server listens on no TCP port */

static bool pg_ctl(const Config *cfg, const char *data, const char *const extra[], int timeout_s, Err *err)
{
    char prog[4200], t[16];
    str_fmt(prog, sizeof(prog), "%s/pg_ctl", cfg->pg_bin_dir);
    str_fmt(t, sizeof(t), "%d", timeout_s);
    const char *argv[16] = {prog, "-D", data, "-w", "-t", t};
    int a = 6;
    for (int i = 0; extra[i] && a < 15; i++)
        argv[a++] = extra[i];
    argv[a] = NULL;
    ProcOpts po = {.as_pg_user = true, .timeout_ms = (timeout_s + 10) * 1000, .new_session = true};
    char *out = NULL;
    int rc = proc_run(argv, &po, &out, err);
    if (rc != 0 && rc != -1)
        err_set(err, "pg_ctl %s: %s", extra[0], out ? out : "failed");
    free(out);
    return rc == 0;
}

static bool scratch_value(const Config *cfg, const char *sock, const char *sql, char *out, size_t osz, Err *err)
{
    return pg_remote_value(sock, SCRATCH_PORT, NULL, &cfg->pg_superuser, sql, out, osz, err);
}

int drill_restore(const char *cfg_path, const char *target_dir, bool keep, int timeout_s, json_t *report)
{
    Repo *repo = NULL;
    char *fetch = NULL;
    int rc = EXIT_OK;
    Config *cfg = cmd_backup_open_for_restore(cfg_path, "drill restore", &repo, &fetch, &rc);
    if (!cfg)
        return rc;
    /* a scratch directory of our own unless one was given (it must then be empty or missing) */
    char base[PATH_MAX] = "", data[PATH_MAX + 8], sock[PATH_MAX + 8];
    Err err = {{0}};
    if (target_dir) {
        str_copy(base, sizeof(base), target_dir);
    } else {
        char tmpl[] = "/var/tmp/pgvigil-drill-restore.XXXXXX";
        if (!mkdtemp(tmpl)) {
            cli_error(NULL, "drill restore: cannot make a scratch directory in /var/tmp: %s", strerror(errno));
            free(fetch);
            repo_free(repo);
            config_free(cfg);
            return EXIT_FAILED;
        }
        str_copy(base, sizeof(base), tmpl);
    }
    str_fmt(data, sizeof(data), "%s/data", base);
    str_fmt(sock, sizeof(sock), "%s/sock", base);
    RestoreOptions ro = {.target_dir = data, .wal_fetch_cmd = fetch};
    BackupInfo used;
    RestoreCounts counts;
    bool started = false;
    int64_t t0 = mono_ms(), t_files = 0, t_open = 0;
    rc = EXIT_FAILED;
    printf("restoring the newest backup into %s\n", data);
    fflush(stdout);
    if (!dir_make_all(base, 0755, &err) || !backup_restore(cfg, repo, &ro, &used, &counts, &err)) {
        cli_error(NULL, "drill restore: %s", err.msg);
        goto out;
    }
    t_files = mono_ms();
    printf("  backup %s (%s, ended %s): %lld files, %.1f MB, in %.1f s\n", used.label, used.type, used.stop_time,
           (long long)used.files, (double)used.bytes / 1048576.0, (t_files - t0) / 1000.0);
    if (!dir_make_all(sock, 0700, &err) || !proc_chown_run_as(sock, &err) || !proc_chown_run_as(base, &err)) {
        cli_error(NULL, "drill restore: %s", err.msg);
        goto out;
    }
    /* no TCP, no archiving: nothing of the cluster's sees it */
    char *opts = str_printf("-c listen_addresses='' -c port=%d -c unix_socket_directories='%s' -c archive_mode=off",
                            SCRATCH_PORT, sock);
    char *logf = str_printf("%s/postgres.log", base);
    const char *start[] = {"start", "-s", "-l", logf, "-o", opts, NULL};
    bool up = pg_ctl(cfg, data, start, timeout_s, &err);
    started = true;   /* even when pg_ctl gave up waiting, the server may be running: stopped below */
    free(opts);
    if (!up) {
        cli_error("see its log", "drill restore: the scratch server did not start: %s (log: %s)", err.msg, logf);
        free(logf);
        goto out;
    }
    free(logf);
    /* recovery from the repository to the end of the archive, then it opens (promotes) */
    char v[256] = "";
    int64_t deadline = mono_ms() + (int64_t)timeout_s * 1000;
    while (mono_ms() < deadline) {
        Err qe = {{0}};
        if (scratch_value(cfg, sock, "SELECT pg_is_in_recovery()::text", v, sizeof(v), &qe) && strcmp(v, "false") == 0)
            break;
        sleep_ms(200);
    }
    if (strcmp(v, "false") != 0) {
        cli_error("see its log", "drill restore: the scratch server did not finish recovery in %d s", timeout_s);
        goto out;
    }
    t_open = mono_ms();
    char replayed[64] = "", dbs[32] = "", size[32] = "";
    Err qe = {{0}};
    scratch_value(cfg, sock, "SELECT coalesce(to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', "
                             "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), '')", replayed, sizeof(replayed), &qe);
    scratch_value(cfg, sock, "SELECT count(*) FROM pg_database WHERE datallowconn", dbs, sizeof(dbs), &qe);
    scratch_value(cfg, sock, "SELECT sum(pg_database_size(oid))::bigint FROM pg_database", size, sizeof(size), &qe);
    printf("  recovered from the repository and opened in %.1f s: last replayed commit %s, %s database(s), %.1f MB\n",
           (t_open - t_files) / 1000.0, replayed[0] ? replayed : "(none)", dbs, atof(size) / 1048576.0);
    printf("drill restore done in %.1f s\n", (t_open - t0) / 1000.0);
    json_object_set_new(report, "backup", json_pack("{s:s, s:s, s:s, s:I, s:I}", "label", used.label, "type", used.type,
                                                    "stop_time", used.stop_time, "files", (json_int_t)used.files,
                                                    "bytes", (json_int_t)used.bytes));
    json_object_set_new(report, "restore_seconds", json_real((t_files - t0) / 1000.0));
    json_object_set_new(report, "recovery_seconds", json_real((t_open - t_files) / 1000.0));
    json_object_set_new(report, "total_seconds", json_real((t_open - t0) / 1000.0));
    json_object_set_new(report, "last_replayed_commit", json_string(replayed));
    json_object_set_new(report, "database_bytes", json_integer(atoll(size)));
    json_object_set_new(report, "scratch_dir", json_string(base));
    rc = EXIT_OK;
out:
    json_object_set_new(report, "ok", json_boolean(rc == EXIT_OK));
    if (started) {
        char pidfile[PATH_MAX + 32];
        str_fmt(pidfile, sizeof(pidfile), "%s/postmaster.pid", data);
        const char *stop[] = {"stop", "-s", "-m", rc == EXIT_OK ? "fast" : "immediate", NULL};
        Err se = {{0}};
        if (!pg_ctl(cfg, data, stop, 60, &se) && file_exists(pidfile))
            fprintf(stderr, "warning: the scratch server in %s did not stop: %s\n", data, se.msg);
    }
    if (!keep && rc == EXIT_OK) {
        Err re = {{0}};
        if (!dir_remove_all(base, &re))
            fprintf(stderr, "warning: cannot remove %s: %s\n", base, re.msg);
    } else if (base[0]) {
        printf("  the scratch directory is kept: %s\n", base);
    }
    free(fetch);
    repo_free(repo);
    config_free(cfg);
    return rc;
}
