/* Parts of `pgvigil drill` (cmd_drill.c) kept in files of their own. */
#ifndef PGVIGIL_CLI_DRILL_H
#define PGVIGIL_CLI_DRILL_H

#include "backup/repo.h"
#include "cli/site.h"
#include "config/config.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

/* drill_writer.c: a thread that inserts into pgvigil_drill through one DSN (the applications'
 * address), reconnecting after each failure, and remembers every acknowledged write. */
typedef struct Writer {
    const char *dsn;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    int64_t *ok_ms;          /* mu: wall ms of each acknowledged write */
    int64_t *ok_id;
    int n_ok, cap;
    int n_failed;
    char error[256];
} Writer;

/* Create pgvigil_drill (empty) through dsn. */
bool drill_writer_prepare(const char *dsn, Err *err);
void drill_writer_start(Writer *w, const char *dsn);
void drill_writer_stop(Writer *w);
void drill_writer_free(Writer *w);
/* The longest time without an acknowledged write between from_ms and to_ms (wall ms; writes
 * that never resumed in the window count whole). Call with w->mu held or the writer stopped. */
double drill_longest_gap(const Writer *w, int64_t from_ms, int64_t to_ms);
int drill_writes_between(const Writer *w, int64_t from_ms, int64_t to_ms);
/* wall ms of the first acknowledged write after from_ms (0 none yet) */
int64_t drill_first_write_after(Writer *w, int64_t from_ms);
/* Acknowledged ids (those acknowledged before the read starts: the writer may still run) missing
 * from the table now, read through the DSN; -1 + err when it cannot be read. */
int drill_missing_writes(Writer *w, Err *err);

/* The repository of cfg (-c FILE) holds every WAL segment from its newest backup's start on,
 * without a gap, up to at most max_behind complete segments before primary_walfile (the
 * primary's current one, from pg_walfile_name; NULL unknown). detail says what was found; true
 * also when there is no repository to check (detail says so). */
bool drill_repo_wal(const Config *cfg, const char *primary_walfile, int max_behind, char *detail, size_t dsz);

/* `drill restore`: the newest backup of cfg_path's repository restored into target_dir (NULL:
 * a new directory under /var/tmp), started as a scratch server (no TCP, no archiving), recovered
 * from the repository and opened; what it holds read, then stopped and, when it succeeded and not
 * keep, removed. The timings go into report. Returns the exit code. */
int drill_restore(const char *cfg_path, const char *target_dir, bool keep, int timeout_s, json_t *report);

/* `drill failover` (drill_failover.c): the primary site taken down by stop_cmd, the standby site
 * promoted, writes measured through writer_dsn, the old site brought back by start_cmd and
 * rejoined by rewind, and with switch_back the primary role returned by a site switchover. */
typedef struct DrillFailover {
    const char *writer_dsn;
    const char *stop_cmd, *start_cmd;
    bool switch_back;
    const char *hook_log;   /* the hooks' output is appended here */
    int timeout_s;
    int pause_s;
} DrillFailover;
int drill_failover(Site *own, Site *peer, const DrillFailover *fo, json_t *report);

/* cmd_backup.c: the node file at path, with its repository opened (errors printed, *rc set). */
Config *cmd_backup_open_node(const char *path, Repo **repo, int *rc);
/* ... and the restore_command prefix of a restore from it ("<this program> wal-fetch -c <path,
 * absolute>", malloc'd); what names the command in errors. */
Config *cmd_backup_open_for_restore(const char *path, const char *what, Repo **repo, char **fetch_cmd, int *rc);

#endif
