/* The drills' writer (see drill.h): one connection to the applications' address, an insert at a
 * time, every acknowledged one remembered with its time. */
#include "common/common.h"
#include "cli/drill.h"
#include "common/timeutil.h"

#include <libpq-fe.h>

/* The DSN with client-side bounds first (the DSN's own values win): a primary that silently
 * drops packets must not hold the writer, and with it the drill, for TCP's retransmissions. */
static PGconn *connect_bounded(const char *dsn)
{
    static const char *const keys[] = {"connect_timeout", "tcp_user_timeout", "keepalives_idle",
                                       "keepalives_interval", "keepalives_count", "dbname", NULL};
    const char *vals[] = {"5", "10000", "2", "2", "3", dsn, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

static void *writer_main(void *arg)
{
    Writer *w = arg;
    PGconn *c = NULL;
    int64_t id = 0;
    while (!atomic_load(&w->stop)) {
        if (!c || PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = connect_bounded(w->dsn);
            if (PQstatus(c) != CONNECTION_OK) {
                pthread_mutex_lock(&w->mu);
                w->n_failed++;
                str_copy(w->error, sizeof(w->error), PQerrorMessage(c));
                pthread_mutex_unlock(&w->mu);
                sleep_ms(50);
                continue;
            }
            PQclear(PQexec(c, "SET statement_timeout = '2s'"));
        }
        id++;
        char sql[128];
        str_fmt(sql, sizeof(sql), "INSERT INTO pgvigil_drill(id) VALUES (%lld)", (long long)id);
        PGresult *r = PQexec(c, sql);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        pthread_mutex_lock(&w->mu);
        if (ok) {
            if (w->n_ok == w->cap) {
                w->cap = w->cap ? w->cap * 2 : 1024;
                w->ok_ms = xrealloc(w->ok_ms, (size_t)w->cap * sizeof(int64_t));
                w->ok_id = xrealloc(w->ok_id, (size_t)w->cap * sizeof(int64_t));
            }
            w->ok_ms[w->n_ok] = (int64_t)(wall_now() * 1000);
            w->ok_id[w->n_ok++] = id;
        } else {
            w->n_failed++;
            str_copy(w->error, sizeof(w->error), PQerrorMessage(c));
        }
        pthread_mutex_unlock(&w->mu);
        if (!ok) {
            PQfinish(c);
            c = NULL;
            sleep_ms(20);
        }
    }
    PQfinish(c);
    return NULL;
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

bool drill_writer_prepare(const char *dsn, Err *err)
{
    PGconn *c = connect_bounded(dsn);
    bool ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PQsetNoticeProcessor(c, quiet, NULL);   /* "already exists, skipping" on a second drill */
        PGresult *r = PQexec(c, "CREATE TABLE IF NOT EXISTS pgvigil_drill(id bigint PRIMARY KEY, at timestamptz "
                                "DEFAULT clock_timestamp()); TRUNCATE pgvigil_drill");
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            err_set(err, "--writer-dsn: %s", PQresultErrorMessage(r));
        PQclear(r);
    } else {
        err_set(err, "--writer-dsn: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok;
}

/* The longest time without an acknowledged write between from_ms and to_ms (wall ms). */
double drill_longest_gap(const Writer *w, int64_t from_ms, int64_t to_ms)
{
    int64_t prev = from_ms, gap = 0;
    for (int i = 0; i < w->n_ok; i++) {
        if (w->ok_ms[i] < from_ms)
            continue;
        if (w->ok_ms[i] > to_ms)
            break;
        if (w->ok_ms[i] - prev > gap)
            gap = w->ok_ms[i] - prev;
        prev = w->ok_ms[i];
    }
    /* writes that never resumed within the window count whole */
    if (to_ms - prev > gap)
        gap = to_ms - prev;
    return gap / 1000.0;
}

int drill_writes_between(const Writer *w, int64_t from_ms, int64_t to_ms)
{
    int n = 0;
    for (int i = 0; i < w->n_ok; i++)
        n += w->ok_ms[i] > from_ms && w->ok_ms[i] <= to_ms;
    return n;
}

/* Acknowledged ids missing from the table now (read through the writer's address). */
int drill_missing_writes(Writer *w, Err *err)
{
    /* the writes acknowledged before the read starts (the writer may still run) */
    pthread_mutex_lock(&w->mu);
    int n_acked = w->n_ok;
    int64_t *acked = xcalloc((size_t)n_acked + 1, sizeof(int64_t));
    if (n_acked)
        memcpy(acked, w->ok_id, (size_t)n_acked * sizeof(int64_t));
    pthread_mutex_unlock(&w->mu);
    PGconn *c = connect_bounded(w->dsn);
    int missing = -1;
    if (PQstatus(c) != CONNECTION_OK) {
        err_set(err, "--writer-dsn: %s", PQerrorMessage(c));
        goto out;
    }
    PGresult *r = PQexec(c, "SELECT id FROM pgvigil_drill ORDER BY id");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        err_set(err, "reading pgvigil_drill: %s", PQresultErrorMessage(r));
        PQclear(r);
        goto out;
    }
    int n = PQntuples(r), k = 0;
    missing = 0;
    for (int i = 0; i < n_acked; i++) {
        while (k < n && strtoll(PQgetvalue(r, k, 0), NULL, 10) < acked[i])
            k++;
        if (k >= n || strtoll(PQgetvalue(r, k, 0), NULL, 10) != acked[i])
            missing++;
    }
    PQclear(r);
out:
    PQfinish(c);
    free(acked);
    return missing;
}

void drill_writer_start(Writer *w, const char *dsn)
{
    memset(w, 0, sizeof(*w));
    w->dsn = dsn;
    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->stop, false);
    pthread_create(&w->thread, NULL, writer_main, w);
}

void drill_writer_stop(Writer *w)
{
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
}

void drill_writer_free(Writer *w)
{
    free(w->ok_ms);
    free(w->ok_id);
    pthread_mutex_destroy(&w->mu);
}

int64_t drill_first_write_after(Writer *w, int64_t from_ms)
{
    int64_t at = 0;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < w->n_ok && !at; i++)
        if (w->ok_ms[i] > from_ms)
            at = w->ok_ms[i];
    pthread_mutex_unlock(&w->mu);
    return at;
}
