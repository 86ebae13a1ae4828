/* Small file helpers: durable atomic writes (temp, fsync, rename, fsync dir), whole-file reads. */
#ifndef PGVIGIL_FILEUTIL_H
#define PGVIGIL_FILEUTIL_H

#include "common/common.h"

/* Write data to path atomically and durably with the given mode. */
bool file_write_atomic(const char *path, const char *data, size_t len, int mode, Err *err);
/* Read a whole file into a NUL-terminated malloc'd buffer. NULL on error. */
char *file_read_all(const char *path, size_t *len, Err *err);
bool file_exists(const char *path);
bool dir_is_empty_or_missing(const char *path);
/* mkdir -p with mode for each created component */
bool dir_make_all(const char *path, int mode, Err *err);
/* rm -rf (refuses "/" and empty paths) */
bool dir_remove_all(const char *path, Err *err);

#endif
