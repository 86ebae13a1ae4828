/* The two HTTP sinks: a generic webhook (the event's JSON, signed with HMAC-SHA256 when a secret
 * is set) and Pushover's message API (a form). One blocking libcurl attempt each, bounded by a
 * timeout and abortable at shutdown; retries are the caller's job. */
#include "common/common.h"
#include "notify/notify.h"
#include "notify/notify_int.h"

#include <curl/curl.h>
#include <jansson.h>

/* Pushover's documented limits (bytes here; they count characters, so this is conservative). */
#define PUSHOVER_TITLE_MAX 250
#define PUSHOVER_MESSAGE_MAX 1024

/* The start of a response body: enough for an error message, never the whole of a big reply. */
typedef struct RespBuf {
    char data[2048];
    size_t len;
} RespBuf;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    RespBuf *b = ud;
    size_t n = size * nmemb;
    size_t room = sizeof(b->data) - 1 - b->len;
    size_t take = n < room ? n : room;
    memcpy(b->data + b->len, p, take);
    b->len += take;
    b->data[b->len] = '\0';
    return n;
}

/* Called by libcurl about once a second or more often: a non-zero return aborts the transfer. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const atomic_bool *abort_flag = ud;
    return abort_flag && atomic_load(abort_flag) ? 1 : 0;
}

/* POST body to s->url on handle h. True on a 2xx answer; else why says what went wrong. */
static bool http_post(const NotifySink *s, CURL *h, struct curl_slist *hdrs, const char *body,
                      int timeout_ms, RespBuf *resp, long *code, char *why, size_t whysz)
{
    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    *code = 0;
    curl_easy_setopt(h, CURLOPT_URL, s->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "pgvigil/" PGVIGIL_VERSION);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)s->abort);
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        str_copy(why, whysz, "cancelled");
        return false;
    }
    if (rc != CURLE_OK) {
        str_fmt(why, whysz, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return false;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
    if (*code < 200 || *code > 299) {
        str_fmt(why, whysz, "HTTP %ld", *code);
        return false;
    }
    return true;
}

/* A header line "name: value" with control characters in value replaced (no header injection). */
static struct curl_slist *add_header(struct curl_slist *list, const char *name, const char *value)
{
    char *line = str_printf("%s: %s", name, value);
    for (char *p = line + strlen(name) + 2; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    struct curl_slist *l = curl_slist_append(list, line);
    free(line);
    if (!l) {
        fprintf(stderr, "pgvigil: out of memory\n");
        abort();
    }
    return l;
}

bool notify_webhook_attempt(const NotifySink *s, const NotifyEvent *ev, int timeout_ms, char *why,
                            size_t whysz)
{
    CURL *h = curl_easy_init();
    if (!h) {
        str_copy(why, whysz, "libcurl initialisation failed");
        return false;
    }
    struct curl_slist *hdrs = NULL;
    hdrs = add_header(hdrs, "Content-Type", "application/json");
    hdrs = add_header(hdrs, "X-Pgvigil-Event", ev->event);
    if (!str_empty(s->secret)) {
        char *sig = notify_signature(s->secret, ev->body);
        if (!sig) {
            curl_slist_free_all(hdrs);
            curl_easy_cleanup(h);
            str_copy(why, whysz, "HMAC-SHA256 signature failed");
            return false;
        }
        hdrs = add_header(hdrs, "X-Pgvigil-Signature", sig);
        free(sig);
    }
    hdrs = add_header(hdrs, "Expect", ""); /* no 100-continue round trip */
    RespBuf resp = {.len = 0};
    long code;
    bool ok = http_post(s, h, hdrs, ev->body, timeout_ms, &resp, &code, why, whysz);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return ok;
}

int notify_pushover_priority(const char *event)
{
    return event && (strcmp(event, EV_FAILOVER) == 0 || strcmp(event, EV_LEASE_LOST) == 0 ||
                     strcmp(event, EV_MEMBER_DOWN) == 0)
               ? 1
               : 0;
}

/* "&key=<escaped value>" (no '&' for the first field) appended to *form. */
static bool form_add(CURL *h, char **form, const char *key, const char *value)
{
    char *esc = curl_easy_escape(h, value, 0);
    if (!esc)
        return false;
    char *next = str_printf("%s%s%s=%s", *form ? *form : "", *form ? "&" : "", key, esc);
    curl_free(esc);
    free(*form);
    *form = next;
    return true;
}

/* Pushover explains a refusal in {"errors": ["...", ...]}: append them to why. */
static void pushover_errors(const RespBuf *resp, char *why, size_t whysz)
{
    json_t *doc = json_loads(resp->data, 0, NULL);
    json_t *errors = json_is_object(doc) ? json_object_get(doc, "errors") : NULL;
    size_t i;
    json_t *e;
    bool first = true;
    json_array_foreach(errors, i, e) {
        if (!json_is_string(e))
            continue;
        size_t len = strlen(why);
        if (len + 1 >= whysz)
            break;
        str_fmt(why + len, whysz - len, "%s%s", first ? ": " : "; ", json_string_value(e));
        first = false;
    }
    json_decref(doc);
}

bool notify_pushover_attempt(const NotifySink *s, const NotifyEvent *ev, int timeout_ms, char *why,
                             size_t whysz)
{
    CURL *h = curl_easy_init();
    if (!h) {
        str_copy(why, whysz, "libcurl initialisation failed");
        return false;
    }
    char *title_full = str_printf("pgvigil %s: %s", s->scope, ev->event);
    char *title = notify_utf8_cut(title_full, PUSHOVER_TITLE_MAX);
    /* Pushover rejects an empty message */
    char *message = notify_utf8_cut(str_empty(ev->message) ? ev->event : ev->message,
                                    PUSHOVER_MESSAGE_MAX);
    char timestamp[32], priority[8];
    str_fmt(timestamp, sizeof(timestamp), "%lld", (long long)ev->unix_s);
    str_fmt(priority, sizeof(priority), "%d", notify_pushover_priority(ev->event));
    char *form = NULL;
    bool built = form_add(h, &form, "token", s->token) && form_add(h, &form, "user", s->user) &&
                 form_add(h, &form, "title", title) && form_add(h, &form, "message", message) &&
                 form_add(h, &form, "timestamp", timestamp) &&
                 form_add(h, &form, "priority", priority);
    free(title_full);
    free(title);
    free(message);
    bool ok = false;
    if (!built) {
        str_copy(why, whysz, "cannot URL-encode the form");
    } else {
        struct curl_slist *hdrs = NULL;
        hdrs = add_header(hdrs, "Content-Type", "application/x-www-form-urlencoded");
        hdrs = add_header(hdrs, "Expect", "");
        RespBuf resp = {.len = 0};
        long code;
        ok = http_post(s, h, hdrs, form, timeout_ms, &resp, &code, why, whysz);
        if (!ok && code >= 400)
            pushover_errors(&resp, why, whysz);
        curl_slist_free_all(hdrs);
    }
    free(form);
    curl_easy_cleanup(h);
    return ok;
}
