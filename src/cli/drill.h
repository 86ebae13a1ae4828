/* Parts of `pgvigil drill` (cmd_drill.c) kept in files of their own. */
#ifndef PGVIGIL_CLI_DRILL_H
#define PGVIGIL_CLI_DRILL_H

#include "backup/repo.h"
#include "config/config.h"

#include <jansson.h>

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

/* cmd_backup.c: the node file at path, with its repository opened (errors printed, *rc set). */
Config *cmd_backup_open_node(const char *path, Repo **repo, int *rc);

#endif
