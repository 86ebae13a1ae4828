/* The dynamic settings that make a cluster a standby cluster (standby_cluster) and the permanent
 * replication slots a primary keeps for another site (slots), in Patroni's JSON shape:
 *   "standby_cluster": {"host": "10.1.0.3,10.1.0.4", "port": 5432, "primary_slot_name": "site_b",
 *                       "restore_command": "...", "recovery_min_apply_delay": "1h",
 *                       "create_replica_methods": ["basebackup"]}
 *   "slots": {"site_b": {"type": "physical"}} */
#include "common/common.h"
#include "config/dynconfig_int.h"

#include <ctype.h>

static void free_strv(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void standby_cluster_free(StandbyCluster *sc)
{
    free(sc->host);
    free(sc->primary_slot_name);
    free(sc->restore_command);
    free(sc->recovery_min_apply_delay);
    free_strv(sc->create_replica_methods, sc->n_create_replica_methods);
    memset(sc, 0, sizeof(*sc));
}

void standby_cluster_copy(StandbyCluster *dst, const StandbyCluster *src)
{
    *dst = *src;
    dst->host = str_dup(src->host);
    dst->primary_slot_name = str_dup(src->primary_slot_name);
    dst->restore_command = str_dup(src->restore_command);
    dst->recovery_min_apply_delay = str_dup(src->recovery_min_apply_delay);
    dst->create_replica_methods = NULL;
    if (src->n_create_replica_methods > 0) {
        dst->create_replica_methods = xcalloc((size_t)src->n_create_replica_methods, sizeof(char *));
        for (int i = 0; i < src->n_create_replica_methods; i++)
            dst->create_replica_methods[i] = str_dup(src->create_replica_methods[i]);
    }
}

/* A replication slot name as PostgreSQL accepts it: [a-z0-9_], at most 63 characters. */
static bool slot_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

static bool text_field(const json_t *obj, const char *key, char **out, Err *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v)) {
        err_set(err, "standby_cluster.%s: expected a string", key);
        return false;
    }
    const char *s = json_string_value(v);
    if (s[0])
        *out = str_dup(s);
    return true;
}

static bool port_field(const json_t *obj, int *out, Err *err)
{
    const json_t *v = json_object_get(obj, "port");
    *out = 5432;
    if (!v || json_is_null(v))
        return true;
    int64_t p = -1;
    if (json_is_integer(v))
        p = (int64_t)json_integer_value(v);
    else if (!json_is_string(v) || !config_parse_int64(json_string_value(v), &p))
        p = -1;
    if (p < 1 || p > 65535) {
        err_set(err, "standby_cluster.port: expected a port number (1-65535)");
        return false;
    }
    *out = (int)p;
    return true;
}

static bool methods_field(const json_t *obj, StandbyCluster *sc, Err *err)
{
    const json_t *v = json_object_get(obj, "create_replica_methods");
    if (!v || json_is_null(v))
        return true;
    if (!json_is_array(v)) {
        err_set(err, "standby_cluster.create_replica_methods: expected a list");
        return false;
    }
    size_t n = json_array_size(v);
    sc->create_replica_methods = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(v, i);
        const char *s = json_is_string(m) ? json_string_value(m) : "";
        /* a method of another tool (Patroni's custom ones) is not ours to run: skipped, and
         * basebackup is used when none is left */
        if (strcmp(s, "basebackup") != 0 && strcmp(s, "pgvigil") != 0)
            continue;
        sc->create_replica_methods[sc->n_create_replica_methods++] = str_dup(s);
    }
    return true;
}

bool standby_cluster_from_json(const json_t *v, StandbyCluster *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    if (!v || json_is_null(v))
        return true;
    if (!json_is_object(v)) {
        err_set(err, "standby_cluster: expected an object");
        return false;
    }
    bool ok = text_field(v, "host", &out->host, err) && port_field(v, &out->port, err) &&
              text_field(v, "primary_slot_name", &out->primary_slot_name, err) &&
              text_field(v, "restore_command", &out->restore_command, err) &&
              text_field(v, "recovery_min_apply_delay", &out->recovery_min_apply_delay, err) &&
              methods_field(v, out, err);
    if (ok && !out->host && !out->restore_command) {
        err_set(err, "standby_cluster: needs a host to replicate from, or a restore_command");
        ok = false;
    }
    if (ok && out->primary_slot_name && !slot_name_ok(out->primary_slot_name)) {
        err_set(err, "standby_cluster.primary_slot_name: \"%s\" is not a replication slot name ([a-z0-9_], at most 63)",
                out->primary_slot_name);
        ok = false;
    }
    if (ok && out->host && strlen(out->host) > 255) {
        err_set(err, "standby_cluster.host: longer than 255 characters");
        ok = false;
    }
    if (ok && out->restore_command && strlen(out->restore_command) > 1000) {
        err_set(err, "standby_cluster.restore_command: longer than 1000 characters");
        ok = false;
    }
    if (ok && out->recovery_min_apply_delay && strlen(out->recovery_min_apply_delay) > 60) {
        err_set(err, "standby_cluster.recovery_min_apply_delay: longer than 60 characters");
        ok = false;
    }
    if (ok && out->host && strpbrk(out->host, " '\\=")) {
        err_set(err, "standby_cluster.host: \"%s\" is not a host name or a list of them", out->host);
        ok = false;
    }
    if (!ok) {
        standby_cluster_free(out);
        return false;
    }
    out->present = true;
    return true;
}

void dynconfig_salvage_standby(const char *json, StandbyCluster *out)
{
    json_t *root = json ? json_loads(json, 0, NULL) : NULL;
    json_t *sc = json_object_get(root, "standby_cluster");
    if (json_is_object(sc)) {
        Err err = {{0}};
        standby_cluster_free(out);
        if (!standby_cluster_from_json(sc, out, &err)) {
            memset(out, 0, sizeof(*out));
            out->port = 5432;
        }
        out->present = true;
    }
    json_decref(root);
}

json_t *standby_cluster_to_json(const StandbyCluster *sc)
{
    if (!sc->present)
        return NULL;
    json_t *o = json_object();
    if (sc->host)
        json_object_set_new(o, "host", json_string(sc->host));
    json_object_set_new(o, "port", json_integer(sc->port));
    if (sc->primary_slot_name)
        json_object_set_new(o, "primary_slot_name", json_string(sc->primary_slot_name));
    if (sc->restore_command)
        json_object_set_new(o, "restore_command", json_string(sc->restore_command));
    if (sc->recovery_min_apply_delay)
        json_object_set_new(o, "recovery_min_apply_delay", json_string(sc->recovery_min_apply_delay));
    if (sc->n_create_replica_methods > 0) {
        json_t *a = json_array();
        for (int i = 0; i < sc->n_create_replica_methods; i++)
            json_array_append_new(a, json_string(sc->create_replica_methods[i]));
        json_object_set_new(o, "create_replica_methods", a);
    }
    return o;
}

bool slots_from_json(const json_t *v, char ***names, int *n, Err *err)
{
    *names = NULL;
    *n = 0;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_object(v)) {
        err_set(err, "slots: expected an object of slot names");
        return false;
    }
    size_t count = json_object_size(v);
    char **out = xcalloc(count + 1, sizeof(char *));
    int k = 0;
    const char *name;
    json_t *spec;
    json_object_foreach((json_t *)v, name, spec) {
        const json_t *type = json_is_object(spec) ? json_object_get(spec, "type") : NULL;
        const char *t = json_is_string(type) ? json_string_value(type) : (type ? "" : "physical");
        /* logical permanent slots (Patroni keeps them for CDC) are not pgvigil's to keep: skipped */
        if (strcmp(t, "physical") != 0)
            continue;
        if (!slot_name_ok(name) || (spec && !json_is_object(spec) && !json_is_null(spec))) {
            err_set(err, "slots.%s: %s", name,
                    !slot_name_ok(name) ? "not a replication slot name ([a-z0-9_], at most 63)"
                                        : "expected {\"type\": \"physical\"}");
            free_strv(out, k);
            return false;
        }
        out[k++] = str_dup(name);
    }
    *names = out;
    *n = k;
    return true;
}

json_t *slots_to_json(char *const *names, int n)
{
    if (n <= 0)
        return NULL;
    json_t *o = json_object();
    for (int i = 0; i < n; i++)
        json_object_set_new(o, names[i], json_pack("{s:s}", "type", "physical"));
    return o;
}
