/* pgvigil rewind's pure parts: CRC-32C, PostgreSQL 15's control file read and patched for a
 * rewound directory (rewind/control_file.c), its backup_label, and timeline histories with the
 * fork point between two of them (rewind/timeline.c). */
#include "common/common.h"
#include "rewind/control_file.h"
#include "rewind/timeline.h"

#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

static void test_crc32c_vectors(void **state)
{
    (void)state;
    assert_int_equal(crc32c("123456789", 9), 0xE3069283u);   /* the check value of CRC-32C */
    assert_int_equal(crc32c("", 0), 0);
    unsigned char zeros[32] = {0};
    assert_int_equal(crc32c(zeros, sizeof(zeros)), 0x8A9136AAu);
}

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

/* a control file image as PostgreSQL 15 lays it out (the offsets control_file.c reads) */
static void make_control(unsigned char *img)
{
    memset(img, 0, PG_CONTROL_FILE_BYTES);
    put64(img + 0, 7300000000000000001ULL);
    put32(img + 8, PG15_CONTROL_VERSION);
    put32(img + 16, PGC_STATE_IN_PRODUCTION);
    put64(img + 32, 0x5000100);     /* checkpoint */
    put64(img + 40, 0x5000028);     /* its redo */
    put32(img + 48, 3);             /* its timeline */
    img[176] = 1;                   /* wal_log_hints */
    put32(img + 216, 8192);
    put32(img + 220, 131072);       /* blocks per relation segment file */
    put32(img + 228, 16u << 20);
    put32(img + 288, crc32c(img, 288));
}

static void test_control_parse_and_patch(void **state)
{
    (void)state;
    unsigned char img[PG_CONTROL_FILE_BYTES];
    make_control(img);
    ControlFields f;
    Err err = {{0}};
    assert_true(control_parse(img, sizeof(img), &f, &err));
    assert_int_equal(f.system_identifier, 7300000000000000001ULL);
    assert_int_equal(f.state, PGC_STATE_IN_PRODUCTION);
    assert_int_equal(f.checkpoint, 0x5000100);
    assert_int_equal(f.redo, 0x5000028);
    assert_int_equal(f.timeline, 3);
    assert_true(f.wal_log_hints);
    assert_int_equal(f.wal_segment_size, 16u << 20);

    assert_true(control_patch_for_rewind(img, sizeof(img), 0x7000000, 4, &err));
    assert_true(control_parse(img, sizeof(img), &f, &err));   /* the checksum was redone */
    assert_int_equal(f.state, PGC_STATE_IN_ARCHIVE_RECOVERY);
    assert_int_equal(f.min_recovery_point, 0x7000000);
    assert_int_equal(f.min_recovery_tli, 4);
    assert_int_equal(f.checkpoint, 0x5000100);                 /* nothing else changed */
}

static void test_control_refused(void **state)
{
    (void)state;
    unsigned char img[PG_CONTROL_FILE_BYTES];
    ControlFields f;
    Err err = {{0}};
    make_control(img);
    img[100] ^= 1;                                             /* damaged */
    assert_false(control_parse(img, sizeof(img), &f, &err));
    assert_non_null(strstr(err.msg, "checksum"));
    assert_false(control_patch_for_rewind(img, sizeof(img), 1, 1, &err));

    make_control(img);
    put32(img + 8, 1201);                                      /* PostgreSQL 12's */
    put32(img + 288, crc32c(img, 288));
    assert_false(control_parse(img, sizeof(img), &f, &err));
    assert_non_null(strstr(err.msg, "version 1201"));

    make_control(img);
    put32(img + 228, 3u << 20);                                /* not a power of two */
    put32(img + 288, crc32c(img, 288));
    assert_false(control_parse(img, sizeof(img), &f, &err));

    make_control(img);
    put32(img + 220, 65536);                                   /* 512 MB relation segments */
    put32(img + 288, crc32c(img, 288));
    assert_false(control_parse(img, sizeof(img), &f, &err));
    assert_non_null(strstr(err.msg, "relation segments"));

    make_control(img);
    assert_false(control_parse(img, 200, &f, &err));           /* too short */
}

static void test_backup_label(void **state)
{
    (void)state;
    char buf[512];
    control_backup_label(0x103000028ULL, 0x103397078ULL, 2, 16u << 20, buf, sizeof(buf));
    assert_non_null(strstr(buf, "START WAL LOCATION: 1/3000028 (file 000000020000000100000003)\n"));
    assert_non_null(strstr(buf, "CHECKPOINT LOCATION: 1/3397078\n"));
    assert_non_null(strstr(buf, "BACKUP FROM: standby\n"));
    assert_non_null(strstr(buf, "START TIMELINE: 2\n"));
}

static void test_timeline_parse(void **state)
{
    (void)state;
    TimelineHistory h;
    Err err = {{0}};
    assert_true(timeline_parse(1, NULL, &h, &err));
    assert_int_equal(h.n, 1);
    assert_int_equal(h.e[0].tli, 1);
    assert_int_equal(h.e[0].end, LSN_END);

    assert_true(timeline_parse(5, "1\t0/3000000\tno recovery target specified\n\n# note\n3\t0/50000A0\tx\n", &h, &err));
    assert_int_equal(h.n, 3);
    assert_int_equal(h.e[0].tli, 1);
    assert_int_equal(h.e[0].end, 0x3000000);
    assert_int_equal(h.e[1].tli, 3);
    assert_int_equal(h.e[1].begin, 0x3000000);
    assert_int_equal(h.e[1].end, 0x50000A0);
    assert_int_equal(h.e[2].tli, 5);
    assert_int_equal(h.e[2].begin, 0x50000A0);

    static const char *bad[] = {
        "x\t0/1\n",                 /* no parent */
        "1\n",                      /* no switch point */
        "1\tzz\n",                  /* bad switch point */
        "2\t0/5\n1\t0/6\n",         /* timelines going back */
        "1\t0/5\n2\t0/4\n",         /* switch points going back */
        "5\t0/5\n",                 /* parent not below the timeline */
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        assert_false(timeline_parse(5, bad[i], &h, &err));
    /* a line too long to read is an error, never a timeline left out */
    char longline[600];
    memset(longline, 'x', sizeof(longline));
    memcpy(longline, "1\t0/10\t", 7);
    longline[sizeof(longline) - 2] = '\n';
    longline[sizeof(longline) - 1] = '\0';
    assert_false(timeline_parse(5, longline, &h, &err));
    assert_non_null(strstr(err.msg, "longer than"));
}

static void test_timeline_fork(void **state)
{
    (void)state;
    TimelineHistory target, source;
    Err err = {{0}};
    Lsn fork;
    /* the target stayed on 1; the source was promoted to 2 at 0/400AF60 */
    assert_true(timeline_parse(1, NULL, &target, &err));
    assert_true(timeline_parse(2, "1\t0/400AF60\tno recovery target specified\n", &source, &err));
    assert_int_equal(timeline_fork(&target, &source, &fork), 0);
    assert_int_equal(fork, 0x400AF60);
    /* both promoted from 2 at different points: they part where the earlier one left */
    assert_true(timeline_parse(3, "1\t0/100\n2\t0/900\n", &target, &err));
    assert_true(timeline_parse(4, "1\t0/100\n2\t0/700\n", &source, &err));
    assert_int_equal(timeline_fork(&target, &source, &fork), 1);
    assert_int_equal(fork, 0x700);
    /* the same timeline: not parted */
    assert_true(timeline_parse(2, "1\t0/100\n", &target, &err));
    assert_true(timeline_parse(2, "1\t0/100\n", &source, &err));
    assert_int_equal(timeline_fork(&target, &source, &fork), 1);
    assert_int_equal(fork, LSN_END);
    /* no timeline in common */
    assert_true(timeline_parse(3, NULL, &target, &err));
    assert_true(timeline_parse(2, NULL, &source, &err));
    assert_int_equal(timeline_fork(&target, &source, &fork), -1);

    assert_int_equal(timeline_of_segment(&source, 0, 16u << 20), 2);
    assert_true(timeline_parse(2, "1\t0/400AF60\n", &source, &err));
    assert_int_equal(timeline_of_segment(&source, 0x3000000, 16u << 20), 1);
    assert_int_equal(timeline_of_segment(&source, 0x4000000, 16u << 20), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),   cmocka_unit_test(test_control_parse_and_patch),
        cmocka_unit_test(test_control_refused),  cmocka_unit_test(test_backup_label),
        cmocka_unit_test(test_timeline_parse),   cmocka_unit_test(test_timeline_fork),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
