/* Parts of `pgvigil drill` (cmd_drill.c) kept in files of their own. */
#ifndef PGVIGIL_CLI_DRILL_H
#define PGVIGIL_CLI_DRILL_H

#include "config/config.h"

/* The repository of cfg (-c FILE) holds every WAL segment from its newest backup's start on,
 * without a gap, up to at most max_behind complete segments before primary_walfile (the
 * primary's current one, from pg_walfile_name; NULL unknown). detail says what was found; true
 * also when there is no repository to check (detail says so). */
bool drill_repo_wal(const Config *cfg, const char *primary_walfile, int max_behind, char *detail, size_t dsz);

#endif
