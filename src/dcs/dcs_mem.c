/* In-memory DCS for unit tests: etcd's semantics (global revision, create/mod revisions, one lease
 * per handle whose keys vanish when its TTL passes) with time advanced by hand, and shared stores. */
#include "common/common.h"

#include "dcs/dcs.h"

/* Keys are stored in full (prefix included), as etcd would. */
typedef struct MemKv {
    char *key;
    char *value;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t lease;              /* 0: none */
} MemKv;

typedef struct MemLease {
    int64_t id;
    int ttl;                    /* seconds */
    int64_t deadline_ms;        /* store clock */
} MemLease;

/* Shared by every handle attached to it; freed with the last one. */
typedef struct MemStore {
    int refs;
    int64_t now_ms;             /* manual clock, advanced by dcs_mem_advance() */
    int64_t revision;           /* etcd starts an empty store at revision 1 */
    int64_t next_lease_id;
    MemKv *kvs;
    int n_kvs, cap_kvs;
    MemLease *leases;
    int n_leases, cap_leases;
} MemStore;

typedef struct MemDcs {
    Dcs base;
    MemStore *store;
    int64_t lease;              /* this handle's lease, 0 before the first keepalive */
    bool down;                  /* this handle cannot reach the store */
} MemDcs;

static MemDcs *mem_of(Dcs *d)
{
    return (MemDcs *)d;
}

static bool mem_check_up(MemDcs *m, Err *err)
{
    if (m->down) {
        err_set(err, "dcs down");
        return false;
    }
    return true;
}

static char *full_key(const MemDcs *m, const char *key)
{
    return str_printf("%s%s", m->base.prefix, key ? key : "");
}

static MemKv *kv_find(MemStore *s, const char *full)
{
    for (int i = 0; i < s->n_kvs; i++)
        if (strcmp(s->kvs[i].key, full) == 0)
            return &s->kvs[i];
    return NULL;
}

static void kv_remove_at(MemStore *s, int i)
{
    free(s->kvs[i].key);
    free(s->kvs[i].value);
    s->kvs[i] = s->kvs[s->n_kvs - 1];
    s->n_kvs--;
}

static MemLease *lease_find(MemStore *s, int64_t id)
{
    if (id == 0)
        return NULL;
    for (int i = 0; i < s->n_leases; i++)
        if (s->leases[i].id == id)
            return &s->leases[i];
    return NULL;
}

/* Drop a lease and every key attached to it, in one revision like etcd's lease revoke. */
static void lease_drop(MemStore *s, int64_t id)
{
    bool deleted = false;
    for (int i = 0; i < s->n_kvs;) {
        if (s->kvs[i].lease == id) {
            kv_remove_at(s, i);
            deleted = true;
        } else {
            i++;
        }
    }
    if (deleted)
        s->revision++;
    for (int i = 0; i < s->n_leases; i++) {
        if (s->leases[i].id == id) {
            s->leases[i] = s->leases[s->n_leases - 1];
            s->n_leases--;
            break;
        }
    }
}

static int64_t lease_grant(MemStore *s, int ttl)
{
    if (s->n_leases == s->cap_leases) {
        s->cap_leases = s->cap_leases ? s->cap_leases * 2 : 4;
        s->leases = xrealloc(s->leases, (size_t)s->cap_leases * sizeof(*s->leases));
    }
    MemLease *l = &s->leases[s->n_leases++];
    l->id = s->next_lease_id++;
    l->ttl = ttl;
    l->deadline_ms = s->now_ms + (int64_t)ttl * 1000;
    return l->id;
}

/* The lease a write should carry: ours when on_lease, which must exist (as etcd refuses a put
 * naming an unknown lease). */
static bool write_lease(MemDcs *m, bool on_lease, int64_t *lease, Err *err)
{
    *lease = 0;
    if (!on_lease)
        return true;
    if (m->lease == 0) {
        err_set(err, "dcs: no lease yet (keepalive not called)");
        return false;
    }
    if (!lease_find(m->store, m->lease)) {
        err_set(err, "dcs: lease %lld not found", (long long)m->lease);
        return false;
    }
    *lease = m->lease;
    return true;
}

/* Unconditional put of a full key; one new revision. */
static void kv_put(MemStore *s, const char *full, const char *value, int64_t lease)
{
    s->revision++;
    MemKv *kv = kv_find(s, full);
    if (!kv) {
        if (s->n_kvs == s->cap_kvs) {
            s->cap_kvs = s->cap_kvs ? s->cap_kvs * 2 : 16;
            s->kvs = xrealloc(s->kvs, (size_t)s->cap_kvs * sizeof(*s->kvs));
        }
        kv = &s->kvs[s->n_kvs++];
        kv->key = str_dup(full);
        kv->value = NULL;
        kv->create_revision = s->revision;
    }
    free(kv->value);
    kv->value = str_dup(value ? value : "");
    kv->mod_revision = s->revision;
    kv->lease = lease;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const DcsKv *)a)->key, ((const DcsKv *)b)->key);
}

static bool mem_load(Dcs *d, Cluster *out, Err *err)
{
    MemDcs *m = mem_of(d);
    if (!mem_check_up(m, err)) {
        cluster_init(out);
        return false;
    }
    MemStore *s = m->store;
    size_t plen = strlen(d->prefix);
    DcsKv *kvs = xcalloc((size_t)s->n_kvs + 1, sizeof(*kvs));
    int n = 0;
    /* The DcsKv strings point into the store; cluster_from_kvs copies what it keeps. */
    for (int i = 0; i < s->n_kvs; i++) {
        const MemKv *kv = &s->kvs[i];
        if (strncmp(kv->key, d->prefix, plen) != 0)
            continue;
        kvs[n].key = kv->key + plen;
        kvs[n].value = kv->value;
        kvs[n].mod_revision = kv->mod_revision;
        kvs[n].create_revision = kv->create_revision;
        kvs[n].lease = kv->lease;
        n++;
    }
    qsort(kvs, (size_t)n, sizeof(*kvs), kv_cmp);   /* etcd returns a range sorted by key */
    bool ok = cluster_from_kvs(kvs, n, s->revision, out, err);
    free(kvs);
    return ok;
}

static bool mem_keepalive(Dcs *d, int ttl, bool *expired, Err *err)
{
    MemDcs *m = mem_of(d);
    if (expired)
        *expired = false;
    if (!mem_check_up(m, err))
        return false;
    if (ttl <= 0) {
        err_set(err, "dcs: invalid lease ttl %d", ttl);
        return false;
    }
    MemLease *l = lease_find(m->store, m->lease);
    if (l) {
        /* A changed ttl applies at once, as etcd.c does by moving keys to a new lease. */
        l->ttl = ttl;
        l->deadline_ms = m->store->now_ms + (int64_t)ttl * 1000;
        return true;
    }
    if (m->lease != 0 && expired)
        *expired = true;
    m->lease = lease_grant(m->store, ttl);
    return true;
}

static bool mem_create(Dcs *d, const char *key, const char *value, bool on_lease, bool *created,
                       Err *err)
{
    MemDcs *m = mem_of(d);
    if (created)
        *created = false;
    int64_t lease;
    if (!mem_check_up(m, err) || !write_lease(m, on_lease, &lease, err))
        return false;
    char *full = full_key(m, key);
    if (!kv_find(m->store, full)) {
        kv_put(m->store, full, value, lease);
        if (created)
            *created = true;
    }
    free(full);
    return true;
}

static bool mem_put(Dcs *d, const char *key, const char *value, bool on_lease, Err *err)
{
    MemDcs *m = mem_of(d);
    int64_t lease;
    if (!mem_check_up(m, err) || !write_lease(m, on_lease, &lease, err))
        return false;
    char *full = full_key(m, key);
    kv_put(m->store, full, value, lease);
    free(full);
    return true;
}

static bool mem_cas(Dcs *d, const char *key, const char *expected, const char *value,
                    bool on_lease, bool *swapped, Err *err)
{
    if (!expected)
        return mem_create(d, key, value, on_lease, swapped, err);
    MemDcs *m = mem_of(d);
    if (swapped)
        *swapped = false;
    int64_t lease;
    if (!mem_check_up(m, err) || !write_lease(m, on_lease, &lease, err))
        return false;
    char *full = full_key(m, key);
    MemKv *kv = kv_find(m->store, full);
    if (kv && strcmp(kv->value, expected) == 0) {
        kv_put(m->store, full, value, lease);
        if (swapped)
            *swapped = true;
    }
    free(full);
    return true;
}

static bool mem_cas_rev(Dcs *d, const char *key, int64_t mod_revision, const char *value,
                        bool *swapped, int64_t *new_revision, Err *err)
{
    MemDcs *m = mem_of(d);
    if (swapped)
        *swapped = false;
    if (new_revision)
        *new_revision = 0;
    if (!mem_check_up(m, err))
        return false;
    char *full = full_key(m, key);
    MemKv *kv = kv_find(m->store, full);
    int64_t current = kv ? kv->mod_revision : 0;
    if (current == mod_revision) {
        kv_put(m->store, full, value, 0);
        if (swapped)
            *swapped = true;
        if (new_revision)
            *new_revision = m->store->revision;
    }
    free(full);
    return true;
}

static bool mem_get(Dcs *d, const char *key, char **value, int64_t *mod_revision, int64_t *lease, Err *err)
{
    MemDcs *m = mem_of(d);
    *value = NULL;
    if (mod_revision)
        *mod_revision = 0;
    if (lease)
        *lease = 0;
    if (!mem_check_up(m, err))
        return false;
    char *full = full_key(m, key);
    const MemKv *kv = kv_find(m->store, full);
    free(full);
    if (kv) {
        *value = str_dup(kv->value);
        if (mod_revision)
            *mod_revision = kv->mod_revision;
        if (lease)
            *lease = kv->lease;
    }
    return true;
}

static bool mem_txn(Dcs *d, const DcsCmp *cmps, int n_cmps, const DcsOp *ops, int n_ops, bool *succeeded,
                    Err *err)
{
    MemDcs *m = mem_of(d);
    *succeeded = false;
    if (!mem_check_up(m, err))
        return false;
    for (int i = 0; i < n_ops; i++) {
        int64_t lease;
        if (ops[i].value && !write_lease(m, ops[i].on_lease, &lease, err))
            return false;
    }
    for (int i = 0; i < n_cmps; i++) {
        char *full = full_key(m, cmps[i].key);
        const MemKv *kv = kv_find(m->store, full);
        free(full);
        if ((kv ? kv->mod_revision : 0) != cmps[i].mod_revision)
            return true;
    }
    /* etcd gives every operation of one transaction the same new revision */
    int64_t rev = m->store->revision + 1;
    for (int i = 0; i < n_ops; i++) {
        char *full = full_key(m, ops[i].key);
        if (ops[i].value) {
            int64_t lease = 0;
            write_lease(m, ops[i].on_lease, &lease, err);
            m->store->revision = rev - 1;   /* kv_put writes at revision + 1 */
            kv_put(m->store, full, ops[i].value, lease);
        } else {
            for (int k = 0; k < m->store->n_kvs; k++)
                if (strcmp(m->store->kvs[k].key, full) == 0) {
                    kv_remove_at(m->store, k);
                    break;
                }
        }
        free(full);
    }
    m->store->revision = rev;
    *succeeded = true;
    return true;
}

static bool mem_del(Dcs *d, const char *key, const char *expected, bool *deleted, Err *err)
{
    MemDcs *m = mem_of(d);
    if (deleted)
        *deleted = false;
    if (!mem_check_up(m, err))
        return false;
    MemStore *s = m->store;
    char *full = full_key(m, key);
    for (int i = 0; i < s->n_kvs; i++) {
        if (strcmp(s->kvs[i].key, full) != 0)
            continue;
        if (!expected || strcmp(s->kvs[i].value, expected) == 0) {
            kv_remove_at(s, i);
            s->revision++;
            if (deleted)
                *deleted = true;
        }
        break;
    }
    free(full);
    return true;
}

static bool mem_del_prefix(Dcs *d, Err *err)
{
    MemDcs *m = mem_of(d);
    if (!mem_check_up(m, err))
        return false;
    MemStore *s = m->store;
    size_t plen = strlen(d->prefix);
    bool any = false;
    for (int i = 0; i < s->n_kvs;) {
        if (strncmp(s->kvs[i].key, d->prefix, plen) == 0) {
            kv_remove_at(s, i);
            any = true;
        } else {
            i++;
        }
    }
    if (any)
        s->revision++;
    return true;
}

/* Never blocks: time only moves by dcs_mem_advance(). Any revision counts as a change, even
 * one outside the prefix; a spurious wakeup only costs the caller one extra read. */
static bool mem_watch(Dcs *d, int64_t after_rev, int timeout_ms, Err *err)
{
    MemDcs *m = mem_of(d);
    if (err)
        err->msg[0] = '\0';
    if (!mem_check_up(m, err))
        return false;
    return m->store->revision > after_rev;
}

static bool mem_revoke(Dcs *d, Err *err)
{
    MemDcs *m = mem_of(d);
    if (!mem_check_up(m, err))
        return false;
    if (lease_find(m->store, m->lease))
        lease_drop(m->store, m->lease);
    m->lease = 0;
    return true;
}

static void store_release(MemStore *s)
{
    if (--s->refs > 0)
        return;
    for (int i = 0; i < s->n_kvs; i++) {
        free(s->kvs[i].key);
        free(s->kvs[i].value);
    }
    free(s->kvs);
    free(s->leases);
    free(s);
}

/* Like a process exit against etcd: the lease is not revoked, its keys live until it expires. */
static int64_t mem_lease_id(Dcs *d)
{
    return ((MemDcs *)d)->lease;
}

static void mem_free(Dcs *d)
{
    MemDcs *m = mem_of(d);
    store_release(m->store);
    free(d->prefix);
    free(m);
}

static const DcsOps mem_ops = {
    .load = mem_load,
    .keepalive = mem_keepalive,
    .create = mem_create,
    .put = mem_put,
    .cas = mem_cas,
    .cas_rev = mem_cas_rev,
    .get = mem_get,
    .txn = mem_txn,
    .del = mem_del,
    .del_prefix = mem_del_prefix,
    .watch = mem_watch,
    .revoke = mem_revoke,
    .lease_id = mem_lease_id,
    .free = mem_free,
};

static Dcs *mem_handle(MemStore *s, const char *prefix)
{
    MemDcs *m = xcalloc(1, sizeof(*m));
    m->base.ops = &mem_ops;
    m->base.prefix = str_dup(prefix ? prefix : "");
    m->store = s;
    s->refs++;
    return &m->base;
}

Dcs *dcs_mem_new(const char *prefix)
{
    MemStore *s = xcalloc(1, sizeof(*s));
    s->revision = 1;
    s->next_lease_id = 7587000000000000001LL;   /* etcd-like large ids catch int truncation */
    return mem_handle(s, prefix);
}

Dcs *dcs_mem_attach(Dcs *other)
{
    if (!other || other->ops != &mem_ops)
        return NULL;
    return mem_handle(mem_of(other)->store, other->prefix);
}

void dcs_mem_advance(Dcs *d, int64_t ms)
{
    if (!d || d->ops != &mem_ops || ms < 0)
        return;
    MemStore *s = mem_of(d)->store;
    s->now_ms += ms;
    for (int i = 0; i < s->n_leases;) {
        if (s->leases[i].deadline_ms <= s->now_ms)
            lease_drop(s, s->leases[i].id);   /* moves the last lease into slot i */
        else
            i++;
    }
}

void dcs_mem_set_down(Dcs *d, bool down)
{
    if (d && d->ops == &mem_ops)
        mem_of(d)->down = down;
}

char *dcs_mem_get(Dcs *d, const char *key, int64_t *mod_revision)
{
    if (mod_revision)
        *mod_revision = 0;
    if (!d || d->ops != &mem_ops)
        return NULL;
    MemDcs *m = mem_of(d);
    char *full = full_key(m, key);
    MemKv *kv = kv_find(m->store, full);
    free(full);
    if (!kv)
        return NULL;
    if (mod_revision)
        *mod_revision = kv->mod_revision;
    return str_dup(kv->value);
}
