/* pgvigil_aa's conflict policies (pgext/aa/pgvigil_aa_resolve.c): the ordering policies give
 * the same winner from both sides of a conflict (what makes the nodes converge), ties included. */
#include "pgvigil_aa_resolve.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* the winner seen from node x's side must be the other side's loser */
static void assert_symmetric(AaPolicy p, AaVersion x, AaVersion y)
{
    assert_true(aa_remote_wins(p, &x, &y) != aa_remote_wins(p, &y, &x));
}

static void test_last_writer_wins(void **state)
{
    (void)state;
    AaVersion a = {100, "a", 0}, b = {200, "b", 0};
    assert_true(aa_remote_wins(AA_POLICY_LAST_WRITER_WINS, &a, &b));
    assert_false(aa_remote_wins(AA_POLICY_LAST_WRITER_WINS, &b, &a));
    assert_symmetric(AA_POLICY_LAST_WRITER_WINS, a, b);
}

static void test_ties_break_by_name_the_same_both_ways(void **state)
{
    (void)state;
    AaVersion a = {500, "vlaanderen", 0}, b = {500, "wallonie", 0};
    /* the name sorting last wins, whichever side asks */
    assert_true(aa_remote_wins(AA_POLICY_LAST_WRITER_WINS, &a, &b));
    assert_false(aa_remote_wins(AA_POLICY_LAST_WRITER_WINS, &b, &a));
    assert_symmetric(AA_POLICY_LAST_WRITER_WINS, a, b);
    assert_symmetric(AA_POLICY_FIRST_WRITER_WINS, a, b);
    assert_symmetric(AA_POLICY_NODE_PRIORITY, a, b);
}

static void test_first_writer_wins(void **state)
{
    (void)state;
    AaVersion a = {100, "a", 0}, b = {200, "b", 0};
    assert_false(aa_remote_wins(AA_POLICY_FIRST_WRITER_WINS, &a, &b));
    assert_true(aa_remote_wins(AA_POLICY_FIRST_WRITER_WINS, &b, &a));
}

static void test_node_priority(void **state)
{
    (void)state;
    AaVersion hi = {100, "a", 10}, lo = {900, "b", 1};
    assert_false(aa_remote_wins(AA_POLICY_NODE_PRIORITY, &hi, &lo));
    assert_true(aa_remote_wins(AA_POLICY_NODE_PRIORITY, &lo, &hi));
    /* equal priorities: as last-writer-wins */
    AaVersion x = {100, "a", 5}, y = {200, "b", 5};
    assert_true(aa_remote_wins(AA_POLICY_NODE_PRIORITY, &x, &y));
    assert_symmetric(AA_POLICY_NODE_PRIORITY, x, y);
}

static void test_other_policies_do_not_order(void **state)
{
    (void)state;
    AaVersion a = {100, "a", 0}, b = {200, "b", 0};
    assert_false(aa_policy_orders(AA_POLICY_KEEP_LOCAL));
    assert_false(aa_policy_orders(AA_POLICY_CUSTOM));
    assert_true(aa_policy_orders(AA_POLICY_NODE_PRIORITY));
    assert_false(aa_remote_wins(AA_POLICY_KEEP_LOCAL, &a, &b));
    assert_false(aa_remote_wins(AA_POLICY_ERROR, &a, &b));
}

static void test_names(void **state)
{
    (void)state;
    AaPolicy p;
    const char *names[] = {"last_writer_wins", "first_writer_wins", "node_priority", "keep_local",
                           "apply_remote", "skip", "error", "custom"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_true(aa_policy_from_name(names[i], &p));
        assert_string_equal(aa_policy_name(p), names[i]);
    }
    assert_false(aa_policy_from_name("newest", &p));
    assert_false(aa_policy_from_name("", &p));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_writer_wins),
        cmocka_unit_test(test_ties_break_by_name_the_same_both_ways),
        cmocka_unit_test(test_first_writer_wins),
        cmocka_unit_test(test_node_priority),
        cmocka_unit_test(test_other_policies_do_not_order),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
