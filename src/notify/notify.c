/* The notifier: a bounded per-sink queue filled by notifier_send() and one delivery thread that
 * retries each sink's oldest event with exponential backoff, so sinks never wait on each other. */
#include "common/common.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "notify/notify.h"
#include "notify/notify_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#define NOTIFY_QUEUE_MAX 256     /* pending deliveries per sink; beyond this the oldest goes */
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 30000
#define MAX_SINKS 3

/* One event waiting for one sink. */
typedef struct Delivery {
    struct Delivery *next;
    NotifyEvent *ev;
    int attempts;        /* made so far */
    int64_t due;         /* mono_ms() of the next attempt */
} Delivery;

typedef struct SinkQueue {
    NotifySink sink;
    Delivery *head, *tail; /* FIFO: only the head is attempted, which keeps the order */
    int len;
    bool busy;           /* the head is being attempted (the mutex is released meanwhile) */
} SinkQueue;

struct Notifier {
    char *scope, *node;
    int max_attempts, timeout_ms;
    SinkQueue q[MAX_SINKS];
    int n_sinks;
    bool curl_inited;

    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* new event or stop request; waits on CLOCK_MONOTONIC */
    bool stopping;       /* under mu */
    int64_t stop_deadline;
    atomic_bool abort_attempt; /* grace is over: an HTTP attempt in flight gives up */
    uint64_t seq;        /* under mu */
    NotifyStats stats;   /* under mu; pending is computed */
    uint64_t dropped_logged;
};

/* Wait before attempt number `failed + 1`: 0.5 s, 1 s, 2 s, ... capped at 30 s. */
static int64_t backoff_ms(int failed)
{
    int64_t ms = BACKOFF_FIRST_MS;
    for (int i = 1; i < failed && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
}

static bool is_http_url(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* Under mu: the delivery leaves its queue and drops its reference to the event. */
static void delivery_release(Delivery *d)
{
    if (--d->ev->refs == 0)
        notify_event_free(d->ev);
    free(d);
}

static void queue_pop(SinkQueue *q)
{
    Delivery *d = q->head;
    q->head = d->next;
    if (!q->head)
        q->tail = NULL;
    q->len--;
    delivery_release(d);
}

/* Under mu, queue full: drop the oldest delivery that is not being attempted right now. */
static void queue_drop_oldest(SinkQueue *q)
{
    if (!q->busy) {
        queue_pop(q);
        return;
    }
    Delivery *d = q->head->next;
    if (!d)
        return;
    q->head->next = d->next;
    if (q->tail == d)
        q->tail = q->head;
    q->len--;
    delivery_release(d);
}

static uint64_t pending_locked(const Notifier *n)
{
    uint64_t p = 0;
    for (int i = 0; i < n->n_sinks; i++)
        p += (uint64_t)n->q[i].len;
    return p;
}

static bool attempt(const NotifySink *s, const NotifyEvent *ev, int timeout_ms, char *why,
                   size_t whysz)
{
    switch (s->kind) {
    case SINK_WEBHOOK:
        return notify_webhook_attempt(s, ev, timeout_ms, why, whysz);
    case SINK_PUSHOVER:
        return notify_pushover_attempt(s, ev, timeout_ms, why, whysz);
    case SINK_COMMAND:
        return notify_command_attempt(s, ev, timeout_ms, why, whysz);
    }
    return false;
}

/* Under mu: wait until the monotonic time `until` (INT64_MAX: until signalled). */
static void wait_until(Notifier *n, int64_t until)
{
    if (until == INT64_MAX) {
        pthread_cond_wait(&n->cv, &n->mu);
        return;
    }
    struct timespec ts = {.tv_sec = (time_t)(until / 1000), .tv_nsec = (long)(until % 1000) * 1000000};
    pthread_cond_timedwait(&n->cv, &n->mu, &ts);
}

/* One attempt at q's head with the mutex released; updates the queue, then logs the outcome
 * (with the mutex released again, so notifier_send() never waits for a write to stderr). */
static void deliver_head(Notifier *n, SinkQueue *q, int64_t now)
{
    Delivery *d = q->head;
    int attempt_no = ++d->attempts;
    int timeout_ms = n->timeout_ms;
    if (n->stopping && n->stop_deadline - now < timeout_ms)
        timeout_ms = (int)(n->stop_deadline - now);
    if (timeout_ms < 1)
        timeout_ms = 1;
    n->stats.attempts++;
    q->busy = true;
    pthread_mutex_unlock(&n->mu);

    /* d stays valid: notifier_send() never drops a busy head */
    char why[512] = "";
    bool ok = attempt(&q->sink, d->ev, timeout_ms, why, sizeof(why));
    int64_t wait = backoff_ms(attempt_no);
    /* what the log line needs, as d may be freed below */
    char *event = str_dup(d->ev->event), *id = str_dup(d->ev->id);

    pthread_mutex_lock(&n->mu);
    q->busy = false;
    enum { DELIVERED, GAVE_UP, RETRY, STOPPED } outcome;
    if (ok) {
        outcome = DELIVERED;
        n->stats.delivered++;
        queue_pop(q);
    } else if (attempt_no >= n->max_attempts) {
        outcome = GAVE_UP;
        n->stats.failed++;
        queue_pop(q);
    } else {
        d->due = mono_ms() + wait;
        /* the retry would come after the shutdown grace: it is dropped then */
        outcome = n->stopping && d->due >= n->stop_deadline ? STOPPED : RETRY;
    }
    pthread_mutex_unlock(&n->mu);

    const char *label = q->sink.label;
    switch (outcome) {
    case DELIVERED:
        if (attempt_no > 1)
            log_info("notify: %s delivered %s event %s after %d attempts", label, event, id,
                     attempt_no);
        else
            log_debug("notify: %s delivered %s event %s", label, event, id);
        break;
    case GAVE_UP:
        log_warn("notify: %s failed (attempt %d/%d): %s; giving up on %s event %s", label,
                 attempt_no, n->max_attempts, why, event, id);
        break;
    case RETRY:
        log_warn("notify: %s failed (attempt %d/%d): %s; retrying in %.1f s", label, attempt_no,
                 n->max_attempts, why, (double)wait / 1000.0);
        break;
    case STOPPED:
        log_warn("notify: %s failed (attempt %d/%d): %s; not retrying: shutting down", label,
                 attempt_no, n->max_attempts, why);
        break;
    }
    free(event);
    free(id);
    pthread_mutex_lock(&n->mu);
}

static void *notify_thread(void *arg)
{
    Notifier *n = arg;
    int next = 0; /* round robin over sinks, so a busy sink does not starve the others */
    pthread_mutex_lock(&n->mu);
    for (;;) {
        if (n->stats.dropped != n->dropped_logged) {
            uint64_t dropped = n->stats.dropped - n->dropped_logged;
            n->dropped_logged = n->stats.dropped;
            pthread_mutex_unlock(&n->mu);
            log_warn("notify: queue full (%d per sink): dropped the %llu oldest pending notifications",
                     NOTIFY_QUEUE_MAX, (unsigned long long)dropped);
            pthread_mutex_lock(&n->mu);
        }
        int64_t now = mono_ms();
        if (n->stopping && (now >= n->stop_deadline || pending_locked(n) == 0))
            break;
        SinkQueue *due = NULL;
        int64_t earliest = INT64_MAX;
        for (int k = 0; k < n->n_sinks; k++) {
            int i = (next + k) % n->n_sinks;
            SinkQueue *q = &n->q[i];
            if (!q->head)
                continue;
            if (q->head->due <= now) {
                due = q;
                next = (i + 1) % n->n_sinks;
                break;
            }
            if (q->head->due < earliest)
                earliest = q->head->due;
        }
        if (due) {
            deliver_head(n, due, now);
            continue;
        }
        if (n->stopping && n->stop_deadline < earliest)
            earliest = n->stop_deadline;
        wait_until(n, earliest);
    }
    /* stopping and out of time (or nothing left): drop the rest */
    uint64_t queue_full = n->stats.dropped - n->dropped_logged;
    uint64_t dropped = 0;
    for (int i = 0; i < n->n_sinks; i++)
        while (n->q[i].head) {
            queue_pop(&n->q[i]);
            dropped++;
        }
    n->stats.dropped += dropped;
    n->dropped_logged = n->stats.dropped;
    pthread_mutex_unlock(&n->mu);
    if (queue_full)
        log_warn("notify: queue full (%d per sink): dropped the %llu oldest pending notifications",
                 NOTIFY_QUEUE_MAX, (unsigned long long)queue_full);
    if (dropped)
        log_warn("notify: shutting down: dropped %llu undelivered notifications",
                 (unsigned long long)dropped);
    return NULL;
}

static void add_sink(Notifier *n, NotifySinkKind kind, char *label)
{
    SinkQueue *q = &n->q[n->n_sinks++];
    q->sink.kind = kind;
    q->sink.label = label;
    q->sink.scope = n->scope;
    q->sink.node = n->node;
    q->sink.abort = &n->abort_attempt;
}

static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void free_sinks(Notifier *n)
{
    for (int i = 0; i < n->n_sinks; i++) {
        NotifySink *s = &n->q[i].sink;
        free(s->label);
        free(s->url);
        free_secret(s->secret);
        free_secret(s->token);
        free_secret(s->user);
        free(s->command);
    }
}

Notifier *notifier_new(const NotifyConfig *cfg, const char *scope, const char *node, Err *err)
{
    NotifyConfig none = {0};
    if (!cfg)
        cfg = &none;
    if (!str_empty(cfg->webhook_url) && !is_http_url(cfg->webhook_url)) {
        err_set(err, "notify.webhook.url: expected an http:// or https:// URL, got \"%s\"",
                cfg->webhook_url);
        return NULL;
    }
    if (!str_empty(cfg->pushover_url) && !is_http_url(cfg->pushover_url)) {
        err_set(err, "notify.pushover.url: expected an http:// or https:// URL, got \"%s\"",
                cfg->pushover_url);
        return NULL;
    }
    bool pushover = !str_empty(cfg->pushover_token) && !str_empty(cfg->pushover_user);
    if (!pushover && (!str_empty(cfg->pushover_token) || !str_empty(cfg->pushover_user)))
        log_warn("notify: pushover is off: notify.pushover.token and notify.pushover.user must "
                 "both be set");

    Notifier *n = xcalloc(1, sizeof(*n));
    n->scope = notify_utf8_clean(scope ? scope : "");
    n->node = notify_utf8_clean(node ? node : "");
    n->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : 6;
    /* capped at an hour: the value is kept in milliseconds in an int */
    n->timeout_ms = (cfg->timeout > 0 ? (cfg->timeout < 3600 ? cfg->timeout : 3600) : 5) * 1000;
    atomic_init(&n->abort_attempt, false);

    if (!str_empty(cfg->webhook_url)) {
        char *redacted = notify_url_redact(cfg->webhook_url);
        add_sink(n, SINK_WEBHOOK, str_printf("webhook %s", redacted));
        free(redacted);
        n->q[n->n_sinks - 1].sink.url = str_dup(cfg->webhook_url);
        n->q[n->n_sinks - 1].sink.secret = str_dup(cfg->webhook_secret);
    }
    if (pushover) {
        add_sink(n, SINK_PUSHOVER, str_dup("pushover"));
        NotifySink *s = &n->q[n->n_sinks - 1].sink;
        s->url = str_dup(str_empty(cfg->pushover_url) ? "https://api.pushover.net/1/messages.json"
                                                      : cfg->pushover_url);
        s->token = str_dup(cfg->pushover_token);
        s->user = str_dup(cfg->pushover_user);
    }
    if (!str_empty(cfg->command)) {
        add_sink(n, SINK_COMMAND, str_dup("command"));
        n->q[n->n_sinks - 1].sink.command = str_dup(cfg->command);
    }
    if (n->n_sinks == 0)
        return n; /* valid, drops every event */

    /* reference counted: balanced by curl_global_cleanup() in notifier_free() */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        err_set(err, "notify: libcurl initialisation failed");
        notifier_free(n, 0);
        return NULL;
    }
    n->curl_inited = true;

    mono_cond_init(&n->cv);
    pthread_mutex_init(&n->mu, NULL);

    /* the thread blocks every signal: they belong to the daemon's main loop */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&n->thread, NULL, notify_thread, n);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        err_set(err, "notify: cannot start the delivery thread: %s", strerror(rc));
        pthread_cond_destroy(&n->cv);
        pthread_mutex_destroy(&n->mu);
        notifier_free(n, 0);
        return NULL;
    }
    n->started = true;

    char sinks[256] = "";
    for (int i = 0; i < n->n_sinks; i++) {
        size_t len = strlen(sinks);
        str_fmt(sinks + len, sizeof(sinks) - len, "%s%s", i ? ", " : "", n->q[i].sink.label);
    }
    log_info("notify: delivering events to %s (max_attempts %d, timeout %d s)", sinks,
             n->max_attempts, n->timeout_ms / 1000);
    return n;
}

void notifier_send(Notifier *n, const char *event, const char *member, const char *message)
{
    if (!n || str_empty(event) || !n->started)
        return;
    pthread_mutex_lock(&n->mu);
    uint64_t seq = ++n->seq;
    bool stopping = n->stopping;
    pthread_mutex_unlock(&n->mu);
    if (stopping)
        return;
    /* build outside the lock: the delivery thread may want it meanwhile */
    NotifyEvent *ev = notify_event_new(n->scope, n->node, event, member, message, seq);
    int64_t now = mono_ms();
    pthread_mutex_lock(&n->mu);
    if (n->stopping) {
        pthread_mutex_unlock(&n->mu);
        notify_event_free(ev);
        return;
    }
    n->stats.events++;
    for (int i = 0; i < n->n_sinks; i++) {
        SinkQueue *q = &n->q[i];
        if (q->len >= NOTIFY_QUEUE_MAX) {
            queue_drop_oldest(q);
            n->stats.dropped++;
        }
        Delivery *d = xcalloc(1, sizeof(*d));
        d->ev = ev;
        d->due = now;
        ev->refs++;
        if (q->tail)
            q->tail->next = d;
        else
            q->head = d;
        q->tail = d;
        q->len++;
    }
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
}

void notifier_stats(Notifier *n, NotifyStats *out)
{
    memset(out, 0, sizeof(*out));
    if (!n || !n->started)
        return;
    pthread_mutex_lock(&n->mu);
    *out = n->stats;
    out->pending = pending_locked(n);
    pthread_mutex_unlock(&n->mu);
}

void notifier_free(Notifier *n, int grace_ms)
{
    if (!n)
        return;
    if (n->started) {
        pthread_mutex_lock(&n->mu);
        n->stopping = true;
        n->stop_deadline = mono_ms() + (grace_ms > 0 ? grace_ms : 0);
        pthread_cond_signal(&n->cv);
        pthread_mutex_unlock(&n->mu);
        /* an attempt that started before the stop request is bounded only by notify.timeout:
         * past the grace, tell an HTTP one to give up (libcurl checks about once a second) */
        int64_t deadline = n->stop_deadline;
        struct timespec ts = {.tv_sec = (time_t)(deadline / 1000),
                              .tv_nsec = (long)(deadline % 1000) * 1000000};
        if (pthread_clockjoin_np(n->thread, NULL, CLOCK_MONOTONIC, &ts) != 0) {
            atomic_store(&n->abort_attempt, true);
            pthread_join(n->thread, NULL);
        }
        /* the thread emptied the queues; a notifier_send() racing with us may have added one */
        for (int i = 0; i < n->n_sinks; i++)
            while (n->q[i].head)
                queue_pop(&n->q[i]);
        pthread_cond_destroy(&n->cv);
        pthread_mutex_destroy(&n->mu);
    }
    if (n->curl_inited)
        curl_global_cleanup();
    free_sinks(n);
    free(n->scope);
    free(n->node);
    free(n);
}
