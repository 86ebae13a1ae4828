/* backup.schedule: cron fields parsed into sets, matched against UTC minutes, and every
 * malformed schedule refused with the field it is about. */
#include "backup/schedule.h"
#include "common/common.h"

#include <setjmp.h>
#include <stdlib.h>
#include <cmocka.h>

static struct tm at(int year, int mon, int mday, int hour, int min)
{
    struct tm t;
    memset(&t, 0, sizeof(t));
    t.tm_year = year - 1900;
    t.tm_mon = mon - 1;
    t.tm_mday = mday;
    t.tm_hour = hour;
    t.tm_min = min;
    time_t s = timegm(&t);
    gmtime_r(&s, &t); /* fills tm_wday */
    return t;
}

static bool match(const char *sched, struct tm t)
{
    Schedule s;
    Err err = {{0}};
    assert_true(schedule_parse(sched, &s, &err));
    return schedule_matches(&s, &t);
}

static void test_matching(void **state)
{
    (void)state;
    struct tm sat = at(2026, 12, 5, 2, 30); /* a Saturday */
    assert_int_equal(sat.tm_wday, 6);
    assert_true(match("* * * * *", sat));
    assert_true(match("30 2 * * *", sat));
    assert_false(match("31 2 * * *", sat));
    assert_true(match("*/15 * * * *", sat));
    assert_false(match("*/7 * * * *", sat));
    assert_true(match("0-59/10 1-3 * * *", sat));
    assert_true(match("10,20,30 2 5 12 *", sat));
    assert_false(match("30 2 6 12 *", sat));
    assert_true(match("30 2 * * 6", sat));
    assert_true(match("30 2 * * 5-6", sat));
    assert_false(match("30 2 * * 0", sat));
    assert_true(match("30 2 * * 7", at(2026, 12, 6, 2, 30))); /* 7 is Sunday too */
    /* both day fields restricted: either matches */
    assert_true(match("30 2 1 * 6", sat));
    assert_true(match("30 2 5 * 1", sat));
    assert_false(match("30 2 1 * 1", sat));
    assert_true(match("5/20 * * * *", at(2026, 1, 1, 0, 45)));
    assert_false(match("5/20 * * * *", at(2026, 1, 1, 0, 0)));
    assert_true(match("  0   3  *  *  * ", at(2026, 1, 1, 3, 0)));
}

static void bad(const char *sched, const char *want)
{
    Schedule s;
    Err err = {{0}};
    assert_false(schedule_parse(sched, &s, &err));
    if (!strstr(err.msg, want))
        fail_msg("schedule \"%s\": want \"%s\", got \"%s\"", sched, want, err.msg);
}

static void test_errors(void **state)
{
    (void)state;
    bad("", "expected 5 fields");
    bad("* * * *", "got 4");
    bad("* * * * * *", "got more");
    bad("60 * * * *", "field 1 (minute): 60 is out of range 0-59");
    bad("* 24 * * *", "field 2 (hour)");
    bad("* * 0 * *", "field 3 (day of month)");
    bad("* * * 13 *", "field 4 (month)");
    bad("* * * * 8", "field 5 (day of week)");
    bad("*/0 * * * *", "bad step");
    bad("5-1 * * * *", "out of range");
    bad("a * * * *", "not a number");
    bad("1-x * * * *", "bad range");
    bad("1,,2 * * * *", "field 1");
    bad("@daily", "field 1 (minute): \"@daily\" is not a number");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matching),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
