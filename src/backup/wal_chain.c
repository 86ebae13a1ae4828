/* The chain of WAL segments in the repository (see wal_chain.h). */
#include "backup/wal_chain.h"
#include "backup/obj.h"
#include "backup/wal_archive.h"

#include <stdlib.h>

#define SEGS_PER_XLOGID (0x100000000ULL / WAL_SEG_BYTES)

bool wal_seg_parse(const char *name, WalSeg *s)
{
    unsigned tli, hi, lo;
    if (wal_file_kind(name) != WALFILE_SEGMENT || sscanf(name, "%8X%8X%8X", &tli, &hi, &lo) != 3)
        return false;
    s->tli = tli;
    s->segno = (uint64_t)hi * SEGS_PER_XLOGID + lo;
    return true;
}

void wal_seg_name(unsigned tli, uint64_t segno, char *buf, size_t sz)
{
    str_fmt(buf, sz, "%08X%08X%08X", tli, (unsigned)(segno / SEGS_PER_XLOGID), (unsigned)(segno % SEGS_PER_XLOGID));
}

void wal_chain_add(WalChain *c, WalSeg s)
{
    c->segs = xrealloc(c->segs, (size_t)(c->n + 1) * sizeof(WalSeg));
    c->segs[c->n++] = s;
}

static int cmp_seg(const void *a, const void *b)
{
    const WalSeg *x = a, *y = b;
    if (x->tli != y->tli)
        return x->tli < y->tli ? -1 : 1;
    return x->segno < y->segno ? -1 : x->segno > y->segno;
}

void wal_chain_sort(WalChain *c)
{
    if (c->n > 1)
        qsort(c->segs, (size_t)c->n, sizeof(WalSeg), cmp_seg);
}

bool wal_chain_load(Repo *r, WalChain *c, Err *err)
{
    memset(c, 0, sizeof(*c));
    c->r = r;
    RepoKeys k;
    if (!r->ops->list(r, "wal", &k, err))
        return false;
    for (int i = 0; i < k.n; i++) {
        const char *slash = strrchr(k.keys[i], '/');
        WalSeg s;
        if (slash && wal_seg_parse(slash + 1, &s))
            wal_chain_add(c, s);
    }
    repo_keys_free(&k);
    wal_chain_sort(c);
    return true;
}

void wal_chain_free(WalChain *c)
{
    free(c->segs);
    memset(c, 0, sizeof(*c));
}

bool wal_chain_has(const WalChain *c, unsigned tli, uint64_t segno)
{
    WalSeg key = {tli, segno};
    return c->n > 0 && bsearch(&key, c->segs, (size_t)c->n, sizeof(WalSeg), cmp_seg) != NULL;
}

bool wal_chain_next_timeline(const WalChain *c, unsigned tli, uint64_t *start_segno)
{
    char name[32], key[64];
    str_fmt(name, sizeof(name), "%08X.history", tli + 1);
    if (!wal_file_key(name, key, sizeof(key)))
        return false;
    void *stored = NULL, *raw = NULL;
    size_t sn = 0, rn = 0;
    bool missing = false;
    bool ok = c->r->ops->read_all(c->r, key, &stored, &sn, &missing, NULL) &&
              obj_decode(c->r->cipher, stored, sn, &raw, &rn, NULL);
    free(stored);
    if (!ok)
        return false;
    char *text = xmalloc(rn + 1);
    memcpy(text, raw, rn);
    text[rn] = '\0';
    free(raw);
    bool found = false;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        unsigned parent, hi, lo;
        if (sscanf(line, "%u %X/%X", &parent, &hi, &lo) == 3 && parent == tli) {
            *start_segno = (((uint64_t)hi << 32) | lo) / WAL_SEG_BYTES;
            found = true;
        }
    }
    free(text);
    return found;
}

void wal_chain_reach(const WalChain *c, unsigned tli, uint64_t from, unsigned *end_tli, uint64_t *end_segno)
{
    uint64_t seg = from;
    for (;;) {
        while (wal_chain_has(c, tli, seg + 1))
            seg++;
        uint64_t next_start;
        if (!wal_chain_next_timeline(c, tli, &next_start) || next_start > seg + 1 ||
            !(wal_chain_has(c, tli + 1, next_start) || wal_chain_has(c, tli + 1, next_start + 1)))
            break;
        tli++;
        seg = wal_chain_has(c, tli, next_start) ? next_start : next_start + 1;
    }
    *end_tli = tli;
    *end_segno = seg;
}

bool wal_chain_more_after(const WalChain *c, unsigned tli, uint64_t segno)
{
    for (int i = 0; i < c->n; i++)
        if ((c->segs[i].tli == tli && c->segs[i].segno > segno) || c->segs[i].tli > tli)
            return true;
    return false;
}
