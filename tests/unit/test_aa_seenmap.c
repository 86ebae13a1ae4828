/* pgvigil_aa's causality maps (pgext/aa/pgvigil_aa_seenmap.c): the text the messages and
 * tombstones carry, parsed strictly, and what a map says was seen. */
#include "pgvigil_aa_seenmap.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

static AaSeen map;

static bool parse(const char *text)
{
    return aa_seen_parse(text, (int)strlen(text), &map);
}

static void test_parse(void **state)
{
    (void)state;
    assert_true(parse("a=100;b-2.x=-5"));
    assert_int_equal(map.n, 2);
    assert_string_equal(map.node[0], "a");
    assert_true(map.ts[0] == 100);
    assert_string_equal(map.node[1], "b-2.x");
    assert_true(map.ts[1] == -5);
    assert_true(parse(""));
    assert_int_equal(map.n, 0);
}

static void test_malformed(void **state)
{
    (void)state;
    const char *bad[] = {"a", "a=", "=5", "a=5;", "a=5;;b=6", "a=x", "a=5x", "a= 5", "a=+5",
                         "a=99999999999999999999", ";a=5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(parse(bad[i]));
    char longname[100];
    memset(longname, 'n', 70);
    strcpy(longname + 70, "=1");
    assert_false(parse(longname));
    /* a length that stops inside the text: only those bytes */
    assert_true(aa_seen_parse("a=12;b=7", 4, &map));
    assert_int_equal(map.n, 1);
    assert_true(map.ts[0] == 12);
}

static void test_too_many(void **state)
{
    (void)state;
    char text[AA_SEEN_MAX * 12 + 32] = "";
    for (int i = 0; i <= AA_SEEN_MAX; i++) {
        char one[16];
        snprintf(one, sizeof(one), "%sn%d=1", i ? ";" : "", i);
        strcat(text, one);
    }
    assert_false(parse(text));
}

static void test_has(void **state)
{
    (void)state;
    assert_true(parse("a=100;b=200"));
    assert_true(aa_seen_has(&map, "a", 100));   /* that very commit */
    assert_true(aa_seen_has(&map, "a", 99));
    assert_false(aa_seen_has(&map, "a", 101));  /* a later one */
    assert_false(aa_seen_has(&map, "c", 1));    /* nothing of c */
    assert_false(aa_seen_has(NULL, "a", 1));
}

static void test_merge(void **state)
{
    (void)state;
    AaSeen other;
    assert_true(aa_seen_parse("b=7;c=1", 7, &other));
    assert_true(parse("a=100;b=200"));
    assert_true(aa_seen_merge(&map, &other));
    assert_int_equal(map.n, 3);
    assert_true(aa_seen_has(&map, "a", 100));
    assert_true(aa_seen_has(&map, "b", 200));   /* the later of 200 and 7 */
    assert_false(aa_seen_has(&map, "b", 201));
    assert_true(aa_seen_has(&map, "c", 1));
    assert_true(parse("b=9"));
    assert_true(aa_seen_parse("b=7;c=1", 7, &other));
    assert_true(aa_seen_merge(&map, &other));
    assert_true(aa_seen_has(&map, "b", 9));
    assert_false(aa_seen_has(&map, "b", 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_has),
        cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
