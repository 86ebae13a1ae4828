/* Pure REST status logic: which health checks pass for a NodeStatus snapshot (Patroni's
 * semantics), and the status JSON and Prometheus text built from the same snapshot. */
#include "common/common.h"
#include "api/rest.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <time.h>

typedef enum {
    CHECK_PRIMARY,
    CHECK_REPLICA,
    CHECK_READ_ONLY,
    CHECK_READ_ONLY_SYNC,
    CHECK_STANDBY_LEADER,
    CHECK_LEADER,
    CHECK_SYNC,
    CHECK_ASYNC,
    CHECK_HEALTH,
    CHECK_LIVENESS,
    CHECK_READINESS,
} HealthCheck;

static const struct {
    const char *path;
    HealthCheck check;
} health_paths[] = {
    {"/", CHECK_PRIMARY},
    {"/primary", CHECK_PRIMARY},
    {"/master", CHECK_PRIMARY},
    {"/leader", CHECK_LEADER},           /* the primary, or a standby cluster's standby leader */
    {"/read-write", CHECK_PRIMARY},
    {"/replica", CHECK_REPLICA},
    {"/read-only", CHECK_READ_ONLY},
    {"/read-only-sync", CHECK_READ_ONLY_SYNC},
    {"/standby-leader", CHECK_STANDBY_LEADER},
    {"/standby_leader", CHECK_STANDBY_LEADER},
    {"/sync", CHECK_SYNC},
    {"/synchronous", CHECK_SYNC},
    {"/async", CHECK_ASYNC},
    {"/asynchronous", CHECK_ASYNC},
    {"/health", CHECK_HEALTH},
    {"/liveness", CHECK_LIVENESS},
    {"/readiness", CHECK_READINESS},
};

/* Look up a health path; one trailing slash is tolerated ("/replica/"). */
static bool find_health_check(const char *path, HealthCheck *out)
{
    if (!path)
        return false;
    size_t len = strlen(path);
    if (len > 1 && path[len - 1] == '/')
        len--;
    for (size_t i = 0; i < ARRAY_LEN(health_paths); i++) {
        const char *p = health_paths[i].path;
        if (strlen(p) == len && strncmp(p, path, len) == 0) {
            *out = health_paths[i].check;
            return true;
        }
    }
    return false;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode %XX and '+' in place (form encoding). Invalid escapes are kept as text. */
static void url_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '+') {
            *w++ = ' ';
        } else if (*r == '%' && hexval((unsigned char)r[1]) >= 0 && hexval((unsigned char)r[2]) >= 0) {
            *w++ = (char)(hexval((unsigned char)r[1]) * 16 + hexval((unsigned char)r[2]));
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* "1048576", "16kB", "1MB", "1 GB" (PostgreSQL units, base 1024, case-insensitive). */
static bool parse_bytes(const char *s, int64_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return false;
    uint64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        s++;
    }
    while (isspace((unsigned char)*s))
        s++;
    static const struct {
        const char *unit;
        int shift;
    } units[] = {{"", 0}, {"B", 0}, {"kB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40}};
    size_t ulen = strlen(s);
    while (ulen > 0 && isspace((unsigned char)s[ulen - 1]))
        ulen--;
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (strlen(units[i].unit) != ulen || strncasecmp(units[i].unit, s, ulen) != 0)
            continue;
        if (v > ((uint64_t)INT64_MAX >> units[i].shift))
            return false;
        *out = (int64_t)(v << units[i].shift);
        return true;
    }
    return false;
}

static bool parse_bool_text(const char *s, bool *out)
{
    if (strcasecmp(s, "true") == 0) {
        *out = true;
        return true;
    }
    if (strcasecmp(s, "false") == 0) {
        *out = false;
        return true;
    }
    return false;
}

static bool parse_int_text(const char *s, long *out)
{
    if (!*s || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* ?tag_<key>=<value>: a tag we don't know or a value that doesn't match fails the check,
 * as in Patroni. Booleans compare as true/false, failover_priority as an integer. */
static bool tag_matches(const Tags *tags, const char *key, const char *value)
{
    if (!value)
        return false;
    struct {
        const char *name;
        bool value;
    } bools[] = {{"nofailover", tags->nofailover},
                 {"noloadbalance", tags->noloadbalance},
                 {"nosync", tags->nosync},
                 {"clonefrom", tags->clonefrom}};
    for (size_t i = 0; i < ARRAY_LEN(bools); i++) {
        if (strcmp(key, bools[i].name) == 0) {
            bool want;
            return parse_bool_text(value, &want) && want == bools[i].value;
        }
    }
    if (strcmp(key, "failover_priority") == 0) {
        long want;
        return parse_int_text(value, &want) && want == tags->failover_priority;
    }
    return false;
}

/* Apply the replica-check query filters (lag and tags). Unknown parameters are ignored, and so
 * is a lag limit that doesn't parse (Patroni does the same). */
static bool query_filters_pass(const char *query, const NodeStatus *st)
{
    if (str_empty(query))
        return true;
    char *copy = str_dup(query);
    bool ok = true;
    char *save = NULL;
    for (char *pair = strtok_r(copy, "&", &save); pair && ok; pair = strtok_r(NULL, "&", &save)) {
        char *value = strchr(pair, '=');
        if (value)
            *value++ = '\0';
        url_decode(pair);
        if (value)
            url_decode(value);
        if (strcmp(pair, "lag") == 0) {
            int64_t limit;
            if (value && parse_bytes(value, &limit))
                ok = st->lag_bytes >= 0 && st->lag_bytes <= limit;
        } else if (strncmp(pair, "tag_", 4) == 0) {
            ok = tag_matches(&st->tags, pair + 4, value);
        }
    }
    free(copy);
    return ok;
}

static bool role_is(const NodeStatus *st, const char *role)
{
    return strcmp(st->role, role) == 0;
}

/* The leader key holder with a writable PostgreSQL. In maintenance mode with etcd unreachable
 * the lease can't be confirmed, so Patroni answers by PostgreSQL's role alone; so do we. */
static bool primary_ok(const NodeStatus *st)
{
    if (!st->pg_running || st->in_recovery || !role_is(st, "primary"))
        return false;
    /* just promoted: not announced before the history key records the new timeline */
    if (strcmp(st->state, "promoting") == 0)
        return false;
    return st->is_leader || (st->paused && !st->dcs_ok);
}

/* The leader key holder of a standby cluster, running in recovery. */
static bool standby_leader_ok(const NodeStatus *st)
{
    return st->pg_running && st->in_recovery && role_is(st, "standby_leader") && st->is_leader;
}

static bool replica_ok(const NodeStatus *st, const char *query)
{
    return st->pg_running && st->in_recovery && role_is(st, "replica") && !st->tags.noloadbalance &&
           query_filters_pass(query, st);
}

/* Patroni counts a node synchronous only while synchronous_mode is on and the sync key names
 * it; a stale sync flag outside synchronous mode reads as asynchronous. */
static bool is_sync_standby(const NodeStatus *st)
{
    return st->sync_mode && st->sync_standby;
}

int rest_health_code(const char *path, const char *query, const NodeStatus *st)
{
    HealthCheck check;
    if (!find_health_check(path, &check))
        return 404;
    bool ok = false;
    switch (check) {
    case CHECK_PRIMARY:
        ok = primary_ok(st);
        break;
    case CHECK_REPLICA:
        ok = replica_ok(st, query);
        break;
    case CHECK_READ_ONLY:
        ok = primary_ok(st) || replica_ok(st, query);
        break;
    case CHECK_READ_ONLY_SYNC:
        ok = primary_ok(st) || (is_sync_standby(st) && replica_ok(st, query));
        break;
    case CHECK_STANDBY_LEADER:
        ok = standby_leader_ok(st);
        break;
    case CHECK_LEADER:
        ok = primary_ok(st) || standby_leader_ok(st);
        break;
    case CHECK_SYNC:
        ok = is_sync_standby(st) && replica_ok(st, query);
        break;
    case CHECK_ASYNC:
        ok = !is_sync_standby(st) && replica_ok(st, query);
        break;
    case CHECK_HEALTH:
        ok = st->pg_running;
        break;
    case CHECK_LIVENESS:
        ok = true;
        break;
    case CHECK_READINESS:
        ok = st->pg_running &&
             ((st->is_leader && (role_is(st, "primary") || role_is(st, "standby_leader"))) ||
              (role_is(st, "replica") && st->streaming));
        break;
    }
    return ok ? 200 : 503;
}

/* PostgreSQL's text form of pg_postmaster_start_time(), in UTC. */
static void format_pg_timestamp(double epoch, char *buf, size_t sz)
{
    time_t secs = (time_t)epoch;
    long usec = (long)((epoch - (double)secs) * 1e6);
    if (usec < 0)
        usec = 0;
    if (usec > 999999)
        usec = 999999;
    struct tm tm;
    gmtime_r(&secs, &tm);
    str_fmt(buf, sz, "%04d-%02d-%02d %02d:%02d:%02d.%06ld+00:00", tm.tm_year + 1900, tm.tm_mon + 1,
            tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
}

static json_t *lsn_json(Lsn lsn)
{
    return json_integer((json_int_t)(lsn > (Lsn)INT64_MAX ? (Lsn)INT64_MAX : lsn));
}

/* Tags as Patroni lists them: only the ones set away from their defaults. */
static json_t *tags_json(const Tags *t)
{
    json_t *o = json_object();
    if (t->nofailover)
        json_object_set_new(o, "nofailover", json_true());
    if (t->noloadbalance)
        json_object_set_new(o, "noloadbalance", json_true());
    if (t->nosync)
        json_object_set_new(o, "nosync", json_true());
    if (t->clonefrom)
        json_object_set_new(o, "clonefrom", json_true());
    if (t->failover_priority != 1)
        json_object_set_new(o, "failover_priority", json_integer(t->failover_priority));
    return o;
}

char *rest_status_json(const NodeStatus *st)
{
    json_t *o = json_object();
    json_object_set_new(o, "state", json_string(st->state[0] ? st->state : "unknown"));
    if (st->pg_running && st->postmaster_start_time > 0) {
        char ts[64];
        format_pg_timestamp(st->postmaster_start_time, ts, sizeof(ts));
        json_object_set_new(o, "postmaster_start_time", json_string(ts));
    }
    json_object_set_new(o, "role", json_string(st->role[0] ? st->role : "uninitialized"));
    if (st->server_version > 0)
        json_object_set_new(o, "server_version", json_integer(st->server_version));
    if (st->pg_running) {
        json_t *x = json_object();
        if (role_is(st, "primary") && !st->in_recovery) {
            json_object_set_new(x, "location", lsn_json(st->wal_lsn));
        } else {
            json_object_set_new(x, "received_location", lsn_json(st->receive_lsn));
            json_object_set_new(x, "replayed_location", lsn_json(st->replay_lsn));
        }
        json_object_set_new(o, "xlog", x);
    }
    if (st->timeline > 0)
        json_object_set_new(o, "timeline", json_integer(st->timeline));
    if (!st->leader_name[0])
        json_object_set_new(o, "cluster_unlocked", json_true());
    json_object_set_new(o, "dcs_last_seen", json_integer((json_int_t)st->dcs_last_seen));
    json_t *t = tags_json(&st->tags);
    if (json_object_size(t) > 0)
        json_object_set_new(o, "tags", t);
    else
        json_decref(t);
    if (st->pending_restart)
        json_object_set_new(o, "pending_restart", json_true());
    if (st->paused)
        json_object_set_new(o, "pause", json_true());
    if (st->pg_running)
        json_object_set_new(o, "commit_guard", json_boolean(st->commit_guard));
    if (st->aa_present) {
        /* an active-active node: the apply from each peer */
        json_t *peers = json_array();
        for (int i = 0; i < st->n_aa_peers; i++) {
            const AaPeerObs *p = &st->aa_peers[i];
            json_array_append_new(peers, json_pack("{s:s, s:b, s:b, s:b, s:I, s:f, s:I, s:I, s:f}", "peer", p->peer,
                                                   "enabled", p->enabled, "running", p->running, "failed", p->failed,
                                                   "lag_bytes", (json_int_t)p->lag_bytes, "lag_seconds", p->lag_seconds,
                                                   "applied_transactions", (json_int_t)p->applied_transactions,
                                                   "conflicts", (json_int_t)p->conflicts,
                                                   "clock_difference_ms", p->clock_difference_ms));
        }
        json_object_set_new(o, "active_active",
                            json_pack("{s:o, s:I}", "peers", peers, "conflicts_last_minute",
                                      (json_int_t)st->aa_conflicts_last_minute));
    }
    if (st->archive_on) {
        json_t *ar = json_pack("{s:I, s:I, s:i}", "archived", (json_int_t)st->archived_total, "failures",
                               (json_int_t)st->archive_failures_total, "ready", st->archive_ready);
        if (st->archive_last_success > 0)
            json_object_set_new(ar, "last_archived_at", json_real(st->archive_last_success));
        if (st->archive_last_error[0])
            json_object_set_new(ar, "last_error", json_string(st->archive_last_error));
        if (st->archive_lag_bytes >= 0)
            json_object_set_new(ar, "lag_bytes", json_integer(st->archive_lag_bytes));
        if (st->archive_rpo_seconds >= 0)
            json_object_set_new(ar, "rpo_seconds", json_real(st->archive_rpo_seconds));
        json_object_set_new(o, "archive", ar);
    }
    if (st->backup_newest_stop > 0) {
        json_object_set_new(o, "backup", json_pack("{s:s, s:I, s:I, s:f}", "newest", st->backup_newest_label,
                                                   "newest_ended_at", (json_int_t)st->backup_newest_stop, "bytes",
                                                   (json_int_t)st->backup_newest_bytes, "seconds",
                                                   st->backup_newest_seconds));
    }
    if (is_sync_standby(st))
        json_object_set_new(o, "sync_standby", json_true());
    if (st->promote_at[0])
        json_object_set_new(o, "promote_at", json_string(st->promote_at));
    if (st->standby_cluster) {
        json_t *sc = json_pack("{s:s, s:b}", "source", st->source, "source_reachable", st->source_known);
        if (st->site_lag_bytes >= 0)
            json_object_set_new(sc, "lag_bytes", json_integer(st->site_lag_bytes));
        if (st->site_lag_seconds >= 0)
            json_object_set_new(sc, "lag_seconds", json_real(st->site_lag_seconds));
        json_object_set_new(o, "standby_cluster", sc);
    }
    json_object_set_new(o, "patroni",
                        json_pack("{s:s, s:s, s:s}", "version", PGVIGIL_VERSION, "scope", st->scope,
                                  "name", st->name));
    if (st->sysid[0])
        json_object_set_new(o, "database_system_identifier", json_string(st->sysid));
    if (st->wal_free_bytes >= 0)
        json_object_set_new(o, "wal_free_bytes", json_integer(st->wal_free_bytes));
    if (st->site_guard)
        json_object_set_new(o, "site_lag_guard", json_pack("{s:b, s:I}", "engaged", st->site_guard_on, "lag_bytes",
                                                           (json_int_t)st->site_guard_lag));
    if (st->site_auto) {
        json_t *w = json_pack("{s:s, s:b, s:s, s:b}", "mode", st->witness_mode ? st->witness_mode : "idle",
                              "witness_reachable", st->witness_reachable, "holder", st->witness_holder,
                              "peer_reachable", st->witness_peer_reachable);
        if (st->witness_mode && strcmp(st->witness_mode, "hold") == 0)
            json_object_set_new(w, "confirmed_ms", json_integer(st->site_confirmed_ms));
        if (st->witness_mode && strcmp(st->witness_mode, "observe") == 0)
            json_object_set_new(w, "peer_gone_ms", json_integer(st->site_gone_ms));
        json_object_set_new(o, "site_witness", w);
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) {
        /* only on invalid UTF-8 in a name; answer something well-formed rather than nothing */
        return str_dup("{\"state\":\"unknown\"}");
    }
    return s;
}

/* A growing text buffer for the metrics page. */
typedef struct TextBuf {
    char *data;
    size_t len, cap;
} TextBuf;

static void tb_printf(TextBuf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void tb_printf(TextBuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->data = xrealloc(b->data, b->cap);
    }
}

/* Prometheus label values escape backslash, double quote and newline. */
static void label_escape(const char *in, char *out, size_t sz)
{
    size_t w = 0;
    for (const char *p = in; *p && w + 3 < sz; p++) {
        if (*p == '\\' || *p == '"') {
            out[w++] = '\\';
            out[w++] = *p;
        } else if (*p == '\n') {
            out[w++] = '\\';
            out[w++] = 'n';
        } else {
            out[w++] = *p;
        }
    }
    out[w] = '\0';
}

static void metric(TextBuf *b, const char *labels, const char *name, const char *type,
                   const char *help, const char *value)
{
    tb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s{%s} %s\n", name, help, name, type, name, labels,
              value);
}

static void metric_i(TextBuf *b, const char *labels, const char *name, const char *type,
                     const char *help, int64_t v)
{
    char num[32];
    str_fmt(num, sizeof(num), "%" PRId64, v);
    metric(b, labels, name, type, help, num);
}

static void metric_u(TextBuf *b, const char *labels, const char *name, const char *help, uint64_t v)
{
    char num[32];
    str_fmt(num, sizeof(num), "%" PRIu64, v);
    metric(b, labels, name, "counter", help, num);
}

char *rest_metrics_text(const NodeStatus *st)
{
    char scope[2 * sizeof(st->scope) + 1], name[2 * sizeof(st->name) + 1];
    label_escape(st->scope, scope, sizeof(scope));
    label_escape(st->name, name, sizeof(name));
    char labels[sizeof(scope) + sizeof(name) + 32];
    str_fmt(labels, sizeof(labels), "scope=\"%s\",name=\"%s\"", scope, name);

    TextBuf b = {.data = xmalloc(4096), .len = 0, .cap = 4096};
    b.data[0] = '\0';
    bool primary = st->pg_running && !st->in_recovery && role_is(st, "primary");
    bool replica = st->pg_running && role_is(st, "replica");

    tb_printf(&b,
              "# HELP pgvigil_version pgvigil version (info metric, always 1).\n"
              "# TYPE pgvigil_version gauge\n"
              "pgvigil_version{%s,version=\"%s\"} 1\n",
              labels, PGVIGIL_VERSION);
    metric_i(&b, labels, "pgvigil_postgres_running", "gauge",
             "Value is 1 if PostgreSQL is running, 0 otherwise.", st->pg_running);
    metric_i(&b, labels, "pgvigil_postmaster_start_time", "gauge",
             "Epoch seconds since PostgreSQL started, 0 when unknown.",
             (int64_t)st->postmaster_start_time);
    metric_i(&b, labels, "pgvigil_primary", "gauge",
             "Value is 1 if this node is a running primary, 0 otherwise.", primary);
    metric_i(&b, labels, "pgvigil_replica", "gauge",
             "Value is 1 if this node is a running replica, 0 otherwise.", replica);
    metric_i(&b, labels, "pgvigil_is_leader", "gauge",
             "Value is 1 if this node holds the leader key, 0 otherwise.", st->is_leader);
    metric_u(&b, labels, "pgvigil_xlog_location",
             "Current WAL location on the primary (bytes), 0 elsewhere.",
             primary ? st->wal_lsn : 0);
    metric_u(&b, labels, "pgvigil_xlog_received_location",
             "WAL location received by the replica (bytes), 0 elsewhere.",
             replica ? st->receive_lsn : 0);
    metric_u(&b, labels, "pgvigil_xlog_replayed_location",
             "WAL location replayed by the replica (bytes), 0 elsewhere.",
             replica ? st->replay_lsn : 0);
    metric_i(&b, labels, "pgvigil_replication_lag_bytes", "gauge",
             "Bytes the replica replay is behind the leader, -1 when unknown.",
             replica ? st->lag_bytes : 0);
    metric_i(&b, labels, "pgvigil_timeline", "gauge", "PostgreSQL timeline.", st->timeline);
    metric_i(&b, labels, "pgvigil_paused", "gauge",
             "Value is 1 if the cluster is in maintenance mode, 0 otherwise.", st->paused);
    metric_i(&b, labels, "pgvigil_sync_standby", "gauge",
             "Value is 1 if this node is a synchronous standby, 0 otherwise.",
             is_sync_standby(st));
    metric_i(&b, labels, "pgvigil_pending_restart", "gauge",
             "Value is 1 if PostgreSQL needs a restart to apply settings, 0 otherwise.",
             st->pending_restart);
    metric_i(&b, labels, "pgvigil_commit_guard", "gauge",
             "Value is 1 if PostgreSQL runs the commit guard (no commit past the fence deadline), 0 otherwise.",
             st->commit_guard);
    metric_i(&b, labels, "pgvigil_cluster_unlocked", "gauge",
             "Value is 1 if no node holds the leader key, 0 otherwise.", !st->leader_name[0]);
    metric_i(&b, labels, "pgvigil_dcs_last_seen", "gauge",
             "Epoch seconds of the last successful etcd read.", st->dcs_last_seen);
    metric_u(&b, labels, "pgvigil_failovers_total",
             "Times this node became primary since the agent started.",
             st->failovers > 0 ? (uint64_t)st->failovers : 0);
    if (st->aa_present) {
        metric_i(&b, labels, "pgvigil_aa_conflicts_last_minute", "gauge",
                 "Conflicts the active-active apply met in the last minute on this node.",
                 st->aa_conflicts_last_minute);
        /* one family per metric, one sample per peer (a family's HELP and TYPE come once) */
        static const struct {
            const char *name, *type, *help;
        } fam[] = {
            {"pgvigil_aa_apply_running", "gauge", "Value is 1 if the apply worker for this peer runs, 0 otherwise."},
            {"pgvigil_aa_apply_paused", "gauge", "Value is 1 if the apply from this peer is paused, 0 otherwise."},
            {"pgvigil_aa_apply_failed", "gauge",
             "Value is 1 if the last error that stopped the apply from this peer stands, 0 otherwise."},
            {"pgvigil_aa_lag_bytes", "gauge", "Bytes of the peer's WAL this node has not confirmed, -1 when unknown."},
            {"pgvigil_aa_lag_seconds", "gauge",
             "Seconds since the oldest transaction of the peer waiting here committed, -1 when unknown."},
            {"pgvigil_aa_applied_transactions_total", "counter", "Transactions of the peer applied since the server started."},
            {"pgvigil_aa_conflicts_total", "counter", "Conflicts met applying the peer's changes since the server started."},
            {"pgvigil_aa_clock_difference_ms", "gauge",
             "This node's clock minus the peer's at its last keepalive, transit included (ms)."},
        };
        for (size_t f = 0; f < ARRAY_LEN(fam); f++) {
            tb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name, fam[f].type);
            for (int i = 0; i < st->n_aa_peers; i++) {
                const AaPeerObs *p = &st->aa_peers[i];
                char peer[2 * sizeof(p->peer) + 1];
                label_escape(p->peer, peer, sizeof(peer));
                double v = f == 0 ? p->running : f == 1 ? !p->enabled : f == 2 ? p->failed
                         : f == 3 ? (double)p->lag_bytes : f == 4 ? p->lag_seconds
                         : f == 5 ? (double)p->applied_transactions : f == 6 ? (double)p->conflicts
                                  : p->clock_difference_ms;
                tb_printf(&b, "%s{%s,peer=\"%s\"} %.*f\n", fam[f].name, labels, peer, f == 4 || f == 7 ? 3 : 0, v);
            }
        }
    }
    if (st->archive_on) {
        metric_u(&b, labels, "pgvigil_archive_files_total",
                 "WAL files this agent stored in the repository (or found stored) since it started.",
                 st->archived_total);
        metric_u(&b, labels, "pgvigil_archive_failures_total",
                 "WAL files this agent could not store (PostgreSQL keeps them and retries).",
                 st->archive_failures_total);
        metric_i(&b, labels, "pgvigil_archive_ready_files", "gauge",
                 "WAL files PostgreSQL waits to archive: the archive backlog.", st->archive_ready);
        metric_i(&b, labels, "pgvigil_archive_last_success_time", "gauge",
                 "Epoch seconds of the last WAL file stored, 0 none yet.", (int64_t)st->archive_last_success);
        if (st->archive_lag_bytes >= 0)
            metric_i(&b, labels, "pgvigil_archive_lag_bytes", "gauge",
                     "Primary: bytes of its WAL not in the repository yet (what a restore would lose now).",
                     st->archive_lag_bytes);
        if (st->archive_rpo_seconds >= 0)
            metric_i(&b, labels, "pgvigil_archive_rpo_seconds", "gauge",
                     "Primary: the recovery point a restore from the repository promises now: 0 when all its WAL "
                     "is stored, else seconds since the newest WAL file was stored.",
                     (int64_t)st->archive_rpo_seconds);
    }
    metric_i(&b, labels, "pgvigil_standby_cluster", "gauge",
             "Value is 1 if this node's cluster is a standby cluster (a DR site following another site), 0 otherwise.",
             st->standby_cluster);
    if (st->standby_cluster && st->site_lag_bytes >= 0)
        metric_i(&b, labels, "pgvigil_site_lag_bytes", "gauge",
                 "Standby leader: bytes of WAL the source site has flushed and this site has not received (the "
                 "RPO of a site failover now, in bytes).",
                 st->site_lag_bytes);
    if (st->site_guard)
        metric_i(&b, labels, "pgvigil_site_lag_guard_engaged", "gauge",
                 "Value is 1 while commits wait for the other site (its slot lags more than site_lag_guard_bytes).",
                 st->site_guard_on);
    if (st->standby_cluster && st->site_lag_seconds >= 0)
        metric_i(&b, labels, "pgvigil_site_lag_milliseconds", "gauge",
                 "Standby leader: age of the last transaction replayed from the source site (whose leader commits a "
                 "heartbeat every loop_wait, at most once a second): the RPO of a site failover now, in time.",
                 (int64_t)(st->site_lag_seconds * 1000 + 0.5));
    if (st->site_auto && st->witness_mode && strcmp(st->witness_mode, "hold") == 0)
        metric_i(&b, labels, "pgvigil_site_confirmed_milliseconds", "gauge",
                 "Automatic site failover: how long this site's primary role is still confirmed by the witness or "
                 "the other site (0: not confirmed; writes stop before it runs out).",
                 st->site_confirmed_ms);
    if (st->site_auto)
        metric_i(&b, labels, "pgvigil_site_witness_reachable", "gauge",
                 "Automatic site failover: value is 1 if the witness's etcd answered the last read.",
                 st->witness_reachable);
    if (st->backup_newest_stop > 0) {
        metric_i(&b, labels, "pgvigil_backup_last_success_time", "gauge",
                 "Epoch seconds the cluster's newest complete backup ended.", st->backup_newest_stop);
        metric_i(&b, labels, "pgvigil_backup_age_seconds", "gauge", "Age of the cluster's newest complete backup.",
                 st->backup_age_seconds);
        metric_i(&b, labels, "pgvigil_backup_newest_bytes", "gauge", "Database size in the newest complete backup.",
                 st->backup_newest_bytes);
        metric_i(&b, labels, "pgvigil_restore_copy_estimate_seconds", "gauge",
                 "Expected time to put the newest backup's files back: as long as that backup took (WAL replay "
                 "since it comes on top).",
                 (int64_t)(st->backup_newest_seconds + 0.5));
    }
    return b.data;
}
