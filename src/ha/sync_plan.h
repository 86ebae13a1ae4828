/* Synchronous replication management on the leader, as a pure planner: from the sync key, the
 * applied synchronous_standby_names and pg_stat_replication, the next single step to take.
 * The order of steps keeps the invariant that every commit acknowledged to a client is on each
 * member of the sync key allowed to be promoted (see sync_plan.c). */
#ifndef PGVIGIL_SYNC_PLAN_H
#define PGVIGIL_SYNC_PLAN_H

#include "common/common.h"
#include "dcs/cluster.h"
#include "pg/pg.h"

/* synchronous_standby_names that names no standby: commits wait (strict mode, and right
 * after a promotion until a synchronous standby is established) */
#define SSN_BLOCK "\"pgvigil_no_sync_standby\""
/* room for "FIRST 16 (" + 16 quoted names of NAME_MAX_LEN + ")" */
#define SSN_TEXT_MAX (16 + MAX_SYNC * (NAME_MAX_LEN + 3))

typedef struct SsnSet {
    bool block;                          /* SSN_BLOCK applied */
    char names[MAX_SYNC][NAME_MAX_LEN];
    int n;
} SsnSet;

typedef struct SyncInput {
    const char *me;
    int node_count;                      /* synchronous_node_count */
    bool strict;                         /* synchronous_mode_strict */
    const SyncState *key;                /* current sync key (present=false when absent) */
    const SsnSet *applied;               /* what synchronous_standby_names says now */
    int64_t applied_age_ms;              /* time since it was last changed (large if unknown) */
    const WalSender *senders;            /* pg_stat_replication */
    int n_senders;
    const Cluster *cluster;              /* members and their tags */
    Lsn wal_lsn;                         /* pg_current_wal_lsn() now */
} SyncInput;

typedef enum SyncStepKind {
    SYNC_NOTHING = 0,
    SYNC_WRITE_KEY,                      /* write `key` (compare-and-set on its revision) */
    SYNC_SET_SSN,                        /* apply `ssn` and reload */
} SyncStepKind;

typedef struct SyncStep {
    SyncStepKind kind;
    SyncState key;
    SsnSet ssn;
    char reason[256];
} SyncStep;

void sync_plan(const SyncInput *in, SyncStep *out);

/* synchronous_standby_names text <-> set. "" = none; SSN_BLOCK = block. */
void ssn_format(const SsnSet *s, char *buf, size_t sz);
bool ssn_parse(const char *text, SsnSet *out);
bool ssn_equal(const SsnSet *a, const SsnSet *b);

/* May `name` at position `lsn` be promoted under this sync key (synchronous mode)? */
bool sync_may_promote(const SyncState *key, const char *name, Lsn lsn);

/* Is `name` the leader the sync key names? That node acknowledged every commit the key
 * protects, so with the leader key gone it may take the lead back (after a crash or a
 * partition) as well as a caught-up synchronous standby may. */
bool sync_names_leader(const SyncState *key, const char *name);

#endif
