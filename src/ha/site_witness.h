/* Automatic site failover (site.failover: automatic): a third site's etcd, the witness, decides
 * which of two sites may write, on a thread of its own so that an unreachable etcd never holds up
 * the HA loop.
 *
 * The primary site holds its role through two keys, each on a lease of witness_ttl seconds:
 *   - "primary_site" in the witness ({"site","epoch","member"});
 *   - "pgvigil_peer_lease" in the other site's etcd ({"site","epoch","member"}).
 * Its primary may write only while one of them is confirmed (hold_until, a monotonic time: the
 * moment the renewal was sent plus the TTL); before that time passes, the agent stops postgres
 * and its fence and commit guard stop writes (ha_decide, feed_fence).
 *
 * The standby site's leader promotes its site only when the witness answers, its key is gone
 * (or names this site), the other site's lease key is gone from this site's etcd, and the other
 * site's etcd does not answer, all for a margin: by then both keys have expired, so the other
 * site's primary has stopped. The claim is exclusive:
 *   1. a transaction in this site's etcd writes pgvigil_site "promoting" only if the other
 *      site's lease key is absent (the other site creates that key only if our pgvigil_site
 *      record did not change since it read it, and it does not name us as primary);
 *   2. a transaction in the witness writes primary_site only if it is still absent.
 * A site back from a partition finds both keys naming the other site at a newer epoch and can
 * hold neither again; its agents then make it a standby cluster (peer_site.h). */
#ifndef PGVIGIL_SITE_WITNESS_H
#define PGVIGIL_SITE_WITNESS_H

#include "common/common.h"
#include "config/config.h"

#include <pthread.h>

typedef enum WitnessMode {
    WITNESS_IDLE = 0,   /* nothing to hold or watch */
    WITNESS_HOLD,       /* this member is (or may become) the primary site's primary: keep both keys */
    WITNESS_OBSERVE,    /* the standby site's leader: watch for the other site's absence */
} WitnessMode;

/* What the agent tells the thread, every tick. */
typedef struct WitnessInput {
    WitnessMode mode;
    int64_t my_epoch;       /* this site's pgvigil_site epoch when it names this site as primary
                               (0 without a record), -1 when it names the other site */
    int64_t takeover_epoch; /* my_epoch when a switchover made this site primary (its record has no
                               "kind"), -1 otherwise: the witness key of the other site at an older
                               epoch may then be taken over (that site was demoted cleanly first),
                               never after a failover (it may still be running) */
    int64_t own_epoch;      /* this site's pgvigil_site epoch, whatever it names */
    int64_t peer_epoch;     /* the other site's pgvigil_site epoch, last read (0 unknown) */
    bool may_claim;         /* OBSERVE: this standby leader may promote its site */
    bool may_take_over;     /* HOLD: this member leads its site (or none does): it may move a key
                               another member of the site holds onto its own lease */
} WitnessInput;

typedef struct WitnessInfo {
    WitnessMode mode;           /* the mode of the last finished round */
    bool known;                 /* since HOLD was asked for: both keys were tried, or one is held */
    int64_t hold_until_ms;      /* monotonic: this site's primary role is confirmed until (0 not) */
    int64_t witness_until_ms;   /* ... by the witness key */
    int64_t peer_until_ms;      /* ... by the lease key in the other site's etcd */
    bool witness_reachable;     /* the last read of the witness succeeded */
    bool peer_reachable;        /* ... of the other site's etcd */
    char holder[256];           /* the site the witness key names ("" none) */
    int64_t holder_epoch;
    bool peer_lease_here;       /* the other site's lease key is in this site's etcd */
    int64_t gone_since_ms;      /* OBSERVE: since when the other site looks gone (0 not) */
    int64_t claimed_epoch;      /* OBSERVE: this site claimed the primary role at this epoch (0 not) */
    char why[520];              /* why nothing is held or claimed, for the log ("" nothing to say) */
} WitnessInfo;

/* What one of the two threads found: one holds (and watches through) the witness, the other
 * holds the lease key in the other site's etcd, so that a store that does not answer never
 * delays the renewal of the other. */
typedef struct WitnessPart {
    struct SiteWitness *w;
    bool peer_part;
    pthread_t thread;
    bool started;
    bool failed;                /* mu: it cannot run (no thread, no etcd client): holds nothing */
    WitnessMode mode;           /* mu: the mode of its last finished round */
    bool known;                 /* mu: a HOLD round finished since HOLD was asked for */
    int64_t until_ms;           /* mu: its key is ours until (0 not) */
    bool reachable;             /* mu */
    char why[256];              /* mu */
} WitnessPart;

typedef struct SiteWitness {
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;              /* mu */
    WitnessInput in;        /* mu */
    WitnessPart parts[2];   /* [0] the witness (and OBSERVE), [1] the other site's etcd */
    /* mu: what the witness part saw */
    char holder[256];
    int64_t holder_epoch;
    bool peer_lease_here;
    bool observe_peer_reachable;
    int64_t gone_since_ms;
    int64_t claimed_epoch;
    bool witness_mismatch;  /* the other site's lease key names another witness prefix */
    char witness_prefix[512];   /* set before the threads start, read only after */
    const Config *cfg;      /* the agent's first file (read only) */
} SiteWitness;

/* Starts the thread when cfg says site.failover: automatic; a no-op otherwise. */
void site_witness_start(SiteWitness *w, const Config *cfg);
bool site_witness_enabled(const SiteWitness *w);
/* Hand the thread this tick's input (it starts a round at once when the mode changed). */
void site_witness_set(SiteWitness *w, const WitnessInput *in);
void site_witness_get(SiteWitness *w, WitnessInfo *out);
void site_witness_stop(SiteWitness *w);
/* How long before hold_until a primary must stop writes: one call to a store that does not
 * answer, plus time to stop postgres. */
int64_t site_witness_margin_ms(const Config *cfg);
/* How long the other site must look gone before the standby site claims the primary role. */
int64_t site_witness_claim_wait_ms(const Config *cfg);

#endif
