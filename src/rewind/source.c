/* The rewind's source server (see source.h). */
#include "rewind/source.h"
#include "common/strbuf.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_BATCH_RANGES 512
#define FETCH_BATCH_BYTES (16 << 20)

PGconn *source_connect(const char *conninfo, Err *err)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        const char *m = PQerrorMessage(c);
        size_t k = strcspn(m, "\n");
        err_set(err, "cannot connect to the source: %.*s", (int)k, m);
        PQfinish(c);
        return NULL;
    }
    /* a rewind reads many files; none of it should wait behind a statement timeout of the role */
    PGresult *r = PQexec(c, "SET statement_timeout = 0; SET lock_timeout = 0; SET search_path = ''");
    PQclear(r);
    return c;
}

static void set_query_error(PGconn *c, const char *what, Err *err)
{
    const char *m = PQerrorMessage(c);
    size_t k = strcspn(m, "\n");
    err_set(err, "source: %s: %.*s", what, (int)k, m);
}

static int cmp_source_file(const void *a, const void *b)
{
    return strcmp(((const SourceFile *)a)->path, ((const SourceFile *)b)->path);
}

/* Walk the directory tree from the data directory; files that vanish while listed are left out
 * (pg_stat_file answers NULL for them). */
static const char list_sql[] =
    "WITH RECURSIVE tree(path, isdir, size) AS ("
    " SELECT name, s.isdir, s.size FROM pg_ls_dir('.', true, false) AS name, pg_stat_file(name, true) AS s"
    " UNION ALL"
    " SELECT tree.path || '/' || name, s.isdir, s.size"
    " FROM tree, pg_ls_dir(tree.path, true, false) AS name, pg_stat_file(tree.path || '/' || name, true) AS s"
    " WHERE tree.isdir AND tree.path NOT IN ('pg_tblspc')"
    ") SELECT path, isdir, size FROM tree WHERE isdir IS NOT NULL";

bool source_list(PGconn *c, SourceList *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    PGresult *r = PQexec(c, list_sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        set_query_error(c, "listing the data directory", err);
        PQclear(r);
        return false;
    }
    int rows = PQntuples(r);
    out->f = xcalloc((size_t)rows + 1, sizeof(SourceFile));
    out->cap = (size_t)rows + 1;
    for (int i = 0; i < rows; i++) {
        SourceFile *f = &out->f[out->n++];
        f->path = str_dup(PQgetvalue(r, i, 0));
        f->dir = strcmp(PQgetvalue(r, i, 1), "t") == 0;
        f->size = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    }
    PQclear(r);
    if (out->n > 1)
        qsort(out->f, out->n, sizeof(SourceFile), cmp_source_file);
    return true;
}

void source_list_free(SourceList *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->f[i].path);
    free(l->f);
    memset(l, 0, sizeof(*l));
}

const SourceFile *source_list_find(const SourceList *l, const char *path)
{
    SourceFile key = {.path = (char *)path};
    return bsearch(&key, l->f, l->n, sizeof(SourceFile), cmp_source_file);
}

bool source_value(PGconn *c, const char *sql, char **out, Err *err)
{
    *out = NULL;
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1 || PQnfields(r) < 1) {
        set_query_error(c, sql, err);
        if (!err->msg[0] || PQresultStatus(r) == PGRES_TUPLES_OK)
            err_set(err, "source: %s: no answer", sql);
        PQclear(r);
        return false;
    }
    if (!PQgetisnull(r, 0, 0))
        *out = str_dup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return true;
}

unsigned char *source_read_file(PGconn *c, const char *path, size_t *n, Err *err)
{
    const char *params[1] = {path};
    PGresult *r = PQexecParams(c, "SELECT pg_read_binary_file($1)", 1, NULL, params, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
        set_query_error(c, path, err);
        PQclear(r);
        return NULL;
    }
    *n = (size_t)PQgetlength(r, 0, 0);
    unsigned char *buf = xmalloc(*n + 1);
    memcpy(buf, PQgetvalue(r, 0, 0), *n);
    buf[*n] = '\0';
    PQclear(r);
    return buf;
}

/* an element of a text[] literal: double-quoted, with " and \ escaped */
static void add_array_text(StrBuf *b, const char *s)
{
    strbuf_addc(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            strbuf_addc(b, '\\');
        strbuf_addc(b, *s);
    }
    strbuf_addc(b, '"');
}

static bool fetch_batch(PGconn *c, const FetchRange *r, size_t n, FetchSink sink, void *ctx, Err *err)
{
    StrBuf paths = {0}, offs = {0}, lens = {0};
    strbuf_addc(&paths, '{');
    strbuf_addc(&offs, '{');
    strbuf_addc(&lens, '{');
    for (size_t i = 0; i < n; i++) {
        if (i) {
            strbuf_addc(&paths, ',');
            strbuf_addc(&offs, ',');
            strbuf_addc(&lens, ',');
        }
        add_array_text(&paths, r[i].path);
        strbuf_addf(&offs, "%lld", (long long)r[i].off);
        strbuf_addf(&lens, "%lld", (long long)r[i].len);
    }
    strbuf_addc(&paths, '}');
    strbuf_addc(&offs, '}');
    strbuf_addc(&lens, '}');
    const char *params[3] = {paths.s, offs.s, lens.s};
    /* binary results: the index as a 4-byte integer, the bytes as they are */
    PGresult *res = PQexecParams(c,
                                 "SELECT i, pg_read_binary_file(a.p[i], a.o[i], a.l[i], true)"
                                 " FROM (SELECT $1::text[] AS p, $2::int8[] AS o, $3::int8[] AS l) AS a,"
                                 " generate_subscripts(a.p, 1) AS i ORDER BY i",
                                 3, NULL, params, NULL, NULL, 1);
    strbuf_free(&paths);
    strbuf_free(&offs);
    strbuf_free(&lens);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && (size_t)PQntuples(res) == n;
    if (!ok) {
        set_query_error(c, "reading files", err);
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
            err_set(err, "source: reading files: %d rows for %zu ranges", PQntuples(res), n);
    }
    for (int row = 0; ok && row < PQntuples(res); row++) {
        uint32_t idx_be;
        if (PQgetlength(res, row, 0) != 4) {
            err_set(err, "source: reading files: unexpected answer");
            ok = false;
            break;
        }
        memcpy(&idx_be, PQgetvalue(res, row, 0), 4);
        uint32_t idx = ntohl(idx_be);
        if (idx < 1 || idx > n) {
            err_set(err, "source: reading files: range %u out of %zu", idx, n);
            ok = false;
            break;
        }
        bool missing = PQgetisnull(res, row, 1);
        ok = sink(ctx, &r[idx - 1], missing ? NULL : (const unsigned char *)PQgetvalue(res, row, 1),
                  missing ? 0 : (size_t)PQgetlength(res, row, 1), missing, err);
    }
    PQclear(res);
    return ok;
}

bool source_fetch(PGconn *c, const FetchRange *r, size_t n, FetchSink sink, void *ctx, Err *err)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        int64_t bytes = 0;
        while (j < n && j - i < FETCH_BATCH_RANGES && (j == i || bytes + r[j].len <= FETCH_BATCH_BYTES)) {
            bytes += r[j].len;
            j++;
        }
        if (!fetch_batch(c, r + i, j - i, sink, ctx, err))
            return false;
        i = j;
    }
    return true;
}
