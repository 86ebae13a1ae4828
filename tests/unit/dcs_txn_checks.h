/* get() and txn() of a Dcs, the same checks for the in-memory store and a real etcd (included by
 * test_dcs_mem.c and test_etcd.c). d must be empty under its prefix, with a lease (keepalive
 * called). */
#ifndef PGVIGIL_TEST_DCS_TXN_CHECKS_H
#define PGVIGIL_TEST_DCS_TXN_CHECKS_H

static void check_get_txn(Dcs *d)
{
    Err err = {{0}};
    char *v = NULL;
    int64_t rev = -1, lease = -1;
    bool ok = false;
    assert_true(d->ops->get(d, "k", &v, &rev, &lease, &err));
    assert_null(v);
    assert_int_equal(rev, 0);
    assert_int_equal(lease, 0);

    /* create only if absent, on our lease */
    DcsCmp absent = {"k", 0};
    DcsOp put = {"k", "one", true};
    assert_true(d->ops->txn(d, &absent, 1, &put, 1, &ok, &err));
    assert_true(ok);
    assert_true(d->ops->get(d, "k", &v, &rev, &lease, &err));
    assert_string_equal(v, "one");
    free(v);
    assert_true(rev > 0);
    assert_true(lease == d->ops->lease_id(d) && lease != 0);
    assert_true(d->ops->txn(d, &absent, 1, &put, 1, &ok, &err));
    assert_false(ok);

    /* every compare must hold: a stale revision on one of two fails the whole */
    DcsCmp both[2] = {{"k", rev}, {"guard", 0}};
    DcsOp two[2] = {{"k", "two", false}, {"guard", "g", false}};
    both[0].mod_revision = rev - 1;
    assert_true(d->ops->txn(d, both, 2, two, 2, &ok, &err));
    assert_false(ok);
    both[0].mod_revision = rev;
    assert_true(d->ops->txn(d, both, 2, two, 2, &ok, &err));
    assert_true(ok);
    int64_t rev2 = 0, grev = 0;
    assert_true(d->ops->get(d, "k", &v, &rev2, &lease, &err));
    assert_string_equal(v, "two");
    free(v);
    assert_int_equal(lease, 0);
    assert_true(d->ops->get(d, "guard", &v, &grev, NULL, &err));
    free(v);
    assert_true(rev2 > rev);
    assert_int_equal(grev, rev2);   /* one transaction, one revision */

    /* a NULL value deletes */
    DcsCmp cur = {"k", rev2};
    DcsOp del[2] = {{"k", NULL, false}, {"guard", NULL, false}};
    assert_true(d->ops->txn(d, &cur, 1, del, 2, &ok, &err));
    assert_true(ok);
    assert_true(d->ops->get(d, "k", &v, &rev, NULL, &err));
    assert_null(v);
    assert_true(d->ops->get(d, "guard", &v, NULL, NULL, &err));
    assert_null(v);
}

#endif
