/* Storage-independent helpers of the repository, and the choice of driver. */
#include "backup/repo.h"
#include "config/config.h"

Repo *repo_open_driver(const BackupConfig *bc, Err *err)
{
    if (bc->repo_type && strcmp(bc->repo_type, "s3") == 0) {
        /* the agent's configuration has them (checked at load); a client's may not */
        if (str_empty(bc->s3_key) || str_empty(bc->s3_secret)) {
            err_set(err, "backup.repository.%s: required for an s3 repository (or set %s in the environment)",
                    str_empty(bc->s3_key) ? "s3_key" : "s3_secret",
                    str_empty(bc->s3_key) ? "PGVIGIL_S3_KEY" : "PGVIGIL_S3_SECRET");
            return NULL;
        }
        S3RepoConfig c = {
            .endpoint = bc->s3_endpoint,
            .bucket = bc->s3_bucket,
            .region = bc->s3_region,
            .host_style = bc->s3_uri_style && strcmp(bc->s3_uri_style, "host") == 0,
            .access_key = bc->s3_key,
            .secret_key = bc->s3_secret,
            .part_size = bc->s3_part_size > 0 ? (size_t)bc->s3_part_size : 0,
        };
        return repo_s3_new(&c, err);
    }
    if (!bc->repo_path) {
        err_set(err, "backup.repository.path is not set");
        return NULL;
    }
    return repo_posix_new(bc->repo_path, err);
}

Repo *repo_open(const BackupConfig *bc, Err *err)
{
    Repo *r = repo_open_driver(bc, err);
    if (r && !repo_cipher_setup(r, bc->encryption, bc->encryption_key_file, err)) {
        repo_free(r);
        return NULL;
    }
    return r;
}

bool repo_key_valid(const char *key)
{
    if (str_empty(key) || key[0] == '/')
        return false;
    for (const char *p = key; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += n;
        if (*p == '/')
            p++;
    }
    return true;
}

/* A writer that holds the whole object, not committed yet (NULL on an error). */
static RepoWriter *written(Repo *r, const char *key, const void *p, size_t n, Err *err)
{
    RepoWriter *w = r->ops->write_open(r, key, err);
    if (w && !r->ops->write(w, p, n, err)) {
        r->ops->write_abort(w);
        return NULL;
    }
    return w;
}

static bool put_with(Repo *r, const char *key, const void *p, size_t n, bool (*commit)(RepoWriter *w, Err *err),
                     Err *err)
{
    RepoWriter *w = written(r, key, p, n, err);
    return w && commit(w, err);
}

bool repo_put(Repo *r, const char *key, const void *p, size_t n, Err *err)
{
    return put_with(r, key, p, n, r->ops->write_commit, err);
}

bool repo_put_lazy(Repo *r, const char *key, const void *p, size_t n, Err *err)
{
    return put_with(r, key, p, n, r->ops->write_commit_lazy ? r->ops->write_commit_lazy : r->ops->write_commit, err);
}

bool repo_put_new(Repo *r, const char *key, const void *p, size_t n, bool *existed, Err *err)
{
    *existed = false;
    if (!r->ops->write_commit_new)
        return r->ops->exists(r, key, existed, err) && (*existed || repo_put(r, key, p, n, err));
    RepoWriter *w = written(r, key, p, n, err);
    return w && r->ops->write_commit_new(w, existed, err);
}

bool repo_sync(Repo *r, Err *err)
{
    return !r->ops->sync_all || r->ops->sync_all(r, err);
}

void repo_keys_free(RepoKeys *k)
{
    for (int i = 0; i < k->n; i++)
        free(k->keys[i]);
    free(k->keys);
    k->keys = NULL;
    k->n = 0;
}

void repo_free(Repo *r)
{
    if (!r)
        return;
    obj_cipher_free(r->cipher);
    r->cipher = NULL;
    r->ops->free(r);
}
