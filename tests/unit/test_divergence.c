/* The divergence report's parsers: pg_rewind --dry-run's fork point, pg_waldump's records summed
 * up per committed transaction (lines as PostgreSQL 15's pg_waldump prints them). */
#include "common/common.h"
#include "ha/divergence.h"

#include <setjmp.h>

#include <cmocka.h>

static void test_dry_run(void **state)
{
    (void)state;
    Divergence d;
    memset(&d, 0, sizeof(d));
    assert_true(divergence_parse_dry_run("pg_rewind: servers diverged at WAL location 0/3000060 on timeline 2\n"
                                         "pg_rewind: rewinding from last common checkpoint at 0/2000060 on timeline 2\n"
                                         "pg_rewind: Done!\n",
                                         &d));
    assert_true(d.diverged);
    assert_int_equal(d.timeline, 2);
    assert_true(d.fork_lsn == 0x3000060);
    memset(&d, 0, sizeof(d));
    assert_true(divergence_parse_dry_run("pg_rewind: source and target cluster are on the same timeline\n"
                                         "pg_rewind: no rewind required\n",
                                         &d));
    assert_false(d.diverged);
    /* neither: not understood, never taken for "nothing to lose" */
    assert_false(divergence_parse_dry_run("pg_rewind: error: could not connect to server\n", &d));
    assert_false(divergence_parse_dry_run("servers diverged at WAL location junk on timeline x", &d));
    assert_false(divergence_parse_dry_run(NULL, &d));
}

static const char *dump =
    "rmgr: Heap        len (rec/tot):     59/    59, tx:        741, lsn: 0/03000060, prev 0/03000028, desc: INSERT+INIT off 1 flags 0x00, blkref #0: rel 1663/5/16390 blk 0\n"
    "rmgr: Btree       len (rec/tot):     64/    64, tx:        741, lsn: 0/030000A0, prev 0/03000060, desc: INSERT_LEAF off 1, blkref #0: rel 1663/5/16393 blk 1\n"
    "rmgr: Heap        len (rec/tot):     59/    59, tx:        742, lsn: 0/030000E0, prev 0/030000A0, desc: INSERT off 2 flags 0x00, blkref #0: rel 1663/5/16400 blk 0\n"
    "rmgr: Transaction len (rec/tot):     34/    34, tx:        741, lsn: 0/03000120, prev 0/030000E0, desc: COMMIT 2026-12-05 10:51:48.195737 UTC\n"
    "rmgr: Transaction len (rec/tot):     34/    34, tx:        742, lsn: 0/03000148, prev 0/03000120, desc: ABORT 2026-12-05 10:51:48.198924 UTC\n"
    "rmgr: Standby     len (rec/tot):     50/    50, tx:          0, lsn: 0/03000170, prev 0/03000148, desc: RUNNING_XACTS nextXid 743 latestCompletedXid 742 oldestRunningXid 743\n"
    "rmgr: Heap        len (rec/tot):     59/    59, tx:        743, lsn: 0/030001A8, prev 0/03000170, desc: UPDATE off 1 xmax 743 flags 0x00 ; new off 3 xmax 0, blkref #0: rel 1663/5/16390 blk 0\n"
    "rmgr: Transaction len (rec/tot):     98/    98, tx:        743, lsn: 0/030001F8, prev 0/030001A8, desc: COMMIT 2026-12-05 10:51:49.000001 UTC; inval msgs: catcache 11\n"
    "pg_waldump: error: error in WAL record at 0/30001F8: invalid record length at 0/3000260: wanted 24, got 0\n";

static void test_waldump(void **state)
{
    (void)state;
    Divergence d;
    memset(&d, 0, sizeof(d));
    d.diverged = true;
    d.timeline = 2;
    d.fork_lsn = 0x3000060;
    divergence_parse_waldump(dump, &d);
    assert_int_equal(d.n_records, 8);
    assert_true(d.first_lsn == 0x3000060);
    assert_true(d.last_lsn == 0x30001F8);
    assert_int_equal(d.n_txns, 2);      /* 741 and 743 committed; 742 aborted */
    assert_int_equal(d.n_aborted, 1);
    assert_int_equal(d.txns[0].xid, 741);
    assert_string_equal(d.txns[0].commit_time, "2026-12-05 10:51:48.195737 UTC");
    assert_true(d.txns[0].commit_lsn == 0x3000120);
    assert_int_equal(d.txns[0].n_rels, 2);
    assert_string_equal(d.txns[0].rels[0], "1663/5/16390");
    assert_string_equal(d.txns[0].rels[1], "1663/5/16393");
    assert_int_equal(d.txns[1].xid, 743);
    assert_int_equal(d.txns[1].n_rels, 1);
    /* the aborted transaction's relation is not among those of committed ones */
    assert_int_equal(d.n_rels, 2);
    char line[1024];
    str_copy(d.rel_names[0], sizeof(d.rel_names[0]), "app: public.orders");
    divergence_summary(&d, line, sizeof(line));
    assert_string_equal(line, "2 committed transactions (xids 741, 743) on timeline 2 from 0/3000060 to 0/30001F8 "
                              "(8 WAL records), relations app: public.orders, 1663/5/16393");
    char *json = divergence_json(&d, "node1", "10.0.0.3");
    assert_non_null(strstr(json, "\"committed_transactions\": 2"));
    assert_non_null(strstr(json, "\"xid\": 743"));
    assert_non_null(strstr(json, "\"app: public.orders\""));
    free(json);
    divergence_free(&d);

    /* nothing past the fork: no records, no transactions */
    memset(&d, 0, sizeof(d));
    d.diverged = true;
    divergence_parse_waldump("pg_waldump: error: could not find file \"000000020000000000000003\"\n", &d);
    assert_int_equal(d.n_records, 0);
    assert_int_equal(d.n_txns, 0);
    divergence_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dry_run),
        cmocka_unit_test(test_waldump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
