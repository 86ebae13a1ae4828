/* Progress of a long command on a terminal: "backup: 1.2 GB of 5.6 GB (21%)" rewritten in place
 * on stderr at most four times a second, only when stderr is a terminal (logs and pipes get
 * nothing). Safe to feed from several threads. */
#ifndef PGVIGIL_PROGRESS_H
#define PGVIGIL_PROGRESS_H

#include "common/common.h"

#include <stdint.h>

typedef struct Progress Progress;

/* NULL (and every call a no-op) when stderr is not a terminal. */
Progress *progress_start(const char *what, uint64_t total_bytes);
void progress_add(Progress *p, uint64_t bytes);
/* Clear the line and free. */
void progress_end(Progress *p);

#endif
