/* Unit tests for the in-memory DCS: etcd's create/cas/delete semantics and revisions, lease
 * expiry by manual time, two simulated agents on one store, the "down" mode, dcs_prefix. */
#include "common/common.h"

#include <setjmp.h>
#include <cmocka.h>

#include "dcs/dcs.h"

#include "dcs_txn_checks.h"

#define PREFIX "/service/t/"

typedef struct Fixture {
    Dcs *a;     /* two agents sharing one store */
    Dcs *b;
} Fixture;

static int setup(void **state)
{
    Fixture *f = xcalloc(1, sizeof(*f));
    f->a = dcs_mem_new(PREFIX);
    f->b = dcs_mem_attach(f->a);
    *state = f;
    return f->a && f->b ? 0 : -1;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    dcs_free(f->a);
    dcs_free(f->b);
    free(f);
    return 0;
}

/* The value of key as b sees it, or NULL; compared then freed. */
static void assert_value(Dcs *d, const char *key, const char *want)
{
    char *got = dcs_mem_get(d, key, NULL);
    if (!want) {
        if (got)
            fail_msg("%s: expected absent, found \"%s\"", key, got);
    } else {
        if (!got)
            fail_msg("%s: expected \"%s\", found nothing", key, want);
        assert_string_equal(got, want);
    }
    free(got);
}

static int64_t mod_rev(Dcs *d, const char *key)
{
    int64_t rev = -1;
    free(dcs_mem_get(d, key, &rev));
    return rev;
}

static void keepalive_ok(Dcs *d, int ttl, bool want_expired)
{
    Err err = {{0}};
    bool expired = !want_expired;
    assert_true(d->ops->keepalive(d, ttl, &expired, &err));
    assert_int_equal(expired, want_expired);
}

static void test_create_if_absent_wins_once(void **state)
{
    Fixture *f = *state;
    Err err = {{0}};
    bool created = false;
    keepalive_ok(f->a, 10, false);
    keepalive_ok(f->b, 10, false);

    assert_true(f->a->ops->create(f->a, "leader", "a", true, &created, &err));
    assert_true(created);
    assert_true(f->b->ops->create(f->b, "leader", "b", true, &created, &err));
    assert_false(created);
    assert_true(f->a->ops->create(f->a, "leader", "a2", true, &created, &err));
    assert_false(created);
    assert_value(f->b, "leader", "a");

    /* on_lease before any keepalive is refused, not silently written without a lease */
    Dcs *c = dcs_mem_attach(f->a);
    created = true;
    assert_false(c->ops->create(c, "initialize", "1", true, &created, &err));
    assert_false(created);
    assert_non_null(strstr(err.msg, "no lease"));
    assert_true(c->ops->create(c, "initialize", "1", false, &created, &err));
    assert_true(created);
    dcs_free(c);
}

static void test_put_and_revisions(void **state)
{
    Fixture *f = *state;
    Err err = {{0}};
    assert_true(f->a->ops->put(f->a, "config", "{}", false, &err));
    int64_t r1 = mod_rev(f->a, "config");
    assert_true(r1 > 1);   /* an empty etcd is at revision 1 */
    assert_true(f->b->ops->put(f->b, "history", "[]", false, &err));
    int64_t r2 = mod_rev(f->a, "history");
    assert_int_equal(r2, r1 + 1);
    assert_true(f->a->ops->put(f->a, "config", "{\"ttl\":20}", false, &err));
    assert_int_equal(mod_rev(f->a, "config"), r2 + 1);
    assert_value(f->a, "config", "{\"ttl\":20}");

    /* load sees the header revision, raw values and per-key revisions */
    Cluster c;
    assert_true(f->b->ops->load(f->b, &c, &err));
    assert_int_equal(c.revision, r2 + 1);
    assert_true(c.has_config);
    assert_int_equal(c.config_mod_revision, r2 + 1);
    assert_int_equal(c.config.ttl, 20);
    assert_string_equal(c.history_json, "[]");
    cluster_free(&c);
}

static void test_cas(void **state)
{
    Fixture *f = *state;
    Err err = {{0}};
    bool swapped = true;
    /* expected NULL: key must be absent */
    assert_true(f->a->ops->cas(f->a, "sync", NULL, "v1", false, &swapped, &err));
    assert_true(swapped);
    assert_true(f->a->ops->cas(f->a, "sync", NULL, "v2", false, &swapped, &err));
    assert_false(swapped);
    assert_true(f->b->ops->cas(f->b, "sync", "other", "v2", false, &swapped, &err));
    assert_false(swapped);
    assert_value(f->a, "sync", "v1");
    assert_true(f->b->ops->cas(f->b, "sync", "v1", "v2", false, &swapped, &err));
    assert_true(swapped);
    assert_value(f->a, "sync", "v2");
    /* an absent key never equals an expected value, not even "" */
    assert_true(f->b->ops->cas(f->b, "nothing", "", "x", false, &swapped, &err));
    assert_false(swapped);
    assert_value(f->a, "nothing", NULL);
}

static void test_cas_rev(void **state)
{
    Fixture *f = *state;
    Err err = {{0}};
    bool swapped = false;
    /* 0: only when absent */
    assert_true(f->a->ops->cas_rev(f->a, "failover", 0, "f1", &swapped, NULL, &err));
    assert_true(swapped);
    int64_t rev = mod_rev(f->a, "failover");
    assert_true(f->b->ops->cas_rev(f->b, "failover", 0, "f2", &swapped, NULL, &err));
    assert_false(swapped);
    assert_true(f->b->ops->cas_rev(f->b, "failover", rev + 1, "f2", &swapped, NULL, &err));
    assert_false(swapped);
    int64_t new_rev = -1;
    assert_true(f->b->ops->cas_rev(f->b, "failover", rev, "f2", &swapped, &new_rev, &err));
    assert_true(swapped);
    assert_value(f->a, "failover", "f2");
    assert_int_equal(new_rev, mod_rev(f->a, "failover"));
    assert_true(new_rev > rev);
    /* the old revision is stale now */
    assert_true(f->a->ops->cas_rev(f->a, "failover", rev, "f3", &swapped, NULL, &err));
    assert_false(swapped);
    assert_value(f->a, "failover", "f2");
}

static void test_get_txn(void **state)
{
    Fixture *f = *state;
    keepalive_ok(f->a, 10, false);
    check_get_txn(f->a);
    /* the lease's key goes with it */
    DcsCmp absent = {"leased", 0};
    DcsOp put = {"leased", "x", true};
    Err err = {{0}};
    bool ok = false;
    assert_true(f->a->ops->txn(f->a, &absent, 1, &put, 1, &ok, &err));
    assert_true(ok);
    dcs_mem_advance(f->a, 11000);
    assert_value(f->a, "leased", NULL);
    dcs_mem_set_down(f->a, true);
    char *v = NULL;
    assert_false(f->a->ops->get(f->a, "leased", &v, NULL, NULL, &err));
    assert_false(f->a->ops->txn(f->a, &absent, 1, &put, 1, &ok, &err));
    assert_false(ok);
}

static void test_del(void **state)
{
    Fixture *f = *state;
    Err err = {{0}};
    bool deleted = true;
    assert_true(f->a->ops->del(f->a, "leader", NULL, &deleted, &err));
    assert_false(deleted);   /* absent */
    assert_true(f->a->ops->put(f->a, "leader", "a", false, &err));
    assert_true(f->b->ops->del(f->b, "leader", "b", &deleted, &err));
    assert_false(deleted);   /* somebody else's leader key is left alone */
    assert_value(f->a, "leader", "a");
    int64_t before = mod_rev(f->a, "leader");
    assert_true(f->a->ops->del(f->a, "leader", "a", &deleted, &err));
    assert_true(deleted);
    assert_value(f->a, "leader", NULL);
    assert_true(f->a->ops->put(f->a, "leader", "b", false, &err));
    assert_true(mod_rev(f->a, "leader") == before + 2);   /* the delete took a revision */
    assert_true(f->a->ops->del(f->a, "leader", NULL, &deleted, &err));
    assert_true(deleted);
    assert_value(f->a, "leader", NULL);

    assert_true(f->a->ops->put(f->a, "members/a", "{}", false, &err));
    assert_true(f->a->ops->put(f->a, "config", "{}", false, &err));
    Dcs *other = dcs_mem_new("/service/other/");
    assert_true(other->ops->put(other, "config", "{}", false, &err));
    assert_true(f->b->ops->del_prefix(f->b, &err));
    assert_value(f->a, "members/a", NULL);
    assert_value(f->a, "config", NULL);
    assert_value(other, "config", "{}");
    dcs_free(other);
}

static void test_lease_expiry(void **state)
{
    Fixture *f = *state;
    Err err = {{0}};
    bool created;
    keepalive_ok(f->a, 10, false);
    assert_true(f->a->ops->create(f->a, "leader", "a", true, &created, &err));
    assert_true(created);
    assert_true(f->a->ops->put(f->a, "members/a", "{}", true, &err));
    assert_true(f->a->ops->put(f->a, "config", "{}", false, &err));

    dcs_mem_advance(f->a, 6000);
    keepalive_ok(f->a, 10, false);        /* renewed: 10 s from now */
    dcs_mem_advance(f->b, 9999);
    assert_value(f->b, "leader", "a");
    int64_t rev_before = mod_rev(f->b, "config");
    dcs_mem_advance(f->b, 1);
    assert_value(f->b, "leader", NULL);
    assert_value(f->b, "members/a", NULL);
    assert_value(f->b, "config", "{}");   /* not on the lease */

    /* both keys went in one revision, as etcd's lease revoke does */
    assert_true(f->b->ops->put(f->b, "x", "1", false, &err));
    assert_int_equal(mod_rev(f->b, "x"), rev_before + 2);

    /* writing on the vanished lease fails like etcd's "lease not found" */
    assert_false(f->a->ops->put(f->a, "members/a", "{}", true, &err));
    assert_non_null(strstr(err.msg, "not found"));

    keepalive_ok(f->a, 10, true);          /* gone: a new lease, and we are told */
    keepalive_ok(f->a, 10, false);
    assert_true(f->a->ops->create(f->a, "leader", "a", true, &created, &err));
    assert_true(created);

    /* a ttl change takes effect at once */
    keepalive_ok(f->a, 2, false);
    dcs_mem_advance(f->a, 2000);
    assert_value(f->a, "leader", NULL);

    Err e2 = {{0}};
    bool expired;
    assert_false(f->a->ops->keepalive(f->a, 0, &expired, &e2));
    assert_non_null(strstr(e2.msg, "ttl"));
}

static void test_revoke(void **state)
{
    Fixture *f = *state;
    Err err = {{0}};
    bool created;
    assert_true(f->a->ops->revoke(f->a, &err));   /* no lease yet: nothing to do */
    keepalive_ok(f->a, 30, false);
    assert_true(f->a->ops->create(f->a, "leader", "a", true, &created, &err));
    assert_true(f->a->ops->revoke(f->a, &err));
    assert_value(f->b, "leader", NULL);
    keepalive_ok(f->a, 30, false);    /* a revoked lease is not "expired" */
}

static void test_shared_store_two_agents(void **state)
{
    Fixture *f = *state;
    Err err = {{0}};
    bool created;
    keepalive_ok(f->a, 10, false);
    dcs_mem_advance(f->a, 5000);
    keepalive_ok(f->b, 10, false);           /* b's lease ends 5 s after a's */
    assert_true(f->a->ops->create(f->a, "leader", "a", true, &created, &err));
    assert_true(f->a->ops->put(f->a, "members/a", "{\"role\":\"primary\"}", true, &err));
    assert_true(f->b->ops->put(f->b, "members/b", "{\"role\":\"replica\"}", true, &err));

    Cluster c;
    assert_true(f->b->ops->load(f->b, &c, &err));
    assert_string_equal(c.leader, "a");
    assert_int_equal(c.n_members, 2);
    assert_non_null(cluster_member(&c, "b"));
    int64_t seen = c.revision;
    cluster_free(&c);

    /* a stops renewing: only its keys go */
    dcs_mem_advance(f->b, 5000);
    assert_true(f->b->ops->watch(f->b, seen, 1000, &err));
    assert_true(f->b->ops->load(f->b, &c, &err));
    assert_string_equal(c.leader, "");
    assert_int_equal(c.n_members, 1);
    assert_string_equal(c.members[0].name, "b");
    assert_false(f->b->ops->watch(f->b, c.revision, 1000, &err));
    assert_string_equal(err.msg, "");
    cluster_free(&c);

    /* b takes over; the store outlives the handle that created it */
    assert_true(f->b->ops->create(f->b, "leader", "b", true, &created, &err));
    assert_true(created);
    dcs_free(f->a);
    f->a = dcs_mem_attach(f->b);
    assert_value(f->a, "leader", "b");
    assert_null(dcs_mem_attach(NULL));
}

static void test_down(void **state)
{
    Fixture *f = *state;
    Err err = {{0}};
    bool flag;
    Cluster c;
    keepalive_ok(f->a, 10, false);
    assert_true(f->a->ops->put(f->a, "members/a", "{}", true, &err));
    dcs_mem_set_down(f->a, true);

#define ASSERT_DOWN(call)                              \
    do {                                               \
        memset(&err, 0, sizeof(err));                  \
        assert_false(call);                            \
        assert_string_equal(err.msg, "dcs down");      \
    } while (0)
    ASSERT_DOWN(f->a->ops->load(f->a, &c, &err));
    cluster_free(&c);
    ASSERT_DOWN(f->a->ops->keepalive(f->a, 10, &flag, &err));
    ASSERT_DOWN(f->a->ops->create(f->a, "leader", "a", true, &flag, &err));
    ASSERT_DOWN(f->a->ops->put(f->a, "k", "v", false, &err));
    ASSERT_DOWN(f->a->ops->cas(f->a, "k", "v", "w", false, &flag, &err));
    ASSERT_DOWN(f->a->ops->cas_rev(f->a, "k", 0, "w", &flag, NULL, &err));
    ASSERT_DOWN(f->a->ops->del(f->a, "k", NULL, &flag, &err));
    ASSERT_DOWN(f->a->ops->del_prefix(f->a, &err));
    ASSERT_DOWN(f->a->ops->watch(f->a, 0, 100, &err));
    ASSERT_DOWN(f->a->ops->revoke(f->a, &err));
#undef ASSERT_DOWN

    /* the other agent still reaches the store, and sees a's lease run out */
    assert_true(f->b->ops->put(f->b, "k", "v", false, &err));
    dcs_mem_advance(f->b, 10000);
    assert_value(f->b, "members/a", NULL);

    dcs_mem_set_down(f->a, false);
    keepalive_ok(f->a, 10, true);
    assert_value(f->a, "k", "v");
}

static void test_prefix(void **state)
{
    static const struct {
        const char *ns, *scope, *want;
    } cases[] = {
        {"/service/", "demo", "/service/demo/"},
        {"/service", "demo", "/service/demo/"},
        {"service", "demo", "/service/demo/"},
        {"//a/b//", "demo", "/a/b/demo/"},
        {NULL, "demo", "/service/demo/"},
        {"", "demo", "/demo/"},
        {"/", "demo", "/demo/"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *p = dcs_prefix(cases[i].ns, cases[i].scope);
        assert_string_equal(p, cases[i].want);
        free(p);
    }
    dcs_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_if_absent_wins_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_and_revisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cas_rev, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_txn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_store_two_agents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_down, setup, teardown),
        cmocka_unit_test(test_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
