/* Parallel loop (see parallel.h). */
#include "backup/parallel.h"

#include <pthread.h>

typedef struct Loop {
    pthread_mutex_t mu;
    int next, n;
    bool failed;
    Err err;
    bool (*fn)(void *ctx, int worker, int item, Err *err);
    void *ctx;
} Loop;

typedef struct Worker {
    Loop *loop;
    int index;
} Worker;

static void *loop_main(void *arg)
{
    Worker *w = arg;
    Loop *l = w->loop;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        int i = l->failed || l->next >= l->n ? -1 : l->next++;
        pthread_mutex_unlock(&l->mu);
        if (i < 0)
            return NULL;
        Err err = {{0}};
        if (!l->fn(l->ctx, w->index, i, &err)) {
            pthread_mutex_lock(&l->mu);
            if (!l->failed)
                l->err = err;
            l->failed = true;
            pthread_mutex_unlock(&l->mu);
            return NULL;
        }
    }
}

bool parallel_for(int n_items, int workers, bool (*fn)(void *ctx, int worker, int item, Err *err), void *ctx,
                  Err *err)
{
    Loop l = {.n = n_items, .fn = fn, .ctx = ctx};
    pthread_mutex_init(&l.mu, NULL);
    if (workers < 1)
        workers = 1;
    pthread_t *t = xcalloc((size_t)workers, sizeof(pthread_t));
    Worker *w = xcalloc((size_t)workers, sizeof(Worker));
    int started = 0;
    for (int i = 0; i < workers; i++) {
        w[started] = (Worker){.loop = &l, .index = started};
        if (pthread_create(&t[started], NULL, loop_main, &w[started]) == 0)
            started++;
    }
    if (started == 0) {
        w[0] = (Worker){.loop = &l, .index = 0};
        loop_main(&w[0]);
    }
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    free(t);
    free(w);
    pthread_mutex_destroy(&l.mu);
    if (l.failed && err)
        *err = l.err;
    return !l.failed;
}
