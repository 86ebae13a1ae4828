/* The leader's synchronous replication steps. Invariant: any commit acknowledged by
 * PostgreSQL was flushed by every standby in the applied synchronous_standby_names (FIRST n of
 * exactly n names), and every member of the sync key either has all acknowledged commits or
 * carries a catch-up LSN it must reach before it may be promoted. Steps, one per tick:
 *   adopt:   the key is not ours -> block commits (SSN_BLOCK), then write an empty key.
 *   add:     wanted set T has members not in the key -> key := key + T, new ones "pending".
 *   switch:  pending members exist and ssn != T -> ssn := T.
 *   confirm: ssn == T for a moment and pg_stat_replication agrees -> pending := wal_lsn now
 *            (every commit acknowledged by the old set is below it).
 *   shrink:  every catch-up LSN reached by its member -> key := T, no catch-up entries.
 *   remove:  members not wanted any more leave the key first, then ssn := T (commits
 *            acknowledged once ssn stops naming a member need not be on it); when T is empty,
 *            strict mode keeps waiting, otherwise the key is emptied first, then ssn := ''.
 *            While members are pending or catching up, those that stop streaming leave the key
 *            the same way before the switch, so a dead standby never holds commits forever. */
#include "common/common.h"
#include "ha/sync_plan.h"

static bool set_has(const SsnSet *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcasecmp(s->names[i], name) == 0)
            return true;
    return false;
}

bool ssn_equal(const SsnSet *a, const SsnSet *b)
{
    if (a->block != b->block || a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (!set_has(b, a->names[i]))
            return false;
    return true;
}

void ssn_format(const SsnSet *s, char *buf, size_t sz)
{
    if (s->block) {
        str_copy(buf, sz, SSN_BLOCK);
        return;
    }
    if (s->n == 0) {
        str_copy(buf, sz, "");
        return;
    }
    size_t off = 0;
    int n = snprintf(buf, sz, "FIRST %d (", s->n);
    off = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < s->n && off < sz; i++) {
        n = snprintf(buf + off, sz - off, "%s\"%s\"", i ? "," : "", s->names[i]);
        off += n > 0 ? (size_t)n : 0;
    }
    if (off < sz)
        snprintf(buf + off, sz - off, ")");
}

/* Parses what ssn_format writes (and a bare list "a,b"). */
bool ssn_parse(const char *text, SsnSet *out)
{
    memset(out, 0, sizeof(*out));
    if (!text)
        return true;
    while (*text == ' ')
        text++;
    if (!*text)
        return true;
    if (strcmp(text, SSN_BLOCK) == 0 || strcmp(text, "pgvigil_no_sync_standby") == 0) {
        out->block = true;
        return true;
    }
    const char *p = text;
    if (strncasecmp(p, "FIRST ", 6) == 0 || strncasecmp(p, "ANY ", 4) == 0) {
        p = strchr(p, '(');
        if (!p)
            return false;
        p++;
    }
    while (*p && *p != ')') {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p || *p == ')')
            break;
        char name[NAME_MAX_LEN];
        size_t n = 0;
        bool quoted = *p == '"';
        if (quoted)
            p++;
        while (*p && (quoted ? *p != '"' : (*p != ',' && *p != ')' && *p != ' '))) {
            if (n + 1 < sizeof(name))
                name[n++] = *p;
            p++;
        }
        if (quoted && *p == '"')
            p++;
        name[n] = '\0';
        if (n && out->n < MAX_SYNC && !set_has(out, name))
            str_copy(out->names[out->n++], NAME_MAX_LEN, name);
    }
    return true;
}

bool sync_may_promote(const SyncState *key, const char *name, Lsn lsn)
{
    if (!sync_has(key, name))
        return false;
    Lsn need = sync_catchup(key, name);
    return need == 0 || (need != LSN_PENDING && lsn >= need);
}

bool sync_names_leader(const SyncState *key, const char *name)
{
    return key && key->present && !str_empty(name) && strcasecmp(key->leader, name) == 0;
}

static const WalSender *sender(const SyncInput *in, const char *name)
{
    for (int i = 0; i < in->n_senders; i++)
        if (strcasecmp(in->senders[i].application_name, name) == 0)
            return &in->senders[i];
    return NULL;
}

/* The standbys we want synchronous: streaming members without nosync, those already in the
 * key first (stability), then the most advanced. */
static void wanted_set(const SyncInput *in, SsnSet *t)
{
    memset(t, 0, sizeof(*t));
    const Cluster *c = in->cluster;
    typedef struct { const char *name; bool in_key; Lsn flush; } Cand;
    Cand cands[64];
    int n = 0;
    for (int i = 0; i < c->n_members && n < 64; i++) {
        const Member *m = &c->members[i];
        if (strcasecmp(m->name, in->me) == 0 || m->tags.nosync)
            continue;
        const WalSender *w = sender(in, m->name);
        if (!w || strcmp(w->state, "streaming") != 0)
            continue;
        cands[n].name = m->name;
        cands[n].in_key = sync_has(in->key, m->name) && strcmp(in->key->leader, in->me) == 0;
        cands[n].flush = w->flush_lsn;
        n++;
    }
    for (int i = 1; i < n; i++) /* insertion sort: in_key first, then flush desc, then name */
        for (int j = i; j > 0; j--) {
            Cand *a = &cands[j - 1], *b = &cands[j];
            bool swap = (!a->in_key && b->in_key) ||
                        (a->in_key == b->in_key && (a->flush < b->flush ||
                                                    (a->flush == b->flush && strcmp(a->name, b->name) > 0)));
            if (!swap)
                break;
            Cand tmp = *a;
            *a = *b;
            *b = tmp;
        }
    int want = in->node_count > 0 ? in->node_count : 1;
    for (int i = 0; i < n && t->n < want && t->n < MAX_SYNC; i++)
        str_copy(t->names[t->n++], NAME_MAX_LEN, cands[i].name);
}

static void step(SyncStep *out, SyncStepKind kind, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void step(SyncStep *out, SyncStepKind kind, const char *fmt, ...)
{
    out->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
    va_end(ap);
}

static void key_from(SyncStep *out, const char *me)
{
    memset(&out->key, 0, sizeof(out->key));
    out->key.present = true;
    str_copy(out->key.leader, sizeof(out->key.leader), me);
}

static void key_add(SyncState *k, const char *name, Lsn catchup)
{
    if (k->n_members >= MAX_SYNC)
        return;
    str_copy(k->members[k->n_members], NAME_MAX_LEN, name);
    k->catchup[k->n_members++] = catchup;
}

void sync_plan(const SyncInput *in, SyncStep *out)
{
    memset(out, 0, sizeof(*out));
    const SyncState *key = in->key;
    const SsnSet *applied = in->applied;
    char names[512];

    /* adopt: a key left by the previous leader says nothing about our commits */
    if (!key->present || strcasecmp(key->leader, in->me) != 0) {
        if (!applied->block) {
            out->ssn.block = true;
            step(out, SYNC_SET_SSN, "taking over synchronous replication: holding commits until a synchronous standby is confirmed");
            return;
        }
        key_from(out, in->me);
        step(out, SYNC_WRITE_KEY, "taking over the sync key");
        return;
    }

    SsnSet t;
    wanted_set(in, &t);
    bool has_pending = false, has_catchup = false;
    for (int i = 0; i < key->n_members; i++) {
        if (key->catchup[i] == LSN_PENDING)
            has_pending = true;
        else if (key->catchup[i])
            has_catchup = true;
    }

    /* add: new wanted members enter the key first, as pending */
    bool adds = false;
    for (int i = 0; i < t.n; i++)
        if (!sync_has(key, t.names[i]))
            adds = true;
    if (adds && !has_pending && !has_catchup) {
        key_from(out, in->me);
        for (int i = 0; i < key->n_members; i++)
            key_add(&out->key, key->members[i], key->catchup[i]);
        for (int i = 0; i < t.n; i++)
            if (!sync_has(key, t.names[i]))
                key_add(&out->key, t.names[i], LSN_PENDING);
        ssn_format(&t, names, sizeof(names));
        step(out, SYNC_WRITE_KEY, "adding synchronous standby candidates to the sync key before using them (%s)", names);
        return;
    }

    if (has_pending || has_catchup) {
        /* the wanted set may have changed meanwhile: members no longer wanted leave the key
         * before ssn stops naming them (or is switched without them) */
        bool drop = false;
        for (int i = 0; i < key->n_members; i++)
            if (!set_has(&t, key->members[i]))
                drop = true;
        if (drop) {
            key_from(out, in->me);
            for (int i = 0; i < key->n_members; i++)
                if (set_has(&t, key->members[i]))
                    key_add(&out->key, key->members[i], key->catchup[i]);
            step(out, SYNC_WRITE_KEY, "removing standbys no longer wanted from the sync key before synchronous_standby_names changes");
            return;
        }
    }

    if (has_pending) {
        /* every member of the key is wanted now (see above) */
        SsnSet target;
        memset(&target, 0, sizeof(target));
        for (int i = 0; i < key->n_members; i++)
            if (key->catchup[i] == LSN_PENDING || set_has(&t, key->members[i]))
                if (target.n < (in->node_count > 0 ? in->node_count : 1))
                    str_copy(target.names[target.n++], NAME_MAX_LEN, key->members[i]);
        if (!ssn_equal(applied, &target)) {
            out->ssn = target;
            ssn_format(&target, names, sizeof(names));
            step(out, SYNC_SET_SSN, "switching synchronous_standby_names to %s", names);
            return;
        }
        /* confirm: the new setting is in force when every target standby reports sync */
        bool confirmed = in->applied_age_ms >= 500;
        for (int i = 0; i < target.n && confirmed; i++) {
            const WalSender *w = sender(in, target.names[i]);
            if (!w || strcmp(w->sync_state, "sync") != 0)
                confirmed = false;
        }
        for (int i = 0; i < in->n_senders && confirmed; i++)
            if (!set_has(&target, in->senders[i].application_name) && strcmp(in->senders[i].sync_state, "sync") == 0)
                confirmed = false;
        if (!confirmed) {
            step(out, SYNC_NOTHING, "waiting for the new synchronous standbys to be in force");
            return;
        }
        key_from(out, in->me);
        for (int i = 0; i < key->n_members; i++)
            key_add(&out->key, key->members[i], key->catchup[i] == LSN_PENDING ? (in->wal_lsn ? in->wal_lsn : 1) : key->catchup[i]);
        step(out, SYNC_WRITE_KEY, "new synchronous standbys in force: recording the position they must reach before they may be promoted");
        return;
    }

    if (has_catchup) {
        bool reached = true;
        for (int i = 0; i < key->n_members; i++) {
            if (!key->catchup[i])
                continue;
            const WalSender *w = sender(in, key->members[i]);
            if (!w || w->flush_lsn < key->catchup[i])
                reached = false;
        }
        if (!reached) {
            step(out, SYNC_NOTHING, "waiting for new synchronous standbys to catch up");
            return;
        }
        /* every member in force is complete now; members no longer in ssn leave the key */
        key_from(out, in->me);
        for (int i = 0; i < key->n_members; i++)
            if (set_has(applied, key->members[i]))
                key_add(&out->key, key->members[i], 0);
        step(out, SYNC_WRITE_KEY, "synchronous standbys caught up: sync key is now exactly the standbys in force");
        return;
    }

    /* stable key: drop members no longer wanted; the key first, then ssn */
    SsnSet target = t;
    if (target.n == 0) {
        bool keep_blocking = in->strict;
        memset(&target, 0, sizeof(target));
        target.block = keep_blocking;
        if (keep_blocking && applied->n > 0) {
            /* strict: keep waiting on the standbys we have rather than acknowledge alone */
            target = *applied;
        }
    }
    if (target.n == 0 && !target.block && key->n_members > 0) {
        /* going asynchronous: nobody may be promoted from now on, before commits stop waiting */
        key_from(out, in->me);
        step(out, SYNC_WRITE_KEY, "no synchronous standby available: emptying the sync key before acknowledging asynchronously");
        return;
    }
    /* members leave the key before ssn stops naming them: commits acknowledged afterwards
     * need not be on them */
    bool extra = false;
    for (int i = 0; i < key->n_members; i++)
        if (!set_has(&target, key->members[i]))
            extra = true;
    if (extra) {
        key_from(out, in->me);
        for (int i = 0; i < key->n_members; i++)
            if (set_has(&target, key->members[i]))
                key_add(&out->key, key->members[i], 0);
        step(out, SYNC_WRITE_KEY, "removing standbys no longer synchronous from the sync key before synchronous_standby_names stops naming them");
        return;
    }
    if (!ssn_equal(applied, &target)) {
        /* the key is a subset of the target now; a target within the key keeps the invariant:
         * its members have everything */
        bool subset = true;
        for (int i = 0; i < target.n; i++)
            if (!sync_has(key, target.names[i]))
                subset = false;
        if (subset) {
            out->ssn = target;
            ssn_format(&target, names, sizeof(names));
            step(out, SYNC_SET_SSN, "synchronous_standby_names -> %s", names[0] ? names : "'' (no synchronous standby available)");
            return;
        }
    }
    /* never the other way round: a member enters the key only as pending (strict mode keeping
     * the applied standbys does not make them complete) */
    step(out, SYNC_NOTHING, "synchronous replication stable");
}
