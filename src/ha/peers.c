/* Election-time queries of the other members' REST APIs, in parallel with libcurl multi. */
#include "common/common.h"
#include "common/log.h"
#include "ha/peers.h"

#include <curl/curl.h>
#include <jansson.h>

typedef struct Resp {
    char *buf;
    size_t len;
} Resp;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    Resp *r = ud;
    size_t add = sz * n;
    if (r->len + add > 65536)
        return 0;
    r->buf = xrealloc(r->buf, r->len + add + 1);
    memcpy(r->buf + r->len, p, add);
    r->len += add;
    r->buf[r->len] = '\0';
    return add;
}

static Lsn json_lsn(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (Lsn)json_integer_value(v) : 0;
}

bool peer_from_status_json(const char *json, PeerPos *out)
{
    json_error_t je;
    json_t *root = json_loads(json, 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return false;
    }
    const char *state = json_string_value(json_object_get(root, "state"));
    const char *role = json_string_value(json_object_get(root, "role"));
    /* a member opened by a rescue runs outside the cluster: it takes no part in an election */
    out->pg_running = state && strcmp(state, "running") == 0 && !(role && strcmp(role, "rescued") == 0);
    out->is_primary = out->pg_running && role && (strcmp(role, "primary") == 0 || strcmp(role, "master") == 0);
    json_t *x = json_object_get(root, "xlog");
    if (json_is_object(x)) {
        Lsn loc = json_lsn(x, "location"), rec = json_lsn(x, "received_location"), rep = json_lsn(x, "replayed_location");
        out->lsn = loc > rec ? loc : rec;
        if (rep > out->lsn)
            out->lsn = rep;
    }
    json_t *tl = json_object_get(root, "timeline");
    out->timeline = json_is_integer(tl) ? (int)json_integer_value(tl) : 0;
    out->tags.failover_priority = 1;
    json_t *tags = json_object_get(root, "tags");
    if (json_is_object(tags)) {
        out->tags.nofailover = json_is_true(json_object_get(tags, "nofailover"));
        out->tags.nosync = json_is_true(json_object_get(tags, "nosync"));
        json_t *fp = json_object_get(tags, "failover_priority");
        if (json_is_integer(fp))
            out->tags.failover_priority = (int)json_integer_value(fp);
    }
    json_decref(root);
    out->reachable = true;
    return true;
}

int peers_fetch(const Cluster *c, const char *me, int timeout_ms, PeerPos *out, int cap)
{
    int n = 0;
    CURLM *multi = curl_multi_init();
    CURL *easy[64];
    Resp resp[64];
    memset(resp, 0, sizeof(resp));
    for (int i = 0; i < c->n_members && n < cap && n < 64; i++) {
        const Member *m = &c->members[i];
        if (strcmp(m->name, me) == 0)
            continue;
        PeerPos *p = &out[n];
        memset(p, 0, sizeof(*p));
        str_copy(p->name, sizeof(p->name), m->name);
        p->tags = m->tags;
        easy[n] = NULL;
        if (!str_empty(m->api_url)) {
            CURL *e = curl_easy_init();
            curl_easy_setopt(e, CURLOPT_URL, m->api_url);
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
            curl_easy_setopt(e, CURLOPT_WRITEDATA, &resp[n]);
            curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)(intptr_t)n);
            curl_multi_add_handle(multi, e);
            easy[n] = e;
        }
        n++;
    }
    int running = 1;
    while (running) {
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < n; i++) {
        if (!easy[i])
            continue;
        long code = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &code);
        /* /patroni answers 200 (or 503 from health endpoints): any parseable body counts */
        if ((code == 200 || code == 503) && resp[i].buf) {
            Tags t = out[i].tags;
            if (!peer_from_status_json(resp[i].buf, &out[i]))
                out[i].reachable = false;
            else if (t.nofailover)
                out[i].tags.nofailover = true; /* the member key's tags are authoritative too */
        }
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
        free(resp[i].buf);
    }
    curl_multi_cleanup(multi);
    return n;
}
