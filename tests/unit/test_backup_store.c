/* The repository's storage layers: compression round trips and corruption, the stored-object
 * header and its checks, the POSIX driver (atomic writes, listing, keys that would leave the
 * root), and WAL archive push/fetch (names, retries, conflicting content). */
#include "backup/compress.h"
#include "backup/obj.h"
#include "backup/pages.h"
#include "backup/repo.h"
#include "backup/wal_archive.h"
#include "backup/wal_prefetch.h"
#include "common/common.h"
#include "common/fileutil.h"

#include <setjmp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64];

static int setup(void **state)
{
    (void)state;
    str_copy(dir, sizeof(dir), "/tmp/pgvigil-test-backup.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    Err err;
    return dir_remove_all(dir, &err) ? 0 : -1;
}

/* WAL-like test data: compressible, but not constant */
static unsigned char *sample(size_t n, unsigned seed)
{
    unsigned char *p = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i / 64) * 7 + seed + (i % 13 == 0 ? i : 0));
    return p;
}

static void test_compress_round_trips(void **state)
{
    (void)state;
    size_t n = 300000;
    unsigned char *raw = sample(n, 1);
    for (int k = COMPRESS_NONE; k <= COMPRESS_GZIP; k++) {
        void *c = NULL, *d = NULL;
        size_t cn = 0;
        Err err = {{0}};
        int level = compress_default_level((CompressKind)k);
        assert_true(compress_level_ok((CompressKind)k, level));
        assert_true(compress_buf((CompressKind)k, level, raw, n, &c, &cn, &err));
        if (k != COMPRESS_NONE)
            assert_true(cn < n / 2);
        assert_true(decompress_buf((CompressKind)k, c, cn, n, &d, &err));
        assert_memory_equal(d, raw, n);
        free(d);
        /* a wrong expected size, a truncated stream: errors, not short data */
        if (k != COMPRESS_NONE) {
            assert_false(decompress_buf((CompressKind)k, c, cn, n - 1, &d, &err));
            assert_false(decompress_buf((CompressKind)k, c, cn / 2, n, &d, &err));
        }
        free(c);
        /* empty input */
        assert_true(compress_buf((CompressKind)k, level, raw, 0, &c, &cn, &err));
        assert_true(decompress_buf((CompressKind)k, c, cn, 0, &d, &err));
        free(c);
        free(d);
    }
    CompressKind k;
    assert_true(compress_kind_parse("zstd", &k) && k == COMPRESS_ZSTD);
    assert_true(compress_kind_parse("none", &k) && k == COMPRESS_NONE);
    assert_false(compress_kind_parse("brotli", &k));
    assert_false(compress_level_ok(COMPRESS_GZIP, 10));
    assert_false(compress_level_ok(COMPRESS_ZSTD, 0));
    free(raw);
}

static void test_object_checks(void **state)
{
    (void)state;
    size_t n = 100000;
    unsigned char *raw = sample(n, 2);
    void *obj = NULL, *back = NULL;
    size_t on = 0, bn = 0;
    Err err = {{0}};
    assert_true(obj_encode(NULL, COMPRESS_NONE, 0, raw, n, &obj, &on, &err));
    assert_int_equal(on, OBJ_HEADER_LEN + n);
    assert_true(obj_decode(NULL, obj, on, &back, &bn, &err));
    assert_int_equal(bn, n);
    assert_memory_equal(back, raw, n);
    free(back);
    /* one flipped bit in the content: the hash says so */
    ((unsigned char *)obj)[OBJ_HEADER_LEN + 5000] ^= 1;
    assert_false(obj_decode(NULL, obj, on, &back, &bn, &err));
    assert_non_null(strstr(err.msg, "checksum mismatch"));
    ((unsigned char *)obj)[OBJ_HEADER_LEN + 5000] ^= 1;
    /* a bad magic, a short object, an unknown compression */
    ((unsigned char *)obj)[0] = 'X';
    assert_false(obj_decode(NULL, obj, on, &back, &bn, &err));
    assert_non_null(strstr(err.msg, "bad magic"));
    ((unsigned char *)obj)[0] = 'P';
    assert_false(obj_decode(NULL, obj, 20, &back, &bn, &err));
    ((unsigned char *)obj)[8] = 9;
    assert_false(obj_decode(NULL, obj, on, &back, &bn, &err));
    assert_non_null(strstr(err.msg, "unsupported"));
    free(obj);

    /* zstd: a damaged compressed body fails in the decoder or in the hash */
    assert_true(obj_encode(NULL, COMPRESS_ZSTD, 3, raw, n, &obj, &on, &err));
    ((unsigned char *)obj)[on - 10] ^= 0x40;
    assert_false(obj_decode(NULL, obj, on, &back, &bn, &err));
    free(obj);
    free(raw);
}

static void test_wal_names(void **state)
{
    (void)state;
    assert_int_equal(wal_file_kind("000000010000000000000003"), WALFILE_SEGMENT);
    assert_int_equal(wal_file_kind("000000020000000A000000FF.partial"), WALFILE_PARTIAL);
    assert_int_equal(wal_file_kind("00000002.history"), WALFILE_HISTORY);
    assert_int_equal(wal_file_kind("000000010000000000000002.00000028.backup"), WALFILE_BACKUP);
    assert_int_equal(wal_file_kind("00000001000000000000000"), WALFILE_NONE);
    assert_int_equal(wal_file_kind("000000010000000000000003x"), WALFILE_NONE);
    assert_int_equal(wal_file_kind("00000001000000000000000a"), WALFILE_NONE); /* lower case */
    assert_int_equal(wal_file_kind("../../etc/passwd"), WALFILE_NONE);
    assert_int_equal(wal_file_kind(""), WALFILE_NONE);
    char key[128];
    assert_true(wal_file_key("00000002.history", key, sizeof(key)));
    assert_string_equal(key, "wal/00000002/00000002.history");
    assert_true(wal_file_key("000000030000000000000004", key, sizeof(key)));
    assert_string_equal(key, "wal/00000003/000000030000000000000004");
    assert_false(wal_file_key("RECOVERYXLOG", key, sizeof(key)));
}

static void test_posix_repo(void **state)
{
    (void)state;
    char root[128];
    str_fmt(root, sizeof(root), "%s/repo", dir);
    Err err = {{0}};
    Repo *r = repo_posix_new(root, &err);
    assert_non_null(r);
    assert_null(repo_posix_new("relative/path", &err));
    assert_non_null(strstr(err.msg, "absolute"));

    assert_true(repo_put(r, "b/two", "2", 1, &err));
    assert_true(repo_put(r, "a/x/one", "11", 2, &err));
    assert_true(repo_put(r, "c", "333", 3, &err));
    assert_true(repo_put(r, "c", "333", 3, &err));
    assert_true(repo_put_lazy(r, "c", "4444", 4, &err)); /* replaced whole, without fsync */
    void *lz = NULL;
    size_t lzn = 0;
    bool lz_missing = true;
    assert_true(r->ops->read_all(r, "c", &lz, &lzn, &lz_missing, &err));
    assert_int_equal(lzn, 4);
    assert_memory_equal(lz, "4444", 4);
    free(lz);
    /* created only where nothing is: the second put_new leaves the first one's content */
    bool existed = true;
    assert_true(repo_put_new(r, "new/one", "first", 5, &existed, &err));
    assert_false(existed);
    assert_true(repo_put_new(r, "new/one", "second", 6, &existed, &err));
    assert_true(existed);
    assert_true(r->ops->read_all(r, "new/one", &lz, &lzn, &lz_missing, &err));
    assert_int_equal(lzn, 5);
    assert_memory_equal(lz, "first", 5);
    free(lz);
    assert_true(r->ops->remove(r, "new/one", &err));
    /* and a sync of everything put lazily */
    assert_true(repo_sync(r, &err));
    /* an aborted write leaves nothing, not even its temporary file */
    RepoWriter *w = r->ops->write_open(r, "b/aborted", &err);
    assert_non_null(w);
    assert_true(r->ops->write(w, "zz", 2, &err));
    r->ops->write_abort(w);
    /* an open write is not listed */
    w = r->ops->write_open(r, "b/pending", &err);
    assert_non_null(w);

    RepoKeys k;
    assert_true(r->ops->list(r, "", &k, &err));
    assert_int_equal(k.n, 3);
    assert_string_equal(k.keys[0], "a/x/one");
    assert_string_equal(k.keys[1], "b/two");
    assert_string_equal(k.keys[2], "c");
    repo_keys_free(&k);
    assert_true(r->ops->list(r, "b/", &k, &err));
    assert_int_equal(k.n, 1);
    repo_keys_free(&k);
    assert_true(r->ops->list(r, "nothing/here", &k, &err));
    assert_int_equal(k.n, 0);
    repo_keys_free(&k);
    r->ops->write_abort(w);

    void *buf = NULL;
    size_t n = 0;
    bool missing = false, exists = false;
    assert_true(r->ops->read_all(r, "c", &buf, &n, &missing, &err));
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "4444", 4);
    free(buf);
    assert_false(r->ops->read_all(r, "nope", &buf, &n, &missing, &err));
    assert_true(missing);
    assert_true(r->ops->exists(r, "b/two", &exists, &err) && exists);
    assert_true(r->ops->remove(r, "b/two", &err));
    assert_true(r->ops->exists(r, "b/two", &exists, &err) && !exists);
    assert_true(r->ops->remove(r, "b/two", &err)); /* already gone: fine */

    /* keys never leave the root */
    const char *bad[] = {"../escape", "a/../../escape", "/abs", "", "a//b", "a/./b"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        memset(&err, 0, sizeof(err));
        assert_false(repo_put(r, bad[i], "x", 1, &err));
        assert_non_null(strstr(err.msg, "invalid key"));
    }
    repo_free(r);
}

static void write_file(const char *path, const void *p, size_t n)
{
    Err err;
    assert_true(file_write_atomic(path, p, n, 0600, &err));
}

static void test_wal_push_fetch(void **state)
{
    (void)state;
    char root[128], seg[160], out[160];
    str_fmt(root, sizeof(root), "%s/walrepo", dir);
    str_fmt(seg, sizeof(seg), "%s/segment", dir);
    str_fmt(out, sizeof(out), "%s/restored", dir);
    Err err = {{0}};
    Repo *r = repo_posix_new(root, &err);
    assert_non_null(r);
    size_t n = 1 << 20;
    unsigned char *raw = sample(n, 3);
    write_file(seg, raw, n);

    WalPushResult res;
    assert_true(wal_push(r, COMPRESS_ZSTD, 3, seg, "000000010000000000000001", false, &res, &err));
    assert_false(res.already);
    assert_int_equal(res.raw_size, n);
    assert_true(res.stored_size < n / 4);
    /* PostgreSQL retries after a crash: the same content again is fine */
    assert_true(wal_push(r, COMPRESS_LZ4, 1, seg, "000000010000000000000001", false, &res, &err));
    assert_true(res.already);
    /* other content under a stored name: refused, the stored copy kept */
    raw[100] ^= 0xff;
    write_file(seg, raw, n);
    assert_false(wal_push(r, COMPRESS_ZSTD, 3, seg, "000000010000000000000001", false, &res, &err));
    assert_non_null(strstr(err.msg, "other content"));
    /* a standby's copy with other content: left out (logged), counted as done, the stored one kept */
    assert_true(wal_push(r, COMPRESS_ZSTD, 3, seg, "000000010000000000000001", true, &res, &err));
    assert_true(res.already);
    raw[100] ^= 0xff;

    bool missing = false, damaged = false;
    assert_true(wal_fetch(r, "000000010000000000000001", out, &missing, &damaged, &err));
    size_t got_n = 0;
    char *got = file_read_all(out, &got_n, &err);
    assert_non_null(got);
    assert_int_equal(got_n, n);
    assert_memory_equal(got, raw, n);
    free(got);
    assert_false(wal_fetch(r, "000000010000000000000002", out, &missing, &damaged, &err));
    assert_true(missing);
    assert_false(damaged);
    assert_false(wal_push(r, COMPRESS_ZSTD, 3, seg, "RECOVERYXLOG", false, &res, &err));
    assert_false(wal_push(r, COMPRESS_ZSTD, 3, "/nonexistent/seg", "000000010000000000000005", false, &res, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/seg"));

    /* a stored object damaged in the repository: fetch names it and writes nothing */
    char key_path[256];
    str_fmt(key_path, sizeof(key_path), "%s/wal/00000001/000000010000000000000001", root);
    size_t sn = 0;
    char *stored = file_read_all(key_path, &sn, &err);
    assert_non_null(stored);
    stored[sn / 2] ^= 0x10;
    write_file(key_path, stored, sn);
    free(stored);
    unlink(out);
    assert_false(wal_fetch(r, "000000010000000000000001", out, &missing, &damaged, &err));
    assert_false(missing);
    assert_true(damaged);
    assert_non_null(strstr(err.msg, "wal/00000001/000000010000000000000001"));
    assert_false(file_exists(out));
    free(raw);
    repo_free(r);
}

static void test_pages(void **state)
{
    (void)state;
    const char *yes[] = {"base/5/16384", "base/1/1259.1", "global/1262", "base/16384/2619.12"};
    const char *no[] = {"base/5/16384_fsm", "base/5/16384_vm", "base/5/16384_init", "global/pg_control",
                        "global/pg_filenode.map", "base/5/PG_VERSION", "base/x/16384", "pg_xact/0000",
                        "base/5/pg_internal.init", "base/5/16384.", "base/5", "postgresql.conf", "base/5/1/2"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++)
        if (!page_file_has_lsns(yes[i]))
            fail_msg("%s should have page LSNs", yes[i]);
    for (size_t i = 0; i < ARRAY_LEN(no); i++)
        if (page_file_has_lsns(no[i]))
            fail_msg("%s should not count as a file of pages with LSNs", no[i]);
    unsigned char page[16] = {0};
    uint32_t hi = 0x12, lo = 0x3456789a;
    memcpy(page, &hi, 4);
    memcpy(page + 4, &lo, 4);
    assert_true(page_lsn(page) == ((Lsn)0x12 << 32 | 0x3456789a));
}

/* the names the prefetcher walks through, and where its spool is */
static void test_prefetch_names(void **state)
{
    (void)state;
    char next[32];
    assert_true(wal_next_segment("0000000100000000000000FE", next, sizeof(next)));
    assert_string_equal(next, "0000000100000000000000FF");
    assert_true(wal_next_segment("0000000200000003000000FF", next, sizeof(next)));
    assert_string_equal(next, "000000020000000400000000");
    assert_false(wal_next_segment("00000002.history", next, sizeof(next)));
    assert_false(wal_next_segment("000000010000000000000003.partial", next, sizeof(next)));
    char *spool = wal_prefetch_spool("pg_wal/RECOVERYXLOG");
    assert_string_equal(spool, "pg_wal/" WAL_PREFETCH_DIR);
    free(spool);
    /* a spool without the segment: not taken */
    assert_false(wal_prefetch_take("/nonexistent/spool", "000000010000000000000003", "/nonexistent/dest"));
    assert_false(wal_prefetch_take("/nonexistent/spool", "00000002.history", "/nonexistent/dest"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compress_round_trips),
        cmocka_unit_test(test_object_checks),
        cmocka_unit_test(test_wal_names),
        cmocka_unit_test(test_posix_repo),
        cmocka_unit_test(test_wal_push_fetch),
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_prefetch_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
