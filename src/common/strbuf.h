/* A growing, always NUL-terminated text buffer (request bodies, signatures, tables). */
#ifndef PGVIGIL_STRBUF_H
#define PGVIGIL_STRBUF_H

#include "common/common.h"

typedef struct StrBuf {
    char *s;         /* NULL until something is added */
    size_t len, cap;
} StrBuf;

void strbuf_add(StrBuf *b, const void *p, size_t n);
void strbuf_adds(StrBuf *b, const char *s);
void strbuf_addc(StrBuf *b, char c);
void strbuf_addf(StrBuf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Room for n more bytes at the end, written directly (binary content too); strbuf_grew then
 * counts the bytes written there. */
char *strbuf_space(StrBuf *b, size_t n);
void strbuf_grew(StrBuf *b, size_t n);
/* The text (never NULL: "" when empty), the caller's to free; b is empty again. */
char *strbuf_take(StrBuf *b);
void strbuf_free(StrBuf *b);

#endif
