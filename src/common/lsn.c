/* LSN text form: two hexadecimal 32-bit halves separated by '/'. */
#include "common/common.h"
#include "common/lsn.h"

#include <ctype.h>

static bool parse_hex32(const char *s, size_t len, uint32_t *out)
{
    if (len == 0 || len > 8)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (!isxdigit(c))
            return false;
        v = (v << 4) | (uint32_t)(isdigit(c) ? c - '0' : (tolower(c) - 'a' + 10));
    }
    *out = v;
    return true;
}

bool lsn_parse(const char *s, Lsn *out)
{
    if (!s)
        return false;
    const char *slash = strchr(s, '/');
    if (!slash)
        return false;
    uint32_t hi, lo;
    if (!parse_hex32(s, (size_t)(slash - s), &hi) || !parse_hex32(slash + 1, strlen(slash + 1), &lo))
        return false;
    *out = ((Lsn)hi << 32) | lo;
    return true;
}

char *lsn_format(Lsn lsn, char *buf)
{
    snprintf(buf, LSN_BUFSZ, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xFFFFFFFFu));
    return buf;
}
