/* The running server a rewind copies from, through libpq and the functions pg_rewind needs too
 * (pg_ls_dir, pg_stat_file, pg_read_binary_file): its file list, byte ranges of its files, and
 * single values. */
#ifndef PGVIGIL_REWIND_SOURCE_H
#define PGVIGIL_REWIND_SOURCE_H

#include "common/common.h"

#include <libpq-fe.h>
#include <stdint.h>

typedef struct SourceFile {
    char *path;              /* relative to the data directory */
    int64_t size;
    bool dir;
} SourceFile;

typedef struct SourceList {
    SourceFile *f;
    size_t n, cap;
} SourceList;

PGconn *source_connect(const char *conninfo, Err *err);

/* Every file and directory of the source's data directory, sorted by path. */
bool source_list(PGconn *c, SourceList *out, Err *err);
void source_list_free(SourceList *l);
const SourceFile *source_list_find(const SourceList *l, const char *path);

/* The first column of the first row as text (malloc'd; NULL for SQL NULL). */
bool source_value(PGconn *c, const char *sql, char **out, Err *err);

/* A whole (small) file of the source, or NULL with err. */
unsigned char *source_read_file(PGconn *c, const char *path, size_t *n, Err *err);

typedef struct FetchRange {
    const char *path;
    int64_t off, len;
} FetchRange;

/* Called with each range's bytes (fewer than asked where the file ends; missing: the file is
 * gone). Returns false to stop, with err. */
typedef bool (*FetchSink)(void *ctx, const FetchRange *r, const unsigned char *data, size_t n, bool missing,
                          Err *err);

/* Fetch ranges, a batch per query. */
bool source_fetch(PGconn *c, const FetchRange *r, size_t n, FetchSink sink, void *ctx, Err *err);

#endif
