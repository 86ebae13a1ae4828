/* Where a timeline forked, read from PostgreSQL's timeline history file (ha/agent_history.c):
 * the history key records that LSN, and the timeline guards compare against it. */
#include "common/common.h"
#include "common/fileutil.h"
#include "ha/agent.h"

#include <setjmp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64];

static int setup(void **state)
{
    (void)state;
    str_copy(dir, sizeof(dir), "/tmp/pgvigil-test-history.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char wal[128];
    str_fmt(wal, sizeof(wal), "%s/pg_wal", dir);
    return mkdir(wal, 0700);
}

static int teardown(void **state)
{
    (void)state;
    Err err;
    return dir_remove_all(dir, &err) ? 0 : -1;
}

static void write_history(int tli, const char *text)
{
    char path[160];
    str_fmt(path, sizeof(path), "%s/pg_wal/%08X.history", dir, (unsigned)tli);
    Err err;
    assert_true(file_write_atomic(path, text, strlen(text), 0600, &err));
}

static void test_last_line_is_the_fork(void **state)
{
    (void)state;
    /* as PostgreSQL writes it: one line per ancestor, tab separated, the last one ours */
    write_history(3, "1\t0/3000160\tno recovery target specified\n\n2\t0/5000028\tno recovery target specified\n");
    int parent = 0;
    Lsn lsn = 0;
    Err err = {{0}};
    assert_true(agent_fork_lsn(dir, 3, &parent, &lsn, &err));
    assert_int_equal(parent, 2);
    assert_int_equal(lsn, 0x5000028);

    write_history(0x1A, "25\t1F/A0000000\tbefore 2026-01-01\n");
    assert_true(agent_fork_lsn(dir, 0x1A, &parent, &lsn, &err));
    assert_int_equal(parent, 25);
    assert_int_equal(lsn, ((Lsn)0x1F << 32) | 0xA0000000u);
}

static void test_bad_files(void **state)
{
    (void)state;
    int parent = 7;
    Lsn lsn = 9;
    Err err = {{0}};
    /* no file: the error names it */
    assert_false(agent_fork_lsn(dir, 4, &parent, &lsn, &err));
    assert_non_null(strstr(err.msg, "00000004.history"));
    /* nothing that parses as a switch point: an error, outputs untouched */
    write_history(5, "# comment\nnot a line\n1 junk reason\n");
    memset(&err, 0, sizeof(err));
    assert_false(agent_fork_lsn(dir, 5, &parent, &lsn, &err));
    assert_non_null(strstr(err.msg, "no switch point"));
    assert_int_equal(parent, 7);
    assert_int_equal(lsn, 9);
    /* an empty file */
    write_history(6, "");
    assert_false(agent_fork_lsn(dir, 6, &parent, &lsn, &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_line_is_the_fork),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
