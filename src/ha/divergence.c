/* Reading pg_rewind --dry-run and pg_waldump output into a divergence report (see divergence.h). */
#include "common/common.h"
#include "common/strbuf.h"
#include "ha/divergence.h"

#include <jansson.h>

void divergence_free(Divergence *d)
{
    free(d->txns);
    free(d->rels);
    free(d->rel_names);
    memset(d, 0, sizeof(*d));
}

bool divergence_parse_dry_run(const char *out, Divergence *d)
{
    if (!out)
        return false;
    if (strstr(out, "no rewind required")) {
        d->diverged = false;
        return true;
    }
    const char *p = strstr(out, "servers diverged at WAL location ");
    if (!p)
        return false;
    p += strlen("servers diverged at WAL location ");
    char lsn[32];
    int tli = 0;
    if (sscanf(p, "%31s on timeline %d", lsn, &tli) != 2 || !lsn_parse(lsn, &d->fork_lsn) || tli <= 0)
        return false;
    d->diverged = true;
    d->timeline = tli;
    return true;
}

/* the text after "key: " in a pg_waldump line, up to a comma or the end */
static bool field_after(const char *line, const char *key, char *buf, size_t sz)
{
    const char *p = strstr(line, key);
    if (!p)
        return false;
    p += strlen(key);
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, ",\n");
    if (n == 0 || n >= sz)
        return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return true;
}

/* relations are kept per transaction id until its commit or abort is seen */
typedef struct Pending {
    uint32_t xid;
    char rels[DIV_TXN_RELS][DIV_REL_LEN];
    int n_rels;
} Pending;

static Pending *pending_for(Pending **pend, int *n, int *cap, uint32_t xid)
{
    for (int i = 0; i < *n; i++)
        if ((*pend)[i].xid == xid)
            return &(*pend)[i];
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *pend = xrealloc(*pend, (size_t)*cap * sizeof(**pend));
    }
    Pending *p = &(*pend)[(*n)++];
    memset(p, 0, sizeof(*p));
    p->xid = xid;
    return p;
}

static void add_rel(char rels[][DIV_REL_LEN], int *n, int max, const char *rel)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(rels[i], rel) == 0)
            return;
    if (*n < max)
        str_copy(rels[(*n)++], DIV_REL_LEN, rel);
}

static void add_global_rel(Divergence *d, const char *rel)
{
    for (int i = 0; i < d->n_rels; i++)
        if (strcmp(d->rels[i], rel) == 0)
            return;
    d->rels = xrealloc(d->rels, (size_t)(d->n_rels + 1) * sizeof(*d->rels));
    d->rel_names = xrealloc(d->rel_names, (size_t)(d->n_rels + 1) * sizeof(*d->rel_names));
    str_copy(d->rels[d->n_rels], DIV_REL_LEN, rel);
    d->rel_names[d->n_rels][0] = '\0';
    d->n_rels++;
}

void divergence_parse_waldump(const char *out, Divergence *d)
{
    Pending *pend = NULL;
    int n_pend = 0, cap_pend = 0;
    const char *line = out ? out : "";
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[2048];
        if (len >= sizeof(buf))
            len = sizeof(buf) - 1;
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = eol ? eol + 1 : line + strlen(line);
        if (strncmp(buf, "rmgr:", 5) != 0)
            continue;
        char lsn_text[32], tx_text[32];
        Lsn lsn = 0;
        if (!field_after(buf, " lsn:", lsn_text, sizeof(lsn_text)) || !lsn_parse(lsn_text, &lsn))
            continue;
        if (!d->first_lsn)
            d->first_lsn = lsn;
        d->last_lsn = lsn;
        d->n_records++;
        uint32_t xid = field_after(buf, " tx:", tx_text, sizeof(tx_text)) ? (uint32_t)strtoul(tx_text, NULL, 10) : 0;
        const char *desc = strstr(buf, "desc: ");
        bool xact = strncmp(buf, "rmgr: Transaction", 17) == 0;
        if (xact && desc && xid && strncmp(desc + 6, "COMMIT", 6) == 0) {
            if (d->n_txns == d->cap_txns) {
                d->cap_txns = d->cap_txns ? d->cap_txns * 2 : 16;
                d->txns = xrealloc(d->txns, (size_t)d->cap_txns * sizeof(*d->txns));
            }
            DivTxn *t = &d->txns[d->n_txns++];
            memset(t, 0, sizeof(*t));
            t->xid = xid;
            t->commit_lsn = lsn;
            const char *ts = desc + 6 + 6;
            while (*ts == ' ')
                ts++;
            size_t tl = strcspn(ts, ";\n");
            if (tl >= sizeof(t->commit_time))
                tl = sizeof(t->commit_time) - 1;
            memcpy(t->commit_time, ts, tl);
            t->commit_time[tl] = '\0';
            Pending *p = pending_for(&pend, &n_pend, &cap_pend, xid);
            for (int i = 0; i < p->n_rels; i++) {
                add_rel(t->rels, &t->n_rels, DIV_TXN_RELS, p->rels[i]);
                add_global_rel(d, p->rels[i]);
            }
            p->n_rels = 0;
            continue;
        }
        if (xact && desc && xid && strncmp(desc + 6, "ABORT", 5) == 0) {
            d->n_aborted++;
            continue;
        }
        if (!xid)
            continue;
        /* block references: "blkref #0: rel 1663/5/16384 blk 0" (one or more per record) */
        for (const char *r = strstr(buf, "rel "); r; r = strstr(r + 4, "rel ")) {
            char rel[DIV_REL_LEN];
            size_t n = strcspn(r + 4, " ,");
            if (n == 0 || n >= sizeof(rel) || r[4] < '0' || r[4] > '9')
                continue;
            memcpy(rel, r + 4, n);
            rel[n] = '\0';
            Pending *p = pending_for(&pend, &n_pend, &cap_pend, xid);
            add_rel(p->rels, &p->n_rels, DIV_TXN_RELS, rel);
        }
    }
    free(pend);
}

void divergence_summary(const Divergence *d, char *buf, size_t sz)
{
    if (!d->diverged) {
        str_copy(buf, sz, "no divergence: nothing to throw away");
        return;
    }
    StrBuf b = {0};
    char a[LSN_BUFSZ], z[LSN_BUFSZ];
    strbuf_addf(&b, "%d committed transaction%s", d->n_txns, d->n_txns == 1 ? "" : "s");
    if (d->n_txns > 0) {
        strbuf_adds(&b, " (xids");
        for (int i = 0; i < d->n_txns && i < 10; i++)
            strbuf_addf(&b, "%s %u", i ? "," : "", d->txns[i].xid);
        if (d->n_txns > 10)
            strbuf_addf(&b, ", ... %d more", d->n_txns - 10);
        strbuf_adds(&b, ")");
    }
    strbuf_addf(&b, " on timeline %d from %s to %s (%d WAL records%s)", d->timeline, lsn_format(d->fork_lsn, a),
                lsn_format(d->last_lsn ? d->last_lsn : d->fork_lsn, z), d->n_records,
                d->truncated ? ", more not read" : "");
    if (d->n_rels > 0) {
        strbuf_adds(&b, ", relations");
        for (int i = 0; i < d->n_rels && i < 10; i++)
            strbuf_addf(&b, "%s %s", i ? "," : "", d->rel_names[i][0] ? d->rel_names[i] : d->rels[i]);
        if (d->n_rels > 10)
            strbuf_addf(&b, ", ... %d more", d->n_rels - 10);
    }
    char *s = strbuf_take(&b);
    str_copy(buf, sz, s);
    free(s);
}

char *divergence_json(const Divergence *d, const char *member, const char *source)
{
    char a[LSN_BUFSZ], f[LSN_BUFSZ], z[LSN_BUFSZ];
    json_t *o = json_pack("{s:s, s:s, s:b, s:i, s:s, s:s, s:s, s:i, s:b, s:i, s:i}", "member", member, "source", source,
                          "diverged", d->diverged, "timeline", d->timeline, "fork_lsn", lsn_format(d->fork_lsn, f),
                          "first_lsn", lsn_format(d->first_lsn, a), "last_lsn", lsn_format(d->last_lsn, z),
                          "wal_records", d->n_records, "truncated", d->truncated, "committed_transactions", d->n_txns,
                          "aborted_transactions", d->n_aborted);
    json_t *txns = json_array();
    for (int i = 0; i < d->n_txns; i++) {
        const DivTxn *t = &d->txns[i];
        char c[LSN_BUFSZ];
        json_t *rels = json_array();
        for (int k = 0; k < t->n_rels; k++) {
            const char *name = "";
            for (int g = 0; g < d->n_rels; g++)
                if (strcmp(d->rels[g], t->rels[k]) == 0)
                    name = d->rel_names[g];
            json_array_append_new(rels, json_string(name[0] ? name : t->rels[k]));
        }
        json_array_append_new(txns, json_pack("{s:I, s:s, s:s, s:o}", "xid", (json_int_t)t->xid, "commit_time",
                                              t->commit_time, "commit_lsn", lsn_format(t->commit_lsn, c), "relations",
                                              rels));
    }
    json_object_set_new(o, "transactions", txns);
    json_t *rels = json_array();
    for (int i = 0; i < d->n_rels; i++)
        json_array_append_new(rels, json_pack("{s:s, s:s}", "relfilenode", d->rels[i], "name", d->rel_names[i]));
    json_object_set_new(o, "relations", rels);
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
