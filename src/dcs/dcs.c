/* Implementation-independent parts of the DCS boundary: freeing a handle through its vtable and
 * building the cluster key prefix from the configured namespace and scope. */
#include "common/common.h"

#include "dcs/dcs.h"

void dcs_free(Dcs *d)
{
    if (d)
        d->ops->free(d);
}

char *dcs_prefix(const char *namespace_, const char *scope)
{
    /* Patroni's default namespace; slashes around the namespace are normalized so "service",
     * "/service" and "/service/" all give "/service/<scope>/". An empty namespace means the
     * root: "/<scope>/". */
    const char *ns = namespace_ ? namespace_ : "/service/";
    while (*ns == '/')
        ns++;
    size_t ns_len = strlen(ns);
    while (ns_len > 0 && ns[ns_len - 1] == '/')
        ns_len--;
    const char *sc = scope ? scope : "";
    if (ns_len == 0)
        return str_printf("/%s/", sc);
    return str_printf("/%.*s/%s/", (int)ns_len, ns, sc);
}
