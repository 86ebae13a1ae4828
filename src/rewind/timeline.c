/* Timeline histories and their fork point (see timeline.h). */
#include "rewind/timeline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool timeline_parse(uint32_t tli, const char *text, TimelineHistory *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    Lsn begin = 0;
    uint32_t last = 0;
    int lineno = 0;
    for (const char *p = text ? text : ""; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[256];
        lineno++;
        if (len >= sizeof(line)) {
            err_set(err, "history of timeline %u, line %d: longer than %zu bytes", tli, lineno, sizeof(line) - 1);
            return false;
        }
        memcpy(line, p, len);
        line[len] = '\0';
        p += len + (nl ? 1 : 0);
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s || *s == '#')
            continue;
        char *end;
        errno = 0;
        unsigned long parent = strtoul(s, &end, 10);
        if (errno || end == s || (*end != '\t' && *end != ' ') || parent == 0 || parent > UINT32_MAX) {
            err_set(err, "history of timeline %u, line %d: no parent timeline", tli, lineno);
            return false;
        }
        while (*end == '\t' || *end == ' ')
            end++;
        char lsn_text[LSN_BUFSZ + 1];
        size_t k = strcspn(end, " \t");
        Lsn sw;
        if (k == 0 || k > LSN_BUFSZ) {
            err_set(err, "history of timeline %u, line %d: no switch point", tli, lineno);
            return false;
        }
        memcpy(lsn_text, end, k);
        lsn_text[k] = '\0';
        if (!lsn_parse(lsn_text, &sw)) {
            err_set(err, "history of timeline %u, line %d: bad switch point \"%s\"", tli, lineno, lsn_text);
            return false;
        }
        if (parent <= last || parent >= tli || sw < begin) {
            err_set(err, "history of timeline %u, line %d: timeline %lu at %s goes back", tli, lineno, parent, lsn_text);
            return false;
        }
        if (out->n >= TIMELINE_MAX_ENTRIES - 1) {
            err_set(err, "history of timeline %u: more than %d timelines", tli, TIMELINE_MAX_ENTRIES - 1);
            return false;
        }
        out->e[out->n++] = (TimelineEntry){.tli = (uint32_t)parent, .begin = begin, .end = sw};
        begin = sw;
        last = (uint32_t)parent;
    }
    if (tli == 0) {
        err_set(err, "timeline 0 does not exist");
        return false;
    }
    out->e[out->n++] = (TimelineEntry){.tli = tli, .begin = begin, .end = LSN_END};
    return true;
}

int timeline_fork(const TimelineHistory *a, const TimelineHistory *b, Lsn *fork)
{
    int i = 0;
    while (i < a->n && i < b->n && a->e[i].tli == b->e[i].tli && a->e[i].begin == b->e[i].begin)
        i++;
    if (i == 0) {
        *fork = 0;
        return -1;
    }
    const TimelineEntry *x = &a->e[i - 1], *y = &b->e[i - 1];
    *fork = x->end < y->end ? x->end : y->end;
    return i - 1;
}

uint32_t timeline_of_segment(const TimelineHistory *h, Lsn seg_start, uint32_t wal_segment_size)
{
    uint64_t segno = seg_start / wal_segment_size;
    for (int i = h->n - 1; i >= 0; i--)
        if (h->e[i].begin / wal_segment_size <= segno)
            return h->e[i].tli;
    return 0;
}
