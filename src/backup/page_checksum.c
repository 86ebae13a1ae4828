/* Page checksums of PostgreSQL data files (see page_checksum.h). */
#include "backup/page_checksum.h"
#include "common/log.h"

#include <fcntl.h>
#include <unistd.h>

/* the page as a grid of 32-bit words: LANES columns, each hashed separately */
#define LANES 32
#define ROWS (PAGE_SIZE_BYTES / (4 * LANES))
#define FNV_PRIME 16777619u

/* pd_checksum: the 16 bits after the 8-byte pd_lsn; pd_upper: the 16 bits at byte 14 */
#define OFF_CHECKSUM 8
#define OFF_UPPER 14

/* per-lane starting values, fixed by PostgreSQL's on-disk format */
static const uint32_t lane_seed[LANES] = {
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
};

/* one FNV-1a step on a 32-bit word, with the high bits shifted back down so they reach the low
 * ones */
static inline uint32_t fold_in(uint32_t h, uint32_t word)
{
    uint32_t x = h ^ word;
    return (x * FNV_PRIME) ^ (x >> 17);
}

static inline uint16_t u16_at(const unsigned char *p, size_t off)
{
    uint16_t v;
    memcpy(&v, p + off, sizeof(v));
    return v;
}

/* The lanes over n rows of words at p: one column per lane, with no branch inside so that the
 * compiler turns the lane loop into vector instructions (8 lanes at a time with AVX2). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx2", "default")))
#endif
static void hash_rows(uint32_t h[LANES], const unsigned char *p, size_t n)
{
    for (size_t row = 0; row < n; row++) {
        uint32_t w[LANES];
        memcpy(w, p + row * LANES * 4, sizeof(w));
        for (size_t lane = 0; lane < LANES; lane++)
            h[lane] = fold_in(h[lane], w[lane]);
    }
}

uint16_t page_checksum(const unsigned char page[PAGE_SIZE_BYTES], uint32_t blkno)
{
    uint32_t h[LANES];
    memcpy(h, lane_seed, sizeof(h));
    /* the first row counts with pd_checksum as zero (pd_flags, beside it, counts) */
    unsigned char first[LANES * 4];
    memcpy(first, page, sizeof(first));
    memset(first + OFF_CHECKSUM, 0, 2);
    hash_rows(h, first, 1);
    hash_rows(h, page + sizeof(first), ROWS - 1);
    uint32_t sum = 0;
    for (size_t lane = 0; lane < LANES; lane++) {
        /* two rounds of zeros spread the last word's bits */
        h[lane] = fold_in(fold_in(h[lane], 0), 0);
        sum ^= h[lane];
    }
    sum ^= blkno;
    return (uint16_t)(sum % 65535u + 1u);
}

PageVerdict page_verify(const unsigned char page[PAGE_SIZE_BYTES], uint32_t blkno, Lsn backup_start,
                        PageCheck *out)
{
    PageCheck c = {.lsn = page_lsn(page), .stored = u16_at(page, OFF_CHECKSUM)};
    if (u16_at(page, OFF_UPPER) == 0) {
        c.verdict = PAGE_NEW;
    } else if (c.lsn >= backup_start) {
        c.verdict = PAGE_CHANGED;
    } else {
        c.computed = page_checksum(page, blkno);
        c.verdict = c.computed == c.stored ? PAGE_VERIFIED : PAGE_CORRUPT;
    }
    if (out)
        *out = c;
    return c.verdict;
}

static size_t count_digits(const char *s)
{
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    return n;
}

bool page_checksum_file(const char *rel, uint32_t *segno)
{
    const char *name;
    if (strncmp(rel, "global/", 7) == 0) {
        name = rel + 7;
    } else if (strncmp(rel, "base/", 5) == 0) {
        size_t db = count_digits(rel + 5);
        if (db == 0 || rel[5 + db] != '/')
            return false;
        name = rel + 5 + db + 1;
    } else {
        return false;
    }
    /* <relfilenode>[_fsm|_vm|_init][.<segment>] */
    size_t n = count_digits(name);
    if (n == 0)
        return false;
    const char *p = name + n;
    static const char *const forks[] = {"_fsm", "_vm", "_init"};
    for (size_t i = 0; i < ARRAY_LEN(forks); i++) {
        size_t fl = strlen(forks[i]);
        if (strncmp(p, forks[i], fl) == 0) {
            p += fl;
            break;
        }
    }
    unsigned long seg = 0;
    if (*p == '.') {
        size_t sd = count_digits(p + 1);
        /* a segment number is never 0 and never has a leading zero; its first block must fit in
         * a 32-bit block number */
        if (sd == 0 || sd > 6 || p[1] == '0' || p[1 + sd] != '\0')
            return false;
        seg = strtoul(p + 1, NULL, 10);
        if (seg >= UINT32_MAX / PAGE_BLOCKS_PER_SEGMENT + 1)
            return false;
    } else if (*p != '\0') {
        return false;
    }
    if (segno)
        *segno = (uint32_t)seg;
    return true;
}

/* Read block b of the file again (fd opened on first use): 1 read, 0 the file is gone or
 * shorter now (dropped or truncated meanwhile: WAL replay does the same), -1 error. */
static int reread(int *fd, const char *path, size_t b, unsigned char *page)
{
    if (*fd < 0) {
        *fd = open(path, O_RDONLY | O_CLOEXEC);
        if (*fd < 0)
            return errno == ENOENT ? 0 : -1;
    }
    size_t got = 0;
    while (got < PAGE_SIZE_BYTES) {
        ssize_t r = pread(*fd, page + got, PAGE_SIZE_BYTES - got, (off_t)(b * PAGE_SIZE_BYTES + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        got += (size_t)r;
    }
    return 1;
}

/* corrupt pages of one file logged one by one; the rest only counted */
#define REPORT_PER_FILE 10

void page_check_begin(PageCheckRun *r, const char *data_dir, const char *rel, Lsn backup_start)
{
    memset(r, 0, sizeof(*r));
    r->data_dir = data_dir;
    r->rel = rel;
    r->backup_start = backup_start;
    r->fd = -1;
    uint32_t segno;
    r->applies = page_checksum_file(rel, &segno);
    r->first = segno * PAGE_BLOCKS_PER_SEGMENT;
}

void page_check_pages(PageCheckRun *r, const unsigned char *data, size_t pages, uint32_t from, const uint32_t *blocks)
{
    if (!r->applies)
        return;
    for (size_t i = 0; i < pages; i++) {
        size_t b = blocks ? blocks[i] : from + i;
        PageCheck c;
        if (page_verify(data + i * PAGE_SIZE_BYTES, r->first + (uint32_t)b, r->backup_start, &c) != PAGE_CORRUPT)
            continue;
        /* perhaps read while PostgreSQL wrote it: once more, as it is now */
        if (!r->path) {
            r->path = str_printf("%s/%s", r->data_dir, r->rel);
            r->again = xmalloc(PAGE_SIZE_BYTES);
        }
        int got = reread(&r->fd, r->path, b, r->again);
        if (got == 0)
            continue;
        if (got > 0 && page_verify(r->again, r->first + (uint32_t)b, r->backup_start, &c) != PAGE_CORRUPT)
            continue;
        r->bad = xrealloc(r->bad, (size_t)(r->nbad + 1) * sizeof(uint32_t));
        r->bad[r->nbad++] = (uint32_t)b;
        if (r->nbad <= REPORT_PER_FILE) {
            char lsn[LSN_BUFSZ];
            log_warn("backup: page checksum mismatch in %s block %zu (LSN %s): stored 0x%04X, computed 0x%04X", r->rel,
                     b, lsn_format(c.lsn, lsn), (unsigned)c.stored, (unsigned)c.computed);
        }
    }
}

int page_check_end(PageCheckRun *r, uint32_t **bad)
{
    if (r->nbad > REPORT_PER_FILE)
        log_warn("backup: %s: %d more pages with a checksum mismatch (%d in all; the manifest lists them)", r->rel,
                 r->nbad - REPORT_PER_FILE, r->nbad);
    if (r->fd >= 0)
        close(r->fd);
    free(r->again);
    free(r->path);
    *bad = r->bad;
    int n = r->nbad;
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    return n;
}

int page_check_file(const char *data_dir, const char *rel, const unsigned char *data, size_t n, Lsn backup_start,
                    uint32_t **bad)
{
    /* a tail shorter than a page (the file being extended as it was read) is not checked */
    return page_check_blocks(data_dir, rel, data, n / PAGE_SIZE_BYTES, NULL, backup_start, bad);
}

int page_check_blocks(const char *data_dir, const char *rel, const unsigned char *data, size_t pages,
                      const uint32_t *blocks, Lsn backup_start, uint32_t **bad)
{
    PageCheckRun r;
    page_check_begin(&r, data_dir, rel, backup_start);
    page_check_pages(&r, data, pages, 0, blocks);
    return page_check_end(&r, bad);
}
