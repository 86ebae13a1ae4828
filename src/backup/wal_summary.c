/* WAL summaries (see wal_summary.h): reading block references out of PostgreSQL 15 WAL. */
#include "backup/wal_summary.h"

#include <stdlib.h>

/* ---- PostgreSQL 15's WAL layout (access/xlog_internal.h, access/xlogrecord.h) ---------------- */
#define WAL_PAGE_MAGIC 0xD110
#define WAL_PAGE 8192u
#define SHORT_PAGE_HDR 24u          /* magic, info, timeline, page address, remaining length */
#define LONG_PAGE_HDR 40u           /* and system identifier, segment size, page size */
#define PAGE_FIRST_IS_CONT 0x0001   /* the page starts with the rest of a record */
#define PAGE_LONG_HEADER 0x0002
#define RECORD_HDR 24u              /* total length, xid, previous record, info, resource manager, crc */
#define ALIGN8(x) (((x) + 7u) & ~(uint64_t)7u)

#define BLOCK_ID_MAX 32
#define BLOCK_ID_DATA_SHORT 255
#define BLOCK_ID_DATA_LONG 254
#define BLOCK_ID_ORIGIN 253
#define BLOCK_ID_TOPLEVEL_XID 252
#define BLOCK_FORK_MASK 0x0F
#define BLOCK_HAS_IMAGE 0x10
#define BLOCK_SAME_REL 0x80
#define IMAGE_HAS_HOLE 0x01
#define IMAGE_COMPRESSED 0x1C       /* pglz, lz4 or zstd */

#define RM_XLOG 0
#define RM_SMGR 2
#define RM_DBASE 4
#define XLOG_SWITCH 0x40
#define SMGR_CREATE 0x10
#define SMGR_TRUNCATE 0x20
#define SMGR_TRUNCATE_HEAP 0x0001
#define DBASE_CREATE_FILE_COPY 0x00

/* How much of a record is kept to read its headers: block headers come first and take at most
 * 33 x 27 bytes; the records whose main data matters (smgr, dbase) are small. */
#define HEADER_KEEP 4096u

static uint16_t rd16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- the set of blocks ------------------------------------------------------------------------ */

static uint64_t key_hash(const WalRelKey *k)
{
    uint64_t h = 1469598103934665603ULL;
    const uint32_t parts[4] = {k->spc, k->db, k->rel, k->fork};
    for (int i = 0; i < 4; i++) {
        h ^= parts[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static bool key_eq(const WalRelKey *a, const WalRelKey *b)
{
    return a->spc == b->spc && a->db == b->db && a->rel == b->rel && a->fork == b->fork;
}

static void reindex(WalSummary *s)
{
    free(s->slots);
    s->n_slots = 64;
    while (s->n_slots < s->n_rels * 2 + 2)
        s->n_slots *= 2;
    s->slots = xcalloc(s->n_slots, sizeof(uint32_t));
    for (size_t i = 0; i < s->n_rels; i++) {
        size_t at = key_hash(&s->rels[i].key) & (s->n_slots - 1);
        while (s->slots[at])
            at = (at + 1) & (s->n_slots - 1);
        s->slots[at] = (uint32_t)i + 1;
    }
}

static WalRelBlocks *rel_lookup(const WalSummary *s, const WalRelKey *k)
{
    if (!s->slots)
        return NULL;
    size_t at = key_hash(k) & (s->n_slots - 1);
    while (s->slots[at]) {
        WalRelBlocks *r = &s->rels[s->slots[at] - 1];
        if (key_eq(&r->key, k))
            return r;
        at = (at + 1) & (s->n_slots - 1);
    }
    return NULL;
}

static WalRelBlocks *rel_get(WalSummary *s, const WalRelKey *k)
{
    WalRelBlocks *r = rel_lookup(s, k);
    if (r)
        return r;
    if (s->n_rels == s->cap_rels) {
        s->cap_rels = s->cap_rels ? s->cap_rels * 2 : 32;
        s->rels = xrealloc(s->rels, s->cap_rels * sizeof(WalRelBlocks));
    }
    r = &s->rels[s->n_rels++];
    memset(r, 0, sizeof(*r));
    r->key = *k;
    r->limit = WAL_SUMMARY_NO_LIMIT;
    if (s->n_rels * 2 + 2 > s->n_slots)
        reindex(s);
    else {
        size_t at = key_hash(k) & (s->n_slots - 1);
        while (s->slots[at])
            at = (at + 1) & (s->n_slots - 1);
        s->slots[at] = (uint32_t)s->n_rels;
    }
    return r;
}

static void add_block(WalSummary *s, const WalRelKey *k, uint32_t blk)
{
    WalRelBlocks *r = rel_get(s, k);
    /* consecutive records often touch the same block */
    if (r->n && r->blocks[r->n - 1] == blk)
        return;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->blocks = xrealloc(r->blocks, r->cap * sizeof(uint32_t));
    }
    r->blocks[r->n++] = blk;
}

static void set_limit(WalSummary *s, const WalRelKey *k, uint32_t limit)
{
    WalRelBlocks *r = rel_get(s, k);
    if (limit < r->limit)
        r->limit = limit;
}

static void add_whole_db(WalSummary *s, uint32_t spc, uint32_t db)
{
    if (wal_summary_db_copied(s, spc, db))
        return;
    s->whole_dbs = xrealloc(s->whole_dbs, (s->n_whole_dbs + 1) * sizeof(WalDb));
    s->whole_dbs[s->n_whole_dbs++] = (WalDb){spc, db};
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* sort every block list and drop duplicates */
static void finish_blocks(WalSummary *s)
{
    for (size_t i = 0; i < s->n_rels; i++) {
        WalRelBlocks *r = &s->rels[i];
        if (r->n < 2)
            continue;
        qsort(r->blocks, r->n, sizeof(uint32_t), cmp_u32);
        size_t w = 1;
        for (size_t j = 1; j < r->n; j++)
            if (r->blocks[j] != r->blocks[w - 1])
                r->blocks[w++] = r->blocks[j];
        r->n = w;
    }
}

void wal_summary_free(WalSummary *s)
{
    for (size_t i = 0; i < s->n_rels; i++)
        free(s->rels[i].blocks);
    free(s->rels);
    free(s->slots);
    free(s->whole_dbs);
    free(s->carry);
    free(s->head);
    memset(s, 0, sizeof(*s));
}

const WalRelBlocks *wal_summary_find(const WalSummary *s, const WalRelKey *k)
{
    return rel_lookup(s, k);
}

bool wal_summary_db_copied(const WalSummary *s, uint32_t spc, uint32_t db)
{
    for (size_t i = 0; i < s->n_whole_dbs; i++)
        if (s->whole_dbs[i].spc == spc && s->whole_dbs[i].db == db)
            return true;
    return false;
}

/* ---- records ---------------------------------------------------------------------------------- */

enum { DECODE_OK = 1, DECODE_SHORT = 0, DECODE_BAD = -1 };

/* What the main data of a storage or database record says about whole files. */
static void note_main_data(WalSummary *s, uint8_t rmid, uint8_t info, const unsigned char *d, uint32_t len)
{
    if (rmid == RM_SMGR && info == SMGR_CREATE && len >= 16) {
        WalRelKey k = {rd32(d), rd32(d + 4), rd32(d + 8), rd32(d + 12)};
        if (k.fork <= 3)
            set_limit(s, &k, 0);
    } else if (rmid == RM_SMGR && info == SMGR_TRUNCATE && len >= 20) {
        WalRelKey k = {rd32(d + 4), rd32(d + 8), rd32(d + 12), 0};
        if (rd32(d + 16) & SMGR_TRUNCATE_HEAP)
            set_limit(s, &k, rd32(d));
    } else if (rmid == RM_DBASE && info == DBASE_CREATE_FILE_COPY && len >= 8) {
        add_whole_db(s, rd32(d + 4), rd32(d));
    }
}

/* Read the block references (and, for storage and database records, the main data) of the
 * record whose first avail bytes are r. DECODE_SHORT: its headers go on past avail. */
static int decode_record(WalSummary *s, const unsigned char *r, size_t avail, uint8_t *rmid_out, uint8_t *info_out)
{
    if (avail < RECORD_HDR)
        return DECODE_SHORT;
    uint32_t tot = rd32(r);
    uint8_t info = r[16] & 0xF0, rmid = r[17];
    *rmid_out = rmid;
    *info_out = info;
    if (tot < RECORD_HDR)
        return DECODE_BAD;
    size_t pos = RECORD_HDR;
    uint64_t remaining = tot - RECORD_HDR, datatotal = 0;
    uint32_t main_len = 0;
    bool have_rel = false;
    WalRelKey rel = {0};
#define NEED(k)                                                                                                        \
    do {                                                                                                               \
        if (pos + (k) > avail)                                                                                         \
            return DECODE_SHORT;                                                                                       \
        if ((uint64_t)(k) > remaining)                                                                                 \
            return DECODE_BAD;                                                                                         \
        remaining -= (k);                                                                                              \
    } while (0)
    while (remaining > datatotal) {
        NEED(1);
        uint8_t id = r[pos++];
        if (id == BLOCK_ID_DATA_SHORT) {
            NEED(1);
            main_len = r[pos++];
            datatotal += main_len;
            break;
        }
        if (id == BLOCK_ID_DATA_LONG) {
            NEED(4);
            main_len = rd32(r + pos);
            pos += 4;
            datatotal += main_len;
            break;
        }
        if (id == BLOCK_ID_ORIGIN) {
            NEED(2);
            pos += 2;
            continue;
        }
        if (id == BLOCK_ID_TOPLEVEL_XID) {
            NEED(4);
            pos += 4;
            continue;
        }
        if (id > BLOCK_ID_MAX)
            return DECODE_BAD;
        NEED(3);
        uint8_t fork_flags = r[pos];
        datatotal += rd16(r + pos + 1);
        pos += 3;
        if (fork_flags & BLOCK_HAS_IMAGE) {
            NEED(5);
            datatotal += rd16(r + pos);
            uint8_t bimg_info = r[pos + 4];
            pos += 5;
            if ((bimg_info & IMAGE_HAS_HOLE) && (bimg_info & IMAGE_COMPRESSED)) {
                NEED(2);
                pos += 2;
            }
        }
        if (!(fork_flags & BLOCK_SAME_REL)) {
            NEED(12);
            rel.spc = rd32(r + pos);
            rel.db = rd32(r + pos + 4);
            rel.rel = rd32(r + pos + 8);
            pos += 12;
            have_rel = true;
        } else if (!have_rel) {
            return DECODE_BAD;
        }
        NEED(4);
        rel.fork = fork_flags & BLOCK_FORK_MASK;
        add_block(s, &rel, rd32(r + pos));
        pos += 4;
    }
#undef NEED
    if (remaining != datatotal)
        return DECODE_BAD;
    if ((rmid == RM_SMGR || rmid == RM_DBASE) && main_len > 0) {
        if (tot > avail)
            return DECODE_SHORT;
        note_main_data(s, rmid, info, r + tot - main_len, main_len);
    }
    return DECODE_OK;
}

/* ---- pages ------------------------------------------------------------------------------------ */

typedef struct Seg {
    const unsigned char *p;
    size_t n;
    uint64_t start;
} Seg;

/* Is the page at offset off (a page boundary) a valid WAL page of this segment? */
static bool page_ok(const Seg *g, size_t off)
{
    if (off + WAL_PAGE > g->n)
        return false;
    const unsigned char *h = g->p + off;
    return rd16(h) == WAL_PAGE_MAGIC && rd64(h + 8) == g->start + off;
}

static size_t page_hdr_len(const Seg *g, size_t off)
{
    return (rd16(g->p + off + 2) & PAGE_LONG_HEADER) ? LONG_PAGE_HDR : SHORT_PAGE_HDR;
}

/* Read len bytes of record data from *off on (page headers skipped; each page entered must be a
 * valid one that continues a record), into dst when not NULL. Returns how many bytes it read: less
 * than len when the segment ends, or a page does not continue the record. */
static size_t stream_read(const Seg *g, size_t *off, size_t len, unsigned char *dst)
{
    size_t got = 0;
    while (got < len) {
        if (*off % WAL_PAGE == 0) {
            if (!page_ok(g, *off) || !(rd16(g->p + *off + 2) & PAGE_FIRST_IS_CONT))
                return got;
            *off += page_hdr_len(g, *off);
        }
        size_t room = WAL_PAGE - *off % WAL_PAGE, k = len - got < room ? len - got : room;
        if (dst)
            memcpy(dst + got, g->p + *off, k);
        got += k;
        *off += k;
    }
    return got;
}

bool wal_summary_parse(const unsigned char *seg, size_t n, uint64_t seg_start, uint64_t stop_lsn, WalSummary *out,
                       Err *err)
{
    memset(out, 0, sizeof(*out));
    out->seg_start = seg_start;
    Seg g = {seg, n, seg_start};
    if (n < WAL_PAGE || n % WAL_PAGE != 0 || rd16(seg) != WAL_PAGE_MAGIC || !(rd16(seg + 2) & PAGE_LONG_HEADER) ||
        rd64(seg + 8) != seg_start || rd32(seg + 36) != WAL_PAGE || rd32(seg + 32) != n) {
        err_set(err, "not a PostgreSQL 15 WAL segment starting at %X/%X", (unsigned)(seg_start >> 32),
                (unsigned)seg_start);
        return false;
    }
    size_t off = LONG_PAGE_HDR;
    if (rd16(seg + 2) & PAGE_FIRST_IS_CONT) {
        /* the rest of a record that began in the segment before: keep its first bytes (they may
         * hold the headers the summary before could not finish), skip the rest */
        uint32_t rem = rd32(seg + 16);
        uint32_t keep = rem < HEADER_KEEP ? rem : HEADER_KEEP;
        out->head = xmalloc((size_t)keep + 1);
        size_t at = off;
        out->head_len = (uint32_t)stream_read(&g, &at, keep, out->head);
        if (stream_read(&g, &off, rem, NULL) < rem) {
            /* the record goes on past this segment (or past what is written of it) */
            out->end = seg_start + off;
            out->complete = off >= n;
            return true;
        }
        off = ALIGN8(off);
    }
    unsigned char *buf = xmalloc(HEADER_KEEP);
    bool switched = false;
    for (;;) {
        if (off % WAL_PAGE == 0) {
            if (off >= n || !page_ok(&g, off))
                break;
            off += page_hdr_len(&g, off);
        }
        if (stop_lsn && seg_start + off >= stop_lsn) {
            out->complete = true;
            break;
        }
        uint32_t tot = rd32(seg + off);
        if (tot == 0)
            break; /* the end of what was written */
        if (tot < RECORD_HDR) {
            err_set(err, "WAL record at %X/%X: length %u is too short", (unsigned)((seg_start + off) >> 32),
                    (unsigned)(seg_start + off), tot);
            free(buf);
            wal_summary_free(out);
            return false;
        }
        size_t rec_off = off, want = tot < HEADER_KEEP ? tot : HEADER_KEEP;
        size_t got = stream_read(&g, &off, want, buf);
        uint8_t rmid = 0, info = 0;
        int d = decode_record(out, buf, got, &rmid, &info);
        if (d == DECODE_BAD) {
            err_set(err, "WAL record at %X/%X: block references do not add up", (unsigned)((seg_start + rec_off) >> 32),
                    (unsigned)(seg_start + rec_off));
            free(buf);
            wal_summary_free(out);
            return false;
        }
        if (got < want) {
            /* the segment (or what was written of it) ends inside the record */
            if (d == DECODE_SHORT && off >= n) {
                out->carry = xmalloc(got + 1);
                memcpy(out->carry, buf, got);
                out->carry_len = (uint32_t)got;
                out->carry_tot = tot;
            }
            break;
        }
        if (d == DECODE_SHORT) {
            /* headers longer than any PostgreSQL writes */
            err_set(err, "WAL record at %X/%X: headers longer than %u bytes", (unsigned)((seg_start + rec_off) >> 32),
                    (unsigned)(seg_start + rec_off), HEADER_KEEP);
            free(buf);
            wal_summary_free(out);
            return false;
        }
        out->records++;
        size_t rest = tot - want;
        if (rest && stream_read(&g, &off, rest, NULL) < rest)
            break; /* goes on in the next segment; its headers were read */
        off = ALIGN8(off);
        if (rmid == RM_XLOG && info == XLOG_SWITCH) {
            switched = true; /* the rest of the segment is unused */
            break;
        }
    }
    free(buf);
    out->end = seg_start + (off < n ? off : n);
    out->complete = out->complete || switched || off >= n;
    finish_blocks(out);
    return true;
}

/* ---- merging ---------------------------------------------------------------------------------- */

/* dst := sorted union of dst and the sorted src */
static void union_blocks(WalRelBlocks *dst, const uint32_t *src, size_t m)
{
    uint32_t *out = xmalloc((dst->n + m + 1) * sizeof(uint32_t));
    size_t i = 0, j = 0, w = 0;
    while (i < dst->n || j < m) {
        uint32_t v;
        if (j >= m || (i < dst->n && dst->blocks[i] < src[j]))
            v = dst->blocks[i++];
        else if (i >= dst->n || src[j] < dst->blocks[i])
            v = src[j++];
        else {
            v = dst->blocks[i++];
            j++;
        }
        out[w++] = v;
    }
    free(dst->blocks);
    dst->blocks = out;
    dst->n = w;
    dst->cap = dst->n + m + 1;
}

/* acc := acc with every block, limit and whole database of src */
static void absorb(WalSummary *acc, const WalSummary *src)
{
    for (size_t i = 0; i < src->n_rels; i++) {
        const WalRelBlocks *from = &src->rels[i];
        WalRelBlocks *to = rel_get(acc, &from->key);
        if (from->limit < to->limit)
            to->limit = from->limit;
        union_blocks(to, from->blocks, from->n);
    }
    for (size_t i = 0; i < src->n_whole_dbs; i++)
        add_whole_db(acc, src->whole_dbs[i].spc, src->whole_dbs[i].db);
}

bool wal_summary_merge(WalSummary *acc, const WalSummary *next, Err *err)
{
    if (acc->carry_len) {
        /* the record acc ends in, put together with its continuation */
        size_t len = (size_t)acc->carry_len + next->head_len;
        unsigned char *rec = xmalloc(len + 1);
        memcpy(rec, acc->carry, acc->carry_len);
        if (next->head_len)
            memcpy(rec + acc->carry_len, next->head, next->head_len);
        size_t avail = len < acc->carry_tot ? len : acc->carry_tot;
        WalSummary one = {0};
        uint8_t rmid, info;
        int d = decode_record(&one, rec, avail, &rmid, &info);
        free(rec);
        if (d != DECODE_OK) {
            wal_summary_free(&one);
            err_set(err, "the WAL record crossing into the segment at %X/%X cannot be read from the summaries",
                    (unsigned)(next->seg_start >> 32), (unsigned)next->seg_start);
            return false;
        }
        finish_blocks(&one);
        absorb(acc, &one);
        wal_summary_free(&one);
    }
    absorb(acc, next);
    free(acc->carry);
    acc->carry = NULL;
    acc->carry_len = acc->carry_tot = 0;
    if (next->carry_len) {
        acc->carry = xmalloc(next->carry_len + 1);
        memcpy(acc->carry, next->carry, next->carry_len);
        acc->carry_len = next->carry_len;
        acc->carry_tot = next->carry_tot;
    }
    acc->end = next->end;
    acc->complete = next->complete;
    acc->records += next->records;
    return true;
}

/* ---- stored form ------------------------------------------------------------------------------ */

#define SUMMARY_MAGIC "PGVWSUM1"

typedef struct Out {
    unsigned char *p;
    size_t n, cap;
} Out;

static void put(Out *o, const void *p, size_t n)
{
    if (o->n + n > o->cap) {
        while (o->n + n > o->cap)
            o->cap = o->cap ? o->cap * 2 : 4096;
        o->p = xrealloc(o->p, o->cap);
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
}
static void put32(Out *o, uint32_t v) { put(o, &v, 4); }
static void put64(Out *o, uint64_t v) { put(o, &v, 8); }

unsigned char *wal_summary_serialize(const WalSummary *s, size_t *n)
{
    Out o = {0};
    put(&o, SUMMARY_MAGIC, 8);
    put64(&o, s->seg_start);
    put64(&o, s->end);
    put64(&o, s->records);
    put32(&o, s->complete ? 1 : 0);
    put32(&o, s->carry_len);
    put32(&o, s->carry_tot);
    put(&o, s->carry ? s->carry : (const unsigned char *)"", s->carry_len);
    put32(&o, s->head_len);
    put(&o, s->head ? s->head : (const unsigned char *)"", s->head_len);
    put32(&o, (uint32_t)s->n_whole_dbs);
    for (size_t i = 0; i < s->n_whole_dbs; i++) {
        put32(&o, s->whole_dbs[i].spc);
        put32(&o, s->whole_dbs[i].db);
    }
    put32(&o, (uint32_t)s->n_rels);
    for (size_t i = 0; i < s->n_rels; i++) {
        const WalRelBlocks *r = &s->rels[i];
        put32(&o, r->key.spc);
        put32(&o, r->key.db);
        put32(&o, r->key.rel);
        put32(&o, r->key.fork);
        put32(&o, r->limit);
        put32(&o, (uint32_t)r->n);
        put(&o, r->blocks ? (const void *)r->blocks : "", r->n * sizeof(uint32_t));
    }
    *n = o.n;
    return o.p;
}

typedef struct In {
    const unsigned char *p;
    size_t n, at;
    bool bad;
} In;

static const unsigned char *take(In *in, size_t k)
{
    if (in->bad || k > in->n - in->at) {
        in->bad = true;
        return NULL;
    }
    const unsigned char *p = in->p + in->at;
    in->at += k;
    return p;
}
static uint32_t take32(In *in)
{
    const unsigned char *p = take(in, 4);
    return p ? rd32(p) : 0;
}
static uint64_t take64(In *in)
{
    const unsigned char *p = take(in, 8);
    return p ? rd64(p) : 0;
}
static unsigned char *take_copy(In *in, uint32_t k)
{
    const unsigned char *p = take(in, k);
    if (!p)
        return NULL;
    unsigned char *c = xmalloc((size_t)k + 1);
    memcpy(c, p, k);
    return c;
}

bool wal_summary_deserialize(const void *p, size_t n, WalSummary *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    In in = {p, n, 0, false};
    const unsigned char *magic = take(&in, 8);
    if (!magic || memcmp(magic, SUMMARY_MAGIC, 8) != 0) {
        err_set(err, "not a WAL summary");
        return false;
    }
    out->seg_start = take64(&in);
    out->end = take64(&in);
    out->records = take64(&in);
    out->complete = take32(&in) == 1;
    out->carry_len = take32(&in);
    out->carry_tot = take32(&in);
    out->carry = take_copy(&in, out->carry_len);
    out->head_len = take32(&in);
    out->head = take_copy(&in, out->head_len);
    uint32_t nd = take32(&in);
    for (uint32_t i = 0; i < nd && !in.bad; i++) {
        uint32_t spc = take32(&in), db = take32(&in);
        if (!in.bad)
            add_whole_db(out, spc, db);
    }
    uint32_t nr = take32(&in);
    for (uint32_t i = 0; i < nr && !in.bad; i++) {
        WalRelKey k;
        k.spc = take32(&in);
        k.db = take32(&in);
        k.rel = take32(&in);
        k.fork = take32(&in);
        uint32_t limit = take32(&in), nb = take32(&in);
        const unsigned char *b = nb <= (n - in.at) / 4 ? take(&in, (size_t)nb * 4) : (in.bad = true, NULL);
        if (in.bad)
            break;
        if (rel_lookup(out, &k)) {
            in.bad = true; /* twice the same relation fork */
            break;
        }
        WalRelBlocks *r = rel_get(out, &k);
        r->limit = limit;
        r->blocks = xmalloc((size_t)nb * 4 + 4);
        memcpy(r->blocks, b, (size_t)nb * 4);
        r->n = r->cap = nb;
        for (uint32_t j = 1; j < nb; j++)
            if (r->blocks[j] <= r->blocks[j - 1])
                in.bad = true;
    }
    if (in.bad || in.at != n || out->carry_len > HEADER_KEEP || out->head_len > HEADER_KEEP) {
        wal_summary_free(out);
        err_set(err, "WAL summary damaged (%zu bytes)", n);
        return false;
    }
    return true;
}

/* ---- file names ------------------------------------------------------------------------------- */

static bool parse_u32(const char **s, uint32_t *v)
{
    const char *p = *s;
    if (*p < '0' || *p > '9')
        return false;
    uint64_t x = 0;
    while (*p >= '0' && *p <= '9') {
        x = x * 10 + (uint64_t)(*p - '0');
        if (x > UINT32_MAX)
            return false;
        p++;
    }
    *v = (uint32_t)x;
    *s = p;
    return true;
}

bool wal_relpath_parse(const char *path, WalRelKey *k, uint32_t *segno)
{
    memset(k, 0, sizeof(*k));
    *segno = 0;
    const char *p;
    if (strncmp(path, "global/", 7) == 0) {
        k->spc = 1664; /* pg_global */
        p = path + 7;
    } else if (strncmp(path, "base/", 5) == 0) {
        k->spc = 1663; /* pg_default */
        p = path + 5;
        if (!parse_u32(&p, &k->db) || *p++ != '/')
            return false;
    } else {
        return false;
    }
    if (!parse_u32(&p, &k->rel))
        return false;
    if (strncmp(p, "_fsm", 4) == 0) {
        k->fork = 1;
        p += 4;
    } else if (strncmp(p, "_vm", 3) == 0) {
        k->fork = 2;
        p += 3;
    } else if (strncmp(p, "_init", 5) == 0) {
        k->fork = 3;
        p += 5;
    }
    if (*p == '.') {
        p++;
        if (!parse_u32(&p, segno))
            return false;
    }
    return *p == '\0';
}
