/* WAL summaries: block references read out of WAL pages laid out as PostgreSQL 15 writes them
 * (page headers, records split across pages and across segments), with the records that change
 * whole files (relation created or truncated, database copied), a record whose headers cross
 * into the next segment (found only once both summaries are put together), a stop LSN, the stored
 * form and its damage checks, and relation file names; and how far a rewind needs its target's
 * WAL (target_changed_blocks). The comparison with pg_waldump on real WAL is in
 * tests/integration/test_wal_summary.sh. */
#include "backup/wal_summary.h"
#include "common/common.h"
#include "common/fileutil.h"
#include "rewind/target_wal.h"

#include <setjmp.h>
#include <stdlib.h>
#include <cmocka.h>

#define PAGE 8192u
#define SEG (4u * PAGE)   /* small segments: the header says so, the parser follows it */
#define NSEG 2

/* ---- a WAL writer for the tests ----------------------------------------------------------------- */

typedef struct Wal {
    unsigned char buf[NSEG * SEG];
    size_t pos;              /* next byte to write (offset from LSN 0) */
} Wal;

static void w16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static void w32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void w64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

/* start the page at pos: its header, saying whether (and how much of) a record goes on in it */
static void page_start(Wal *w, uint32_t rem)
{
    unsigned char *h = w->buf + w->pos;
    bool first = w->pos % SEG == 0;
    w16(h, 0xD110);
    w16(h + 2, (uint16_t)((first ? 0x0002 : 0) | (rem ? 0x0001 : 0)));
    w32(h + 4, 1);
    w64(h + 8, w->pos);
    w32(h + 16, rem);
    if (first) {
        w64(h + 24, 7000000000000000000ULL);
        w32(h + 32, SEG);
        w32(h + 36, PAGE);
    }
    w->pos += first ? 40 : 24;
}

/* write a record at the next 8-byte boundary, split over pages as PostgreSQL does; returns its LSN */
static size_t put_record(Wal *w, const unsigned char *rec, size_t len)
{
    w->pos = (w->pos + 7) & ~(size_t)7;
    if (w->pos % PAGE == 0)
        page_start(w, 0);
    size_t at = w->pos, done = 0;
    while (done < len) {
        if (w->pos % PAGE == 0)
            page_start(w, (uint32_t)(len - done));
        size_t room = PAGE - w->pos % PAGE, k = len - done < room ? len - done : room;
        memcpy(w->buf + w->pos, rec + done, k);
        w->pos += k;
        done += k;
    }
    return at;
}

/* where a record of len bytes written at pos ends (page headers crossed included) */
static size_t record_end(size_t pos, size_t len)
{
    while (len) {
        if (pos % PAGE == 0)
            pos += pos % SEG == 0 ? 40 : 24;
        size_t room = PAGE - pos % PAGE, k = len < room ? len : room;
        pos += k;
        len -= k;
    }
    return pos;
}

/* a filler record (no block references) after which the next record starts at lsn */
static void pad_to(Wal *w, size_t lsn)
{
    w->pos = (w->pos + 7) & ~(size_t)7;
    size_t data = lsn - w->pos;
    while (data > 0 && ((record_end(w->pos, 24 + 5 + data) + 7) & ~(size_t)7) != lsn)
        data--;
    assert_true(data > 0);
    unsigned char *rec = calloc(1, 24 + 5 + data);
    w32(rec, (uint32_t)(24 + 5 + data));
    rec[17] = 1; /* a transaction record */
    rec[24] = 254;
    w32(rec + 25, (uint32_t)data);
    put_record(w, rec, 24 + 5 + data);
    free(rec);
    w->pos = (w->pos + 7) & ~(size_t)7;
    assert_int_equal(w->pos, lsn);
}

typedef struct Rec {
    unsigned char b[2048];
    size_t n;
    size_t datatotal;
} Rec;

static void rec_begin(Rec *r, uint8_t rmid, uint8_t info)
{
    memset(r, 0, sizeof(*r));
    r->b[16] = info;
    r->b[17] = rmid;
    r->n = 24;
}
static void rec_u8(Rec *r, uint8_t v) { r->b[r->n++] = v; }
static void rec_u16(Rec *r, uint16_t v) { w16(r->b + r->n, v); r->n += 2; }
static void rec_u32(Rec *r, uint32_t v) { w32(r->b + r->n, v); r->n += 4; }

/* a block reference: fork, block, data length, optional image (with hole, compressed), relation
 * (omitted: the one before) */
static void rec_block(Rec *r, uint8_t id, uint8_t fork, uint32_t blk, uint16_t data_len, bool image,
                      const uint32_t *rel)
{
    rec_u8(r, id);
    rec_u8(r, (uint8_t)(fork | (image ? 0x10 : 0) | (data_len ? 0x20 : 0) | (rel ? 0 : 0x80)));
    rec_u16(r, data_len);
    r->datatotal += data_len;
    if (image) {
        rec_u16(r, 100); /* image bytes */
        rec_u16(r, 40);  /* hole offset */
        rec_u8(r, 0x01 | 0x10); /* a hole, zstd */
        rec_u16(r, 8000); /* hole length */
        r->datatotal += 100;
    }
    if (rel) {
        rec_u32(r, rel[0]);
        rec_u32(r, rel[1]);
        rec_u32(r, rel[2]);
    }
    rec_u32(r, blk);
}

/* the main data header and the data (block data and images are zeros) */
static void rec_end(Rec *r, const void *main_data, uint8_t main_len)
{
    if (main_len || r->datatotal == 0) {
        rec_u8(r, 255);
        rec_u8(r, main_len);
    }
    r->n += r->datatotal;
    if (main_len)
        memcpy(r->b + r->n, main_data, main_len);
    r->n += main_len;
    w32(r->b, (uint32_t)r->n);
}

static const uint32_t REL_A[3] = {1663, 5, 16384};
static const uint32_t REL_B[3] = {1663, 5, 16500};

static bool has_block(const WalSummary *s, const uint32_t *rel, uint32_t fork, uint32_t blk)
{
    WalRelKey k = {rel[0], rel[1], rel[2], fork};
    const WalRelBlocks *r = wal_summary_find(s, &k);
    for (size_t i = 0; r && i < r->n; i++)
        if (r->blocks[i] == blk)
            return true;
    return false;
}

static uint32_t limit_of(const WalSummary *s, const uint32_t *rel)
{
    WalRelKey k = {rel[0], rel[1], rel[2], 0};
    const WalRelBlocks *r = wal_summary_find(s, &k);
    return r ? r->limit : WAL_SUMMARY_NO_LIMIT;
}

static Wal *wal;
static size_t lsn_third; /* where the third record of segment 0 starts */

/* Segment 0: ordinary records, a long one over two pages, whole-file records, and last a record
 * whose block headers cross into segment 1. Segment 1: its rest, one more record, a switch. */
static void build_wal(void)
{
    wal = calloc(1, sizeof(Wal));
    page_start(wal, 0);
    Rec r;
    /* 1: a heap change of REL_A block 7 */
    rec_begin(&r, 10, 0x00);
    rec_block(&r, 0, 0, 7, 10, false, REL_A);
    rec_end(&r, "abcd", 4);
    put_record(wal, r.b, r.n);
    /* 2: a full-page image of block 9 and the visibility map block 0, same relation */
    rec_begin(&r, 0, 0xB0);
    rec_block(&r, 0, 0, 9, 0, true, REL_A);
    rec_block(&r, 1, 2, 0, 4, false, NULL);
    rec_end(&r, NULL, 0);
    put_record(wal, r.b, r.n);
    /* 3: with an origin and a top-level xid, block 11 */
    rec_begin(&r, 10, 0x00);
    rec_u8(&r, 253);
    rec_u16(&r, 3);
    rec_u8(&r, 252);
    rec_u32(&r, 1234);
    rec_block(&r, 0, 0, 11, 8, false, REL_A);
    rec_end(&r, "xy", 2);
    lsn_third = put_record(wal, r.b, r.n);
    /* 4: a long record: 1500 bytes of main data and block 12, over a page boundary */
    pad_to(wal, PAGE - 200);
    rec_begin(&r, 10, 0x00);
    rec_block(&r, 0, 0, 12, 0, false, REL_A);
    rec_u8(&r, 254);
    rec_u32(&r, 1500);
    r.n += 1500;
    w32(r.b, (uint32_t)r.n);
    put_record(wal, r.b, r.n);
    /* 5: REL_B created; REL_A truncated to 3 blocks; database 16400 copied */
    rec_begin(&r, 2, 0x10);
    uint32_t create[4] = {1663, 5, 16500, 0};
    rec_end(&r, create, 16);
    put_record(wal, r.b, r.n);
    rec_begin(&r, 2, 0x20);
    uint32_t trunc[5] = {3, 1663, 5, 16384, 1};
    rec_end(&r, trunc, 20);
    put_record(wal, r.b, r.n);
    rec_begin(&r, 4, 0x00);
    uint32_t copy[4] = {16400, 1663, 1, 1663};
    rec_end(&r, copy, 16);
    put_record(wal, r.b, r.n);
    /* 6: 16 bytes before the end of segment 0, a record of REL_B block 42 and 43: its block
     * headers are in segment 1 */
    pad_to(wal, SEG - 16);
    rec_begin(&r, 10, 0x00);
    rec_block(&r, 0, 0, 42, 6, false, REL_B);
    rec_block(&r, 1, 0, 43, 6, false, NULL);
    rec_end(&r, "q", 1);
    put_record(wal, r.b, r.n);
    /* 7: in segment 1, block 99 of REL_A, then a switch */
    rec_begin(&r, 10, 0x00);
    rec_block(&r, 0, 0, 99, 2, false, REL_A);
    rec_end(&r, NULL, 0);
    put_record(wal, r.b, r.n);
    rec_begin(&r, 0, 0x40);
    rec_end(&r, NULL, 0);
    put_record(wal, r.b, r.n);
    /* the rest of segment 1: pages with headers and nothing in them */
    while (wal->pos % SEG != 0) {
        wal->pos = (wal->pos + PAGE) & ~(size_t)(PAGE - 1);
        if (wal->pos % SEG != 0)
            page_start(wal, 0);
    }
}

static void parse_seg(int i, uint64_t stop, WalSummary *s)
{
    Err err = {{0}};
    if (!wal_summary_parse(wal->buf + (size_t)i * SEG, SEG, (uint64_t)i * SEG, stop, s, &err))
        fail_msg("parse of segment %d: %s", i, err.msg);
}

static void test_records(void **state)
{
    (void)state;
    WalSummary s0;
    parse_seg(0, 0, &s0);
    assert_true(s0.complete);
    assert_true(has_block(&s0, REL_A, 0, 7));
    assert_true(has_block(&s0, REL_A, 0, 9));
    assert_true(has_block(&s0, REL_A, 2, 0)); /* the visibility map block, same relation */
    assert_true(has_block(&s0, REL_A, 0, 11));
    assert_true(has_block(&s0, REL_A, 0, 12));
    assert_false(has_block(&s0, REL_A, 0, 8));
    assert_int_equal(limit_of(&s0, REL_B), 0);
    assert_int_equal(limit_of(&s0, REL_A), 3);
    assert_true(wal_summary_db_copied(&s0, 1663, 16400));
    assert_false(wal_summary_db_copied(&s0, 1663, 5));
    /* the last record's headers are in segment 1: not read yet, kept */
    assert_false(has_block(&s0, REL_B, 0, 42));
    assert_true(s0.carry_len > 0 && s0.carry_len < 24);

    WalSummary s1;
    parse_seg(1, 0, &s1);
    assert_true(s1.complete); /* it ends with a switch */
    assert_true(s1.head_len > 0);
    assert_true(has_block(&s1, REL_A, 0, 99));
    assert_false(has_block(&s1, REL_B, 0, 42));

    /* put together, the record across the two segments is read */
    Err err = {{0}};
    assert_true(wal_summary_merge(&s0, &s1, &err));
    assert_true(has_block(&s0, REL_B, 0, 42));
    assert_true(has_block(&s0, REL_B, 0, 43));
    assert_true(has_block(&s0, REL_A, 0, 7));
    assert_true(has_block(&s0, REL_A, 0, 99));
    assert_int_equal(s0.carry_len, 0);
    wal_summary_free(&s0);

    /* without the head of the next segment, the crossing record cannot be finished */
    parse_seg(0, 0, &s0);
    WalSummary empty = {0};
    assert_false(wal_summary_merge(&s0, &empty, &err));
    assert_non_null(strstr(err.msg, "cannot be read"));
    wal_summary_free(&s0);
    wal_summary_free(&s1);
}

static void test_stop_lsn(void **state)
{
    (void)state;
    WalSummary s;
    parse_seg(0, lsn_third, &s);
    assert_true(s.complete);
    assert_true(has_block(&s, REL_A, 0, 9));
    assert_false(has_block(&s, REL_A, 0, 11)); /* at the stop LSN: not read */
    assert_int_equal(s.carry_len, 0);
    wal_summary_free(&s);

    /* a segment whose records stop early (a file being written) is not complete */
    Wal *cut = calloc(1, sizeof(Wal));
    memcpy(cut->buf, wal->buf, PAGE * 2);
    WalSummary c;
    Err err = {{0}};
    assert_true(wal_summary_parse(cut->buf, SEG, 0, 0, &c, &err));
    assert_false(c.complete);
    assert_true(has_block(&c, REL_A, 0, 7));
    wal_summary_free(&c);
    free(cut);
}

/* A rewind reads the target's WAL up to need_end, an end position: a standby's minimum recovery
 * point is where its last replayed record ends, and its WAL may stop exactly there; a checkpoint
 * location is where that record starts, and the record must then be read whole. */
static void test_rewind_target_end(void **state)
{
    (void)state;
    /* segment 0 of a standby whose WAL stops after the records of its first two pages */
    unsigned char *seg = calloc(1, SEG);
    memcpy(seg, wal->buf, PAGE * 2);
    WalSummary c;
    Err err = {{0}};
    assert_true(wal_summary_parse(seg, SEG, 0, 0, &c, &err));
    assert_false(c.complete);
    uint64_t last_end = c.end;   /* what its minimum recovery point would be */
    wal_summary_free(&c);
    char dir[] = "/tmp/pgvigil-test-target-wal.XXXXXX", name[25], path[200];
    assert_non_null(mkdtemp(dir));
    wal_segment_name(1, 0, SEG, name);
    str_fmt(path, sizeof(path), "%s/%s", dir, name);
    assert_true(file_write_atomic(path, (const char *)seg, SEG, 0600, &err));
    TimelineHistory h;
    assert_true(timeline_parse(1, "", &h, &err));
    TargetWal tw = {.dir = dir, .seg_size = SEG};
    WalSummary out;

    /* read to the end of its last record: enough */
    assert_true(target_changed_blocks(&tw, &h, 0, last_end, &out, &err));
    assert_true(has_block(&out, REL_A, 0, 7));
    assert_true(has_block(&out, REL_A, 0, 12));
    wal_summary_free(&out);
    /* a checkpoint-like location: the record starting there is read whole */
    assert_true(target_changed_blocks(&tw, &h, 0, lsn_third + 1, &out, &err));
    wal_summary_free(&out);
    /* a byte more than the WAL holds: refused, naming the position */
    memset(&err, 0, sizeof(err));
    assert_false(target_changed_blocks(&tw, &h, 0, last_end + 1, &out, &err));
    assert_non_null(strstr(err.msg, "could not be read up to"));
    /* a need in the next segment, when the records of this one stop before its end */
    memset(&err, 0, sizeof(err));
    assert_false(target_changed_blocks(&tw, &h, 0, SEG + 100, &out, &err));
    assert_non_null(strstr(err.msg, "the records end before"));

    assert_true(dir_remove_all(dir, &err));
    free(seg);
}

static void test_bad_input(void **state)
{
    (void)state;
    WalSummary s;
    Err err = {{0}};
    /* at another position */
    assert_false(wal_summary_parse(wal->buf, SEG, SEG, 0, &s, &err));
    assert_non_null(strstr(err.msg, "not a PostgreSQL 15 WAL segment"));
    /* another size than its header says */
    assert_false(wal_summary_parse(wal->buf, SEG - PAGE, 0, 0, &s, &err));
    /* a block id PostgreSQL never writes */
    unsigned char *bad = malloc(SEG);
    memcpy(bad, wal->buf, SEG);
    bad[40 + 24] = 77;
    assert_false(wal_summary_parse(bad, SEG, 0, 0, &s, &err));
    assert_non_null(strstr(err.msg, "do not add up"));
    free(bad);
}

static void test_stored_form(void **state)
{
    (void)state;
    WalSummary s0, s1, back;
    parse_seg(0, 0, &s0);
    size_t n = 0;
    unsigned char *p = wal_summary_serialize(&s0, &n);
    Err err = {{0}};
    assert_true(wal_summary_deserialize(p, n, &back, &err));
    assert_int_equal(back.n_rels, s0.n_rels);
    assert_int_equal(back.carry_len, s0.carry_len);
    assert_true(has_block(&back, REL_A, 0, 12));
    assert_int_equal(limit_of(&back, REL_A), 3);
    assert_true(wal_summary_db_copied(&back, 1663, 16400));
    /* the stored form still finishes the crossing record */
    parse_seg(1, 0, &s1);
    assert_true(wal_summary_merge(&back, &s1, &err));
    assert_true(has_block(&back, REL_B, 0, 43));
    wal_summary_free(&back);
    /* every cut and a damaged magic are refused */
    for (size_t cut = 0; cut < n; cut += 7)
        assert_false(wal_summary_deserialize(p, cut, &back, &err));
    p[0] ^= 1;
    assert_false(wal_summary_deserialize(p, n, &back, &err));
    free(p);
    wal_summary_free(&s0);
    wal_summary_free(&s1);
}

static void test_relpath(void **state)
{
    (void)state;
    WalRelKey k;
    uint32_t seg;
    assert_true(wal_relpath_parse("base/5/16384", &k, &seg));
    assert_true(k.spc == 1663 && k.db == 5 && k.rel == 16384 && k.fork == 0 && seg == 0);
    assert_true(wal_relpath_parse("base/5/16384_vm.2", &k, &seg));
    assert_true(k.fork == 2 && seg == 2);
    assert_true(wal_relpath_parse("global/1262_fsm", &k, &seg));
    assert_true(k.spc == 1664 && k.db == 0 && k.fork == 1);
    assert_true(wal_relpath_parse("base/1/112_init", &k, &seg));
    assert_int_equal(k.fork, 3);
    assert_false(wal_relpath_parse("base/5/t3_16384", &k, &seg));
    assert_false(wal_relpath_parse("global/pg_control", &k, &seg));
    assert_false(wal_relpath_parse("base/5/PG_VERSION", &k, &seg));
    assert_false(wal_relpath_parse("pg_xact/0000", &k, &seg));
    assert_false(wal_relpath_parse("base/5/16384.", &k, &seg));
    assert_false(wal_relpath_parse("base/5/99999999999", &k, &seg));
}

int main(void)
{
    build_wal();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_stop_lsn),
        cmocka_unit_test(test_rewind_target_end),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_stored_form),
        cmocka_unit_test(test_relpath),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(wal);
    return rc;
}
