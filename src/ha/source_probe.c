/* Watching the standby cluster's source from a thread of its own (see source_probe.h). */
#include "common/common.h"
#include "common/timeutil.h"
#include "ha/source_probe.h"

#include <libpq-fe.h>
#include <poll.h>

#define PROBE_EVERY_MS 2000
#define PROBE_QUERY_MS 4000

/* a value for a libpq connection string: quoted, with ' and \ escaped */
static void add_value(char *buf, size_t sz, const char *key, const char *v)
{
    size_t n = strlen(buf);
    if (n + 1 >= sz)
        return;
    char *p = buf + n;
    size_t room = sz - n;
    size_t k = (size_t)snprintf(p, room, "%s%s='", n ? " " : "", key);
    for (const char *s = v; *s && k + 3 < room; s++) {
        if (*s == '\'' || *s == '\\')
            p[k++] = '\\';
        p[k++] = *s;
    }
    if (k + 2 <= room) {
        p[k++] = '\'';
        p[k] = '\0';
    } else {
        p[room - 1] = '\0';
    }
}

void source_conninfo(const StandbyCluster *sc, const Config *cfg, bool replication, char *buf, size_t sz)
{
    char port[16];
    str_fmt(port, sizeof(port), "%d", sc->port);
    buf[0] = '\0';
    add_value(buf, sz, "host", sc->host ? sc->host : "");
    add_value(buf, sz, "port", port);
    add_value(buf, sz, "user", cfg->pg_replication.username ? cfg->pg_replication.username : "replicator");
    if (cfg->pg_replication.password)
        add_value(buf, sz, "password", cfg->pg_replication.password);
    add_value(buf, sz, "dbname", "postgres");
    add_value(buf, sz, "application_name", "pgvigil-source-probe");
    add_value(buf, sz, "connect_timeout", "2");
    add_value(buf, sz, "tcp_user_timeout", "4000");
    add_value(buf, sz, "keepalives_idle", "2");
    add_value(buf, sz, "keepalives_interval", "1");
    add_value(buf, sz, "keepalives_count", "2");
    if (sc->host && strchr(sc->host, ','))
        add_value(buf, sz, "target_session_attrs", "primary");
    if (replication)
        add_value(buf, sz, "replication", "true");
}

/* libpq's messages end in a newline (and may hold more lines); ours are one line */
static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n')
            *p = p[1] ? ' ' : '\0';
}

static void probe_once(const char *conninfo, SourceInfo *out)
{
    memset(out, 0, sizeof(*out));
    PGconn *c = PQconnectdb(conninfo);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        str_copy(out->error, sizeof(out->error), c ? PQerrorMessage(c) : "out of memory");
        one_line(out->error);
        PQfinish(c);
        return;
    }
    /* bounded: a source whose server stalls after accepting the query must not hang the probe
     * (nor the agent's shutdown, which waits for it) */
    PGresult *r = NULL;
    if (PQsendQuery(c, "IDENTIFY_SYSTEM")) {
        int64_t deadline = mono_ms() + PROBE_QUERY_MS;
        while (PQisBusy(c)) {
            int64_t left = deadline - mono_ms();
            struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
            if (left <= 0 || poll(&pfd, 1, (int)left) < 0 || !PQconsumeInput(c))
                break;
        }
        if (!PQisBusy(c)) {
            r = PQgetResult(c);
            for (PGresult *more; (more = PQgetResult(c)) != NULL;)
                PQclear(more);
        }
    }
    if (!r) {
        str_copy(out->error, sizeof(out->error), PQisBusy(c) ? "IDENTIFY_SYSTEM: no answer in time" : PQerrorMessage(c));
        one_line(out->error);
        PQfinish(c);
        return;
    }
    Lsn pos = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) >= 3 &&
        lsn_parse(PQgetvalue(r, 0, 2), &pos)) {
        out->known = true;
        str_copy(out->sysid, sizeof(out->sysid), PQgetvalue(r, 0, 0));
        out->timeline = atoi(PQgetvalue(r, 0, 1));
        out->flush_lsn = pos;
        out->at_ms = mono_ms();
    } else {
        str_copy(out->error, sizeof(out->error), PQresultErrorMessage(r));
    }
    PQclear(r);
    PQfinish(c);
    one_line(out->error);
}

static void *probe_main(void *arg)
{
    SourceProbe *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (!p->conninfo[0]) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        char conninfo[sizeof(p->conninfo)];
        str_copy(conninfo, sizeof(conninfo), p->conninfo);
        pthread_mutex_unlock(&p->mu);
        SourceInfo got;
        probe_once(conninfo, &got);
        pthread_mutex_lock(&p->mu);
        if (strcmp(conninfo, p->conninfo) == 0) {
            int64_t last_ok = p->info.at_ms;
            p->info = got;
            if (!got.known)
                p->info.at_ms = last_ok;  /* keeps when the source last answered */
        }
        struct timespec until;
        mono_deadline_after(&until, PROBE_EVERY_MS);
        if (!p->stop && strcmp(conninfo, p->conninfo) == 0)
            pthread_cond_timedwait(&p->cv, &p->mu, &until);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

void source_probe_init(SourceProbe *p)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    mono_cond_init(&p->cv);
}

void source_probe_set(SourceProbe *p, const StandbyCluster *sc, const Config *cfg)
{
    char want[sizeof(p->conninfo)];
    want[0] = '\0';
    if (sc && sc->present && sc->host)
        source_conninfo(sc, cfg, true, want, sizeof(want));
    pthread_mutex_lock(&p->mu);
    if (strcmp(want, p->conninfo) != 0) {
        str_copy(p->conninfo, sizeof(p->conninfo), want);
        memset(&p->info, 0, sizeof(p->info));
        pthread_cond_signal(&p->cv);
    }
    bool start = want[0] && !p->started;
    if (start)
        p->started = pthread_create(&p->thread, NULL, probe_main, p) == 0;
    pthread_mutex_unlock(&p->mu);
}

void source_probe_get(SourceProbe *p, SourceInfo *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->info;
    pthread_mutex_unlock(&p->mu);
}

void source_probe_stop(SourceProbe *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    bool started = p->started;
    pthread_mutex_unlock(&p->mu);
    if (started)
        pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}
