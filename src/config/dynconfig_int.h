/* Internal to src/config: the JSON codecs of the dynamic settings that are objects of their own
 * (standby_cluster, slots), used by dynconfig.c. */
#ifndef PGVIGIL_DYNCONFIG_INT_H
#define PGVIGIL_DYNCONFIG_INT_H

#include "common/common.h"
#include "config/config.h"

#include <jansson.h>

/* standby_cluster: an object, or null / absent (not a standby cluster). */
bool standby_cluster_from_json(const json_t *v, StandbyCluster *out, Err *err);
json_t *standby_cluster_to_json(const StandbyCluster *sc);     /* NULL when not present */
void standby_cluster_free(StandbyCluster *sc);
void standby_cluster_copy(StandbyCluster *dst, const StandbyCluster *src);

/* slots: {"name": {"type": "physical"}, ...} */
bool slots_from_json(const json_t *v, char ***names, int *n, Err *err);
json_t *slots_to_json(char *const *names, int n);               /* NULL when none */

#endif
