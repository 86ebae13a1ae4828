/* Error type and bounded string helpers shared by every module. */
#include "common/common.h"

/* Messages quote user input (a YAML value, a command-line argument, a peer's answer) that may
 * hold line breaks or other control characters: they become spaces, so an error stays one line
 * in logs and on the terminal. */
static void err_one_line(Err *err)
{
    for (char *p = err->msg; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
}

void err_set(Err *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    err_one_line(err);
}

void err_prefix(Err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char head[256], old[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", head, old);
    err_one_line(err);
}

bool str_copy(char *dst, size_t dstsz, const char *src)
{
    if (dstsz == 0)
        return false;
    size_t n = src ? strlen(src) : 0;
    bool fits = n < dstsz;
    if (!fits)
        n = dstsz - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return fits;
}

bool str_fmt(char *dst, size_t dstsz, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, dstsz, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < dstsz;
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fputs("pgvigil: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) {
        fputs("pgvigil: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *xcalloc_aligned(size_t n, size_t sz, size_t align)
{
    size_t size = (n ? n : 1) * (sz ? sz : 1);
    void *p = (sz && n > SIZE_MAX / sz) ? NULL : aligned_alloc(align, size);
    if (!p) {
        fputs("pgvigil: out of memory\n", stderr);
        abort();
    }
    return memset(p, 0, size);
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fputs("pgvigil: out of memory\n", stderr);
        abort();
    }
    return q;
}

char *str_dup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

bool str_empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}
