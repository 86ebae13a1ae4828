/* LSN text parsing, formatting and ordering (common/lsn.c), and the bounded string helpers
 * of common/common.c. */
#include "common/common.h"
#include "common/lsn.h"

#include <setjmp.h>
#include <cmocka.h>

static void test_parse_valid(void **state)
{
    (void)state;
    static const struct { const char *text; Lsn value; } rows[] = {
        {"0/0", 0},
        {"0/3000060", 0x3000060},
        {"16/B374D848", ((Lsn)0x16 << 32) | 0xB374D848u},
        {"ffffffff/ffffffff", UINT64_MAX},
        {"FFFFFFFF/0", (Lsn)0xFFFFFFFF << 32},
        {"1/a", ((Lsn)1 << 32) | 0xa},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        Lsn l = 12345;
        assert_true(lsn_parse(rows[i].text, &l));
        assert_int_equal(l, rows[i].value);
    }
}

static void test_parse_invalid(void **state)
{
    (void)state;
    static const char *bad[] = {"", "/", "0/", "/0", "123", "0x1/2", "1/2/3", "g/0", "0/g", "123456789/0",
                                "0/123456789", " 0/1", "0/1 ", "-1/0", "0/-1"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        Lsn l = 7;
        assert_false(lsn_parse(bad[i], &l));
    }
    Lsn l;
    assert_false(lsn_parse(NULL, &l));
}

static void test_format_round_trip(void **state)
{
    (void)state;
    Lsn samples[] = {0, 1, 0x3000060, ((Lsn)0x16 << 32) | 0xB374D848u, UINT64_MAX, (Lsn)1 << 32};
    for (size_t i = 0; i < ARRAY_LEN(samples); i++) {
        char buf[LSN_BUFSZ];
        Lsn back;
        assert_true(lsn_parse(lsn_format(samples[i], buf), &back));
        assert_int_equal(back, samples[i]);
    }
    char buf[LSN_BUFSZ];
    assert_string_equal(lsn_format(0x3000060, buf), "0/3000060");
    assert_string_equal(lsn_format(((Lsn)0x16 << 32) | 0xB374D848u, buf), "16/B374D848");
}

/* ordering by the 64-bit value is WAL order: the high half dominates */
static void test_ordering(void **state)
{
    (void)state;
    Lsn a, b, c;
    assert_true(lsn_parse("0/FFFFFFFF", &a));
    assert_true(lsn_parse("1/0", &b));
    assert_true(lsn_parse("1/1", &c));
    assert_true(a < b);
    assert_true(b < c);
    assert_int_equal(b - a, 1);
}

static void test_string_helpers(void **state)
{
    (void)state;
    char small[4];
    assert_true(str_copy(small, sizeof(small), "abc"));
    assert_string_equal(small, "abc");
    assert_false(str_copy(small, sizeof(small), "abcd"));
    assert_string_equal(small, "abc");
    assert_true(str_copy(small, sizeof(small), NULL));
    assert_string_equal(small, "");
    assert_false(str_fmt(small, sizeof(small), "%d", 12345));
    assert_true(str_fmt(small, sizeof(small), "%d", 123));
    char *p = str_printf("%s-%d", "x", 42);
    assert_string_equal(p, "x-42");
    free(p);
    assert_null(str_dup(NULL));
    assert_true(str_empty(NULL));
    assert_true(str_empty(""));
    assert_false(str_empty("a"));
    Err err = {{0}};
    err_set(&err, "etcd %s: %s", "127.0.0.1:2379", "connection refused");
    err_prefix(&err, "load");
    assert_string_equal(err.msg, "load: etcd 127.0.0.1:2379: connection refused");
    err_set(NULL, "ignored"); /* NULL err is allowed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_ordering),
        cmocka_unit_test(test_string_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
