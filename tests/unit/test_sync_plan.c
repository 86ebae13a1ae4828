/* Tables and simulations of sync_plan(), the leader's synchronous replication planner: a small
 * model of PostgreSQL commits and of the sync key checks the safety invariant after every step. */
#include "common/common.h"
#include "ha/sync_plan.h"

#include <inttypes.h>
#include <setjmp.h>

#include <cmocka.h>

/* ---- the model ----
 * The leader node1 and four standbys node2..node5 (node5 is tagged nosync). Time advances in
 * sub-steps of SUB_MS; in each one the application writes WAL, standbys flush it, and the primary
 * acknowledges every commit that all standbys named by the synchronous_standby_names *in force*
 * have flushed (nothing under SSN_BLOCK, everything when it is empty). A SET_SSN takes effect
 * lag_ms after it is applied (a reload), always less than the 500 ms the planner waits for.
 * Safety: every member of the sync key that sync_may_promote() accepts at its flush position
 * has every acknowledged commit; while commits are acknowledged asynchronously, no member of
 * our key may be promoted at all. */

#define ME "node1"
#define N_SB 4
#define SUB_MS 50
#define BASE_LSN ((Lsn)0x3000000)
#define WAL_STEP ((Lsn)0x100)

typedef enum SbMode {
    SB_DOWN = 0,    /* no walsender; keeps the WAL it has */
    SB_FOLLOW,      /* streaming, flushes everything the primary wrote */
    SB_STUCK,       /* streaming, but its flush position does not move */
    SB_CATCHUP,     /* walsender in state catchup: cannot acknowledge commits */
} SbMode;

typedef struct Standby {
    const char *name;
    SbMode mode;
    Lsn flush;
} Standby;

typedef struct Sim {
    Cluster c;
    Standby sb[N_SB];
    SyncState key;
    SsnSet applied;            /* what SHOW synchronous_standby_names answers */
    SsnSet effective;          /* what commits wait for (applied, once the reload is through) */
    int64_t now_ms;
    int64_t changed_ms;        /* when applied last changed; INT64_MIN: unknown */
    int64_t effective_at_ms;   /* when applied takes effect */
    int lag_ms;                /* reload delay of the next SET_SSN */
    int node_count;
    bool strict;
    bool writes;               /* the application commits: WAL grows */
    Lsn wal, acked;            /* pg_current_wal_lsn(), highest acknowledged commit */
    const char *report_async;  /* pg_stat_replication says async for it whatever ssn says */
    uint64_t rng;              /* random mode when non-zero */
    int lose_pct;              /* random mode: share of steps whose effect is lost (CAS, reload) */
    int tick;
    int counts[3];             /* steps by kind */
    int confirms, shrinks, removals;
    SyncStep last;
} Sim;

static const char *const SB_NAMES[N_SB] = {"node2", "node3", "node4", "node5"};

static const char *kind_name(SyncStepKind k)
{
    switch (k) {
    case SYNC_NOTHING: return "NOTHING";
    case SYNC_WRITE_KEY: return "WRITE_KEY";
    case SYNC_SET_SSN: return "SET_SSN";
    }
    return "?";
}

static uint64_t rnd(Sim *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static int rnd_below(Sim *s, int n)
{
    return (int)(rnd(s) % (uint64_t)n);
}

static bool set_contains(const SsnSet *set, const char *name)
{
    for (int i = 0; i < set->n; i++)
        if (strcasecmp(set->names[i], name) == 0)
            return true;
    return false;
}

/* "a,b" -> set, without ssn_parse (which is under test) */
static void names_set(const char *list, SsnSet *out)
{
    memset(out, 0, sizeof(*out));
    char buf[256];
    str_copy(buf, sizeof(buf), list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        str_copy(out->names[out->n++], NAME_MAX_LEN, t);
}

static void set_member(Member *m, const char *name, const char *role)
{
    str_copy(m->name, sizeof(m->name), name);
    str_copy(m->state, sizeof(m->state), "running");
    str_copy(m->role, sizeof(m->role), role);
    m->timeline = 2;
    m->tags.failover_priority = 1;
}

/* Just promoted: the agent configured SSN_BLOCK, no sync key, no standby connected. */
static void sim_init(Sim *s)
{
    memset(s, 0, sizeof(*s));
    cluster_init(&s->c);
    s->c.members = xcalloc(N_SB + 1, sizeof(Member));
    s->c.n_members = N_SB + 1;
    set_member(&s->c.members[0], ME, "primary");
    for (int i = 0; i < N_SB; i++) {
        set_member(&s->c.members[i + 1], SB_NAMES[i], "replica");
        s->sb[i].name = SB_NAMES[i];
        s->sb[i].flush = BASE_LSN;
    }
    s->c.members[N_SB].tags.nosync = true;
    s->applied.block = s->effective.block = true;
    s->changed_ms = INT64_MIN;
    s->now_ms = 1000000;
    s->lag_ms = 200;
    s->node_count = 1;
    s->writes = true;
    s->wal = s->acked = BASE_LSN;
}

static void sim_free(Sim *s)
{
    cluster_free(&s->c);
}

static Standby *sb_get(Sim *s, const char *name)
{
    for (int i = 0; i < N_SB; i++)
        if (strcasecmp(s->sb[i].name, name) == 0)
            return &s->sb[i];
    return NULL;
}

static Lsn flush_of(Sim *s, const char *name)
{
    if (strcasecmp(name, ME) == 0)
        return s->wal;
    Standby *b = sb_get(s, name);
    return b ? b->flush : 0;
}

static void key_set(SyncState *k, const char *leader, const char *list)
{
    memset(k, 0, sizeof(*k));
    k->present = true;
    str_copy(k->leader, sizeof(k->leader), leader);
    SsnSet names;
    names_set(list, &names);
    for (int i = 0; i < names.n; i++)
        str_copy(k->members[k->n_members++], NAME_MAX_LEN, names.names[i]);
}

/* A settled leader: our key lists `list`, synchronous_standby_names names them, in force long
 * ago, and they stream and have everything. */
static void sim_own(Sim *s, const char *list)
{
    key_set(&s->key, ME, list);
    names_set(list, &s->applied);
    s->effective = s->applied;
    s->changed_ms = s->now_ms - 100000;
    for (int i = 0; i < s->applied.n; i++) {
        Standby *b = sb_get(s, s->applied.names[i]);
        b->mode = SB_FOLLOW;
        b->flush = s->wal;
    }
}

static void key_text(const SyncState *k, char *buf, size_t sz)
{
    if (!k->present) {
        str_copy(buf, sz, "(absent)");
        return;
    }
    size_t off = 0;
    str_fmt(buf, sz, "%s:", k->leader);
    for (int i = 0; i < k->n_members; i++) {
        off = strlen(buf);
        Lsn c = k->catchup[i];
        if (c == LSN_PENDING)
            str_fmt(buf + off, sz - off, " %s=P", k->members[i]);
        else if (c)
            str_fmt(buf + off, sz - off, " %s=%" PRIX64, k->members[i], c);
        else
            str_fmt(buf + off, sz - off, " %s=0", k->members[i]);
    }
}

static void sim_describe(const Sim *s, char *buf, size_t sz)
{
    char key[512], ap[512], ef[512], sbs[512] = "";
    key_text(&s->key, key, sizeof(key));
    ssn_format(&s->applied, ap, sizeof(ap));
    ssn_format(&s->effective, ef, sizeof(ef));
    static const char *const modes[] = {"down", "follow", "stuck", "catchup"};
    for (int i = 0; i < N_SB; i++) {
        size_t off = strlen(sbs);
        str_fmt(sbs + off, sizeof(sbs) - off, " %s:%s@%" PRIX64, s->sb[i].name, modes[s->sb[i].mode],
                s->sb[i].flush);
    }
    str_fmt(buf, sz, "key {%s} ssn '%s' in force '%s' (changed %" PRId64 " ms ago) wal %" PRIX64
            " acked %" PRIX64 " count %d%s;%s; last step %s: %s",
            key, ap, ef, s->changed_ms == INT64_MIN ? (int64_t)-1 : s->now_ms - s->changed_ms, s->wal,
            s->acked, s->node_count, s->strict ? " strict" : "", sbs, kind_name(s->last.kind), s->last.reason);
}

static void sim_fail(const Sim *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void sim_fail(const Sim *s, const char *fmt, ...)
{
    char msg[512], st[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sim_describe(s, st, sizeof(st));
    fail_msg("tick %d: %s\n  %s", s->tick, msg, st);
}

/* The safety invariant, checked after every step and every sub-step. */
static void sim_check(Sim *s, const char *when)
{
    const SyncState *k = &s->key;
    if (!k->present)
        return;
    for (int i = 0; i < k->n_members; i++) {
        const char *m = k->members[i];
        Lsn f = flush_of(s, m);
        if (sync_may_promote(k, m, f) && f < s->acked)
            sim_fail(s, "%s: %s may be promoted at %" PRIX64 " but commits up to %" PRIX64 " were acknowledged",
                     when, m, f, s->acked);
    }
    if (strcasecmp(k->leader, ME) == 0 && !s->effective.block && s->effective.n == 0)
        for (int i = 0; i < k->n_members; i++)
            if (k->catchup[i] != LSN_PENDING)
                sim_fail(s, "%s: commits are acknowledged asynchronously while %s is in the sync key", when,
                         k->members[i]);
}

static bool streaming(const Standby *b)
{
    return b && (b->mode == SB_FOLLOW || b->mode == SB_STUCK);
}

static void sim_ack(Sim *s)
{
    const SsnSet *e = &s->effective;
    if (e->block)
        return;
    Lsn upto = s->wal;
    for (int i = 0; i < e->n; i++) {
        Standby *b = sb_get(s, e->names[i]);
        if (!streaming(b))
            return; /* FIRST n of n names: every one of them must be a streaming candidate */
        if (b->flush < upto)
            upto = b->flush;
    }
    if (upto > s->acked)
        s->acked = upto;
}

static void sim_sub(Sim *s)
{
    s->now_ms += SUB_MS;
    if (s->now_ms >= s->effective_at_ms)
        s->effective = s->applied;
    if (s->writes)
        s->wal += s->rng ? (Lsn)rnd_below(s, 2 * (int)WAL_STEP) : WAL_STEP;
    for (int i = 0; i < N_SB; i++) {
        Standby *b = &s->sb[i];
        if (!s->rng) {
            if (b->mode == SB_FOLLOW)
                b->flush = s->wal;
        } else if (b->mode == SB_FOLLOW || b->mode == SB_CATCHUP) {
            if (rnd_below(s, 2))
                b->flush = s->wal;
            else
                b->flush += rnd(s) % (s->wal - b->flush + 1);
        }
    }
    sim_ack(s);
    sim_check(s, "commits");
}

static void sim_advance(Sim *s, int64_t ms)
{
    for (int64_t t = 0; t < ms; t += SUB_MS)
        sim_sub(s);
}

typedef struct Obs {
    SyncInput in;
    WalSender ws[N_SB];
} Obs;

static void sim_observe(Sim *s, Obs *o)
{
    memset(o, 0, sizeof(*o));
    int n = 0;
    for (int i = 0; i < N_SB; i++) {
        const Standby *b = &s->sb[i];
        if (b->mode == SB_DOWN)
            continue;
        WalSender *w = &o->ws[n++];
        str_copy(w->application_name, sizeof(w->application_name), b->name);
        str_copy(w->state, sizeof(w->state), b->mode == SB_CATCHUP ? "catchup" : "streaming");
        /* the backend answering the query has reloaded already: it goes by `applied` */
        bool named = !s->applied.block && set_contains(&s->applied, b->name);
        const char *st = !named ? "async" : b->mode == SB_CATCHUP ? "potential" : "sync";
        if (s->report_async && strcasecmp(s->report_async, b->name) == 0)
            st = "async";
        str_copy(w->sync_state, sizeof(w->sync_state), st);
        w->flush_lsn = w->replay_lsn = b->flush;
    }
    o->in.me = ME;
    o->in.node_count = s->node_count;
    o->in.strict = s->strict;
    o->in.key = &s->key;
    o->in.applied = &s->applied;
    o->in.applied_age_ms = s->changed_ms == INT64_MIN ? INT64_MAX : s->now_ms - s->changed_ms;
    o->in.senders = o->ws;
    o->in.n_senders = n;
    o->in.cluster = &s->c;
    o->in.wal_lsn = s->wal;
}

static const WalSender *obs_sender(const Obs *o, const char *name)
{
    for (int i = 0; i < o->in.n_senders; i++)
        if (strcasecmp(o->ws[i].application_name, name) == 0)
            return &o->ws[i];
    return NULL;
}

static bool key_ours(const SyncState *k)
{
    return k->present && strcasecmp(k->leader, ME) == 0;
}

static bool is_nosync(const Sim *s, const char *name)
{
    for (int i = 0; i < s->c.n_members; i++)
        if (strcasecmp(s->c.members[i].name, name) == 0)
            return s->c.members[i].tags.nosync;
    return false;
}

/* Local discipline of a key write, on top of the model invariant: a member enters as pending,
 * gets a catch-up LSN (the WAL position now) only while the ssn naming it is in force, and
 * loses it only once pg_stat_replication shows it reached. */
static void check_write(Sim *s, const Obs *o, const SyncStep *st)
{
    const SyncState *old = &s->key, *k = &st->key;
    if (!k->present || strcmp(k->leader, ME) != 0)
        sim_fail(s, "writes a key that is not ours (leader \"%s\")", k->leader);
    if (k->n_members < 0 || k->n_members > MAX_SYNC)
        sim_fail(s, "key with %d members", k->n_members);
    bool ours = key_ours(old);
    if (!ours && (k->n_members || !s->applied.block))
        sim_fail(s, "adopting a key must empty it while commits are held");
    for (int i = 0; i < k->n_members; i++) {
        const char *m = k->members[i];
        Lsn c = k->catchup[i];
        if (strcasecmp(m, ME) == 0 || is_nosync(s, m) || !sb_get(s, m))
            sim_fail(s, "%s may not be in the sync key", m);
        for (int j = 0; j < i; j++)
            if (strcasecmp(k->members[j], m) == 0)
                sim_fail(s, "%s twice in the key", m);
        bool was = ours && sync_has(old, m);
        Lsn oc = was ? sync_catchup(old, m) : 0;
        if (!was) {
            if (c != LSN_PENDING)
                sim_fail(s, "%s enters the sync key without a pending catch-up", m);
            continue;
        }
        if (c == oc || c == LSN_PENDING)
            continue;
        if (c == 0) {
            const WalSender *w = obs_sender(o, m);
            if (oc == LSN_PENDING)
                sim_fail(s, "pending %s becomes promotable without a catch-up position", m);
            if (!w || w->flush_lsn < oc)
                sim_fail(s, "%s loses its catch-up entry %" PRIX64 " before reaching it", m, oc);
            if (!set_contains(&s->effective, m))
                sim_fail(s, "%s loses its catch-up entry while commits do not wait for it", m);
            s->shrinks++;
        } else {
            if (oc != LSN_PENDING)
                sim_fail(s, "catch-up position of %s moves from %" PRIX64 " to %" PRIX64, m, oc, c);
            if (c != (o->in.wal_lsn ? o->in.wal_lsn : 1))
                sim_fail(s, "catch-up position of %s is not the current WAL position", m);
            if (!set_contains(&s->effective, m))
                sim_fail(s, "%s confirmed before commits wait for it", m);
            s->confirms++;
        }
    }
    if (ours)
        for (int i = 0; i < old->n_members; i++)
            if (!sync_has(k, old->members[i]))
                s->removals++;
}

static void check_ssn(Sim *s, const SyncStep *st)
{
    const SsnSet *n = &st->ssn;
    if (n->block && n->n)
        sim_fail(s, "SSN_BLOCK with names");
    if (n->n > (s->node_count > 0 ? s->node_count : 1))
        sim_fail(s, "%d synchronous standbys for synchronous_node_count %d", n->n, s->node_count);
    for (int i = 0; i < n->n; i++)
        if (strcasecmp(n->names[i], ME) == 0 || is_nosync(s, n->names[i]) || !sb_get(s, n->names[i]))
            sim_fail(s, "%s may not be a synchronous standby", n->names[i]);
    if (!key_ours(&s->key))
        return;
    if (s->strict && !n->block && n->n == 0)
        sim_fail(s, "strict mode: synchronous_standby_names emptied");
    /* commits acknowledged under the new setting must be on every member that may be promoted */
    if (!n->block)
        for (int i = 0; i < s->key.n_members; i++)
            if (s->key.catchup[i] != LSN_PENDING && !set_contains(n, s->key.members[i]))
                sim_fail(s, "synchronous_standby_names stops naming %s while it stays in the sync key",
                         s->key.members[i]);
}

/* One tick: observe, plan, check the step, apply its effect, check the invariant. */
static void sim_step(Sim *s)
{
    Obs o;
    sim_observe(s, &o);
    SyncStep *st = &s->last;
    memset(st, 0x5a, sizeof(*st));
    sync_plan(&o.in, st);
    s->tick++;
    if ((unsigned)st->kind > SYNC_SET_SSN)
        sim_fail(s, "step kind %d", (int)st->kind);
    if (!memchr(st->reason, '\0', sizeof(st->reason)) || st->reason[0] == '\0')
        sim_fail(s, "step without a reason");
    s->counts[st->kind]++;
    SyncStep again;
    sync_plan(&o.in, &again);
    if (memcmp(st, &again, sizeof(again)) != 0)
        sim_fail(s, "two calls with the same input disagree");

    bool lost = s->rng && rnd_below(s, 100) < s->lose_pct;
    if (st->kind == SYNC_WRITE_KEY) {
        check_write(s, &o, st);
        if (!lost) {
            int64_t rev = s->key.mod_revision;
            s->key = st->key;
            s->key.present = true;
            s->key.mod_revision = rev + 1;
        }
    } else if (st->kind == SYNC_SET_SSN) {
        check_ssn(s, st);
        if (!lost) {
            s->applied = st->ssn;
            s->changed_ms = s->now_ms;
            s->effective_at_ms = s->now_ms + s->lag_ms;
        }
    }
    sim_check(s, "step");
}

#define EXPECT(s, kind, reason) expect_step((s), (kind), (reason), __LINE__)
#define EXPECT_KEY(s, spec) expect_key((s), (spec), __LINE__)
#define EXPECT_SSN(s, text) expect_ssn((s), (text), __LINE__)

static void expect_step(Sim *s, SyncStepKind kind, const char *reason, int line)
{
    sim_step(s);
    if (s->last.kind != kind || (reason && !strstr(s->last.reason, reason)))
        sim_fail(s, "line %d: want %s ~\"%s\", got %s \"%s\"", line, kind_name(kind), reason ? reason : "*",
                 kind_name(s->last.kind), s->last.reason);
}

/* spec: "name=0 name=P name=L ..." (L: some catch-up LSN), in any order; "" = empty key of ours */
static void expect_key(Sim *s, const char *spec, int line)
{
    const SyncState *k = &s->key;
    if (!key_ours(k))
        sim_fail(s, "line %d: want our key {%s}", line, spec);
    char buf[256];
    str_copy(buf, sizeof(buf), spec);
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save), n++) {
        char *eq = strchr(t, '=');
        assert_non_null(eq);
        *eq = '\0';
        Lsn c = sync_catchup(k, t);
        bool ok = sync_has(k, t) && (eq[1] == '0' ? c == 0 : eq[1] == 'P' ? c == LSN_PENDING
                                                                            : c != 0 && c != LSN_PENDING);
        if (!ok)
            sim_fail(s, "line %d: want key {%s}", line, spec);
    }
    if (n != k->n_members)
        sim_fail(s, "line %d: want key {%s}", line, spec);
}

static void expect_ssn(Sim *s, const char *text, int line)
{
    char got[512];
    ssn_format(&s->applied, got, sizeof(got));
    if (strcmp(got, text) != 0)
        sim_fail(s, "line %d: want synchronous_standby_names '%s'", line, text);
}

/* Steps (tick_ms apart) until the planner calls the state stable; returns the ticks used. */
static int run_until_stable(Sim *s, int max_ticks, int64_t tick_ms)
{
    for (int i = 1; i <= max_ticks; i++) {
        sim_step(s);
        if (s->last.kind == SYNC_NOTHING && strstr(s->last.reason, "stable"))
            return i;
        sim_advance(s, tick_ms);
    }
    sim_fail(s, "not stable after %d ticks", max_ticks);
    return -1;
}

/* ---- synchronous_standby_names text ---- */

static void test_ssn_text(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool ok, block;
        const char *names; /* "a|b" */
    } rows[] = {
        {"", true, false, ""},
        {"   ", true, false, ""},
        {SSN_BLOCK, true, true, ""},
        {"pgvigil_no_sync_standby", true, true, ""},
        {"FIRST 1 (\"node2\")", true, false, "node2"},
        {"FIRST 2 (a,b)", true, false, "a|b"},
        {"FIRST 2 (\"a\", \"b\")", true, false, "a|b"},
        {"first 2 ( a , b )", true, false, "a|b"},
        {"ANY 1 (a)", true, false, "a"},
        {"a,b", true, false, "a|b"},
        {"a, b", true, false, "a|b"},
        {" node2", true, false, "node2"},
        {"FIRST 1 (\"my node\")", true, false, "my node"},
        {"FIRST 1 (\"a,b\")", true, false, "a,b"},
        {"\"Node2\",node3", true, false, "Node2|node3"},
        {"a,A,b", true, false, "a|b"},
        {"FIRST 2 a,b", false, false, ""},
        {"ANY 2", false, false, ""},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        SsnSet got, want;
        memset(&got, 0x5a, sizeof(got));
        bool ok = ssn_parse(rows[i].text, &got);
        if (ok != rows[i].ok)
            fail_msg("ssn_parse(\"%s\") returned %d", rows[i].text, ok);
        if (!ok)
            continue;
        memset(&want, 0, sizeof(want));
        want.block = rows[i].block;
        char buf[256];
        str_copy(buf, sizeof(buf), rows[i].names);
        char *save = NULL;
        for (char *t = strtok_r(buf, "|", &save); t; t = strtok_r(NULL, "|", &save))
            str_copy(want.names[want.n++], NAME_MAX_LEN, t);
        if (!ssn_equal(&got, &want))
            fail_msg("ssn_parse(\"%s\"): %d names, block %d", rows[i].text, got.n, got.block);
        for (int j = 0; j < want.n; j++)
            assert_string_equal(got.names[j], want.names[j]);
        /* round trip through the text we write */
        char text[1024];
        SsnSet back;
        ssn_format(&got, text, sizeof(text));
        assert_true(ssn_parse(text, &back));
        if (!ssn_equal(&got, &back))
            fail_msg("round trip of \"%s\" via \"%s\"", rows[i].text, text);
    }

    SsnSet none;
    memset(&none, 0x5a, sizeof(none));
    assert_true(ssn_parse(NULL, &none));
    assert_false(none.block);
    assert_int_equal(none.n, 0);

    char text[1024];
    SsnSet s;
    memset(&s, 0, sizeof(s));
    ssn_format(&s, text, sizeof(text));
    assert_string_equal(text, "");
    s.block = true;
    ssn_format(&s, text, sizeof(text));
    assert_string_equal(text, SSN_BLOCK);
    names_set("node2", &s);
    ssn_format(&s, text, sizeof(text));
    assert_string_equal(text, "FIRST 1 (\"node2\")");
    names_set("node2,node3", &s);
    ssn_format(&s, text, sizeof(text));
    assert_string_equal(text, "FIRST 2 (\"node2\",\"node3\")");

    /* at most MAX_SYNC names, longest names: the full text fits a large buffer, and a small
     * one is cut, terminated, never overrun */
    SsnSet big;
    memset(&big, 0, sizeof(big));
    assert_true(ssn_parse("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t", &big));
    assert_int_equal(big.n, MAX_SYNC);
    memset(&big, 0, sizeof(big));
    for (int i = 0; i < MAX_SYNC; i++) {
        memset(big.names[i], 'a' + i, NAME_MAX_LEN - 1);
        big.names[i][NAME_MAX_LEN - 1] = '\0';
    }
    big.n = MAX_SYNC;
    char large[2048];
    ssn_format(&big, large, sizeof(large));
    SsnSet back;
    assert_true(ssn_parse(large, &back));
    assert_true(ssn_equal(&big, &back));
    for (size_t sz = 1; sz < 40; sz += 3) {
        char *small = xmalloc(sz);
        ssn_format(&big, small, sz);
        assert_true(strlen(small) < sz);
        free(small);
    }
    char tiny[4];
    s.block = true;
    s.n = 0;
    ssn_format(&s, tiny, sizeof(tiny));
    assert_string_equal(tiny, "\"pg");
}

static void test_ssn_equal(void **state)
{
    (void)state;
    SsnSet a, b;
    names_set("node2,node3", &a);
    names_set("NODE3,node2", &b);
    assert_true(ssn_equal(&a, &b));
    names_set("node2", &b);
    assert_false(ssn_equal(&a, &b));
    names_set("node2,node4", &b);
    assert_false(ssn_equal(&a, &b));
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_true(ssn_equal(&a, &b));
    b.block = true;
    assert_false(ssn_equal(&a, &b));
    a.block = true;
    assert_true(ssn_equal(&a, &b));
}

/* ---- sync_may_promote ---- */

static void test_may_promote(void **state)
{
    (void)state;
    SyncState k;
    memset(&k, 0, sizeof(k));
    assert_false(sync_may_promote(&k, "node2", 0x5000)); /* absent key */
    key_set(&k, "node1", "node2,node3,node4");
    k.catchup[1] = LSN_PENDING;
    k.catchup[2] = 0x5000;
    static const struct {
        const char *name;
        Lsn lsn;
        bool want;
    } rows[] = {
        {"node2", 0, true},             /* no catch-up entry: any position */
        {"node2", 0x10, true},
        {"NODE2", 0x10, true},
        {"node3", 0, false},            /* pending: never, whatever its position */
        {"node3", 0x7FFFFFFFFFFFFFFFull, false},
        {"node3", LSN_PENDING - 1, false},
        {"node3", LSN_PENDING, false},
        {"node4", 0, false},
        {"node4", 0x4FFF, false},
        {"node4", 0x5000, true},
        {"node4", 0x5001, true},
        {"node5", 0x9000, false},       /* not in the key */
        {"node1", 0x9000, false},
        {"", 0x9000, false},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        if (sync_may_promote(&k, rows[i].name, rows[i].lsn) != rows[i].want)
            fail_msg("sync_may_promote(%s at %" PRIX64 ") != %d", rows[i].name, rows[i].lsn, rows[i].want);
    assert_false(sync_may_promote(&k, NULL, 0x9000));
    k.present = false;
    assert_false(sync_may_promote(&k, "node2", 0x9000));
}

/* ---- adopting the key of a previous leader ---- */

static void test_adopt(void **state)
{
    (void)state;
    Sim s;

    /* a key left by node0 naming us and node2, ssn still naming node2: block first */
    sim_init(&s);
    key_set(&s.key, "node0", "node1,node2");
    names_set("node2", &s.applied);
    s.effective = s.applied;
    s.sb[0].mode = SB_FOLLOW;
    s.writes = false;
    EXPECT(&s, SYNC_SET_SSN, "taking over");
    assert_true(s.applied.block);
    EXPECT_SSN(&s, SSN_BLOCK);
    EXPECT(&s, SYNC_WRITE_KEY, "taking over the sync key");
    EXPECT_KEY(&s, "");
    EXPECT(&s, SYNC_WRITE_KEY, "adding");
    EXPECT_KEY(&s, "node2=P");
    sim_free(&s);

    /* just promoted (SSN_BLOCK configured): the key is emptied at once */
    static const bool stricts[] = {false, true};
    for (size_t i = 0; i < ARRAY_LEN(stricts); i++) {
        sim_init(&s);
        s.strict = stricts[i];
        key_set(&s.key, "node0", "node1,node2");
        EXPECT(&s, SYNC_WRITE_KEY, "taking over the sync key");
        EXPECT_KEY(&s, "");
        sim_advance(&s, 1000);
        if (s.strict) {
            /* no standby: keep holding commits */
            EXPECT(&s, SYNC_NOTHING, "stable");
            EXPECT_SSN(&s, SSN_BLOCK);
            sim_advance(&s, 5000);
            assert_int_equal(s.acked, BASE_LSN);
        } else {
            EXPECT(&s, SYNC_SET_SSN, "no synchronous standby");
            EXPECT_SSN(&s, "");
            EXPECT(&s, SYNC_NOTHING, "stable");
            sim_advance(&s, 1000);
            assert_int_equal(s.acked, s.wal);
        }
        sim_free(&s);
    }

    /* no key at all, ssn '' (agent restarted under a primary): block, then write */
    sim_init(&s);
    memset(&s.applied, 0, sizeof(s.applied));
    s.effective = s.applied;
    EXPECT(&s, SYNC_SET_SSN, "holding commits");
    EXPECT(&s, SYNC_WRITE_KEY, "taking over the sync key");
    EXPECT_KEY(&s, "");
    sim_free(&s);

    /* a key with no leader is not ours either */
    sim_init(&s);
    key_set(&s.key, "", "node2");
    EXPECT(&s, SYNC_WRITE_KEY, "taking over the sync key");
    EXPECT_KEY(&s, "");
    sim_free(&s);

    /* our own key, whatever the case of our name: nothing to adopt */
    sim_init(&s);
    sim_own(&s, "node2");
    str_copy(s.key.leader, sizeof(s.key.leader), "NODE1");
    EXPECT(&s, SYNC_NOTHING, "stable");
    sim_free(&s);
}

/* ---- no standby streaming ---- */

static void test_no_standby(void **state)
{
    (void)state;
    Sim s;
    static const char *const lists[] = {"node2", "node2,node3"};
    for (size_t i = 0; i < ARRAY_LEN(lists); i++) {
        /* non-strict: the key is emptied first, then commits are acknowledged alone */
        sim_init(&s);
        s.node_count = (int)i + 1;
        sim_own(&s, lists[i]);
        sim_advance(&s, 1000);
        EXPECT(&s, SYNC_NOTHING, "stable");
        s.sb[0].mode = s.sb[1].mode = SB_DOWN;
        sim_advance(&s, 1000);
        Lsn held = s.acked;
        assert_true(held < s.wal);
        EXPECT(&s, SYNC_WRITE_KEY, "emptying the sync key");
        EXPECT_KEY(&s, "");
        EXPECT_SSN(&s, lists[i][5] ? "FIRST 2 (\"node2\",\"node3\")" : "FIRST 1 (\"node2\")");
        EXPECT(&s, SYNC_SET_SSN, "no synchronous standby available");
        EXPECT_SSN(&s, "");
        sim_advance(&s, 1000);
        assert_int_equal(s.acked, s.wal);
        EXPECT(&s, SYNC_NOTHING, "stable");
        sim_free(&s);

        /* strict: keeps waiting on the standbys it has */
        sim_init(&s);
        s.strict = true;
        s.node_count = (int)i + 1;
        sim_own(&s, lists[i]);
        s.sb[0].mode = s.sb[1].mode = SB_DOWN;
        sim_advance(&s, 1000);
        held = s.acked;
        for (int t = 0; t < 5; t++) {
            EXPECT(&s, SYNC_NOTHING, "stable");
            sim_advance(&s, 1000);
        }
        EXPECT_KEY(&s, i ? "node2=0 node3=0" : "node2=0");
        EXPECT_SSN(&s, i ? "FIRST 2 (\"node2\",\"node3\")" : "FIRST 1 (\"node2\")");
        assert_int_equal(s.acked, held);
        /* it comes back: nothing to redo */
        s.sb[0].mode = s.sb[1].mode = SB_FOLLOW;
        sim_advance(&s, 200);
        EXPECT(&s, SYNC_NOTHING, "stable");
        assert_int_equal(s.acked, s.wal);
        sim_free(&s);
    }

    /* strict with SSN '' (e.g. strict just turned on): the key goes, then commits are held */
    sim_init(&s);
    sim_own(&s, "node2");
    s.sb[0].mode = SB_DOWN;
    EXPECT(&s, SYNC_WRITE_KEY, "emptying");
    EXPECT(&s, SYNC_SET_SSN, "no synchronous standby");
    sim_advance(&s, 500);
    s.strict = true;
    EXPECT(&s, SYNC_SET_SSN, NULL);
    EXPECT_SSN(&s, SSN_BLOCK);
    EXPECT(&s, SYNC_NOTHING, "stable");
    sim_free(&s);
}

/* ---- one standby appears: the full sequence ---- */

static void test_one_standby_appears(void **state)
{
    (void)state;
    Sim s;
    sim_init(&s);
    EXPECT(&s, SYNC_WRITE_KEY, "taking over the sync key");
    EXPECT(&s, SYNC_SET_SSN, "no synchronous standby");
    EXPECT_SSN(&s, "");
    sim_advance(&s, 1000);
    assert_int_equal(s.acked, s.wal);

    /* node2 connects, behind: commits acknowledged so far are not on it */
    s.sb[0].mode = SB_STUCK;
    sim_advance(&s, 100);
    assert_true(s.sb[0].flush < s.acked);
    EXPECT(&s, SYNC_WRITE_KEY, "adding");
    EXPECT_KEY(&s, "node2=P");
    EXPECT(&s, SYNC_SET_SSN, "switching");
    EXPECT_SSN(&s, "FIRST 1 (\"node2\")");
    EXPECT(&s, SYNC_NOTHING, "in force");
    sim_advance(&s, 250);
    EXPECT(&s, SYNC_NOTHING, "in force");
    sim_advance(&s, 200); /* 450 ms */
    EXPECT(&s, SYNC_NOTHING, "in force");
    sim_advance(&s, 50);  /* 500 ms, but pg_stat_replication does not say sync yet */
    s.report_async = "node2";
    EXPECT(&s, SYNC_NOTHING, "in force");
    s.report_async = NULL;
    Lsn at = s.wal;
    EXPECT(&s, SYNC_WRITE_KEY, "recording the position");
    EXPECT_KEY(&s, "node2=L");
    assert_int_equal(sync_catchup(&s.key, "node2"), at);
    assert_true(s.acked <= at); /* everything acknowledged so far is below it */

    /* commits now wait for node2, which is stuck */
    Lsn held = s.acked;
    sim_advance(&s, 1000);
    assert_int_equal(s.acked, held);
    EXPECT(&s, SYNC_NOTHING, "catch up");
    assert_false(sync_may_promote(&s.key, "node2", s.sb[0].flush));
    s.sb[0].flush = at - 1;
    EXPECT(&s, SYNC_NOTHING, "catch up");
    s.sb[0].flush = at;
    EXPECT(&s, SYNC_WRITE_KEY, "caught up");
    EXPECT_KEY(&s, "node2=0");
    s.sb[0].mode = SB_FOLLOW;
    for (int i = 0; i < 3; i++) {
        sim_advance(&s, 1000);
        EXPECT(&s, SYNC_NOTHING, "stable");
    }
    assert_int_equal(s.acked, s.wal);
    sim_free(&s);
}

/* ---- replacing a dead synchronous standby ---- */

static void test_replace_dead_standby(void **state)
{
    (void)state;
    static const bool stricts[] = {false, true};
    for (size_t v = 0; v < ARRAY_LEN(stricts); v++) {
        Sim s;
        sim_init(&s);
        s.strict = stricts[v];
        sim_own(&s, "node2");
        s.sb[1].mode = SB_FOLLOW;
        sim_advance(&s, 1000);
        EXPECT(&s, SYNC_NOTHING, "stable");

        /* node2 dies; node3, asynchronous so far, lags behind what node2 acknowledged */
        s.sb[0].mode = SB_DOWN;
        s.sb[1].mode = SB_STUCK;
        s.sb[1].flush = s.acked - 0x200;
        Lsn switched = 0; /* WAL position sampled once commits wait for node3 */
        int caught = -1;
        char kinds[64] = "";
        for (int t = 0; t < 60; t++) {
            sim_step(&s);
            if (s.last.kind != SYNC_NOTHING) {
                size_t off = strlen(kinds);
                str_fmt(kinds + off, sizeof(kinds) - off, "%c", s.last.kind == SYNC_WRITE_KEY ? 'K' : 'S');
            }
            if (s.last.kind == SYNC_NOTHING && strstr(s.last.reason, "stable"))
                break;
            for (int sub = 0; sub < 4; sub++) {
                sim_sub(&s);
                if (!switched && set_contains(&s.effective, "node3"))
                    switched = s.wal;
                /* node3 never counts as complete before it flushed past that position */
                if (sync_has(&s.key, "node3") && sync_catchup(&s.key, "node3") == 0 &&
                    (!switched || s.sb[1].flush < switched))
                    sim_fail(&s, "node3 is in the key without a catch-up entry, but may lack commits node2 acknowledged");
            }
            if (sync_catchup(&s.key, "node3") && sync_catchup(&s.key, "node3") != LSN_PENDING && caught < 0)
                caught = t;
            if (caught >= 0 && t >= caught + 2)
                s.sb[1].mode = SB_FOLLOW;
        }
        EXPECT_KEY(&s, "node3=0");
        EXPECT_SSN(&s, "FIRST 1 (\"node3\")");
        assert_true(switched != 0);
        /* add node3, drop node2, switch, confirm, caught up */
        assert_string_equal(kinds, "KKSKK");

        /* node2 comes back: node3 stays, node2 is not re-added */
        s.sb[0].mode = SB_FOLLOW;
        s.sb[0].flush = s.wal;
        sim_advance(&s, 1000);
        EXPECT(&s, SYNC_NOTHING, "stable");
        EXPECT_KEY(&s, "node3=0");
        sim_free(&s);
    }
}

/* Shrinking: synchronous_node_count 2 -> 1 with one standby lagging. The member leaving is
 * dropped from the key before commits stop waiting for it. */
static void test_remove_member(void **state)
{
    (void)state;
    Sim s;
    sim_init(&s);
    s.node_count = 2;
    sim_own(&s, "node2,node3");
    sim_advance(&s, 1000);
    EXPECT(&s, SYNC_NOTHING, "stable");
    s.sb[1].mode = SB_STUCK;
    sim_advance(&s, 500);
    s.node_count = 1;
    EXPECT(&s, SYNC_WRITE_KEY, NULL);
    EXPECT_KEY(&s, "node2=0");
    EXPECT_SSN(&s, "FIRST 2 (\"node2\",\"node3\")");
    EXPECT(&s, SYNC_SET_SSN, NULL);
    EXPECT_SSN(&s, "FIRST 1 (\"node2\")");
    sim_advance(&s, 1000);
    assert_int_equal(s.acked, s.wal);
    EXPECT(&s, SYNC_NOTHING, "stable");
    sim_free(&s);

    /* count 2, one of the two dies, no replacement: the same, in strict mode too */
    static const bool stricts[] = {false, true};
    for (size_t v = 0; v < ARRAY_LEN(stricts); v++) {
        sim_init(&s);
        s.strict = stricts[v];
        s.node_count = 2;
        sim_own(&s, "node2,node3");
        s.sb[1].mode = SB_DOWN;
        sim_advance(&s, 500);
        EXPECT(&s, SYNC_WRITE_KEY, NULL);
        EXPECT_KEY(&s, "node2=0");
        EXPECT(&s, SYNC_SET_SSN, NULL);
        EXPECT_SSN(&s, "FIRST 1 (\"node2\")");
        run_until_stable(&s, 5, 200);
        sim_free(&s);
    }
}

/* ---- choosing standbys ---- */

static void test_nosync_never_chosen(void **state)
{
    (void)state;
    Sim s;
    sim_init(&s);
    s.sb[3].mode = SB_FOLLOW; /* node5, nosync, the only one streaming */
    run_until_stable(&s, 10, 300);
    EXPECT_KEY(&s, "");
    EXPECT_SSN(&s, "");
    /* node2 appears, far behind node5: node2 it is */
    s.sb[0].mode = SB_STUCK;
    s.sb[0].flush = BASE_LSN + 1;
    EXPECT(&s, SYNC_WRITE_KEY, "adding");
    EXPECT_KEY(&s, "node2=P");
    s.sb[0].mode = SB_FOLLOW;
    run_until_stable(&s, 20, 300);
    EXPECT_KEY(&s, "node2=0");
    EXPECT_SSN(&s, "FIRST 1 (\"node2\")");
    sim_free(&s);

    sim_init(&s);
    s.strict = true;
    s.node_count = 3;
    s.sb[3].mode = SB_FOLLOW;
    run_until_stable(&s, 10, 300);
    EXPECT_KEY(&s, "");
    EXPECT_SSN(&s, SSN_BLOCK);
    sim_free(&s);
}

static void test_node_count_2(void **state)
{
    (void)state;
    Sim s;
    sim_init(&s);
    s.node_count = 2;
    s.sb[0].mode = s.sb[1].mode = SB_FOLLOW;
    s.sb[2].mode = SB_STUCK; /* node4, behind */
    sim_advance(&s, 200);
    EXPECT(&s, SYNC_WRITE_KEY, "taking over the sync key");
    EXPECT(&s, SYNC_WRITE_KEY, "adding");
    EXPECT_KEY(&s, "node2=P node3=P");
    EXPECT(&s, SYNC_SET_SSN, NULL);
    EXPECT_SSN(&s, "FIRST 2 (\"node2\",\"node3\")");
    sim_advance(&s, 500);
    EXPECT(&s, SYNC_WRITE_KEY, "recording");
    EXPECT_KEY(&s, "node2=L node3=L");
    sim_advance(&s, 100);
    EXPECT(&s, SYNC_WRITE_KEY, "caught up");
    EXPECT_KEY(&s, "node2=0 node3=0");
    sim_advance(&s, 100);
    EXPECT(&s, SYNC_NOTHING, "stable");

    /* node3 dies: node4 replaces it, node2 stays synchronous throughout */
    s.sb[1].mode = SB_DOWN;
    s.sb[2].mode = SB_FOLLOW;
    run_until_stable(&s, 30, 200);
    EXPECT_KEY(&s, "node2=0 node4=0");
    EXPECT_SSN(&s, "FIRST 2 (\"node2\",\"node4\")");
    sim_free(&s);

    /* count 2 with a single standby: FIRST 1 */
    sim_init(&s);
    s.node_count = 2;
    s.sb[0].mode = SB_FOLLOW;
    run_until_stable(&s, 20, 300);
    EXPECT_KEY(&s, "node2=0");
    EXPECT_SSN(&s, "FIRST 1 (\"node2\")");
    sim_free(&s);
}

static void test_prefer_key_members(void **state)
{
    (void)state;
    Sim s;
    /* node3 is in the key; node2 is further ahead: node3 stays */
    sim_init(&s);
    sim_own(&s, "node3");
    s.sb[0].mode = SB_FOLLOW;
    s.sb[1].mode = SB_STUCK;
    for (int i = 0; i < 3; i++) {
        sim_advance(&s, 1000);
        EXPECT(&s, SYNC_NOTHING, "stable");
    }
    EXPECT_KEY(&s, "node3=0");
    sim_free(&s);

    /* nobody in the key: the most advanced one */
    sim_init(&s);
    s.sb[0].mode = SB_STUCK;
    s.sb[1].mode = SB_FOLLOW;
    s.sb[2].mode = SB_STUCK;
    run_until_stable(&s, 20, 300);
    EXPECT_KEY(&s, "node3=0");
    sim_free(&s);

    /* equal positions: by name */
    sim_init(&s);
    s.sb[1].mode = s.sb[2].mode = SB_FOLLOW;
    run_until_stable(&s, 20, 300);
    EXPECT_KEY(&s, "node3=0");
    sim_free(&s);
}

/* A pending member that stops streaming before it is confirmed must not hold commits forever
 * in non-strict mode, and never becomes promotable. */
static void test_pending_member_goes_away(void **state)
{
    (void)state;
    Sim s;
    sim_init(&s);
    EXPECT(&s, SYNC_WRITE_KEY, "taking over");
    EXPECT(&s, SYNC_SET_SSN, NULL);
    s.sb[0].mode = SB_FOLLOW;
    EXPECT(&s, SYNC_WRITE_KEY, "adding");
    EXPECT(&s, SYNC_SET_SSN, "switching");
    sim_advance(&s, 100);
    s.sb[0].mode = SB_DOWN;
    run_until_stable(&s, 20, 300);
    EXPECT_KEY(&s, "");
    EXPECT_SSN(&s, "");
    sim_advance(&s, 300);
    assert_int_equal(s.acked, s.wal);

    /* the same while catching up */
    s.sb[0].mode = SB_STUCK;
    EXPECT(&s, SYNC_WRITE_KEY, "adding");
    EXPECT(&s, SYNC_SET_SSN, "switching");
    sim_advance(&s, 500);
    EXPECT(&s, SYNC_WRITE_KEY, "recording");
    EXPECT(&s, SYNC_NOTHING, "catch up");
    s.sb[0].mode = SB_DOWN;
    run_until_stable(&s, 20, 300);
    EXPECT_KEY(&s, "");
    EXPECT_SSN(&s, "");
    sim_free(&s);
}

/* ---- randomized simulation ---- */

typedef struct SimConfig {
    int node_count;
    bool strict;
    bool toggle;      /* synchronous_node_count and strict change now and then */
    uint64_t seed;
} SimConfig;

static void random_events(Sim *s, bool toggle)
{
    for (int i = 0; i < N_SB; i++) {
        Standby *b = &s->sb[i];
        int r = rnd_below(s, 1000);
        if (r < 30)
            b->mode = b->mode == SB_DOWN ? SB_FOLLOW : SB_DOWN;
        else if (r < 60 && b->mode != SB_DOWN)
            b->mode = b->mode == SB_FOLLOW ? SB_STUCK : SB_FOLLOW;
        else if (r < 68 && b->mode != SB_DOWN)
            b->mode = b->mode == SB_CATCHUP ? SB_FOLLOW : SB_CATCHUP;
    }
    s->writes = rnd_below(s, 10) != 0;
    s->report_async = rnd_below(s, 100) < 3 ? SB_NAMES[rnd_below(s, N_SB)] : NULL;
    s->lag_ms = rnd_below(s, 401);
    if (toggle && rnd_below(s, 1000) < 5)
        s->node_count = 1 + rnd_below(s, 3);
    if (toggle && rnd_below(s, 1000) < 3)
        s->strict = !s->strict;
}

static void random_run(const SimConfig *cfg, int ticks, int *totals)
{
    Sim s;
    sim_init(&s);
    s.rng = cfg->seed;
    s.lose_pct = 5;
    s.node_count = cfg->node_count;
    s.strict = cfg->strict;
    key_set(&s.key, "node0", "node2,node3"); /* left by the previous leader */
    for (int t = 0; t < ticks; t++) {
        random_events(&s, cfg->toggle);
        sim_step(&s);
        sim_advance(&s, SUB_MS * (1 + rnd_below(&s, 30)));
    }

    /* liveness: everything streams again -> settles on min(count, 3) standbys, all complete */
    s.lose_pct = 0;
    s.report_async = NULL;
    s.writes = true;
    for (int i = 0; i < N_SB; i++)
        s.sb[i].mode = SB_FOLLOW;
    run_until_stable(&s, 60, 300);
    int want = s.node_count < 3 ? s.node_count : 3;
    if (s.key.n_members != want || s.applied.n != want || s.applied.block)
        sim_fail(&s, "settled with %d members in the key, %d names in ssn, want %d", s.key.n_members, s.applied.n, want);
    for (int i = 0; i < s.key.n_members; i++)
        if (s.key.catchup[i] || !set_contains(&s.applied, s.key.members[i]))
            sim_fail(&s, "settled key does not match synchronous_standby_names");
    Lsn before = s.acked;
    sim_advance(&s, 300);
    if (s.acked <= before)
        sim_fail(&s, "settled, but commits are not acknowledged");

    /* every standby gone: non-strict acknowledges alone with an empty key, strict holds */
    for (int i = 0; i < N_SB; i++)
        s.sb[i].mode = SB_DOWN;
    run_until_stable(&s, 20, 300);
    before = s.acked;
    sim_advance(&s, 300);
    if (s.strict) {
        if (s.acked != before || s.key.n_members != want)
            sim_fail(&s, "strict mode without standbys");
    } else if (s.key.n_members != 0 || s.applied.n != 0 || s.applied.block || s.acked != s.wal) {
        sim_fail(&s, "non-strict mode without standbys");
    }
    for (int k = 0; k < 3; k++)
        totals[k] += s.counts[k];
    totals[3] += s.confirms;
    totals[4] += s.shrinks;
    totals[5] += s.removals;
    sim_free(&s);
}

static void test_random_simulation(void **state)
{
    (void)state;
    static const SimConfig cfgs[] = {
        {1, false, false, 0x9e3779b97f4a7c15ull},
        {1, true, false, 0x2545f4914f6cdd1dull},
        {2, false, false, 0x853c49e6748fea9bull},
        {2, true, false, 0xda942042e4dd58b5ull},
        {3, false, false, 0x5851f42d4c957f2dull},
        {1, false, true, 0x14057b7ef767814full},
        {2, true, true, 0xd1b54a32d192ed03ull},
        {1, false, true, 0x94d049bb133111ebull},
    };
    int totals[6] = {0};
    for (size_t i = 0; i < ARRAY_LEN(cfgs); i++)
        random_run(&cfgs[i], 3000, totals);
    /* the runs went through every phase often, so the checks are not vacuous */
    print_message("random simulation: %d nothing, %d key writes, %d ssn changes, %d confirmations, "
                  "%d catch-ups, %d removals\n", totals[0], totals[1], totals[2], totals[3], totals[4], totals[5]);
    assert_true(totals[1] > 500);
    assert_true(totals[2] > 500);
    assert_true(totals[3] > 100);
    assert_true(totals[4] > 100);
    assert_true(totals[5] > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ssn_text),
        cmocka_unit_test(test_ssn_equal),
        cmocka_unit_test(test_may_promote),
        cmocka_unit_test(test_adopt),
        cmocka_unit_test(test_no_standby),
        cmocka_unit_test(test_one_standby_appears),
        cmocka_unit_test(test_replace_dead_standby),
        cmocka_unit_test(test_remove_member),
        cmocka_unit_test(test_nosync_never_chosen),
        cmocka_unit_test(test_node_count_2),
        cmocka_unit_test(test_prefer_key_members),
        cmocka_unit_test(test_pending_member_goes_away),
        cmocka_unit_test(test_random_simulation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
