/* Growing text buffer (see strbuf.h). */
#include "common/strbuf.h"

/* room for extra more bytes and the NUL */
static void reserve(StrBuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->s = xrealloc(b->s, cap);
    b->cap = cap;
}

void strbuf_add(StrBuf *b, const void *p, size_t n)
{
    reserve(b, n);
    if (n)
        memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

char *strbuf_space(StrBuf *b, size_t n)
{
    reserve(b, n);
    return b->s + b->len;
}

void strbuf_grew(StrBuf *b, size_t n)
{
    b->len += n;
    b->s[b->len] = '\0';
}

void strbuf_adds(StrBuf *b, const char *s)
{
    strbuf_add(b, s, strlen(s));
}

void strbuf_addc(StrBuf *b, char c)
{
    strbuf_add(b, &c, 1);
}

void strbuf_addf(StrBuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *strbuf_take(StrBuf *b)
{
    char *s = b->s ? b->s : str_dup("");
    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}

void strbuf_free(StrBuf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}
