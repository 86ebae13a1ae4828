/* Patroni-compatible JSON codecs for the keys under the cluster prefix (members, failover,
 * sync, history, status) and the assembly of one range read into a Cluster. */
#include "common/common.h"
#include "dcs/cluster.h"

#include "common/log.h"
#include "common/timeutil.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>

#include <jansson.h>

/* Where a parse error happened: "members/node2" + "tags." + field. */
typedef struct JsonCtx {
    const char *where;
    const char *prefix;
    Err *err;
} JsonCtx;

/* jansson reports allocation failure by returning NULL; like xmalloc, we abort. */
static _Noreturn void out_of_memory(void)
{
    fputs("pgvigil: out of memory\n", stderr);
    abort();
}

static bool field_error(const JsonCtx *c, const char *field, const char *problem)
{
    err_set(c->err, "%s: %s%s: %s", c->where, c->prefix, field, problem);
    return false;
}

/* Parse text that must be a JSON object. The caller decrefs the result. */
static json_t *load_object(const char *where, const char *text, Err *err)
{
    json_error_t jerr;
    json_t *root = json_loads(text ? text : "", JSON_DECODE_ANY, &jerr);
    if (!root) {
        err_set(err, "%s: invalid JSON: %s (line %d, column %d)", where, jerr.text, jerr.line,
                jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        err_set(err, "%s: expected a JSON object", where);
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Field getters: an absent field or JSON null leaves *dst untouched and succeeds, a value of
 * the wrong type fails. Null counts as absent because Patroni writes e.g. "scheduled_at":null. */
static bool get_string(const JsonCtx *c, json_t *obj, const char *field, char *dst, size_t dstsz)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v))
        return field_error(c, field, "expected a string");
    if (json_string_length(v) >= dstsz) {
        char msg[64];
        str_fmt(msg, sizeof(msg), "longer than %zu bytes", dstsz - 1);
        return field_error(c, field, msg);
    }
    str_copy(dst, dstsz, json_string_value(v));
    return true;
}

static bool get_int64(const JsonCtx *c, json_t *obj, const char *field, int64_t min, int64_t max,
                      int64_t *dst)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v))
        return field_error(c, field, "expected an integer");
    json_int_t n = json_integer_value(v);
    if (n < min || n > max) {
        char msg[96];
        str_fmt(msg, sizeof(msg), "out of range (%" PRId64 "..%" PRId64 ")", min, max);
        return field_error(c, field, msg);
    }
    *dst = (int64_t)n;
    return true;
}

static bool get_int(const JsonCtx *c, json_t *obj, const char *field, int min, int *dst)
{
    int64_t v = *dst;
    if (!get_int64(c, obj, field, min, INT_MAX, &v))
        return false;
    *dst = (int)v;
    return true;
}

static bool get_bool(const JsonCtx *c, json_t *obj, const char *field, bool *dst)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_boolean(v))
        return field_error(c, field, "expected a boolean");
    *dst = json_is_true(v);
    return true;
}

/* json_string() refuses invalid UTF-8; such bytes (from a local config, never from etcd,
 * whose values we parsed) become '?' rather than silently dropping the field. */
static json_t *json_text(const char *s)
{
    json_t *v = json_string(s ? s : "");
    if (v)
        return v;
    char *copy = str_dup(s);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

static char *dump_compact(json_t *root)
{
    char *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!out)
        out_of_memory();
    return out;
}

static void tags_defaults(Tags *t)
{
    memset(t, 0, sizeof(*t));
    t->failover_priority = 1;
}

static bool tags_are_default(const Tags *t)
{
    return !t->nofailover && !t->noloadbalance && !t->nosync && !t->clonefrom &&
           t->failover_priority == 1;
}

void cluster_init(Cluster *c)
{
    memset(c, 0, sizeof(*c));
    dynconfig_defaults(&c->config);
}

void cluster_free(Cluster *c)
{
    if (!c)
        return;
    free(c->members);
    free(c->config_json);
    free(c->history_json);
    free(c->site_json);
    free(c->aa);
    dynconfig_free(&c->config);
    memset(c, 0, sizeof(*c));
}

int64_t cluster_site_epoch(const Cluster *c)
{
    json_t *o = c->site_json ? json_loads(c->site_json, 0, NULL) : NULL;
    json_t *e = json_object_get(o, "epoch");
    int64_t v = json_is_integer(e) ? (int64_t)json_integer_value(e) : 0;
    json_decref(o);
    return v;
}

const Member *cluster_member(const Cluster *c, const char *name)
{
    if (!c || !name)
        return NULL;
    for (int i = 0; i < c->n_members; i++)
        if (strcmp(c->members[i].name, name) == 0)
            return &c->members[i];
    return NULL;
}

static bool tags_from_json(const JsonCtx *member_ctx, json_t *root, Tags *t)
{
    json_t *tags = json_object_get(root, "tags");
    if (!tags || json_is_null(tags))
        return true;
    if (!json_is_object(tags))
        return field_error(member_ctx, "tags", "expected a JSON object");
    JsonCtx c = {.where = member_ctx->where, .prefix = "tags.", .err = member_ctx->err};
    /* Patroni's replicatefrom, nostream and user-defined tags are ignored. */
    return get_bool(&c, tags, "nofailover", &t->nofailover) &&
           get_bool(&c, tags, "noloadbalance", &t->noloadbalance) &&
           get_bool(&c, tags, "nosync", &t->nosync) &&
           get_bool(&c, tags, "clonefrom", &t->clonefrom) &&
           get_int(&c, tags, "failover_priority", 0, &t->failover_priority);
}

bool member_from_json(const char *name, const char *json, Member *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    tags_defaults(&out->tags);
    if (str_empty(name)) {
        err_set(err, "members/: empty member name");
        return false;
    }
    char where[NAME_MAX_LEN + 80];
    str_fmt(where, sizeof(where), "members/%s", name);
    if (strlen(name) >= sizeof(out->name)) {
        err_set(err, "%s: member name longer than %zu bytes", where, sizeof(out->name) - 1);
        return false;
    }
    json_t *root = load_object(where, json, err);
    if (!root)
        return false;

    JsonCtx c = {.where = where, .prefix = "", .err = err};
    int64_t xlog = 0;
    bool ok = get_string(&c, root, "conn_url", out->conn_url, sizeof(out->conn_url)) &&
              get_string(&c, root, "api_url", out->api_url, sizeof(out->api_url)) &&
              get_string(&c, root, "state", out->state, sizeof(out->state)) &&
              get_string(&c, root, "role", out->role, sizeof(out->role)) &&
              get_string(&c, root, "version", out->version, sizeof(out->version)) &&
              get_int64(&c, root, "xlog_location", 0, INT64_MAX, &xlog) &&
              get_int(&c, root, "timeline", 0, &out->timeline) &&
              get_string(&c, root, "replication_state", out->replication_state,
                         sizeof(out->replication_state)) &&
              tags_from_json(&c, root, &out->tags) &&
              get_bool(&c, root, "pending_restart", &out->pending_restart);
    json_decref(root);
    if (!ok) {
        memset(out, 0, sizeof(*out));
        tags_defaults(&out->tags);
        return false;
    }
    /* Patroni before 3.0 called the primary "master". */
    if (strcmp(out->role, "master") == 0)
        str_copy(out->role, sizeof(out->role), "primary");
    out->xlog_location = (Lsn)xlog;
    str_copy(out->name, sizeof(out->name), name);
    return true;
}

static void set_new(json_t *obj, const char *key, json_t *value)
{
    if (!value || json_object_set_new(obj, key, value) != 0)
        out_of_memory();
}

char *member_to_json(const Member *m)
{
    json_t *root = json_object();
    if (!root)
        out_of_memory();
    set_new(root, "conn_url", json_text(m->conn_url));
    set_new(root, "api_url", json_text(m->api_url));
    set_new(root, "state", json_text(m->state));
    set_new(root, "role", json_text(m->role));
    set_new(root, "version", json_text(m->version));
    set_new(root, "xlog_location", json_integer((json_int_t)m->xlog_location));
    set_new(root, "timeline", json_integer(m->timeline));
    if (m->replication_state[0])
        set_new(root, "replication_state", json_text(m->replication_state));
    if (!tags_are_default(&m->tags)) {
        /* Booleans only when set, as Patroni users write them; the priority always, so a
         * reader sees it next to nofailover. */
        json_t *tags = json_object();
        if (!tags)
            out_of_memory();
        if (m->tags.nofailover)
            set_new(tags, "nofailover", json_true());
        if (m->tags.noloadbalance)
            set_new(tags, "noloadbalance", json_true());
        if (m->tags.nosync)
            set_new(tags, "nosync", json_true());
        if (m->tags.clonefrom)
            set_new(tags, "clonefrom", json_true());
        set_new(tags, "failover_priority", json_integer(m->tags.failover_priority));
        set_new(root, "tags", tags);
    }
    if (m->pending_restart)
        set_new(root, "pending_restart", json_true());
    return dump_compact(root);
}

bool failover_from_json(const char *json, FailoverReq *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load_object("failover", json, err);
    if (!root)
        return false;
    JsonCtx c = {.where = "failover", .prefix = "", .err = err};
    /* XXX: scheduled_at is type-checked but not honoured: pgvigil has no scheduled
     * switchovers, so a scheduled request acts at once. */
    char scheduled[64] = "";
    bool ok = get_string(&c, root, "leader", out->leader, sizeof(out->leader)) &&
              get_string(&c, root, "member", out->candidate, sizeof(out->candidate)) &&
              get_string(&c, root, "scheduled_at", scheduled, sizeof(scheduled));
    json_decref(root);
    if (!ok) {
        memset(out, 0, sizeof(*out));
        return false;
    }
    out->present = true;
    return true;
}

char *failover_to_json(const FailoverReq *f)
{
    json_t *root = json_object();
    if (!root)
        out_of_memory();
    if (f->leader[0])
        set_new(root, "leader", json_text(f->leader));
    if (f->candidate[0])
        set_new(root, "member", json_text(f->candidate));
    set_new(root, "scheduled_at", json_null());
    return dump_compact(root);
}

/* Case-insensitive like PostgreSQL's matching of synchronous_standby_names against
 * application_name, which is what the sync key describes. */
static bool sync_lists(const SyncState *s, const char *name)
{
    for (int i = 0; i < s->n_members && i < MAX_SYNC; i++)
        if (strcasecmp(s->members[i], name) == 0)
            return true;
    return false;
}

/* "node2, node3" -> members; empty items are skipped, duplicates kept once. */
static bool sync_split(const char *list, SyncState *out, Err *err)
{
    const char *p = list;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && isspace((unsigned char)end[-1]))
            end--;
        size_t len = (size_t)(end - start);
        if (len >= NAME_MAX_LEN) {
            err_set(err, "sync: sync_standby: name \"%.*s...\" longer than %d bytes", 16, start,
                    NAME_MAX_LEN - 1);
            return false;
        }
        char name[NAME_MAX_LEN];
        memcpy(name, start, len);
        name[len] = '\0';
        if (sync_lists(out, name))
            continue;
        if (out->n_members >= MAX_SYNC) {
            err_set(err, "sync: sync_standby: more than %d names", MAX_SYNC);
            return false;
        }
        str_copy(out->members[out->n_members++], NAME_MAX_LEN, name);
    }
    return true;
}

bool sync_from_json(const char *json, SyncState *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load_object("sync", json, err);
    if (!root)
        return false;
    JsonCtx c = {.where = "sync", .prefix = "", .err = err};
    bool ok = get_string(&c, root, "leader", out->leader, sizeof(out->leader));
    if (ok) {
        json_t *v = json_object_get(root, "sync_standby");
        if (v && !json_is_null(v)) {
            if (!json_is_string(v))
                ok = field_error(&c, "sync_standby", "expected a string");
            else
                ok = sync_split(json_string_value(v), out, err);
        }
    }
    json_t *cu = ok ? json_object_get(root, "pgvigil_catchup") : NULL;
    if (cu && !json_is_null(cu)) {
        if (!json_is_object(cu)) {
            ok = field_error(&c, "pgvigil_catchup", "expected an object");
        } else {
            const char *k;
            json_t *v;
            json_object_foreach(cu, k, v) {
                Lsn l = 0;
                if (!json_is_string(v) ||
                    (strcmp(json_string_value(v), "pending") != 0 && !lsn_parse(json_string_value(v), &l))) {
                    ok = field_error(&c, "pgvigil_catchup", "expected \"pending\" or an LSN per member");
                    break;
                }
                if (strcmp(json_string_value(v), "pending") == 0)
                    l = LSN_PENDING;
                for (int i = 0; i < out->n_members; i++)
                    if (strcasecmp(out->members[i], k) == 0)
                        out->catchup[i] = l;
            }
        }
    }
    json_decref(root);
    if (!ok) {
        memset(out, 0, sizeof(*out));
        return false;
    }
    out->present = true;
    return true;
}

char *sync_to_json(const SyncState *s)
{
    json_t *root = json_object();
    if (!root)
        out_of_memory();
    set_new(root, "leader", s->leader[0] ? json_text(s->leader) : json_null());
    if (s->n_members > 0) {
        size_t cap = (size_t)s->n_members * NAME_MAX_LEN + 1, len = 0;
        char *list = xmalloc(cap);
        list[0] = '\0';
        for (int i = 0; i < s->n_members; i++) {
            size_t n = strnlen(s->members[i], NAME_MAX_LEN - 1);
            if (i > 0)
                list[len++] = ',';
            memcpy(list + len, s->members[i], n);
            len += n;
            list[len] = '\0';
        }
        set_new(root, "sync_standby", json_text(list));
        free(list);
        json_t *cu = NULL;
        for (int i = 0; i < s->n_members; i++) {
            if (!s->catchup[i])
                continue;
            if (!cu)
                cu = json_object();
            char buf[LSN_BUFSZ];
            set_new(cu, s->members[i], json_text(s->catchup[i] == LSN_PENDING ? "pending" : lsn_format(s->catchup[i], buf)));
        }
        if (cu)
            set_new(root, "pgvigil_catchup", cu);
    } else {
        set_new(root, "sync_standby", json_null());
    }
    return dump_compact(root);
}

Lsn sync_catchup(const SyncState *s, const char *name)
{
    if (!s || !s->present || str_empty(name))
        return 0;
    for (int i = 0; i < s->n_members && i < MAX_SYNC; i++)
        if (strcasecmp(s->members[i], name) == 0)
            return s->catchup[i];
    return 0;
}

bool sync_has(const SyncState *s, const char *name)
{
    return s && s->present && !str_empty(name) && sync_lists(s, name);
}

char *history_append(const char *history_json, int timeline, Lsn switch_lsn, const char *reason,
                     const char *new_leader)
{
    json_t *hist = NULL;
    if (history_json) {
        json_error_t jerr;
        hist = json_loads(history_json, 0, &jerr);
        if (!hist)
            log_warn("history: invalid JSON (%s), starting a new history", jerr.text);
        else if (!json_is_array(hist)) {
            log_warn("history: expected a JSON array, starting a new history");
            json_decref(hist);
            hist = NULL;
        }
    }
    if (!hist)
        hist = json_array();
    json_t *entry = json_array();
    if (!hist || !entry)
        out_of_memory();
    char now[64];
    wall_iso8601(now, sizeof(now));
    bool ok = json_array_append_new(entry, json_integer(timeline)) == 0 &&
              json_array_append_new(entry, json_integer((json_int_t)switch_lsn)) == 0 &&
              json_array_append_new(entry, json_text(reason)) == 0 &&
              json_array_append_new(entry, json_text(now)) == 0 &&
              (!new_leader || json_array_append_new(entry, json_text(new_leader)) == 0) &&
              json_array_append_new(hist, entry) == 0;
    if (!ok)
        out_of_memory();
    return dump_compact(hist);
}

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const Member *)a)->name, ((const Member *)b)->name);
}

static void add_member(Cluster *c, const DcsKv *kv, const char *name, int *cap)
{
    Member m;
    Err err = {{0}};
    if (!member_from_json(name, kv->value, &m, &err)) {
        log_warn("skipping member: %s", err.msg);
        return;
    }
    m.mod_revision = kv->mod_revision;
    if (c->n_members == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        c->members = xrealloc(c->members, (size_t)*cap * sizeof(Member));
    }
    c->members[c->n_members++] = m;
}

static void read_leader(Cluster *c, const DcsKv *kv)
{
    const char *v = kv->value ? kv->value : "";
    c->leader_mod_revision = kv->mod_revision;
    c->leader_lease = kv->lease;
    /* XXX: a name no member can have is left out rather than truncated into one that
     * might match; the key still exists, so nobody can take the lock over it. */
    if (!str_copy(c->leader, sizeof(c->leader), v)) {
        log_warn("leader: member name longer than %zu bytes, ignored", sizeof(c->leader) - 1);
        c->leader[0] = '\0';
    }
}

static void read_initialize(Cluster *c, const DcsKv *kv)
{
    c->initialized = true;
    if (!str_copy(c->sysid, sizeof(c->sysid), kv->value ? kv->value : "")) {
        log_warn("initialize: system identifier longer than %zu bytes, ignored",
                 sizeof(c->sysid) - 1);
        c->sysid[0] = '\0';
    }
}

static void read_config(Cluster *c, const DcsKv *kv)
{
    /* The key exists even when unreadable: has_config stops anyone from overwriting the
     * operator's (broken) settings with bootstrap ones; defaults apply until it is fixed. */
    c->has_config = true;
    c->config_mod_revision = kv->mod_revision;
    free(c->config_json);
    c->config_json = str_dup(kv->value ? kv->value : "");
    DynConfig dc;
    memset(&dc, 0, sizeof(dc));
    Err err = {{0}};
    if (!dynconfig_from_json(c->config_json, &dc, &err)) {
        log_warn("config key: %s; the last valid configuration stays in force (none known: defaults, and no "
                 "node takes the primary role)", err.msg);
        dynconfig_free(&dc);
        c->config_invalid = true;
        /* whatever else is wrong, a standby cluster stays one: its leader must not promote
         * because a field elsewhere in the key does not parse */
        dynconfig_salvage_standby(c->config_json, &c->config.standby);
        return;
    }
    dynconfig_free(&c->config);
    c->config = dc;
}

static void read_failover(Cluster *c, const DcsKv *kv)
{
    Err err = {{0}};
    if (!failover_from_json(kv->value, &c->failover, &err)) {
        log_warn("%s; ignoring the failover key", err.msg);
        return;
    }
    c->failover.mod_revision = kv->mod_revision;
}

static void read_sync(Cluster *c, const DcsKv *kv)
{
    Err err = {{0}};
    if (!sync_from_json(kv->value, &c->sync, &err)) {
        log_warn("%s; ignoring the sync key", err.msg);
        return;
    }
    c->sync.mod_revision = kv->mod_revision;
}

static void read_status(Cluster *c, const DcsKv *kv)
{
    Err err = {{0}};
    json_t *root = load_object("status", kv->value, &err);
    if (!root) {
        log_warn("%s; ignoring the status key", err.msg);
        return;
    }
    JsonCtx ctx = {.where = "status", .prefix = "", .err = &err};
    int64_t optime = 0;
    if (get_int64(&ctx, root, "optime", 0, INT64_MAX, &optime))
        c->status_optime = (Lsn)optime;
    else
        log_warn("%s; ignoring the status key", err.msg);
    json_decref(root);
}

static void read_reserved_timeline(Cluster *c, const DcsKv *kv)
{
    Err err = {{0}};
    c->reserved_timeline_rev = kv->mod_revision; /* a bad value is replaced by the next promotion */
    json_t *root = load_object("pgvigil_timeline", kv->value, &err);
    if (!root) {
        log_warn("%s; ignoring the pgvigil_timeline key", err.msg);
        return;
    }
    JsonCtx ctx = {.where = "pgvigil_timeline", .prefix = "", .err = &err};
    int64_t t = 0;
    if (get_int64(&ctx, root, "timeline", 1, INT32_MAX - 1, &t))
        c->reserved_timeline = (int)t;
    else
        log_warn("%s; ignoring the pgvigil_timeline key", err.msg);
    json_decref(root);
}

static void read_backup_slot(Cluster *c, const DcsKv *kv, bool running)
{
    Err err = {{0}};
    const char *key = running ? "pgvigil_backup_running" : "pgvigil_backup_last";
    json_t *root = load_object(key, kv->value, &err);
    JsonCtx ctx = {.where = key, .prefix = "", .err = &err};
    int64_t slot = 0;
    if (!root || !get_int64(&ctx, root, "slot", 1, INT64_MAX, &slot)) {
        log_warn("%s; ignoring the %s key", err.msg, key);
        json_decref(root);
        return;
    }
    if (running) {
        c->backup_running_slot = slot;
        const char *m = json_string_value(json_object_get(root, "member"));
        str_copy(c->backup_running_member, sizeof(c->backup_running_member), m ? m : "");
    } else {
        c->backup_last_slot = slot;
    }
    json_decref(root);
}

static void read_backup_newest(Cluster *c, const DcsKv *kv)
{
    Err err = {{0}};
    json_t *root = load_object("pgvigil_backup_newest", kv->value, &err);
    JsonCtx ctx = {.where = "pgvigil_backup_newest", .prefix = "", .err = &err};
    int64_t stop = 0, bytes = 0;
    const char *label = root ? json_string_value(json_object_get(root, "label")) : NULL;
    if (!root || !label || !get_int64(&ctx, root, "stop_epoch", 1, INT64_MAX, &stop) ||
        !get_int64(&ctx, root, "bytes", 0, INT64_MAX, &bytes)) {
        log_warn("%s; ignoring the pgvigil_backup_newest key", err.msg[0] ? err.msg : "no label in it");
        json_decref(root);
        return;
    }
    str_copy(c->backup_newest_label, sizeof(c->backup_newest_label), label);
    c->backup_newest_stop = stop;
    c->backup_newest_bytes = bytes;
    c->backup_newest_seconds = json_number_value(json_object_get(root, "seconds"));
    json_decref(root);
}

/* Each history entry records the timeline a promotion ended; the one after it was reached. */
static int history_max_timeline(const char *json)
{
    json_error_t je;
    json_t *h = json ? json_loads(json, 0, &je) : NULL;
    int max = 0;
    if (json_is_array(h)) {
        size_t i;
        json_t *e;
        json_array_foreach(h, i, e) {
            json_t *t = json_is_array(e) ? json_array_get(e, 0) : NULL;
            if (json_is_integer(t) && json_integer_value(t) > 0 && json_integer_value(t) < INT32_MAX &&
                (int)json_integer_value(t) + 1 > max)
                max = (int)json_integer_value(t) + 1;
        }
    }
    json_decref(h);
    return max;
}

bool cluster_from_kvs(const DcsKv *kvs, int n, int64_t revision, Cluster *out, Err *err)
{
    cluster_init(out);
    if (n < 0 || (n > 0 && !kvs)) {
        err_set(err, "cluster read: invalid key list (%d keys)", n);
        return false;
    }
    out->revision = revision;
    int cap = 0;
    for (int i = 0; i < n; i++) {
        const DcsKv *kv = &kvs[i];
        const char *key = kv->key;
        if (!key)
            continue;
        if (strncmp(key, "members/", 8) == 0) {
            const char *name = key + 8;
            /* Deeper keys are not members; leave them to whoever wrote them. */
            if (*name && !strchr(name, '/'))
                add_member(out, kv, name, &cap);
        } else if (strcmp(key, "leader") == 0) {
            read_leader(out, kv);
        } else if (strcmp(key, "initialize") == 0) {
            read_initialize(out, kv);
        } else if (strcmp(key, "config") == 0) {
            read_config(out, kv);
        } else if (strcmp(key, "failover") == 0) {
            read_failover(out, kv);
        } else if (strcmp(key, "sync") == 0) {
            read_sync(out, kv);
        } else if (strcmp(key, "pgvigil_site") == 0) {
            free(out->site_json);
            out->site_json = str_dup(kv->value ? kv->value : "");
        } else if (strcmp(key, "history") == 0) {
            free(out->history_json);
            out->history_json = str_dup(kv->value ? kv->value : "");
            out->history_timeline = history_max_timeline(out->history_json);
        } else if (strcmp(key, "status") == 0) {
            read_status(out, kv);
        } else if (strcmp(key, "pgvigil_timeline") == 0) {
            read_reserved_timeline(out, kv);
        } else if (strcmp(key, "pgvigil_backup_running") == 0 || strcmp(key, "pgvigil_backup_last") == 0) {
            read_backup_slot(out, kv, strcmp(key, "pgvigil_backup_running") == 0);
        } else if (strcmp(key, "pgvigil_backup_newest") == 0) {
            read_backup_newest(out, kv);
        } else if (strncmp(key, "aa/", 3) == 0) {
            if (!out->aa)
                out->aa = xcalloc(1, sizeof(*out->aa));
            char bad[300];
            if (!aa_group_take(out->aa, key, kv->value, kv->mod_revision, kv->lease, bad, sizeof(bad)) && bad[0])
                log_warn("%s", bad);
        }
    }
    if (out->n_members > 1)
        qsort(out->members, (size_t)out->n_members, sizeof(Member), member_cmp);
    return true;
}

/* Value of `key=` in a libpq keyword/value string, copied into out. */
static bool conninfo_value(const char *conninfo, const char *key, char *out, size_t sz)
{
    size_t kl = strlen(key);
    for (const char *p = conninfo; *p;) {
        while (*p == ' ')
            p++;
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            p += kl + 1;
            size_t n = strcspn(p, " ");
            if (n >= sz)
                n = sz - 1;
            memcpy(out, p, n);
            out[n] = '\0';
            return true;
        }
        p += strcspn(p, " ");
    }
    return false;
}

void cluster_member_host(const char *conn_url, char *buf, size_t sz)
{
    buf[0] = '\0';
    if (str_empty(conn_url) || sz == 0)
        return;
    const char *p = strstr(conn_url, "://");
    if (!p) {
        char host[128] = "", port[16] = "";
        if (conninfo_value(conn_url, "host", host, sizeof(host))) {
            if (conninfo_value(conn_url, "port", port, sizeof(port)))
                str_fmt(buf, sz, "%s:%s", host, port);
            else
                str_copy(buf, sz, host);
        }
        return;
    }
    p += 3;
    size_t end = strcspn(p, "/?");
    /* skip "user:password@" (the last '@' before the path) */
    for (size_t i = end; i > 0; i--) {
        if (p[i - 1] == '@') {
            p += i;
            end -= i;
            break;
        }
    }
    if (end >= sz)
        end = sz - 1;
    memcpy(buf, p, end);
    buf[end] = '\0';
}
