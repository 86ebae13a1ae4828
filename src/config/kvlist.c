/* KvList: a small ordered list of text key/value pairs (PostgreSQL parameters, initdb options).
 * Lists are short, so lookups are linear and every append reallocates. */
#include "common/common.h"
#include "config/config.h"

const char *kvlist_get(const KvList *l, const char *key)
{
    if (!l || !key)
        return NULL;
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->items[i].key, key) == 0)
            return l->items[i].value;
    return NULL;
}

void kvlist_set(KvList *l, const char *key, const char *value)
{
    if (!l || !key)
        return;
    if (!value)
        value = "";
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->items[i].key, key) == 0) {
            char *v = str_dup(value);
            free(l->items[i].value);
            l->items[i].value = v;
            return;
        }
    l->items = xrealloc(l->items, (size_t)(l->n + 1) * sizeof(KeyValue));
    l->items[l->n].key = str_dup(key);
    l->items[l->n].value = str_dup(value);
    l->n++;
}

void kvlist_free(KvList *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->n; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}
