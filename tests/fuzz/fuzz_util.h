/* Shared helpers of the libFuzzer targets: split one input into NUL-terminated parts, and a
 * check that turns a broken property into a crash libFuzzer reports with its input. */
#ifndef PGVIGIL_FUZZ_UTIL_H
#define PGVIGIL_FUZZ_UTIL_H

#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* Split data at each byte `sep` into at most max parts, each a malloc'd NUL-terminated copy
 * (missing parts are NULL). Returns the number of parts; free them with fuzz_parts_free. */
static inline int fuzz_split(const uint8_t *data, size_t size, uint8_t sep, char **parts, int max)
{
    int n = 0;
    size_t start = 0;
    for (int i = 0; i < max; i++)
        parts[i] = NULL;
    for (size_t i = 0; i <= size && n < max; i++) {
        if (i == size || (data[i] == sep && n < max - 1)) {
            char *p = xmalloc(i - start + 1);
            memcpy(p, data + start, i - start);
            p[i - start] = '\0';
            parts[n++] = p;
            start = i + 1;
        }
    }
    return n;
}

static inline void fuzz_parts_free(char **parts, int n)
{
    for (int i = 0; i < n; i++)
        free(parts[i]);
}

#endif
