/* The distributed configuration store boundary. The HA logic sees only this interface;
 * etcd.c implements it over etcd's v3 HTTP/JSON gateway, dcs_mem.c in memory for tests.
 * All keys are relative to the cluster prefix (<namespace><scope>/).
 * Every call is bounded in time (the implementation's timeout); none blocks forever. */
#ifndef PGVIGIL_DCS_H
#define PGVIGIL_DCS_H

#include "common/common.h"
#include "dcs/cluster.h"

typedef struct Dcs Dcs;

/* A compare of a transaction: key's mod_revision equals mod_revision (0: the key is absent). */
typedef struct DcsCmp {
    const char *key;
    int64_t mod_revision;
} DcsCmp;

/* An operation of a transaction: put value (on our lease when on_lease), or delete the key when
 * value is NULL. */
typedef struct DcsOp {
    const char *key;
    const char *value;
    bool on_lease;
} DcsOp;

typedef struct DcsOps {
    /* One consistent read of every key under the prefix. */
    bool (*load)(Dcs *d, Cluster *out, Err *err);
    /* Make sure our lease exists (grant one with ttl when there is none or it expired) and
     * renew it. *expired is set when the previous lease was found gone (keys on it vanished).
     * Returns false when etcd could not be reached or refused. */
    bool (*keepalive)(Dcs *d, int ttl, bool *expired, Err *err);
    /* Create key only if absent (create_revision == 0). *created tells who won. */
    bool (*create)(Dcs *d, const char *key, const char *value, bool on_lease, bool *created, Err *err);
    /* Unconditional put. */
    bool (*put)(Dcs *d, const char *key, const char *value, bool on_lease, Err *err);
    /* Put only if the key's current value equals expected (NULL expected: key must be absent). */
    bool (*cas)(Dcs *d, const char *key, const char *expected, const char *value, bool on_lease,
                bool *swapped, Err *err);
    /* Put only if mod_revision matches (0: key must be absent). *new_revision (may be NULL)
     * gets the key's mod_revision after a swap, 0 otherwise. */
    bool (*cas_rev)(Dcs *d, const char *key, int64_t mod_revision, const char *value,
                    bool *swapped, int64_t *new_revision, Err *err);
    /* One key: *value (malloc'd; NULL when absent), its mod_revision and lease (0 when absent;
     * either pointer may be NULL). */
    bool (*get)(Dcs *d, const char *key, char **value, int64_t *mod_revision, int64_t *lease, Err *err);
    /* Every op when every compare holds, none otherwise (*succeeded tells which). */
    bool (*txn)(Dcs *d, const DcsCmp *cmps, int n_cmps, const DcsOp *ops, int n_ops, bool *succeeded,
                Err *err);
    /* Delete key, only if its value equals expected when expected is non-NULL. */
    bool (*del)(Dcs *d, const char *key, const char *expected, bool *deleted, Err *err);
    /* Delete every key under the prefix (used by `pgvigil remove` and tests). */
    bool (*del_prefix)(Dcs *d, Err *err);
    /* Block until something under the prefix changes after revision `after_rev`, or timeout.
     * Returns true when a change was seen, false on timeout or error (err set on error only). */
    bool (*watch)(Dcs *d, int64_t after_rev, int timeout_ms, Err *err);
    /* Revoke our lease (clean shutdown: our leader and member keys go at once). */
    bool (*revoke)(Dcs *d, Err *err);
    /* Our current lease id (0 before the first keepalive); no I/O. */
    int64_t (*lease_id)(Dcs *d);
    void (*free)(Dcs *d);
} DcsOps;

struct Dcs {
    const DcsOps *ops;
    char *prefix;          /* e.g. "/service/demo/" */
};

/* Every implementation: a handle is used from one thread at a time; load() leaves *out
 * initialized (cluster_free it) whether or not it succeeds; watch() clears err->msg first, so
 * an empty message after false means a plain timeout. */

/* etcd v3 gateway client. hosts: "127.0.0.1:2379" entries; tried in turn on failure.
 * timeout_ms bounds each HTTP call. */
Dcs *dcs_etcd_new(char *const *hosts, int n_hosts, const char *prefix, const char *user,
                  const char *password, int timeout_ms, Err *err);
/* Change the per-call bound of an etcd handle (e.g. after a ttl change); ignored for other
 * handles and for timeout_ms <= 0. */
void dcs_etcd_set_timeout(Dcs *d, int timeout_ms);
/* Connections an etcd handle has opened for its unary calls (reads, writes, lease renewals);
 * watches have their own connection and are not counted. 0 for other handles. */
int64_t dcs_etcd_connects(Dcs *d);
/* In-memory implementation for unit tests; time is advanced by dcs_mem_advance(). */
Dcs *dcs_mem_new(const char *prefix);
void dcs_mem_advance(Dcs *d, int64_t ms);   /* expire leases whose TTL passed */
void dcs_mem_set_down(Dcs *d, bool down);   /* simulate unreachable store */
/* A second handle on the same in-memory store (another simulated agent), same prefix, with its
 * own lease and its own down flag. The store is freed with its last handle. */
Dcs *dcs_mem_attach(Dcs *other);
/* Test inspection, ignores the down flag: a malloc'd copy of the value of key (relative to the
 * prefix) or NULL when absent; *mod_revision (may be NULL) gets the key's mod revision. */
char *dcs_mem_get(Dcs *d, const char *key, int64_t *mod_revision);

void dcs_free(Dcs *d);  /* NULL is a no-op */
/* Build "<namespace><scope>/" from config values (namespace may lack slashes). Caller frees. */
char *dcs_prefix(const char *namespace_, const char *scope);

#endif
