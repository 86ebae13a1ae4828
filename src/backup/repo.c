/* Storage-independent helpers of the repository. */
#include "backup/repo.h"

bool repo_put(Repo *r, const char *key, const void *p, size_t n, Err *err)
{
    RepoWriter *w = r->ops->write_open(r, key, err);
    if (!w)
        return false;
    if (!r->ops->write(w, p, n, err)) {
        r->ops->write_abort(w);
        return false;
    }
    return r->ops->write_commit(w, err);
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
    if (r)
        r->ops->free(r);
}
