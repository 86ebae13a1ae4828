/* Internals of the notify module shared by its files: the event as queued (built once, shared
 * by every sink) and one delivery attempt per sink kind. Not for use outside src/notify/. */
#ifndef PGVIGIL_NOTIFY_INT_H
#define PGVIGIL_NOTIFY_INT_H

#include "common/common.h"

#include <stdatomic.h>

/* One event, built by notifier_send() and shared by the sinks' pending lists (refs counts
 * them; changed only under the notifier's mutex). All strings are valid UTF-8. */
typedef struct NotifyEvent {
    int refs;
    char *event;        /* "failover", ... */
    char *member;       /* NULL when the event is not about a member */
    char *message;
    char *id;           /* "<node>-<unix ms>-<seq>" */
    char *body;         /* the JSON document every sink sends or exports */
    int64_t unix_s;     /* wall-clock time of the event, seconds */
} NotifyEvent;

/* Build an event for scope/node; seq makes the id unique within this process. Never NULL. */
NotifyEvent *notify_event_new(const char *scope, const char *node, const char *event,
                              const char *member, const char *message, uint64_t seq);
void notify_event_free(NotifyEvent *ev);

/* Copy of s with every byte that is not part of valid UTF-8 replaced by '?'. Caller frees. */
char *notify_utf8_clean(const char *s);
/* Copy of s cut to at most max bytes without splitting a UTF-8 sequence. Caller frees. */
char *notify_utf8_cut(const char *s, size_t max);

typedef enum NotifySinkKind { SINK_WEBHOOK, SINK_PUSHOVER, SINK_COMMAND } NotifySinkKind;

/* What one sink needs to deliver; immutable while the delivery thread runs. */
typedef struct NotifySink {
    NotifySinkKind kind;
    char *label;        /* for logs, without secrets: "webhook https://host/path", "pushover", "command" */
    char *url;          /* webhook and pushover */
    char *secret;       /* webhook: HMAC key, may be NULL */
    char *token, *user; /* pushover */
    char *command;      /* command */
    const char *scope;  /* owned by the notifier */
    const char *node;
    const atomic_bool *abort; /* set when an attempt in flight must stop (shutdown grace over) */
} NotifySink;

/* One delivery attempt bounded by timeout_ms. False with a short reason in why (no secrets),
 * e.g. "HTTP 500" or "exited with status 3". One per sink kind: */
bool notify_webhook_attempt(const NotifySink *s, const NotifyEvent *ev, int timeout_ms, char *why,
                            size_t whysz);   /* notify_http.c */
bool notify_pushover_attempt(const NotifySink *s, const NotifyEvent *ev, int timeout_ms, char *why,
                             size_t whysz);  /* notify_http.c */
bool notify_command_attempt(const NotifySink *s, const NotifyEvent *ev, int timeout_ms, char *why,
                            size_t whysz);   /* notify_command.c */

/* Pushover priority for an event: 1 (high) for failover, lease_lost and member_down, else 0. */
int notify_pushover_priority(const char *event);

#endif
