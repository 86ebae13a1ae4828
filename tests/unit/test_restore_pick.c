/* Unit tests for src/backup/restore_pick.c: timeline history files, and the backup a new
 * replica restores for the leader's timeline. */
#include "common/common.h"
#include "backup/restore_pick.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void test_history_parse(void **state)
{
    (void)state;
    TimelineFork h[4];
    assert_int_equal(timeline_history_parse("", h, 4), 0);
    assert_int_equal(timeline_history_parse("1\t0/3000060\tno recovery target specified\n"
                                            "\n"
                                            "# pgvigil: a marker\n"
                                            "2\t0/5000000\tat restore point \"x\"\n",
                                            h, 4),
                     2);
    assert_int_equal(h[0].tli, 1);
    assert_int_equal(h[0].end, 0x3000060);
    assert_int_equal(h[1].tli, 2);
    assert_int_equal(h[1].end, 0x5000000);
    /* no newline at the end, blanks in front */
    assert_int_equal(timeline_history_parse("  3\t1/0\treason", h, 4), 1);
    assert_int_equal(h[0].tli, 3);
    assert_int_equal(h[0].end, (Lsn)1 << 32);
    /* a comment-only file (PostgreSQL skips it; pgvigil's timeline markers) */
    assert_int_equal(timeline_history_parse("# pgvigil: timeline 3 was created elsewhere\n", h, 4), 0);
    /* malformed, or too many */
    assert_int_equal(timeline_history_parse("1\tnot-an-lsn\treason\n", h, 4), -1);
    assert_int_equal(timeline_history_parse("x\t0/1\n", h, 4), -1);
    assert_int_equal(timeline_history_parse("0\t0/1\n", h, 4), -1);
    assert_int_equal(timeline_history_parse("1\t0/1\n2\t0/2\n3\t0/3\n", h, 2), -1);
}

static BackupInfo bk(const char *label, const char *sysid, int tli, Lsn stop)
{
    BackupInfo b;
    memset(&b, 0, sizeof(b));
    str_copy(b.label, sizeof(b.label), label);
    str_copy(b.sysid, sizeof(b.sysid), sysid);
    b.timeline = tli;
    b.start_lsn = stop > 0x100 ? stop - 0x100 : 0;
    b.stop_lsn = stop;
    return b;
}

static void test_pick(void **state)
{
    (void)state;
    char why[256];
    /* oldest first */
    BackupInfo b[] = {
        bk("A", "111", 1, 0x1000000),   /* timeline 1, before its fork at 0x3000000 */
        bk("B", "111", 1, 0x4000000),   /* timeline 1, after the fork: the old primary went on */
        bk("C", "222", 1, 0x1000000),   /* another cluster */
        bk("D", "111", 2, 0x5000000),   /* timeline 2 */
    };
    TimelineFork h[] = {{1, 0x3000000}};
    /* the leader on timeline 2: D (newest, on 2) */
    assert_int_equal(backup_pick_for_timeline(b, 4, "111", 2, h, 1, why, sizeof(why)), 3);
    /* without D: A (B ended past timeline 1's fork, C is another cluster's) */
    assert_int_equal(backup_pick_for_timeline(b, 3, "111", 2, h, 1, why, sizeof(why)), 0);
    /* the leader on timeline 1: B, the newest there */
    assert_int_equal(backup_pick_for_timeline(b, 3, "111", 1, NULL, 0, why, sizeof(why)), 1);
    /* a backup ended exactly at the fork reaches it */
    BackupInfo at[] = {bk("E", "111", 1, 0x3000000)};
    assert_int_equal(backup_pick_for_timeline(at, 1, "111", 2, h, 1, why, sizeof(why)), 0);
    /* the history unknown (not archived): only backups on the leader's own timeline */
    assert_int_equal(backup_pick_for_timeline(b, 3, "111", 2, NULL, 0, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "none of the 2 backup(s) of system identifier 111 lies on the history of timeline 2"));
    /* a backup of a newer timeline than the leader's (another branch): never */
    BackupInfo fut[] = {bk("F", "111", 3, 0x6000000)};
    assert_int_equal(backup_pick_for_timeline(fut, 1, "111", 2, h, 1, why, sizeof(why)), -1);
    /* nothing, or only another cluster's */
    assert_int_equal(backup_pick_for_timeline(b, 0, "111", 1, NULL, 0, why, sizeof(why)), -1);
    assert_string_equal(why, "no complete backup");
    assert_int_equal(backup_pick_for_timeline(b + 2, 1, "111", 1, NULL, 0, why, sizeof(why)), -1);
    assert_string_equal(why, "no backup of system identifier 111 (1 of other clusters)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_history_parse),
        cmocka_unit_test(test_pick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
