/* What follows from leadership outside PostgreSQL: the floating IP, the DNS record and event
 * notifications. The loop thread calls agent_effects_tick() at the end of every tick; nothing
 * here blocks on the network (DNS and notifications run on their own threads). */
#ifndef PGVIGIL_AGENT_EFFECTS_H
#define PGVIGIL_AGENT_EFFECTS_H

#include "common/common.h"
#include "dcs/cluster.h"

struct Agent;
struct Decision;
typedef struct Vip Vip;
typedef struct DnsUpdater DnsUpdater;
typedef struct Notifier Notifier;

typedef struct WatchedMember {
    char name[NAME_MAX_LEN];
    bool down;          /* its key vanished; member_down was sent */
    bool lag_high;      /* lag_high was sent and the lag has not come back under half the threshold */
    int64_t above_since;/* monotonic ms since the lag is above the threshold (0: it is not) */
} WatchedMember;

typedef struct Effects {
    Vip *vip;
    DnsUpdater *dns;
    Notifier *notify;
    bool leading;               /* holding the lease as a running primary at the last tick */
    bool vip_failed_logged;
    WatchedMember *members;     /* members seen, for down/rejoined/lag events (see watch_members) */
    int n_members;
} Effects;

/* Build the VIP, DNS and notification handles from the config (each optional). NULL-safe
 * later calls; false + err naming the key on a bad setting. */
bool agent_effects_start(struct Agent *a, Err *err);
void agent_effects_tick(struct Agent *a, const struct Decision *d);
/* Queue an event notification (one line, printf-style); nothing when none is configured. */
void agent_notify(struct Agent *a, const char *event, const char *member, const char *fmt, ...) PRINTF_LIKE(4, 5);
/* The promotion finished: a failover or switchover event. */
void agent_effects_promoted(struct Agent *a, bool switchover);
/* Stop: drop the VIP when drop_vip (postgres is stopped), flush notifications briefly, free.
 * Safe to call twice. */
void agent_effects_stop(struct Agent *a, bool drop_vip);

#endif
