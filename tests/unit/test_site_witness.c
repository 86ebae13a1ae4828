/* The witness protocol of automatic site failover (site_witness.c), round by round on in-memory
 * stores: site a's two members, site b's leader, the witness, and each site's etcd. A site that
 * cannot reach the witness or the other site loses its confirmation; the other site claims only
 * once both of its keys have expired and cannot be refused; the site that comes back can hold
 * neither key again; a member takes another member's key only when it leads the site; a
 * switchover's newer epoch takes the other site's witness key over, a failover's never does; a
 * site that uses another witness is never promoted automatically. */
#include "common/common.h"
#include "common/timeutil.h"
#include "dcs/dcs.h"
#include "ha/site_witness.h"
#include "ha/site_witness_rounds.h"

#include <setjmp.h>
#include <cmocka.h>

typedef struct Fx {
    Config ca, ca2, cb;
    SiteWitness a, a2, b;
    Dcs *wit;               /* the witness store (site a's handle) */
    Dcs *a_etcd, *b_etcd;   /* each site's etcd (its own handles) */
    WitnessStores sa, sa2, sb;
} Fx;

static char s_a[] = "site-a", s_b[] = "site-b", n1[] = "node1", n2[] = "node2", n3[] = "node3", ns[] = "/service/";

static void site_cfg(Config *c, char *scope, char *name, char *peer)
{
    memset(c, 0, sizeof(*c));
    c->scope = scope;
    c->name = name;
    c->namespace_ = ns;
    c->site.peer_scope = peer;
    c->site.automatic = true;
    c->site.witness_ttl = 4;
}

static int setup(void **state)
{
    Fx *f = xcalloc(1, sizeof(*f));
    site_cfg(&f->ca, s_a, n1, s_b);
    site_cfg(&f->ca2, s_a, n2, s_b);
    site_cfg(&f->cb, s_b, n3, s_a);
    site_witness_init(&f->a, &f->ca);
    site_witness_init(&f->a2, &f->ca2);
    site_witness_init(&f->b, &f->cb);
    assert_string_equal(f->a.witness_prefix, f->b.witness_prefix);
    f->wit = dcs_mem_new(f->a.witness_prefix);
    f->a_etcd = dcs_mem_new("/service/site-a/");
    f->b_etcd = dcs_mem_new("/service/site-b/");
    /* every member its own handles (its own leases) */
    f->sa = (WitnessStores){.wit = f->wit, .peer = dcs_mem_attach(f->b_etcd), .own = dcs_mem_attach(f->a_etcd)};
    f->sa2 = (WitnessStores){.wit = dcs_mem_attach(f->wit), .peer = dcs_mem_attach(f->b_etcd),
                             .own = dcs_mem_attach(f->a_etcd)};
    f->sb = (WitnessStores){.wit = dcs_mem_attach(f->wit), .peer = dcs_mem_attach(f->a_etcd), .own = f->b_etcd};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fx *f = *state;
    Dcs *all[] = {f->sa.wit, f->sa.peer, f->sa.own, f->sa2.wit, f->sa2.peer, f->sa2.own, f->sb.wit, f->sb.peer,
                  f->sb.own, f->a_etcd};
    for (size_t i = 0; i < ARRAY_LEN(all); i++)
        dcs_free(all[i]);
    site_witness_free(&f->a);
    site_witness_free(&f->a2);
    site_witness_free(&f->b);
    free(f);
    return 0;
}

static WitnessInput hold(bool take_over)
{
    return (WitnessInput){.mode = WITNESS_HOLD, .my_epoch = 0, .takeover_epoch = -1, .may_take_over = take_over};
}

static WitnessInput observe(void)
{
    return (WitnessInput){.mode = WITNESS_OBSERVE, .my_epoch = -1, .takeover_epoch = -1, .may_claim = true};
}

static void both_rounds(SiteWitness *w, WitnessStores *s, WitnessInput in)
{
    site_witness_round(w, s, &in, 0, true);
    site_witness_round(w, s, &in, 1, true);
}

static bool held(SiteWitness *w)
{
    WitnessInfo wi;
    site_witness_get_info(w, &wi);
    return wi.known && wi.hold_until_ms > mono_ms();
}

static int64_t claimed(SiteWitness *w)
{
    WitnessInfo wi;
    site_witness_get_info(w, &wi);
    return wi.claimed_epoch;
}

/* key's value names text ("" : absent) */
static void key_names(Dcs *d, const char *key, const char *text)
{
    char *v = dcs_mem_get(d, key, NULL);
    if (!text[0] ? v != NULL : !v || !strstr(v, text))
        fail_msg("%s%s: want %s, got %s", d->prefix, key, text[0] ? text : "(absent)", v ? v : "(absent)");
    free(v);
}

/* site a is cut off from the witness and from site b (whose view of a's etcd is cut too), and
 * its keys expire */
static void cut_off_site_a(Fx *f)
{
    dcs_mem_set_down(f->sa.wit, true);
    dcs_mem_set_down(f->sa.peer, true);
    dcs_mem_set_down(f->sb.peer, true);
    both_rounds(&f->a, &f->sa, hold(true));
    dcs_mem_advance(f->wit, 5000);
    dcs_mem_advance(f->b_etcd, 5000);
}

static void test_claim_after_expiry_only(void **state)
{
    Fx *f = *state;
    both_rounds(&f->a, &f->sa, hold(true));
    assert_true(held(&f->a));
    key_names(f->wit, "primary_site", "\"site-a\"");
    key_names(f->b_etcd, "pgvigil_peer_lease", "\"site-a\"");

    /* b watches: a holds, nothing to claim */
    site_witness_round(&f->b, &f->sb, &(WitnessInput){.mode = WITNESS_OBSERVE, .may_claim = true}, 0, true);
    assert_int_equal(claimed(&f->b), 0);

    /* cut off, but its keys still live: still nothing */
    dcs_mem_set_down(f->sa.wit, true);
    dcs_mem_set_down(f->sa.peer, true);
    dcs_mem_set_down(f->sb.peer, true);
    WitnessInput ob = observe();
    site_witness_round(&f->b, &f->sb, &ob, 0, true);
    assert_int_equal(claimed(&f->b), 0);
    key_names(f->wit, "primary_site", "\"site-a\"");

    /* its keys expire: b claims, exclusively */
    dcs_mem_advance(f->wit, 5000);
    dcs_mem_advance(f->b_etcd, 5000);
    site_witness_round(&f->b, &f->sb, &ob, 0, true);
    assert_int_equal(claimed(&f->b), 1);
    key_names(f->wit, "primary_site", "\"site-b\"");
    key_names(f->b_etcd, "pgvigil_site", "\"promoting\"");

    /* a comes back: it can hold neither key again */
    dcs_mem_set_down(f->sa.wit, false);
    dcs_mem_set_down(f->sa.peer, false);
    both_rounds(&f->a, &f->sa, hold(true));
    assert_false(held(&f->a));
    key_names(f->wit, "primary_site", "\"site-b\"");
    key_names(f->b_etcd, "pgvigil_peer_lease", "");
}

static void test_no_claim_while_a_key_lives(void **state)
{
    Fx *f = *state;
    both_rounds(&f->a, &f->sa, hold(true));
    /* a loses the witness only: its lease key in b's etcd still confirms it */
    dcs_mem_set_down(f->sa.wit, true);
    dcs_mem_set_down(f->sb.peer, true);
    dcs_mem_advance(f->wit, 5000);
    both_rounds(&f->a, &f->sa, hold(true));
    assert_true(held(&f->a));
    WitnessInput ob = observe();
    site_witness_round(&f->b, &f->sb, &ob, 0, true);
    assert_int_equal(claimed(&f->b), 0);
    key_names(f->wit, "primary_site", "");
    /* a loses b's etcd only: the witness confirms it */
    dcs_mem_set_down(f->sa.wit, false);
    dcs_mem_set_down(f->sa.peer, true);
    dcs_mem_advance(f->b_etcd, 5000);
    both_rounds(&f->a, &f->sa, hold(true));
    assert_true(held(&f->a));
    site_witness_round(&f->b, &f->sb, &ob, 0, true);
    assert_int_equal(claimed(&f->b), 0);
    /* the witness does not answer b: never a claim */
    cut_off_site_a(f);
    dcs_mem_set_down(f->sb.wit, true);
    site_witness_round(&f->b, &f->sb, &ob, 0, true);
    assert_int_equal(claimed(&f->b), 0);
    /* b's view of a's etcd answers: no claim either */
    dcs_mem_set_down(f->sb.wit, false);
    dcs_mem_set_down(f->sb.peer, false);
    site_witness_round(&f->b, &f->sb, &ob, 0, true);
    assert_int_equal(claimed(&f->b), 0);
    /* a standby leader that may not claim (paused, not running...) does not */
    dcs_mem_set_down(f->sb.peer, true);
    WitnessInput no = ob;
    no.may_claim = false;
    site_witness_round(&f->b, &f->sb, &no, 0, true);
    assert_int_equal(claimed(&f->b), 0);
    site_witness_round(&f->b, &f->sb, &ob, 0, true);
    assert_int_equal(claimed(&f->b), 1);
}

static void test_takeover_within_site(void **state)
{
    Fx *f = *state;
    both_rounds(&f->a, &f->sa, hold(true));
    key_names(f->wit, "primary_site", "\"node1\"");
    /* node2 does not lead: it leaves node1's keys alone */
    both_rounds(&f->a2, &f->sa2, hold(false));
    assert_false(held(&f->a2));
    key_names(f->wit, "primary_site", "\"node1\"");
    assert_true(held(&f->a));
    /* node2 leads now: the keys move to it, node1 holds nothing */
    both_rounds(&f->a2, &f->sa2, hold(true));
    assert_true(held(&f->a2));
    key_names(f->wit, "primary_site", "\"node2\"");
    key_names(f->b_etcd, "pgvigil_peer_lease", "\"node2\"");
    both_rounds(&f->a, &f->sa, hold(false));
    assert_false(held(&f->a));
}

static void test_epoch_takeover_only_after_switchover(void **state)
{
    Fx *f = *state;
    both_rounds(&f->a, &f->sa, hold(true));
    /* b promoted by a failover (kind set: takeover_epoch -1): a's live witness key stays a's */
    WitnessInput hb = hold(true);
    hb.my_epoch = 1;
    site_witness_round(&f->b, &f->sb, &hb, 0, true);
    assert_false(held(&f->b));
    key_names(f->wit, "primary_site", "\"site-a\"");
    /* ... by a switchover (a stopped cleanly first): b's newer epoch takes it */
    hb.takeover_epoch = 1;
    site_witness_round(&f->b, &f->sb, &hb, 0, true);
    assert_true(held(&f->b));
    key_names(f->wit, "primary_site", "\"site-b\"");
}

static void test_other_witness_never_claims(void **state)
{
    Fx *f = *state;
    /* a's lease key says it uses another witness prefix */
    assert_true(f->b_etcd->ops->put(f->b_etcd, "pgvigil_peer_lease",
                                    "{\"site\":\"site-a\",\"epoch\":0,\"member\":\"node1\",\"witness\":\"/other/x/\"}",
                                    false, &(Err){{0}}));
    WitnessInput ob = observe();
    dcs_mem_set_down(f->sb.peer, true);
    site_witness_round(&f->b, &f->sb, &ob, 0, true);
    assert_true(f->b_etcd->ops->del(f->b_etcd, "pgvigil_peer_lease", NULL, NULL, &(Err){{0}}));
    site_witness_round(&f->b, &f->sb, &ob, 0, true);
    assert_int_equal(claimed(&f->b), 0);
    key_names(f->wit, "primary_site", "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_claim_after_expiry_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_claim_while_a_key_lives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_within_site, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_takeover_only_after_switchover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_witness_never_claims, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
