/* `pgvigil wal-fetch` and `pgvigil wal-push`: one WAL file out of or into the repository of the
 * node's configuration (backup section). wal-fetch is what restore_command runs, so its exit
 * status follows PostgreSQL's rules: 0 restored; 1 not available (not in the repository: the end
 * of the archive); 126 stops recovery: the stored file is damaged, or the repository could not
 * be read after retries. A recovery that took an unreadable repository for the end of the
 * archive would promote early, missing what came after. */
#include "common/common.h"
#include "backup/compress.h"
#include "backup/repo.h"
#include "backup/wal_archive.h"
#include "backup/wal_prefetch.h"
#include "cli/cli.h"
#include "config/config.h"
#include "common/log.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_WAL_DAMAGED 126   /* above 125: PostgreSQL stops recovery */

static void wal_usage(FILE *out, const char *cmd)
{
    if (strcmp(cmd, "wal-fetch") == 0)
        fputs("usage: pgvigil wal-fetch -c node.yml [--bootstrap-repository] NAME DEST\n\n"
              "Restore the WAL file NAME from the repository into DEST (for restore_command:\n"
              "  restore_command = 'pgvigil wal-fetch -c /etc/pgvigil/node.yml %f %p').\n"
              "--bootstrap-repository: from bootstrap.pgvigil_restore.repository (what a cluster\n"
              "bootstrapped from a backup recovers from) instead of backup.repository.\n"
              "Exit status: 0 restored, 1 not available, 126 damaged in the repository.\n",
              out);
    else
        fputs("usage: pgvigil wal-push -c node.yml PATH\n\n"
              "Store the WAL file at PATH in the repository under its file name (what the archive\n"
              "module does through the agent), hashed and durable before it returns.\n",
              out);
}

/* -c FILE then the positional arguments; returns the config or NULL (rc set). */
static Config *wal_args(const char *cmd, int argc, char **argv, const char **pos, int npos, Repo **repo, int *rc)
{
    const char *cfg_path = NULL;
    int got = 0;
    bool bootstrap_repo = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            wal_usage(stdout, cmd);
            *rc = EXIT_OK;
            return NULL;
        }
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (strcmp(argv[i], "--bootstrap-repository") == 0 && strcmp(cmd, "wal-fetch") == 0) {
            bootstrap_repo = true;
        } else if (argv[i][0] != '-' && got < npos) {
            pos[got++] = argv[i];
        } else {
            wal_usage(stderr, cmd);
            *rc = EXIT_USAGE;
            return NULL;
        }
    }
    if (!cfg_path || got != npos) {
        wal_usage(stderr, cmd);
        *rc = EXIT_USAGE;
        return NULL;
    }
    Err err = {{0}};
    Config *cfg = config_load_client(cfg_path, &err);
    if (!cfg) {
        cli_error("fix the file and run again", "%s", err.msg);
        *rc = EXIT_CONFIG;
        return NULL;
    }
    if (bootstrap_repo && !config_bootstrap_restores(cfg)) {
        cli_error("set bootstrap.method: pgvigil_restore and its repository", "%s: bootstrap.method is not pgvigil_restore",
                  cfg_path);
        config_free(cfg);
        *rc = EXIT_CONFIG;
        return NULL;
    }
    if (!bootstrap_repo && !config_has_repository(&cfg->backup)) {
        cli_error("add a backup section", "%s: backup.repository.path is not set", cfg_path);
        config_free(cfg);
        *rc = EXIT_CONFIG;
        return NULL;
    }
    *repo = repo_open(bootstrap_repo ? &cfg->boot_restore.repo : &cfg->backup, &err);
    if (!*repo) {
        cli_error(NULL, "%s: %s", cfg_path, err.msg);
        config_free(cfg);
        *rc = EXIT_FAILED;
        return NULL;
    }
    return cfg;
}

/* The next segments, fetched by a detached process (twice forked, in a session of its own) while
 * PostgreSQL replays this one. */
static void start_prefetcher(Repo *repo, const char *spool, const char *name, int count)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return;
    if (pid == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        wal_prefetch_run(repo, spool, name, count);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
}

int cmd_wal_fetch(int argc, char **argv)
{
    const char *pos[2];
    Repo *repo = NULL;
    int rc = EXIT_OK;
    Config *cfg = wal_args("wal-fetch", argc, argv, pos, 2, &repo, &rc);
    if (!cfg) /* a restore_command that cannot work: stop recovery, do not take it for the end */
        return rc == EXIT_OK ? EXIT_OK : EXIT_WAL_DAMAGED;
    Err err = {{0}};
    bool missing = false, damaged = false, ok = false;
    bool segment = wal_file_kind(pos[0]) == WALFILE_SEGMENT;
    char *spool = wal_prefetch_spool(pos[1]);
    if (segment && wal_prefetch_take(spool, pos[0], pos[1])) {
        ok = true;
        log_info("wal-fetch: %s from the prefetch spool", pos[0]);
    }
    for (int attempt = 0; attempt < 3 && !ok; attempt++) {
        if (attempt)
            sleep(2); /* a repository that does not answer: a few more tries before giving up */
        memset(&err, 0, sizeof(err));
        ok = wal_fetch(repo, pos[0], pos[1], &missing, &damaged, &err);
        if (missing || damaged)
            break;
    }
    if (ok) {
        rc = EXIT_OK;
        if (segment && cfg->backup.prefetch > 0)
            start_prefetcher(repo, spool, pos[0], cfg->backup.prefetch);
    } else if (missing) {
        rc = EXIT_FAILED; /* the end of the archive: not an error for recovery */
        /* nothing after a missing segment is stored either: the spool has served its turn (this
         * is also how it goes at the end of recovery) */
        if (segment)
            wal_prefetch_clear(spool);
    } else if (damaged) {
        cli_error("the repository holds a damaged copy; recovery stops rather than replay it", "%s", err.msg);
        rc = EXIT_WAL_DAMAGED;
    } else {
        cli_error("recovery stops rather than take this for the end of the archive", "%s", err.msg);
        rc = EXIT_WAL_DAMAGED;
    }
    free(spool);
    repo_free(repo);
    config_free(cfg);
    return rc;
}

int cmd_wal_push(int argc, char **argv)
{
    const char *pos[1];
    Repo *repo = NULL;
    int rc = EXIT_OK;
    Config *cfg = wal_args("wal-push", argc, argv, pos, 1, &repo, &rc);
    if (!cfg)
        return rc;
    CompressKind k = COMPRESS_ZSTD;
    compress_kind_parse(cfg->backup.compression, &k);
    const char *slash = strrchr(pos[0], '/');
    const char *name = slash ? slash + 1 : pos[0];
    Err err = {{0}};
    WalPushResult res;
    if (wal_push(repo, k, cfg->backup.compression_level, pos[0], name, false, &res, &err)) {
        printf("%s %s (%zu bytes, %zu stored)\n", name, res.already ? "was stored already" : "stored", res.raw_size,
               res.stored_size);
    } else {
        cli_error(NULL, "%s", err.msg);
        rc = EXIT_FAILED;
    }
    repo_free(repo);
    config_free(cfg);
    return rc;
}
