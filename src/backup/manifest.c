/* Backup manifests (see manifest.h). */
#include "backup/manifest.h"
#include "backup/obj.h"

#define MAX_CHAIN 1000

static void info_from_json(const json_t *m, BackupInfo *b)
{
    memset(b, 0, sizeof(*b));
    str_copy(b->label, sizeof(b->label), json_string_value(json_object_get(m, "label")));
    str_copy(b->type, sizeof(b->type), json_string_value(json_object_get(m, "type")));
    const char *ref = json_string_value(json_object_get(m, "reference"));
    str_copy(b->reference, sizeof(b->reference), ref ? ref : "");
    const char *s = json_string_value(json_object_get(m, "start_lsn"));
    if (s)
        lsn_parse(s, &b->start_lsn);
    s = json_string_value(json_object_get(m, "stop_lsn"));
    if (s)
        lsn_parse(s, &b->stop_lsn);
    b->timeline = (int)json_integer_value(json_object_get(m, "timeline"));
    str_copy(b->start_time, sizeof(b->start_time), json_string_value(json_object_get(m, "start_time")));
    str_copy(b->stop_time, sizeof(b->stop_time), json_string_value(json_object_get(m, "stop_time")));
    b->seconds = json_number_value(json_object_get(m, "seconds"));
    str_copy(b->sysid, sizeof(b->sysid), json_string_value(json_object_get(m, "system_identifier")));
    b->read_bytes = json_integer_value(json_object_get(m, "read_bytes"));
    const char *from = json_string_value(json_object_get(m, "changes_from"));
    str_copy(b->changes_from, sizeof(b->changes_from), from ? from : "");
    b->checksums_checked = json_is_true(json_object_get(m, "checksums_checked"));
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(m, "files"), i, f) {
        b->files++;
        b->bytes += json_integer_value(json_object_get(f, "size"));
        b->stored += json_integer_value(json_object_get(f, "stored"));
        b->checksum_errors += (int64_t)json_array_size(json_object_get(f, "checksum_errors"));
    }
}

Manifest *manifest_load(Repo *r, const char *label, Err *err)
{
    char *key = str_printf("backup/%s/manifest", label);
    void *stored = NULL, *raw = NULL;
    size_t sn = 0, rn = 0;
    bool missing = false;
    bool ok = r->ops->read_all(r, key, &stored, &sn, &missing, err) &&
              obj_decode(r->cipher, stored, sn, &raw, &rn, err);
    free(stored);
    if (!ok) {
        err_prefix(err, "%s: backup %s", r->desc, label);
        free(key);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(raw, rn, 0, &je);
    free(raw);
    if (!root || json_integer_value(json_object_get(root, "format")) != MANIFEST_FORMAT ||
        !json_is_array(json_object_get(root, "files"))) {
        err_set(err, "%s: %s: not a manifest of this format", r->desc, key);
        json_decref(root);
        free(key);
        return NULL;
    }
    free(key);
    Manifest *m = xcalloc(1, sizeof(*m));
    m->root = root;
    m->by_path = json_object();
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(root, "files"), i, f) {
        const char *p = json_string_value(json_object_get(f, "path"));
        if (p)
            json_object_set(m->by_path, p, f);
    }
    info_from_json(root, &m->info);
    return m;
}

void manifest_free(Manifest *m)
{
    if (!m)
        return;
    json_decref(m->by_path);
    json_decref(m->root);
    free(m);
}

json_t *manifest_file(const Manifest *m, const char *path)
{
    return json_object_get(m->by_path, path);
}

const char *manifest_file_mode(const json_t *entry)
{
    const char *mode = json_string_value(json_object_get(entry, "mode"));
    return mode ? mode : "whole";
}

const char *manifest_file_checksum(const json_t *entry)
{
    const char *sum = json_string_value(json_object_get(entry, "checksum"));
    if (!sum)
        sum = json_string_value(json_object_get(entry, "sha256")); /* manifests before xxh128 */
    return sum ? sum : "";
}

bool manifest_key_label(const char *key, char *label, size_t sz)
{
    size_t len = strlen(key);
    if (len < 16 || strncmp(key, "backup/", 7) != 0 || strcmp(key + len - 9, "/manifest") != 0 ||
        strchr(key + 7, '/') != key + len - 9)
        return false;
    return str_fmt(label, sz, "%.*s", (int)(len - 16), key + 7);
}

bool manifest_store(Repo *r, const char *label, const char *json, Err *err)
{
    void *obj = NULL;
    size_t on = 0;
    char *key = str_printf("backup/%s/manifest", label);
    bool ok = obj_encode(r->cipher, COMPRESS_ZSTD, 3, json, strlen(json), &obj, &on, err) &&
              repo_put(r, key, obj, on, err);
    free(obj);
    free(key);
    return ok;
}

bool manifest_chain(Repo *r, const char *label, Manifest ***chain, int *n, Err *err)
{
    *chain = NULL;
    *n = 0;
    const char *next = label;
    char cur[40];
    while (next && next[0]) {
        if (*n >= MAX_CHAIN) {
            err_set(err, "%s: backup %s: its chain of references does not end in a full backup", r->desc, label);
            manifest_chain_free(*chain, *n);
            *chain = NULL;
            *n = 0;
            return false;
        }
        str_copy(cur, sizeof(cur), next);
        Manifest *m = manifest_load(r, cur, err);
        if (!m) {
            if (*n > 0)
                err_prefix(err, "backup %s builds on it", (*chain)[*n - 1]->info.label);
            manifest_chain_free(*chain, *n);
            *chain = NULL;
            *n = 0;
            return false;
        }
        *chain = xrealloc(*chain, (size_t)(*n + 1) * sizeof(Manifest *));
        (*chain)[(*n)++] = m;
        next = strcmp(m->info.type, "full") == 0 ? NULL : m->info.reference;
    }
    return true;
}

void manifest_chain_free(Manifest **chain, int n)
{
    for (int i = 0; i < n; i++)
        manifest_free(chain[i]);
    free(chain);
}
