/* Event notifications: a generic webhook (JSON body signed with HMAC-SHA256), Pushover's
 * message API, and a command hook. notifier_send() only queues; a background thread delivers
 * with retries and backoff, so a notification never delays a failover.
 * Ownership: notifier_new() / notifier_free(). */
#ifndef PGVIGIL_NOTIFY_H
#define PGVIGIL_NOTIFY_H

#include "common/common.h"
#include "config/config.h"

/* Event names (the "event" field): */
#define EV_FAILOVER        "failover"        /* this node was promoted without a switchover */
#define EV_SWITCHOVER      "switchover"      /* this node was promoted by a planned switchover */
#define EV_MEMBER_DOWN     "member_down"     /* a member's key vanished (seen by the leader) */
#define EV_MEMBER_REJOINED "member_rejoined" /* a member streams again after being down (leader) */
#define EV_LAG_HIGH        "lag_high"        /* a replica's lag rose above notify.lag_threshold */
#define EV_LEASE_LOST      "lease_lost"      /* this primary lost its lease and demoted */
#define EV_ARCHIVE_FAILING "archive_failing" /* WAL could not be stored in the repository (once per failure streak) */
#define EV_BACKUP_FAILED   "backup_failed"   /* a scheduled backup failed */

typedef struct Notifier Notifier;

/* Start the delivery thread. A config with no sink gives a valid notifier that drops events.
 * NULL + err naming the key on a bad setting (e.g. a webhook URL that is not http(s)). */
Notifier *notifier_new(const NotifyConfig *cfg, const char *scope, const char *node, Err *err);
/* Queue one event; never blocks on the network. member: the member it is about (may be NULL).
 * message: one human-readable line. The queue is bounded; when full the oldest event is
 * dropped (and counted). */
void notifier_send(Notifier *n, const char *event, const char *member, const char *message);
/* Stop the thread: pending deliveries get up to grace_ms more, then are dropped. NULL ok. */
void notifier_free(Notifier *n, int grace_ms);

/* Counters since notifier_new(), per sink delivery (one event to two sinks counts twice). */
typedef struct NotifyStats {
    uint64_t events;     /* events accepted by notifier_send() */
    uint64_t attempts;   /* delivery attempts made, successful or not */
    uint64_t delivered;  /* deliveries that succeeded */
    uint64_t failed;     /* deliveries given up after notify.max_attempts */
    uint64_t dropped;    /* deliveries dropped: queue full, or still pending at notifier_free() */
    uint64_t pending;    /* deliveries queued or being retried now */
} NotifyStats;
/* A consistent snapshot of the counters (all zero for NULL). */
void notifier_stats(Notifier *n, NotifyStats *out);

/* Pure helpers (exposed for tests). Both return malloc'd strings the caller frees. */
/* "sha256=<lowercase hex HMAC-SHA256(secret, body)>": the X-Pgvigil-Signature header value. */
char *notify_signature(const char *secret, const char *body);
/* url without what may hold secrets, for logs: user:password@ becomes ***@, a query string
 * becomes "?...". */
char *notify_url_redact(const char *url);

#endif
