/* Cluster-wide dynamic settings: defaults, copies, and the JSON of the etcd `config` key,
 * including the key=value edits of edit-config and the merge patches of PATCH /config. */
#include "common/common.h"
#include "config/config.h"
#include "config/dynconfig_int.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>

#define JSON_OUT_FLAGS (JSON_COMPACT | JSON_SORT_KEYS)

typedef enum { F_INT, F_INT64, F_BOOL, F_SECONDS_MS } FieldKind;

typedef struct Field {
    const char *key;
    FieldKind kind;
    size_t off;
    bool alias;                 /* read only, never written (old Patroni name) */
    bool omit_zero;             /* pgvigil's own keys: written only when set */
} Field;

#define DF(f) offsetof(DynConfig, f)

/* Top-level keys; an alias comes before its modern name so the modern one wins. */
static const Field top_fields[] = {
    {"ttl", F_INT, DF(ttl), false, false},
    {"loop_wait", F_SECONDS_MS, DF(loop_wait_ms), false, false},
    {"retry_timeout", F_INT, DF(retry_timeout), false, false},
    {"maximum_lag_on_failover", F_INT64, DF(maximum_lag_on_failover), false, false},
    {"synchronous_mode", F_BOOL, DF(synchronous_mode), false, false},
    {"synchronous_mode_strict", F_BOOL, DF(synchronous_mode_strict), false, false},
    {"synchronous_node_count", F_INT, DF(synchronous_node_count), false, false},
    {"pause", F_BOOL, DF(pause), false, false},
    {"master_start_timeout", F_INT, DF(primary_start_timeout), true, false},
    {"primary_start_timeout", F_INT, DF(primary_start_timeout), false, false},
    {"site_lag_guard_bytes", F_INT64, DF(site_lag_guard_bytes), false, true},
    {"site_start_without_peer", F_BOOL, DF(site_start_without_peer), false, true},
};

/* Keys under "postgresql" (besides "parameters"). */
static const Field pg_fields[] = {
    {"use_pg_rewind", F_BOOL, DF(use_pg_rewind), false, false},
    {"use_slots", F_BOOL, DF(use_slots), false, false},
};

void dynconfig_defaults(DynConfig *dc)
{
    memset(dc, 0, sizeof(*dc));
    dc->ttl = 5;
    dc->loop_wait_ms = 1000;
    dc->retry_timeout = 3;
    dc->maximum_lag_on_failover = 1048576;
    dc->synchronous_node_count = 1;
    dc->primary_start_timeout = 300;
    dc->use_pg_rewind = true;
    dc->use_slots = true;
}

void dynconfig_free(DynConfig *dc)
{
    if (!dc)
        return;
    kvlist_free(&dc->pg_parameters);
    standby_cluster_free(&dc->standby);
    for (int i = 0; i < dc->n_slots; i++)
        free(dc->slots[i]);
    free(dc->slots);
    dc->slots = NULL;
    dc->n_slots = 0;
}

void dynconfig_copy(DynConfig *dst, const DynConfig *src)
{
    if (dst == src)
        return;
    *dst = *src;
    dst->pg_parameters.items = NULL;
    dst->pg_parameters.n = 0;
    for (int i = 0; i < src->pg_parameters.n; i++)
        kvlist_set(&dst->pg_parameters, src->pg_parameters.items[i].key, src->pg_parameters.items[i].value);
    standby_cluster_copy(&dst->standby, &src->standby);
    dst->slots = NULL;
    if (src->n_slots > 0) {
        dst->slots = xcalloc((size_t)src->n_slots, sizeof(char *));
        for (int i = 0; i < src->n_slots; i++)
            dst->slots[i] = str_dup(src->slots[i]);
    }
}

const char *dynconfig_check(const DynConfig *dc, Err *err)
{
    char lw[32];
    str_fmt(lw, sizeof(lw), "%g", dc->loop_wait_ms / 1000.0);
    if (dc->ttl < 1) {
        err_set(err, "must be at least 1, got %d", dc->ttl);
        return "ttl";
    }
    if (dc->loop_wait_ms < 100) {
        err_set(err, "must be at least 0.1, got %s", lw);
        return "loop_wait";
    }
    if ((int64_t)dc->loop_wait_ms >= (int64_t)dc->ttl * 1000) {
        err_set(err, "must be less than ttl (%d), got %s", dc->ttl, lw);
        return "loop_wait";
    }
    if (dc->retry_timeout < 1) {
        err_set(err, "must be at least 1, got %d", dc->retry_timeout);
        return "retry_timeout";
    }
    if (dc->maximum_lag_on_failover < 0) {
        err_set(err, "must not be negative, got %lld", (long long)dc->maximum_lag_on_failover);
        return "maximum_lag_on_failover";
    }
    if (dc->synchronous_node_count < 1) {
        err_set(err, "must be at least 1, got %d", dc->synchronous_node_count);
        return "synchronous_node_count";
    }
    if (dc->site_lag_guard_bytes < 0) {
        err_set(err, "must not be negative, got %lld", (long long)dc->site_lag_guard_bytes);
        return "site_lag_guard_bytes";
    }
    if (dc->primary_start_timeout < 0) {
        err_set(err, "must not be negative, got %d", dc->primary_start_timeout);
        return "primary_start_timeout";
    }
    return NULL;
}

/* "got ..." part of a type error: short and on one line. */
static void describe_json(const json_t *v, char *buf, size_t sz)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: str_copy(buf, sz, "an object"); return;
    case JSON_ARRAY: str_copy(buf, sz, "an array"); return;
    case JSON_TRUE: str_copy(buf, sz, "true"); return;
    case JSON_FALSE: str_copy(buf, sz, "false"); return;
    case JSON_NULL: str_copy(buf, sz, "null"); return;
    case JSON_INTEGER: str_fmt(buf, sz, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); return;
    case JSON_REAL: str_fmt(buf, sz, "%g", json_real_value(v)); return;
    case JSON_STRING: break;
    }
    char tmp[64];
    const char *s = json_string_value(v);
    size_t i = 0;
    for (; s[i] && i < 40; i++)
        tmp[i] = iscntrl((unsigned char)s[i]) ? ' ' : s[i];
    tmp[i] = '\0';
    str_fmt(buf, sz, "\"%s%s\"", tmp, s[i] ? "..." : "");
}

static bool json_type_error(Err *err, const char *key, const char *expected, const json_t *v)
{
    char got[80];
    describe_json(v, got, sizeof(got));
    err_set(err, "%s: expected %s, got %s", key, expected, got);
    return false;
}

static bool json_to_int64(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d) || d < -9.0e18 || d > 9.0e18)
            return false;
        *out = (int64_t)d;
        return true;
    }
    /* Values set by hand as strings ("30") are accepted, as Patroni does. */
    return json_is_string(v) && config_parse_int64(json_string_value(v), out);
}

/* A duration in seconds: a JSON number or a numeric string ("0.5"), finite. */
static bool json_to_seconds(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return isfinite(*out);
    }
    if (!json_is_string(v))
        return false;
    return config_parse_seconds(json_string_value(v), out);
}

static bool json_to_bool(const json_t *v, bool *out)
{
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return true;
    }
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *out = json_integer_value(v) == 1;
        return true;
    }
    return json_is_string(v) && config_parse_bool(json_string_value(v), out);
}

static bool read_fields(const json_t *obj, const Field *fields, size_t n, const char *prefix,
                        DynConfig *dc, Err *err)
{
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, fields[i].key);
        if (!v || json_is_null(v))
            continue;
        char key[96];
        str_fmt(key, sizeof(key), "%s%s", prefix, fields[i].key);
        char *field = (char *)dc + fields[i].off;
        int64_t n64;
        switch (fields[i].kind) {
        case F_BOOL:
            if (!json_to_bool(v, (bool *)(void *)field))
                return json_type_error(err, key, "a boolean", v);
            break;
        case F_INT:
            if (!json_to_int64(v, &n64))
                return json_type_error(err, key, "an integer", v);
            if (n64 < INT32_MIN || n64 > INT32_MAX) {
                err_set(err, "%s: integer out of range: %lld", key, (long long)n64);
                return false;
            }
            *(int *)(void *)field = (int)n64;
            break;
        case F_INT64:
            if (!json_to_int64(v, &n64))
                return json_type_error(err, key, "an integer", v);
            *(int64_t *)(void *)field = n64;
            break;
        case F_SECONDS_MS: {
            double sec;
            if (!json_to_seconds(v, &sec))
                return json_type_error(err, key, "a number of seconds", v);
            if (sec < 0 || sec > INT32_MAX / 1000) {
                err_set(err, "%s: out of range: %g", key, sec);
                return false;
            }
            *(int *)(void *)field = (int)(sec * 1000 + 0.5);
            break;
        }
        }
    }
    return true;
}

/* Shortest decimal text that reads back as the same double (0.9, not 0.90000000000000002). */
static void real_text(double d, char *buf, size_t sz)
{
    for (int prec = 1; prec <= 17; prec++) {
        str_fmt(buf, sz, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

static bool read_parameters(const json_t *params, KvList *out, Err *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)params, k, v) {
        char text[64];
        switch (json_typeof(v)) {
        case JSON_STRING: kvlist_set(out, k, json_string_value(v)); break;
        case JSON_INTEGER:
            str_fmt(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            kvlist_set(out, k, text);
            break;
        case JSON_REAL:
            real_text(json_real_value(v), text, sizeof(text));
            kvlist_set(out, k, text);
            break;
        case JSON_TRUE: kvlist_set(out, k, "on"); break;
        case JSON_FALSE: kvlist_set(out, k, "off"); break;
        case JSON_NULL: break;     /* a null parameter means "not set" */
        case JSON_OBJECT:
        case JSON_ARRAY: {
            char key[160];
            str_fmt(key, sizeof(key), "postgresql.parameters.%s", k);
            return json_type_error(err, key, "a scalar", v);
        }
        }
    }
    return true;
}

static bool is_blank(const char *s)
{
    if (!s)
        return true;
    while (*s && isspace((unsigned char)*s))
        s++;
    return *s == '\0';
}

static json_t *load_json(const char *text, const char *what, Err *err)
{
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root) {
        err_set(err, "%s: invalid JSON at line %d, column %d: %s", what, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        err_set(err, "%s: expected a JSON object", what);
        json_decref(root);
        return NULL;
    }
    return root;
}

static bool from_object(const json_t *root, DynConfig *dc, Err *err)
{
    if (!read_fields(root, top_fields, ARRAY_LEN(top_fields), "", dc, err))
        return false;
    const json_t *pg = json_object_get(root, "postgresql");
    if (pg && !json_is_null(pg)) {
        if (!json_is_object(pg))
            return json_type_error(err, "postgresql", "an object", pg);
        if (!read_fields(pg, pg_fields, ARRAY_LEN(pg_fields), "postgresql.", dc, err))
            return false;
        const json_t *params = json_object_get(pg, "parameters");
        if (params && !json_is_null(params)) {
            if (!json_is_object(params))
                return json_type_error(err, "postgresql.parameters", "an object", params);
            if (!read_parameters(params, &dc->pg_parameters, err))
                return false;
        }
    }
    if (!standby_cluster_from_json(json_object_get(root, "standby_cluster"), &dc->standby, err) ||
        !slots_from_json(json_object_get(root, "slots"), &dc->slots, &dc->n_slots, err))
        return false;
    const char *bad = dynconfig_check(dc, err);
    if (bad) {
        err_prefix(err, "%s", bad);
        return false;
    }
    return true;
}

bool dynconfig_from_json(const char *json, DynConfig *out, Err *err)
{
    dynconfig_defaults(out);
    if (is_blank(json))
        return true;
    json_t *root = load_json(json, "config", err);
    if (!root)
        return false;
    bool ok = from_object(root, out, err);
    json_decref(root);
    if (!ok) {
        dynconfig_free(out);
        dynconfig_defaults(out);
    }
    return ok;
}

static char *dump(json_t *root)
{
    char *s = json_dumps(root, JSON_OUT_FLAGS);
    if (!s) {
        fputs("pgvigil: out of memory\n", stderr);
        abort();
    }
    return s;
}

/* Parameter text that is a plain integer goes out as a JSON number, as Patroni writes it. */
static json_t *parameter_json(const char *text)
{
    const char *p = text[0] == '-' ? text + 1 : text;
    size_t n = strlen(p);
    bool plain = n > 0 && n <= 18 && (p[0] != '0' || n == 1) && !(p[0] == '0' && p != text);
    for (size_t i = 0; plain && i < n; i++)
        plain = isdigit((unsigned char)p[i]);
    if (plain)
        return json_integer(strtoll(text, NULL, 10));
    return json_string(text);
}

char *dynconfig_to_json(const DynConfig *dc)
{
    json_t *root = json_object();
    json_t *pg = json_object();
    json_t *params = json_object();
    for (size_t i = 0; i < ARRAY_LEN(top_fields) + ARRAY_LEN(pg_fields); i++) {
        bool top = i < ARRAY_LEN(top_fields);
        const Field *f = top ? &top_fields[i] : &pg_fields[i - ARRAY_LEN(top_fields)];
        if (f->alias)
            continue;
        const char *field = (const char *)dc + f->off;
        if (f->omit_zero && ((f->kind == F_INT64 && *(const int64_t *)(const void *)field == 0) ||
                             (f->kind == F_BOOL && !*(const bool *)(const void *)field)))
            continue;
        json_t *v = NULL;
        switch (f->kind) {
        case F_BOOL: v = json_boolean(*(const bool *)(const void *)field); break;
        case F_INT: v = json_integer(*(const int *)(const void *)field); break;
        case F_INT64: v = json_integer((json_int_t)*(const int64_t *)(const void *)field); break;
        case F_SECONDS_MS: {
            /* whole seconds stay integers, as Patroni writes them */
            int ms = *(const int *)(const void *)field;
            v = ms % 1000 == 0 ? json_integer(ms / 1000) : json_real(ms / 1000.0);
            break;
        }
        }
        json_object_set_new(top ? root : pg, f->key, v);
    }
    for (int i = 0; i < dc->pg_parameters.n; i++) {
        /* json_string() refuses invalid UTF-8; such a value cannot be stored as JSON text. */
        json_t *v = parameter_json(dc->pg_parameters.items[i].value);
        if (v)
            json_object_set_new(params, dc->pg_parameters.items[i].key, v);
    }
    json_object_set_new(pg, "parameters", params);
    json_object_set_new(root, "postgresql", pg);
    json_t *sc = standby_cluster_to_json(&dc->standby);
    if (sc)
        json_object_set_new(root, "standby_cluster", sc);
    json_t *slots = slots_to_json(dc->slots, dc->n_slots);
    if (slots)
        json_object_set_new(root, "slots", slots);
    char *s = dump(root);
    json_decref(root);
    return s;
}

static json_t *load_base(const char *json, Err *err)
{
    return is_blank(json) ? json_object() : load_json(json, "config", err);
}

/* The value of an edit: a JSON literal (true, false, null, a number) or else a string. */
static json_t *edit_value(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (v && (json_is_number(v) || json_is_boolean(v) || json_is_null(v)))
        return v;
    json_decref(v);
    return json_string(text);
}

/* Split "a.b.c" into segments. Under postgresql.parameters the rest is one name, since
 * parameter names may contain dots (pg_stat_statements.track). Returns the count, 0 if a
 * segment is empty. segs point into buf. */
static int split_path(char *buf, char **segs, int max)
{
    int n = 0;
    char *p = buf;
    for (;;) {
        if (n == max)
            return 0;
        segs[n++] = p;
        if (n == 3 && strcmp(segs[0], "postgresql") == 0 && strcmp(segs[1], "parameters") == 0)
            break;
        char *dot = strchr(p, '.');
        if (!dot)
            break;
        *dot = '\0';
        p = dot + 1;
    }
    for (int i = 0; i < n; i++)
        if (segs[i][0] == '\0')
            return 0;
    return n;
}

static bool apply_set(json_t *root, char *path, json_t *value, Err *err)
{
    char *segs[32];
    char shown[256];
    str_copy(shown, sizeof(shown), path);
    int n = split_path(path, segs, (int)ARRAY_LEN(segs));
    if (n == 0) {
        err_set(err, "invalid key \"%s\"", shown);
        return false;
    }
    json_t *obj = root;
    for (int i = 0; i < n - 1; i++) {
        json_t *child = json_object_get(obj, segs[i]);
        if (!child) {
            if (json_is_null(value))
                return true;    /* deleting under a missing parent: nothing to do */
            child = json_object();
            if (json_object_set_new(obj, segs[i], child) != 0) {
                err_set(err, "invalid key \"%s\"", shown);
                return false;
            }
        } else if (!json_is_object(child)) {
            err_set(err, "cannot set %s: %s is not an object", shown, segs[i]);
            return false;
        }
        obj = child;
    }
    if (json_is_null(value)) {
        json_object_del(obj, segs[n - 1]);
        return true;
    }
    if (json_object_set(obj, segs[n - 1], value) != 0) {
        err_set(err, "invalid key \"%s\"", shown);
        return false;
    }
    return true;
}

char *dynconfig_json_set(const char *json, const char *assignment, Err *err)
{
    const char *eq = assignment ? strchr(assignment, '=') : NULL;
    if (!eq || eq == assignment) {
        err_set(err, "invalid assignment \"%s\": expected key=value", assignment ? assignment : "");
        return NULL;
    }
    json_t *value = edit_value(eq + 1);
    if (!value) {
        err_set(err, "invalid assignment \"%s\": value is not valid UTF-8", assignment);
        return NULL;
    }
    json_t *root = load_base(json, err);
    if (!root) {
        json_decref(value);
        return NULL;
    }
    size_t klen = (size_t)(eq - assignment);
    char *path = xmalloc(klen + 1);
    memcpy(path, assignment, klen);
    path[klen] = '\0';
    bool ok = apply_set(root, path, value, err);
    free(path);
    json_decref(value);
    char *out = ok ? dump(root) : NULL;
    json_decref(root);
    return out;
}

/* RFC 7386: null removes, an object merges recursively, anything else replaces. */
static void merge_patch(json_t *target, const json_t *patch)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v) {
        if (json_is_null(v)) {
            json_object_del(target, k);
        } else if (json_is_object(v)) {
            json_t *t = json_object_get(target, k);
            if (!json_is_object(t)) {
                t = json_object();
                json_object_set_new(target, k, t);
            }
            merge_patch(t, v);
        } else {
            json_object_set(target, k, v);
        }
    }
}

char *dynconfig_json_merge(const char *json, const char *patch, Err *err)
{
    json_t *root = load_base(json, err);
    if (!root)
        return NULL;
    json_t *p = load_json(patch ? patch : "", "patch", err);
    if (!p) {
        json_decref(root);
        return NULL;
    }
    merge_patch(root, p);
    char *out = dump(root);
    json_decref(p);
    json_decref(root);
    return out;
}
