/* Progress of a long command on a terminal (see progress.h). */
#include "common/progress.h"
#include "common/timeutil.h"

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#define REDRAW_MS 250

struct Progress {
    pthread_mutex_t mu;
    char what[32];
    uint64_t done, total;
    int64_t last_ms;
};

static void human(uint64_t b, char *buf, size_t sz)
{
    if (b >= 1ULL << 30)
        str_fmt(buf, sz, "%.1f GB", (double)b / (double)(1ULL << 30));
    else
        str_fmt(buf, sz, "%.1f MB", (double)b / (double)(1ULL << 20));
}

Progress *progress_start(const char *what, uint64_t total_bytes)
{
    if (!isatty(STDERR_FILENO))
        return NULL;
    Progress *p = xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    str_copy(p->what, sizeof(p->what), what);
    p->total = total_bytes;
    return p;
}

void progress_add(Progress *p, uint64_t bytes)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->done += bytes;
    int64_t now = mono_ms();
    if (now - p->last_ms >= REDRAW_MS) {
        p->last_ms = now;
        char d[32], t[32];
        human(p->done, d, sizeof(d));
        human(p->total, t, sizeof(t));
        unsigned pct = p->total ? (unsigned)(p->done * 100 / p->total) : 100;
        fprintf(stderr, "\r%s: %s of %s (%u%%)\033[K", p->what, d, t, pct > 100 ? 100 : pct);
        fflush(stderr);
    }
    pthread_mutex_unlock(&p->mu);
}

void progress_end(Progress *p)
{
    if (!p)
        return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
