/* Fuzz the WAL summary reader, which parses WAL segment files (from the repository or the
 * server's pg_wal) and stored summaries: no input reads or writes out of bounds, and a summary it
 * makes survives its stored form.
 * Input: 4 bytes of the first page header's info and 4 of its remaining length, then the bytes of
 * a 4-page segment after its long header. The harness writes a valid magic and page address on
 * every page, so that mutations reach the records; the rest of each page header is the input's. */
#include "common/common.h"
#include "backup/wal_summary.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PAGE 8192u
#define SEG (4u * PAGE)

static void put16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

static void check_stored(const WalSummary *s)
{
    size_t n = 0;
    unsigned char *p = wal_summary_serialize(s, &n);
    WalSummary back;
    Err err = {{0}};
    FUZZ_CHECK(wal_summary_deserialize(p, n, &back, &err));
    FUZZ_CHECK(back.n_rels == s->n_rels && back.carry_len == s->carry_len && back.head_len == s->head_len);
    for (size_t i = 0; i < s->n_rels; i++) {
        const WalRelBlocks *r = wal_summary_find(&back, &s->rels[i].key);
        FUZZ_CHECK(r && r->n == s->rels[i].n && r->limit == s->rels[i].limit);
    }
    wal_summary_free(&back);
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a stored summary, as is */
    WalSummary s;
    Err err = {{0}};
    if (wal_summary_deserialize(data, size, &s, &err))
        wal_summary_free(&s);
    if (size < 8)
        return 0;
    unsigned char *seg = xcalloc(SEG, 1);
    size_t body = size - 8 < SEG - 40 ? size - 8 : SEG - 40;
    memcpy(seg + 40, data + 8, body);
    for (uint32_t pg = 0; pg < SEG / PAGE; pg++) {
        unsigned char *h = seg + pg * PAGE;
        put16(h, 0xD110);
        put64(h + 8, SEG + pg * PAGE); /* the segment at LSN 0/8000 */
    }
    uint16_t info;
    memcpy(&info, data, 2);
    put16(seg + 2, (uint16_t)(info | 0x0002));
    memcpy(seg + 16, data + 4, 4);
    put64(seg + 24, 1);
    put32(seg + 32, SEG);
    put32(seg + 36, PAGE);
    if (wal_summary_parse(seg, SEG, SEG, 0, &s, &err)) {
        check_stored(&s);
        /* the summary put together with itself as the next segment */
        WalSummary next;
        if (wal_summary_parse(seg, SEG, SEG, SEG + data[2] * 128u, &next, &err)) {
            if (wal_summary_merge(&s, &next, &err))
                check_stored(&s);
            wal_summary_free(&next);
        }
        wal_summary_free(&s);
    }
    free(seg);
    return 0;
}
