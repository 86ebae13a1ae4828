/* PostgreSQL data page checksums (backup/page_checksum.c): known answers, the checks a backup
 * makes of a page (corrupt, new, changed since the backup started) and of a relation file read
 * from disk (a page that fails is read again; the blocks reported, within their file).
 *
 * The expected checksums were computed once with PostgreSQL 15's own pg_checksum_page()
 * (storage/checksum_impl.h) over the pages make_page() builds, byte for byte; the
 * implementation was also checked against every page of a live cluster (initdb -k) and against
 * pg_checksums --check on a page with one byte changed. */
#include "backup/page_checksum.h"
#include "common/common.h"
#include "common/fileutil.h"
#include "common/log.h"

#include <setjmp.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64];

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR); /* the corrupt pages below would each log a warning */
    str_copy(dir, sizeof(dir), "/tmp/pgvigil-test-cksum.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    Err err;
    return dir_remove_all(dir, &err) ? 0 : -1;
}

static void put16(unsigned char *p, size_t off, uint16_t v)
{
    memcpy(p + off, &v, sizeof(v));
}

static void put32(unsigned char *p, size_t off, uint32_t v)
{
    memcpy(p + off, &v, sizeof(v));
}

/* A page with a header as PostgreSQL writes it (pd_lsn 0/1A2B3C4D, pd_lower 28, pd_upper 8000,
 * pd_special 8192, layout version 4) and pd_checksum 0xBEEF, which the sum leaves out.
 * Kind 1: zeros but the tuple area 8000..8191 (byte i = i * 31 + 7); kind 2: every byte after
 * the header is (i * 131) mod 251, pd_flags 4, pd_prune_xid 735. */
static void make_page(unsigned char *p, int kind)
{
    memset(p, 0, PAGE_SIZE_BYTES);
    if (kind == 1) {
        for (size_t i = 8000; i < PAGE_SIZE_BYTES; i++)
            p[i] = (unsigned char)(i * 31 + 7);
    } else {
        for (size_t i = 24; i < PAGE_SIZE_BYTES; i++)
            p[i] = (unsigned char)((i * 131) % 251);
    }
    put32(p, 0, 0);
    put32(p, 4, 0x1A2B3C4D);
    put16(p, 8, 0xBEEF);
    put16(p, 10, kind == 2 ? 4 : 0);
    put16(p, 12, 28);
    put16(p, 14, 8000);
    put16(p, 16, 8192);
    put16(p, 18, 8192 | 4);
    put32(p, 20, kind == 2 ? 735 : 0);
}

/* the values PostgreSQL computes for these pages */
static void test_known_answers(void **state)
{
    (void)state;
    static const struct {
        int kind;
        uint32_t blkno;
        uint16_t sum;
    } rows[] = {
        {1, 0, 0xC93D}, {1, 1, 0xC93C}, {1, 7, 0xC93A}, {1, 2 * 131072 + 7, 0xC936}, {1, 0xFFFFFFFFu, 0x36C4},
        {2, 0, 0x7375}, {2, 1, 0x7376}, {2, 7, 0x7378}, {2, 2 * 131072 + 7, 0x737C}, {2, 0xFFFFFFFFu, 0x8C8C},
    };
    unsigned char *page = xcalloc_aligned(1, PAGE_SIZE_BYTES, 8);
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        make_page(page, rows[i].kind);
        uint16_t got = page_checksum(page, rows[i].blkno);
        if (got != rows[i].sum)
            fail_msg("kind %d block %u: 0x%04X, PostgreSQL computes 0x%04X", rows[i].kind, rows[i].blkno, got,
                     rows[i].sum);
    }
    /* one bit of the data changed (byte 5000) */
    make_page(page, 1);
    page[5000] ^= 1;
    assert_int_equal(page_checksum(page, 0), 0x7097);
    make_page(page, 2);
    page[5000] ^= 1;
    assert_int_equal(page_checksum(page, 0), 0x716D);
    /* the stored checksum is not part of the sum; the flags beside it are */
    make_page(page, 2);
    put16(page, 8, 0);
    assert_int_equal(page_checksum(page, 0), 0x7375);
    put16(page, 8, 0xFFFF);
    assert_int_equal(page_checksum(page, 0), 0x7375);
    put16(page, 10, 0);
    assert_int_not_equal(page_checksum(page, 0), 0x7375);
    /* no alignment needed: the same page one byte off */
    unsigned char *odd = xmalloc(PAGE_SIZE_BYTES + 1);
    make_page(odd + 1, 1);
    assert_int_equal(page_checksum(odd + 1, 7), 0xC93A);
    free(odd);
    free(page);
}

static void test_verify_page(void **state)
{
    (void)state;
    unsigned char *page = xcalloc_aligned(1, PAGE_SIZE_BYTES, 8);
    const Lsn all = UINT64_MAX;
    PageCheck c;

    /* right checksum */
    make_page(page, 1);
    put16(page, 8, 0xC93A);
    assert_int_equal(page_verify(page, 7, all, &c), PAGE_VERIFIED);
    assert_int_equal(c.stored, 0xC93A);
    assert_int_equal(c.computed, 0xC93A);
    assert_true(c.lsn == 0x1A2B3C4D);

    /* the same page as another block (moved in the file): wrong */
    assert_int_equal(page_verify(page, 8, all, &c), PAGE_CORRUPT);
    assert_int_equal(c.stored, 0xC93A);
    assert_int_not_equal(c.computed, 0xC93A);

    /* one byte changed: wrong, with both values */
    page[5000] ^= 1;
    assert_int_equal(page_verify(page, 0, all, NULL), PAGE_CORRUPT);
    put16(page, 8, 0xC93D);
    assert_int_equal(page_verify(page, 0, all, &c), PAGE_CORRUPT);
    assert_int_equal(c.stored, 0xC93D);
    assert_int_equal(c.computed, 0x7097);
    page[5000] ^= 1;
    assert_int_equal(page_verify(page, 0, all, NULL), PAGE_VERIFIED);

    /* an all-zero page (a relation extended, nothing written yet): new, accepted */
    memset(page, 0, PAGE_SIZE_BYTES);
    assert_int_equal(page_verify(page, 3, all, &c), PAGE_NEW);
    assert_int_equal(c.computed, 0);
    /* pd_upper 0 but not all zero (as pg_basebackup and pg_checksums: not checked) */
    make_page(page, 2);
    put16(page, 14, 0);
    assert_int_equal(page_verify(page, 3, all, NULL), PAGE_NEW);

    /* changed at or after the backup's start: not checked, whatever it holds */
    make_page(page, 1);
    put16(page, 8, 0x1234);
    assert_int_equal(page_verify(page, 0, 0x1A2B3C4D, &c), PAGE_CHANGED);
    assert_int_equal(page_verify(page, 0, 0x1A2B3C4C, &c), PAGE_CHANGED);
    assert_int_equal(page_verify(page, 0, 0x1A2B3C4E, &c), PAGE_CORRUPT);
    assert_int_equal(c.stored, 0x1234);
    assert_int_equal(c.computed, 0xC93D);
    /* the LSN's high half counts: 1/0 is after 0/1A2B3C4D */
    assert_int_equal(page_verify(page, 0, (Lsn)1 << 32, NULL), PAGE_CORRUPT);
    put32(page, 0, 1);
    assert_int_equal(page_verify(page, 0, (Lsn)1 << 32, NULL), PAGE_CHANGED);
    free(page);
}

static void test_which_files(void **state)
{
    (void)state;
    static const struct {
        const char *rel;
        uint32_t segno;
    } yes[] = {
        {"base/5/16384", 0},       {"base/5/16384.2", 2},     {"base/5/16384_fsm", 0}, {"base/5/16384_vm", 0},
        {"base/5/16384_init", 0},  {"base/5/16384_fsm.1", 1}, {"global/1262", 0},      {"global/1262_vm", 0},
        {"base/16384/2619.12", 12}, {"base/1/1259.32767", 32767},
    };
    static const char *const no[] = {
        "global/pg_control", "global/pg_filenode.map", "base/5/PG_VERSION", "base/5/pg_internal.init",
        "base/5/t3_16384",   "base/5/t3_16384_fsm",    "base/5/16384.",      "base/5/16384.0",
        "base/5/16384.01",   "base/5/16384.32768",     "base/5/16384_xyz",   "base/5/16384_fsm_vm",
        "base/5/16384.1.2",  "base/5/16384x",          "base/x/16384",       "base/5",
        "base//16384",       "base/5/1/2",             "pg_xact/0000",       "postgresql.conf",
        "pg_tblspc/1/PG_15_202209061/5/16384",         "global/",            "base/5/_fsm",
    };
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        uint32_t seg = 999;
        if (!page_checksum_file(yes[i].rel, &seg))
            fail_msg("%s holds checksummed pages", yes[i].rel);
        assert_int_equal(seg, yes[i].segno);
    }
    for (size_t i = 0; i < ARRAY_LEN(no); i++)
        if (page_checksum_file(no[i], NULL))
            fail_msg("%s does not hold checksummed pages", no[i]);
}

/* write the n bytes of data as dir/rel */
static void put_file(const char *rel, const unsigned char *data, size_t n)
{
    char *path = str_printf("%s/%s", dir, rel);
    Err err = {{0}};
    if (!file_write_atomic(path, (const char *)data, n, 0600, &err))
        fail_msg("%s", err.msg);
    free(path);
}

static void test_check_file(void **state)
{
    (void)state;
    Err err = {{0}};
    char *db = str_printf("%s/base/5", dir);
    assert_true(dir_make_all(db, 0700, &err));
    free(db);
    /* a third segment: blocks 2 * 131072 + 0..3 of the fork. 0 right, 1 corrupt, 2 zero, 3 right,
     * then half a page (being extended: not checked) */
    const uint32_t first = 2 * PAGE_BLOCKS_PER_SEGMENT;
    size_t n = 4 * PAGE_SIZE_BYTES + 100;
    unsigned char *file = xcalloc(1, n);
    for (uint32_t b = 0; b < 4; b++) {
        unsigned char *p = file + b * PAGE_SIZE_BYTES;
        if (b == 2)
            continue;
        make_page(p, b == 3 ? 2 : 1);
        put16(p, 8, page_checksum(p, first + b));
    }
    file[PAGE_SIZE_BYTES + 77] ^= 0x40;
    memset(file + 4 * PAGE_SIZE_BYTES, 0xAB, 100);
    put_file("base/5/16384.2", file, n);

    uint32_t *bad = NULL;
    assert_int_equal(page_check_file(dir, "base/5/16384.2", file, n, UINT64_MAX, &bad), 1);
    assert_non_null(bad);
    assert_int_equal(bad[0], 1);
    free(bad);

    /* the same bytes as segment 0: every initialised page is then in the wrong place */
    put_file("base/5/16384", file, n);
    assert_int_equal(page_check_file(dir, "base/5/16384", file, n, UINT64_MAX, &bad), 3);
    assert_int_equal(bad[0], 0);
    assert_int_equal(bad[1], 1);
    assert_int_equal(bad[2], 3);
    free(bad);

    /* not a relation file: not looked at */
    put_file("base/5/PG_VERSION", file, n);
    assert_int_equal(page_check_file(dir, "base/5/PG_VERSION", file, n, UINT64_MAX, &bad), 0);
    assert_null(bad);

    /* block 1 was read half-written: the file now holds it whole, and it passes */
    unsigned char *torn = xmalloc(n);
    memcpy(torn, file, n);
    file[PAGE_SIZE_BYTES + 77] ^= 0x40;
    put_file("base/5/16384.2", file, n);
    assert_int_equal(page_check_file(dir, "base/5/16384.2", torn, n, UINT64_MAX, &bad), 0);
    assert_null(bad);

    /* read again, it carries an LSN after the backup's start (rewritten meanwhile): not checked */
    unsigned char *p1 = file + PAGE_SIZE_BYTES;
    put32(p1, 4, 0x30000000);
    p1[77] ^= 0x40;
    put_file("base/5/16384.2", file, n);
    assert_int_equal(page_check_file(dir, "base/5/16384.2", torn, n, 0x20000000, &bad), 0);
    assert_null(bad);
    /* ... but with the LSN still before it, it is reported, with what the file holds now */
    assert_int_equal(page_check_file(dir, "base/5/16384.2", torn, n, 0x40000000, &bad), 1);
    assert_int_equal(bad[0], 1);
    free(bad);

    /* gone (dropped) or truncated before the second read: WAL replay deals with it */
    put_file("base/5/16384.2", file, PAGE_SIZE_BYTES);
    assert_int_equal(page_check_file(dir, "base/5/16384.2", torn, n, UINT64_MAX, &bad), 0);
    char *path = str_printf("%s/base/5/16384.2", dir);
    unlink(path);
    free(path);
    assert_int_equal(page_check_file(dir, "base/5/16384.2", torn, n, UINT64_MAX, &bad), 0);
    assert_null(bad);

    /* many corrupt pages: all of them reported (only the first few logged one by one) */
    size_t many = 40;
    unsigned char *big = xcalloc(many, PAGE_SIZE_BYTES);
    for (size_t b = 0; b < many; b++) {
        make_page(big + b * PAGE_SIZE_BYTES, 1);
        put16(big + b * PAGE_SIZE_BYTES, 8, 0x0001);
    }
    put_file("base/5/16385", big, many * PAGE_SIZE_BYTES);
    assert_int_equal(page_check_file(dir, "base/5/16385", big, many * PAGE_SIZE_BYTES, UINT64_MAX, &bad), 40);
    for (size_t b = 0; b < many; b++)
        assert_int_equal(bad[b], b);
    free(bad);
    free(big);
    free(torn);
    free(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_verify_page),
        cmocka_unit_test(test_which_files),
        cmocka_unit_test(test_check_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
