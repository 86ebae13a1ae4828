/* Relation files and page LSNs (see pages.h). */
#include "backup/pages.h"

#include <ctype.h>

static bool digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

bool page_file_has_lsns(const char *rel)
{
    const char *name;
    if (strncmp(rel, "global/", 7) == 0) {
        name = rel + 7;
    } else if (strncmp(rel, "base/", 5) == 0) {
        const char *slash = strchr(rel + 5, '/');
        if (!slash || !digits(rel + 5, (size_t)(slash - rel - 5)))
            return false;
        name = slash + 1;
    } else {
        return false;
    }
    if (strchr(name, '/'))
        return false;
    /* "16384" or "16384.3": digits, then an optional segment number */
    size_t n = strcspn(name, ".");
    if (!digits(name, n))
        return false;
    return name[n] == '\0' || digits(name + n + 1, strlen(name + n + 1));
}

Lsn page_lsn(const unsigned char *p)
{
    uint32_t hi, lo;
    memcpy(&hi, p, 4);
    memcpy(&lo, p + 4, 4);
    return ((Lsn)hi << 32) | lo;
}
