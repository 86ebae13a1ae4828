/* Reading why the last start of postgres failed from its log (pg_log_shows_divergence): a
 * replica that went past the fork of the leader's timeline needs pg_rewind, another failure does
 * not, and an old divergence before a later start does not count; nor, with
 * pg_log_shows_divergence_since, one written before the mark of the last time it streamed. */
#include "common/common.h"
#include "common/fileutil.h"
#include "pg/pg.h"

#include <setjmp.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

static void check(const char *log_text, bool want)
{
    char path[] = "/tmp/pgvigil-test-pglog.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    Err err;
    assert_true(file_write_atomic(path, log_text, strlen(log_text), 0600, &err));
    PgNode pg;
    memset(&pg, 0, sizeof(pg));
    str_copy(pg.log_path, sizeof(pg.log_path), path);
    if (pg_log_shows_divergence(&pg) != want)
        fail_msg("want %s for: %s", want ? "diverged" : "not diverged", log_text);
    unlink(path);
}

static void test_divergence(void **state)
{
    (void)state;
    check("LOG:  starting PostgreSQL 15.20\nLOG:  entering standby mode\n"
          "FATAL:  requested timeline 4 does not contain minimum recovery point 0/4449940 on timeline 3\n",
          true);
    check("LOG:  starting PostgreSQL 15.20\nFATAL:  requested timeline 3 is not a child of this server's history\n", true);
    check("LOG:  starting PostgreSQL 15.20\nFATAL:  could not bind IPv4 address: Address in use\n", false);
    /* a running standby that replayed past the fork: it says so on every retry */
    check("LOG:  starting PostgreSQL 15.20\nLOG:  replication terminated by primary server\n"
          "LOG:  new timeline 102 forked off current database system timeline 1 before current recovery point "
          "0/4032CF8\n", true);
    /* diverged once, then a later start failed for another reason */
    check("LOG:  starting PostgreSQL 15.20\nFATAL:  requested timeline 4 does not contain minimum recovery point 0/1 "
          "on timeline 3\nLOG:  starting PostgreSQL 15.20\nFATAL:  data directory has wrong ownership\n",
          false);
    check("", false);
    PgNode none;
    memset(&none, 0, sizeof(none));
    str_copy(none.log_path, sizeof(none.log_path), "/nonexistent/pgvigil/log");
    assert_false(pg_log_shows_divergence(&none));
}

/* since: only what was written after the mark (pg_log_size when the replica last streamed) */
static void test_since_mark(void **state)
{
    (void)state;
    static const char before[] = "LOG:  starting PostgreSQL 15.20\n"
                                 "FATAL:  requested timeline 3 is not a child of this server's history\n";
    static const char after[] = "LOG:  started streaming WAL from primary at 0/3000000 on timeline 3\n"
                                "LOG:  replication terminated by primary server\n";
    static const char diverged[] = "LOG:  new timeline 5 forked off current database system timeline 3 before "
                                   "current recovery point 0/4032CF8\n";
    char path[] = "/tmp/pgvigil-test-pglog.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, before, strlen(before)) == (ssize_t)strlen(before));
    PgNode pg;
    memset(&pg, 0, sizeof(pg));
    str_copy(pg.log_path, sizeof(pg.log_path), path);
    long mark = pg_log_size(&pg);
    assert_int_equal(mark, (long)strlen(before));
    assert_true(pg_log_shows_divergence_since(&pg, 0));
    assert_false(pg_log_shows_divergence_since(&pg, mark));   /* nothing written since */
    assert_true(write(fd, after, strlen(after)) == (ssize_t)strlen(after));
    assert_false(pg_log_shows_divergence_since(&pg, mark));   /* the old line is before the mark */
    assert_true(pg_log_shows_divergence(&pg));                 /* (the whole tail still has it) */
    assert_true(write(fd, diverged, strlen(diverged)) == (ssize_t)strlen(diverged));
    assert_true(pg_log_shows_divergence_since(&pg, mark));
    /* a mark past the end (the log was truncated): the tail is read */
    assert_true(pg_log_shows_divergence_since(&pg, 1 << 20));
    /* a tail longer than what is read: a line far before the end is not seen */
    char filler[200];
    memset(filler, 'x', sizeof(filler) - 1);
    filler[sizeof(filler) - 2] = '\n';
    filler[sizeof(filler) - 1] = '\0';
    for (int i = 0; i < 100; i++)
        assert_true(write(fd, filler, strlen(filler)) == (ssize_t)strlen(filler));
    assert_false(pg_log_shows_divergence_since(&pg, mark));
    close(fd);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_divergence), cmocka_unit_test(test_since_mark)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
