/* Included first by every pgvigil source file: standard headers, the error type and the
 * poisoning of unsafe string functions (no sprintf, strcpy, strcat, strncpy, gets). */
#ifndef PGVIGIL_COMMON_H
#define PGVIGIL_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PGVIGIL_VERSION "0.1.0"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* Errors are return values: functions take an `Err *` (may be NULL) and fill it on failure.
 * The message names the file, key, node or peer involved, and is always one line: err_set and
 * err_prefix turn control characters (line breaks in quoted input) into spaces. */
typedef struct Err {
    char msg[512];
} Err;

void err_set(Err *err, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Prefix an existing message: "context: old message". */
void err_prefix(Err *err, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Bounded string helpers. Return false when the result was truncated. */
bool str_copy(char *dst, size_t dstsz, const char *src);
bool str_fmt(char *dst, size_t dstsz, const char *fmt, ...) PRINTF_LIKE(3, 4);
char *str_dup(const char *s);             /* NULL -> NULL; aborts on OOM */
char *str_printf(const char *fmt, ...) PRINTF_LIKE(1, 2); /* caller frees */
void *xmalloc(size_t n);                  /* aborts on OOM */
void *xcalloc(size_t n, size_t sz);
/* zeroed n * sz bytes aligned to align (a power of two dividing sz); free() it; aborts on OOM */
void *xcalloc_aligned(size_t n, size_t sz, size_t align);
void *xrealloc(void *p, size_t n);
bool str_empty(const char *s);            /* NULL or "" */

#define FREE_AND_NULL(p) do { free(p); (p) = NULL; } while (0)

#if defined(__GNUC__) && !defined(PGVIGIL_ALLOW_UNSAFE)
#pragma GCC poison sprintf strcpy strcat strncpy gets vsprintf
#endif

#endif
