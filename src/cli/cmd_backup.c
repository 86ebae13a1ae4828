/* `pgvigil backup take|list` and `pgvigil restore`: base backups of the node's server into the
 * repository of its configuration (backup section), and restores of them, to the end of the
 * archive or to a target (point-in-time recovery). */
#include "common/common.h"
#include "backup/base_backup.h"
#include "backup/compress.h"
#include "backup/repo.h"
#include "backup/expire.h"
#include "backup/verify.h"
#include "cli/backup_lock.h"
#include "cli/cli.h"
#include "cli/drill.h"
#include "common/log.h"
#include "common/lsn.h"
#include "common/proc.h"
#include "config/config.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

static void backup_usage(FILE *out)
{
    fputs("usage: pgvigil backup take -c node.yml [--type full|incr|diff] [--workers N]\n"
          "       pgvigil backup list -c node.yml [--json]\n"
          "       pgvigil backup verify -c node.yml\n"
          "       pgvigil backup expire -c node.yml [--keep N] [--days D] [--dry-run]\n\n"
          "take: a base backup of this node's server (primary or standby) into the repository;\n"
          "      complete only once its manifest is written, after pg_backup_stop. full: every file;\n"
          "      incr: what changed since the newest backup started; diff: since the newest full\n"
          "      one (changed blocks of relation files, changed files otherwise). With data\n"
          "      checksums on, every page copied is checked; a page that fails is named, and\n"
          "      counted in the backup (which still completes: it holds what is on disk).\n"
          "list: the complete backups, oldest first.\n"
          "verify: re-read the repository: every hash, every backup against its manifest and the\n"
          "      WAL it needs, gaps in the WAL; what each backup can restore to. Exit 1 on a problem.\n"
          "expire: remove the backups backup.retention_full / retention_days (or --keep / --days)\n"
          "      do not keep, and the WAL older than the oldest kept backup.\n"
          "take and expire run one at a time in the cluster: they hold pgvigil_backup_running in\n"
          "etcd (scheduled backups too), and one started meanwhile stops with an error.\n",
          out);
}

static void restore_usage(FILE *out)
{
    fputs("usage: pgvigil restore -c node.yml --target-dir DIR [--backup LABEL]\n"
          "                       [--target-time T | --target-lsn L | --target-xid X | --target-name N]\n"
          "                       [--exclusive] [--delta] [--workers N]\n\n"
          "Write a backup (default: the newest; with --target-time given in UTC or --target-lsn,\n"
          "the newest that ended before the target) into DIR, which must be empty or missing,\n"
          "checking every file against the manifest (global/pg_control last, so an interrupted\n"
          "restore is never taken for a data directory),\n"
          "and set it up to recover WAL from the repository (restore_command = pgvigil wal-fetch)\n"
          "to the end of the archive or to the target, then promote. Start it with pg_ctl.\n"
          "The restored server does not archive (archive_mode = off): it is a copy, not the cluster.\n"
          "--delta: DIR may be this cluster's stopped data directory: only the files that differ\n"
          "from the backup are written, those it does not have are removed, pg_wal is emptied.\n",
          out);
}

Config *cmd_backup_open_for_restore(const char *path, const char *what, Repo **repo, char **fetch_cmd, int *rc)
{
    char cfg_abs[PATH_MAX], self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (!realpath(path, cfg_abs) || n <= 0) {
        cli_error(NULL, "%s: cannot resolve %s: %s", what, path, strerror(errno));
        *rc = EXIT_CONFIG;
        return NULL;
    }
    self[n] = '\0';
    Config *cfg = cmd_backup_open_node(path, repo, rc);
    if (cfg)
        *fetch_cmd = str_printf("%s wal-fetch -c %s", self, cfg_abs);
    return cfg;
}

Config *cmd_backup_open_node(const char *path, Repo **repo, int *rc)
{
    Err err = {{0}};
    Config *cfg = config_load(path, &err);
    if (!cfg) {
        cli_error("fix the file and run again", "%s", err.msg);
        *rc = EXIT_CONFIG;
        return NULL;
    }
    if (!config_has_repository(&cfg->backup)) {
        cli_error("add a backup section with a repository", "%s: backup.repository.path is not set", path);
        config_free(cfg);
        *rc = EXIT_CONFIG;
        return NULL;
    }
    /* first: what repo_open may write (repo.cipher) is given to the server's group, as the rest */
    if (!proc_set_run_as(cfg->pg_run_as, &err)) {
        cli_error("set postgresql.run_as to an existing unprivileged user", "%s: %s", path, err.msg);
        config_free(cfg);
        *rc = EXIT_CONFIG;
        return NULL;
    }
    *repo = repo_open(&cfg->backup, &err);
    if (!*repo) {
        cli_error(NULL, "%s: %s", path, err.msg);
        config_free(cfg);
        *rc = EXIT_FAILED;
        return NULL;
    }
    return cfg;
}

static bool parse_count(const char *s, long max, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1 || v > max)
        return false;
    *out = (int)v;
    return true;
}

static bool parse_workers(const char *s, int *out)
{
    return parse_count(s, 64, out);
}

static void print_list(const BackupInfo *b, int n, bool as_json)
{
    if (as_json) {
        json_t *a = json_array();
        for (int i = 0; i < n; i++) {
            char s[32], z[32];
            json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:f, s:I, s:I, s:I}", "label",
                                               b[i].label, "type", b[i].type, "reference", b[i].reference, "start_lsn",
                                               lsn_format(b[i].start_lsn, s), "stop_lsn",
                                               lsn_format(b[i].stop_lsn, z), "timeline", b[i].timeline, "start_time",
                                               b[i].start_time, "stop_time", b[i].stop_time, "seconds",
                                               b[i].seconds, "files", (json_int_t)b[i].files, "bytes",
                                               (json_int_t)b[i].bytes, "stored", (json_int_t)b[i].stored));
            json_t *o = json_array_get(a, json_array_size(a) - 1);
            json_object_set_new(o, "read_bytes", json_integer(b[i].read_bytes));
            if (b[i].changes_from[0])
                json_object_set_new(o, "changes_from", json_string(b[i].changes_from));
            json_object_set_new(o, "checksums_checked", json_boolean(b[i].checksums_checked));
            json_object_set_new(o, "checksum_errors", json_integer(b[i].checksum_errors));
        }
        char *out = json_dumps(a, JSON_INDENT(2));
        puts(out);
        free(out);
        json_decref(a);
        return;
    }
    printf("%-17s %-5s %-17s %-24s %-24s %-12s %-12s %8s %10s %10s %9s\n", "label", "type", "builds on", "start",
           "stop", "start lsn", "stop lsn", "seconds", "size MB", "stored MB", "bad pages");
    for (int i = 0; i < n; i++) {
        char s[32], z[32];
        char bad[24] = "-"; /* "-": data checksums off, nothing checked */
        if (b[i].checksums_checked)
            str_fmt(bad, sizeof(bad), "%lld", (long long)b[i].checksum_errors);
        printf("%-17s %-5s %-17s %-24s %-24s %-12s %-12s %8.1f %10.1f %10.1f %9s\n", b[i].label, b[i].type,
               b[i].reference[0] ? b[i].reference : "-", b[i].start_time, b[i].stop_time, lsn_format(b[i].start_lsn, s),
               lsn_format(b[i].stop_lsn, z), b[i].seconds, (double)b[i].bytes / 1048576.0,
               (double)b[i].stored / 1048576.0, bad);
    }
}

int cmd_backup(int argc, char **argv)
{
    const char *sub = argc > 1 && argv[1][0] != '-' ? argv[1] : "take";
    int first = argc > 1 && argv[1][0] != '-' ? 2 : 1;
    if (strcmp(sub, "take") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "verify") != 0 &&
        strcmp(sub, "expire") != 0) {
        backup_usage(stderr);
        return EXIT_USAGE;
    }
    const char *cfg_path = NULL;
    int workers = 0, keep = -1, days = -1;
    const char *type = "full";
    bool as_json = false, dry_run = false, lock_held = false;
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            backup_usage(stdout);
            return EXIT_OK;
        } else if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc && parse_workers(argv[i + 1], &workers)) {
            i++;
        } else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) {
            type = argv[++i];
            if (strcmp(type, "full") != 0 && strcmp(type, "incr") != 0 && strcmp(type, "diff") != 0) {
                cli_error(NULL, "backup: --type must be full, incr or diff, not \"%s\"", type);
                return EXIT_USAGE;
            }
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = true;
        } else if (strcmp(argv[i], "--lock-held") == 0) {
            lock_held = true; /* the agent's scheduled backup: it took the lock on its own lease */
        } else if (strcmp(argv[i], "--keep") == 0 && i + 1 < argc && parse_count(argv[i + 1], 100000, &keep)) {
            i++;
        } else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc && parse_count(argv[i + 1], 36500, &days)) {
            i++;
        } else {
            backup_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!cfg_path) {
        backup_usage(stderr);
        return EXIT_USAGE;
    }
    Repo *repo = NULL;
    int rc = EXIT_OK;
    Config *cfg = cmd_backup_open_node(cfg_path, &repo, &rc);
    if (!cfg)
        return rc;
    Err err = {{0}};
    /* one backup or expiry at a time in the cluster: a backup goes on without the lock when etcd
     * cannot be reached (PostgreSQL runs concurrent backups; only the rule is not kept), an
     * expiry does not (it could remove what a running incremental builds on) */
    BackupLock *lock = NULL;
    bool locking = !lock_held && (strcmp(sub, "take") == 0 || (strcmp(sub, "expire") == 0 && !dry_run));
    if (locking) {
        bool busy = false;
        lock = backup_lock_take(cfg, sub, &busy, &err);
        if (!lock && (busy || strcmp(sub, "expire") == 0)) {
            cli_error(busy ? "wait for it to end, then run again" : "run it again once etcd answers", "%s", err.msg);
            repo_free(repo);
            config_free(cfg);
            return EXIT_FAILED;
        }
        if (!lock)
            log_warn("%s; backing up without it", err.msg);
        err.msg[0] = '\0';
    }
    if (strcmp(sub, "expire") == 0) {
        ExpirePolicy p = {.keep_full = keep >= 0 ? keep : cfg->backup.retention_full,
                          .keep_days = days >= 0 ? days : cfg->backup.retention_days};
        ExpireReport rep;
        if (!backup_expire(repo, &p, dry_run, stdout, &rep, &err)) {
            cli_error("run it again: what is already removed stays consistent", "%s", err.msg);
            rc = EXIT_FAILED;
        }
    } else if (strcmp(sub, "verify") == 0) {
        VerifyReport rep;
        if (!backup_verify(repo, stdout, &rep, &err)) {
            cli_error(NULL, "%s", err.msg);
            rc = EXIT_FAILED;
        } else if (rep.problems > 0) {
            rc = EXIT_FAILED;
        }
    } else if (strcmp(sub, "list") == 0) {
        BackupInfo *b = NULL;
        int n = 0;
        if (backup_list(repo, &b, &n, &err)) {
            print_list(b, n, as_json);
        } else {
            cli_error("the repository holds a damaged manifest", "%s", err.msg);
            rc = EXIT_FAILED;
        }
        free(b);
    } else {
        BackupOptions o = {.type = type, .level = cfg->backup.compression_level, .workers = workers ? workers : 2};
        o.compress = COMPRESS_ZSTD;
        compress_kind_parse(cfg->backup.compression, &o.compress);
        BackupInfo b;
        if (backup_take(cfg, repo, &o, &b, &err)) {
            backup_record_newest(cfg, lock, &b);
            char s[32], z[32];
            printf("backup %s complete (%s%s%s): %lld files, %.1f MB stored as %.1f MB, %.1f MB read%s%s%s, %.1f s, "
                   "WAL %s to %s on timeline %d\n",
                   b.label, b.type, b.reference[0] ? " on " : "", b.reference, (long long)b.files,
                   (double)b.bytes / 1048576.0, (double)b.stored / 1048576.0, (double)b.read_bytes / 1048576.0,
                   b.changes_from[0] ? " (changed blocks from " : "", b.changes_from, b.changes_from[0] ? ")" : "",
                   b.seconds, lsn_format(b.start_lsn, s), lsn_format(b.stop_lsn, z), b.timeline);
            if (!b.checksums_checked)
                printf("page checksums: not checked (data checksums are off in this cluster)\n");
            else
                printf("page checksums: %lld page(s) failed the check%s\n", (long long)b.checksum_errors,
                       b.checksum_errors ? " (each named in a warning; copied as they are on disk, listed in the manifest)" : "");
        } else {
            cli_error("the backup is not complete and will not be listed", "%s", err.msg);
            rc = EXIT_FAILED;
        }
    }
    backup_lock_release(lock);
    repo_free(repo);
    config_free(cfg);
    return rc;
}

int cmd_restore(int argc, char **argv)
{
    const char *cfg_path = NULL;
    RestoreOptions o = {.workers = 2};
    int targets = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            restore_usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--exclusive") == 0) {
            o.exclusive = true;
            continue;
        } else if (strcmp(a, "--delta") == 0) {
            o.delta = true;
            continue;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            dst = &cfg_path;
        } else if (strcmp(a, "--target-dir") == 0) {
            dst = &o.target_dir;
        } else if (strcmp(a, "--backup") == 0) {
            dst = &o.label;
        } else if (strcmp(a, "--target-time") == 0) {
            dst = &o.target_time;
        } else if (strcmp(a, "--target-lsn") == 0) {
            dst = &o.target_lsn;
        } else if (strcmp(a, "--target-xid") == 0) {
            dst = &o.target_xid;
        } else if (strcmp(a, "--target-name") == 0) {
            dst = &o.target_name;
        } else if (strcmp(a, "--workers") == 0 && i + 1 < argc && parse_workers(argv[i + 1], &o.workers)) {
            i++;
            continue;
        }
        if (!dst || i + 1 >= argc) {
            restore_usage(stderr);
            return EXIT_USAGE;
        }
        *dst = argv[++i];
        if (strncmp(a, "--target-", 9) == 0 && strcmp(a, "--target-dir") != 0)
            targets++;
    }
    if (!cfg_path || !o.target_dir || targets > 1 || o.target_dir[0] != '/') {
        if (targets > 1)
            cli_error(NULL, "restore: give at most one recovery target");
        else if (o.target_dir && o.target_dir[0] != '/')
            cli_error(NULL, "restore: --target-dir must be an absolute path");
        else
            restore_usage(stderr);
        return EXIT_USAGE;
    }
    Repo *repo = NULL;
    char *cmd = NULL;
    int rc = EXIT_OK;
    Config *cfg = cmd_backup_open_for_restore(cfg_path, "restore", &repo, &cmd, &rc);
    if (!cfg)
        return rc;
    o.wal_fetch_cmd = cmd;
    Err err = {{0}};
    BackupInfo used;
    RestoreCounts counts;
    if (backup_restore(cfg, repo, &o, &used, &counts, &err)) {
        char patched[160] = "";
        if (counts.patched > 0)
            str_fmt(patched, sizeof(patched), " (%d of them only where they differed: %.1f MB written)", counts.patched,
                    (double)counts.patched_bytes / 1048576.0);
        printf("restored backup %s (%lld files, %.1f MB) into %s: %d written, %d kept, %d removed%s; start it to "
               "recover from the repository%s, then promote\n",
               used.label, (long long)used.files, (double)used.bytes / 1048576.0, o.target_dir, counts.written,
               counts.kept, counts.removed, patched, targets ? " up to the target" : " to the end of the archive");
    } else {
        cli_error(o.delta ? "run it again: a delta restore rewrites only what still differs" : NULL, "%s", err.msg);
        rc = EXIT_FAILED;
    }
    free(cmd);
    repo_free(repo);
    config_free(cfg);
    return rc;
}
