/* The notification event as sent: its JSON document, id and time, the HMAC signature of a
 * body, and the small text helpers (UTF-8 cleaning, URL redaction) the sinks need. */
#include "common/common.h"
#include "notify/notify.h"
#include "notify/notify_int.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <time.h>

/* Length of the valid UTF-8 sequence at p, or 0 when p does not start one (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). Never reads past a NUL. */
static size_t utf8_seq_len(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0) || (c == 0xF0 && p[1] < 0x90) ||
        (c == 0xF4 && p[1] >= 0x90))
        return 0;
    return n;
}

char *notify_utf8_clean(const char *s)
{
    if (!s)
        return NULL;
    char *out = str_dup(s);
    unsigned char *p = (unsigned char *)out;
    while (*p) {
        size_t n = utf8_seq_len(p);
        if (n == 0) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
    return out;
}

char *notify_utf8_cut(const char *s, size_t max)
{
    size_t len = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (p[len]) {
        size_t n = utf8_seq_len(p + len);
        if (n == 0)
            n = 1;
        if (len + n > max)
            break;
        len += n;
    }
    char *out = xmalloc(len + 1);
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

NotifyEvent *notify_event_new(const char *scope, const char *node, const char *event,
                              const char *member, const char *message, uint64_t seq)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    time_t secs = ts.tv_sec;
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[40];
    str_fmt(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
            (int)(ts.tv_nsec / 1000000));

    NotifyEvent *ev = xcalloc(1, sizeof(*ev));
    char *c_scope = notify_utf8_clean(scope ? scope : "");
    char *c_node = notify_utf8_clean(node ? node : "");
    ev->event = notify_utf8_clean(event);
    ev->member = notify_utf8_clean(member);
    ev->message = notify_utf8_clean(message ? message : "");
    ev->id = str_printf("%s-%lld-%llu", c_node, (long long)unix_ms, (unsigned long long)seq);
    ev->unix_s = (int64_t)ts.tv_sec;

    /* every string is clean UTF-8, so json_string() cannot fail */
    json_t *doc = json_object();
    json_object_set_new(doc, "event", json_string(ev->event));
    json_object_set_new(doc, "cluster", json_string(c_scope));
    json_object_set_new(doc, "node", json_string(c_node));
    json_object_set_new(doc, "member", ev->member ? json_string(ev->member) : json_null());
    json_object_set_new(doc, "message", json_string(ev->message));
    json_object_set_new(doc, "time", json_string(when));
    json_object_set_new(doc, "id", json_string(ev->id));
    char *body = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (!body) {
        fprintf(stderr, "pgvigil: out of memory\n");
        abort();
    }
    /* json_dumps() memory comes from jansson's allocator (malloc by default): copy so the
     * event owns plain malloc'd strings only */
    ev->body = str_dup(body);
    free(body);
    free(c_scope);
    free(c_node);
    return ev;
}

void notify_event_free(NotifyEvent *ev)
{
    if (!ev)
        return;
    free(ev->event);
    free(ev->member);
    free(ev->message);
    free(ev->id);
    free(ev->body);
    free(ev);
}

char *notify_signature(const char *secret, const char *body)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!secret)
        secret = "";
    if (!body)
        body = "";
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, strlen(body),
              md, &mdlen))
        return NULL;
    static const char hex[] = "0123456789abcdef";
    char *out = xmalloc(7 + 2 * (size_t)mdlen + 1);
    memcpy(out, "sha256=", 7);
    for (unsigned int i = 0; i < mdlen; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[7 + 2 * i + 1] = hex[md[i] & 0xf];
    }
    out[7 + 2 * mdlen] = '\0';
    return out;
}

char *notify_url_redact(const char *url)
{
    if (!url)
        return str_dup("");
    const char *rest = strstr(url, "://");
    rest = rest ? rest + 3 : url;
    size_t auth_len = strcspn(rest, "/?#");
    /* userinfo ends at the last '@' of the authority */
    const char *at = NULL;
    for (const char *p = rest; p < rest + auth_len; p++)
        if (*p == '@')
            at = p;
    size_t path_len = strcspn(rest + auth_len, "?#");
    bool had_query = rest[auth_len + path_len] == '?';
    const char *host = at ? at + 1 : rest;
    return str_printf("%.*s%s%.*s%s", (int)(rest - url), url, at ? "***@" : "",
                      (int)(rest + auth_len + path_len - host), host, had_query ? "?..." : "");
}
