/* The agent's side of the commit guard (ha/commit_guard.c): what the lease file holds after
 * each call, read back the way the server module reads it (a separate read-only mapping). */
#include "common/common.h"
#include "common/fileutil.h"
#include "common/lease_file.h"
#include "ha/commit_guard.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64];
static char path[128];

static int setup(void **state)
{
    (void)state;
    str_copy(dir, sizeof(dir), "/tmp/pgvigil-test-guard.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    str_fmt(path, sizeof(path), "%s/lease", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    Err err;
    return dir_remove_all(dir, &err) ? 0 : -1;
}

/* the file as a backend sees it */
static LeaseFileLayout read_file(const char *p)
{
    LeaseFileLayout l;
    memset(&l, 0, sizeof(l));
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &l, sizeof(l), 0), sizeof(l));
    close(fd);
    assert_memory_equal(l.magic, LEASE_FILE_MAGIC, LEASE_FILE_MAGIC_LEN);
    return l;
}

static void write_layout(const char *p, int64_t deadline, uint64_t gen, int mode)
{
    LeaseFileLayout l;
    memset(&l, 0, sizeof(l));
    memcpy(l.magic, LEASE_FILE_MAGIC, LEASE_FILE_MAGIC_LEN);
    l.deadline_ms = deadline;
    l.lease_gen = gen;
    unlink(p);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, mode);
    assert_true(fd >= 0);
    fchmod(fd, mode);
    assert_int_equal(write(fd, &l, sizeof(l)), sizeof(l));
    close(fd);
}

static void test_publish_and_generations(void **state)
{
    (void)state;
    unlink(path);
    CommitGuard g;
    Err err = {{0}};
    assert_true(commit_guard_open(&g, path, 7, &err));
    LeaseFileLayout l = read_file(path);
    assert_int_equal(l.deadline_ms, 0);
    assert_int_equal(l.lease_gen, 7);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);

    commit_guard_set(&g, 5000);
    assert_int_equal(read_file(path).deadline_ms, 5000);
    commit_guard_new_lease(&g, 8);
    l = read_file(path);
    assert_int_equal(l.lease_gen, 8);
    assert_int_equal(l.deadline_ms, 5000);
    commit_guard_set(&g, 0);
    assert_int_equal(read_file(path).deadline_ms, 0);
    commit_guard_close(&g);
    /* the file stays, with its last values */
    assert_int_equal(read_file(path).lease_gen, 8);
}

static void test_inherited_deadline(void **state)
{
    (void)state;
    /* an earlier agent left deadline 3000: nothing later is published until its fence is gone */
    write_layout(path, 3000, 1, 0644);
    CommitGuard g;
    Err err = {{0}};
    assert_true(commit_guard_open(&g, path, 2, &err));
    assert_int_equal(read_file(path).deadline_ms, 3000);
    commit_guard_set(&g, 0);
    assert_int_equal(read_file(path).deadline_ms, 3000);
    commit_guard_set(&g, 9000);
    assert_int_equal(read_file(path).deadline_ms, 3000);
    commit_guard_set(&g, 2000);
    assert_int_equal(read_file(path).deadline_ms, 2000);
    commit_guard_set(&g, 9000);
    commit_guard_forget_inherited(&g);
    assert_int_equal(read_file(path).deadline_ms, 9000);
    assert_int_equal(read_file(path).lease_gen, 2);
    commit_guard_close(&g);
}

static void test_unsafe_file_replaced(void **state)
{
    (void)state;
    /* writable by others: replaced by a fresh file, whose deadline is not inherited */
    write_layout(path, 1234, 1, 0666);
    struct stat before;
    assert_int_equal(stat(path, &before), 0);
    CommitGuard g;
    Err err = {{0}};
    assert_true(commit_guard_open(&g, path, 3, &err));
    struct stat after;
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_mode & 0777, 0644);
    assert_int_equal(read_file(path).deadline_ms, 0);
    commit_guard_close(&g);
    /* a symlink is not followed */
    char target[160];
    str_fmt(target, sizeof(target), "%s/target", dir);
    write_layout(target, 1, 1, 0644);
    unlink(path);
    assert_int_equal(symlink(target, path), 0);
    assert_true(commit_guard_open(&g, path, 3, &err));
    commit_guard_set(&g, 4242);
    assert_int_equal(read_file(target).deadline_ms, 1);
    assert_int_equal(read_file(path).deadline_ms, 4242);
    commit_guard_close(&g);
}

static void test_deleted_file_made_again(void **state)
{
    (void)state;
    unlink(path);
    CommitGuard g;
    Err err = {{0}};
    assert_true(commit_guard_open(&g, path, 5, &err));
    commit_guard_set(&g, 100);
    /* a backend mapped the file before it was deleted */
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    const volatile LeaseFileLayout *old = mmap(NULL, sizeof(LeaseFileLayout), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(old != MAP_FAILED);
    unlink(path);
    commit_guard_check(&g);
    assert_int_equal(read_file(path).deadline_ms, 100);
    /* both the new file and the old mapping get the next deadline */
    commit_guard_set(&g, 200);
    assert_int_equal(read_file(path).deadline_ms, 200);
    assert_int_equal(old->deadline_ms, 200);
    munmap((void *)old, sizeof(LeaseFileLayout));
    commit_guard_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_and_generations),
        cmocka_unit_test(test_inherited_deadline),
        cmocka_unit_test(test_unsafe_file_replaced),
        cmocka_unit_test(test_deleted_file_made_again),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
