/* What two sites write about each other in etcd (see site_record.h). */
#include "common/common.h"
#include "dcs/site_record.h"

/* "10.0.0.3,10.0.0.4" and the port of every member's PostgreSQL (one port for all: standby_cluster
 * takes one) */
static bool site_hosts(const Cluster *c, const char *scope, char *hosts, size_t hsz, int *port, Err *err)
{
    hosts[0] = '\0';
    *port = 0;
    size_t len = 0;
    for (int i = 0; i < c->n_members; i++) {
        char hp[256];
        cluster_member_host(c->members[i].conn_url, hp, sizeof(hp));
        char *colon = strrchr(hp, ':');
        if (!colon)
            continue;
        *colon = '\0';
        int p = atoi(colon + 1);
        if (*port && p != *port) {
            err_set(err, "the members of %s listen on different ports (%d, %d): standby_cluster takes one port", scope,
                    *port, p);
            return false;
        }
        *port = p;
        int n = snprintf(hosts + len, hsz - len, "%s%s", len ? "," : "", hp);
        if (n < 0 || (size_t)n >= hsz - len) {
            err_set(err, "%s: too many members for one host list", scope);
            return false;
        }
        len += (size_t)n;
    }
    if (!len) {
        err_set(err, "%s has no member records: is its agent running?", scope);
        return false;
    }
    return true;
}

/* The standby_cluster the demoted site gets: the other site's members, and what the other site's
 * own standby_cluster said about restoring WAL and delays (the DR site's settings move with it). */
json_t *site_standby_for(const Cluster *newp, const char *newp_scope, const StandbyCluster *old, Err *err)
{
    char hosts[1024];
    int port;
    if (!site_hosts(newp, newp_scope, hosts, sizeof(hosts), &port, err))
        return NULL;
    json_t *o = json_pack("{s:s, s:i}", "host", hosts, "port", port);
    /* the slot the new primary site keeps for its standby site: its one permanent slot */
    if (newp->config.n_slots == 1)
        json_object_set_new(o, "primary_slot_name", json_string(newp->config.slots[0]));
    if (old->restore_command)
        json_object_set_new(o, "restore_command", json_string(old->restore_command));
    if (old->recovery_min_apply_delay)
        json_object_set_new(o, "recovery_min_apply_delay", json_string(old->recovery_min_apply_delay));
    if (old->n_create_replica_methods > 0) {
        json_t *m = json_array();
        for (int i = 0; i < old->n_create_replica_methods; i++)
            json_array_append_new(m, json_string(old->create_replica_methods[i]));
        json_object_set_new(o, "create_replica_methods", m);
    }
    return o;
}

int site_max_timeline(const Cluster *c)
{
    int max = 0;
    for (int i = 0; i < c->n_members; i++)
        if (c->members[i].timeline > max)
            max = c->members[i].timeline;
    return max;
}

bool site_reserve_timeline_gap(Dcs *d, const Cluster *c, int other_max, Err *err)
{
    int max = site_max_timeline(c);
    int known[] = {c->history_timeline, other_max};
    for (size_t i = 0; i < ARRAY_LEN(known); i++)
        if (known[i] > max)
            max = known[i];
    /* reserved already (a retry): once is enough */
    if (c->reserved_timeline >= max + SITE_TIMELINE_GAP)
        return true;
    if (max > INT32_MAX - 2 * SITE_TIMELINE_GAP) {
        err_set(err, "timeline %d is too close to the largest possible one", max);
        return false;
    }
    json_t *o = json_pack("{s:i, s:s}", "timeline", max + SITE_TIMELINE_GAP, "member", "(site failover)");
    char *json = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    bool swapped = false;
    bool ok = d->ops->cas_rev(d, "pgvigil_timeline", c->reserved_timeline_rev, json, &swapped, NULL, err);
    free(json);
    if (ok && !swapped) {
        err_set(err, "the pgvigil_timeline key changed meanwhile");
        return false;
    }
    return ok;
}

const char *site_record_primary(const json_t *rec)
{
    const char *st = json_string_value(json_object_get(rec, "state"));
    const char *key = st && strcmp(st, "rolled back") == 0 ? "from" : "to";
    const char *v = json_string_value(json_object_get(rec, key));
    return v ? v : "";
}

const char *site_record_target_time(const json_t *rec, const char *scope, int timeline, const char **member)
{
    const char *st = json_string_value(json_object_get(rec, "state"));
    const char *to = json_string_value(json_object_get(rec, "to"));
    const char *t = json_string_value(json_object_get(rec, "target_time"));
    const char *m = json_string_value(json_object_get(rec, "target_member"));
    json_t *tl = json_object_get(rec, "timeline");
    if (!st || (strcmp(st, "promoting") != 0 && strcmp(st, "promoted") != 0) || !to || strcmp(to, scope) != 0 || !t ||
        !t[0] || !m || !json_is_integer(tl) || json_is_true(json_object_get(rec, "target_done")))
        return NULL;
    (void)timeline;
    if (member)
        *member = m;
    return t;
}

const char *site_record_winner(const Cluster *a, const char *a_scope, const Cluster *b, const char *b_scope)
{
    int64_t ea = cluster_site_epoch(a), eb = cluster_site_epoch(b);
    if (ea == eb)
        return "";
    const Cluster *newer = ea > eb ? a : b;
    json_t *rec = newer->site_json ? json_loads(newer->site_json, 0, NULL) : NULL;
    const char *who = site_record_primary(rec);
    const char *out = strcmp(who, a_scope) == 0 ? a_scope : strcmp(who, b_scope) == 0 ? b_scope : "";
    json_decref(rec);
    return out;
}
