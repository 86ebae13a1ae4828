/* Cron-style schedule of backups (see schedule.h). */
#include "backup/schedule.h"

#include <ctype.h>

static const struct {
    const char *name;
    int lo, hi;
} fields[5] = {{"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"day of week", 0, 7}};

static bool number(const char **p, int *v)
{
    if (!isdigit((unsigned char)**p))
        return false;
    long n = 0;
    while (isdigit((unsigned char)**p) && n < 1000)
        n = n * 10 + (*(*p)++ - '0');
    *v = (int)n;
    return true;
}

/* one field ("*", "1,2", "1-5/2", "*\/10") into bits */
static bool parse_field(const char *text, size_t len, int f, uint64_t *bits, bool *any, Err *err)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf)) {
        err_set(err, "field %d (%s) is empty or too long", f + 1, fields[f].name);
        return false;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    *bits = 0;
    *any = strcmp(buf, "*") == 0;
    if (buf[0] == ',' || buf[len - 1] == ',' || strstr(buf, ",,")) {
        err_set(err, "field %d (%s): empty item in \"%s\"", f + 1, fields[f].name, buf);
        return false;
    }
    for (char *item = strtok(buf, ","); item; item = strtok(NULL, ",")) {
        const char *p = item;
        int lo = fields[f].lo, hi = fields[f].hi, step = 1;
        if (*p == '*') {
            p++;
        } else {
            if (!number(&p, &lo)) {
                err_set(err, "field %d (%s): \"%s\" is not a number, range or '*'", f + 1, fields[f].name, item);
                return false;
            }
            hi = lo;
            if (*p == '-') {
                p++;
                if (!number(&p, &hi)) {
                    err_set(err, "field %d (%s): bad range \"%s\"", f + 1, fields[f].name, item);
                    return false;
                }
            }
        }
        if (*p == '/') {
            p++;
            if (!number(&p, &step) || step < 1) {
                err_set(err, "field %d (%s): bad step in \"%s\"", f + 1, fields[f].name, item);
                return false;
            }
            if (item[0] != '*' && !strchr(item, '-'))
                hi = fields[f].hi; /* "5/10": from 5 on */
        }
        if (*p) {
            err_set(err, "field %d (%s): unexpected \"%s\"", f + 1, fields[f].name, p);
            return false;
        }
        if (lo < fields[f].lo || hi > fields[f].hi || lo > hi) {
            err_set(err, "field %d (%s): %s is out of range %d-%d", f + 1, fields[f].name, item, fields[f].lo,
                    fields[f].hi);
            return false;
        }
        for (int v = lo; v <= hi; v += step)
            *bits |= 1ULL << (f == 4 && v == 7 ? 0 : v);
    }
    return true;
}

bool schedule_parse(const char *text, Schedule *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    const char *p = text ? text : "";
    uint64_t bits[5];
    bool any[5];
    int f = 0;
    while (*p) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, " \t");
        if (f == 5) {
            err_set(err, "expected 5 fields (minute hour day-of-month month day-of-week), got more");
            return false;
        }
        if (!parse_field(p, len, f, &bits[f], &any[f], err))
            return false;
        f++;
        p += len;
    }
    if (f != 5) {
        err_set(err, "expected 5 fields (minute hour day-of-month month day-of-week), got %d", f);
        return false;
    }
    out->minute = bits[0];
    out->hour = (uint32_t)bits[1];
    out->mday = (uint32_t)bits[2];
    out->month = (uint32_t)bits[3];
    out->wday = (uint32_t)bits[4];
    out->mday_any = any[2];
    out->wday_any = any[4];
    return true;
}

bool schedule_matches(const Schedule *s, const struct tm *t)
{
    if (!(s->minute >> t->tm_min & 1) || !(s->hour >> t->tm_hour & 1) || !(s->month >> (t->tm_mon + 1) & 1))
        return false;
    bool md = s->mday >> t->tm_mday & 1, wd = s->wday >> t->tm_wday & 1;
    if (s->mday_any || s->wday_any)
        return md && wd;
    return md || wd;
}
