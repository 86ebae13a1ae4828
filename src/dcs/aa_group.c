/* Parsing and formatting an active-active group's keys (see aa_group.h). */
#include "common/common.h"
#include "dcs/aa_group.h"

#include <jansson.h>

static bool copy_field(json_t *o, const char *field, char *out, size_t sz, bool required)
{
    json_t *f = json_object_get(o, field);
    if (!f)
        return !required;
    return json_is_string(f) && str_copy(out, sz, json_string_value(f));
}

static bool parse_leader(AaLeaderRec *r, const char *value)
{
    json_t *o = json_loads(value ? value : "", 0, NULL);
    bool ok = json_is_object(o) && copy_field(o, "node", r->node, sizeof(r->node), true) && r->node[0] &&
              copy_field(o, "conn_url", r->conn_url, sizeof(r->conn_url), true) &&
              copy_field(o, "handover_to", r->handover_to, sizeof(r->handover_to), false) &&
              copy_field(o, "mark", r->mark, sizeof(r->mark), false);
    json_t *ttl = json_object_get(o, "ttl");
    if (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 0 || json_integer_value(ttl) > 86400))
        ok = false;
    r->ttl = ttl ? (int)json_integer_value(ttl) : 0;
    json_decref(o);
    return ok;
}

static bool take_leader(AaGroupView *v, const char *location, const char *value, int64_t rev, int64_t lease)
{
    if (v->n_leaders >= AA_MAX_LEADERS)
        return false;
    AaLeaderRec r;
    memset(&r, 0, sizeof(r));
    if (!str_copy(r.location, sizeof(r.location), location) || !parse_leader(&r, value))
        return false;
    r.mod_revision = rev;
    r.lease = lease;
    v->leaders[v->n_leaders++] = r;
    return true;
}

static bool take_node(AaGroupView *v, const char *name, const char *value)
{
    if (v->n_nodes >= AA_MAX_GROUP_NODES)
        return false;
    AaNodeRec n;
    memset(&n, 0, sizeof(n));
    json_t *o = json_loads(value ? value : "", 0, NULL);
    json_t *w = json_object_get(o, "writable");
    bool ok = json_is_object(o) && str_copy(n.name, sizeof(n.name), name) &&
              copy_field(o, "conn_url", n.conn_url, sizeof(n.conn_url), true) &&
              copy_field(o, "location", n.location, sizeof(n.location), false) && (!w || json_is_boolean(w));
    n.writable = json_is_true(w);
    ok = ok && copy_field(o, "api_url", n.api_url, sizeof(n.api_url), false);
    n.drained = aa_group_is_drained(v, n.name);
    json_decref(o);
    if (ok)
        v->nodes[v->n_nodes++] = n;
    return ok;
}

static bool take_switchover(AaGroupView *v, const char *value, int64_t rev)
{
    AaSwitchoverReq s;
    memset(&s, 0, sizeof(s));
    json_t *o = json_loads(value ? value : "", 0, NULL);
    bool ok = json_is_object(o) && copy_field(o, "to", s.to, sizeof(s.to), true) && s.to[0] &&
              copy_field(o, "location", s.location, sizeof(s.location), false) &&
              copy_field(o, "state", s.state, sizeof(s.state), false) &&
              copy_field(o, "error", s.error, sizeof(s.error), false);
    json_t *drain = json_object_get(o, "drain_ms");
    if (drain && (!json_is_integer(drain) || json_integer_value(drain) < 0 || json_integer_value(drain) > 3600000))
        ok = false;
    s.drain_ms = drain ? (int)json_integer_value(drain) : 0;
    json_decref(o);
    if (!ok)
        return false;
    s.present = true;
    s.mod_revision = rev;
    v->switchover = s;
    return true;
}

static bool take_ddl_lock(AaDdlRec *d, const char *value, int64_t rev)
{
    AaDdlRec r;
    memset(&r, 0, sizeof(r));
    json_t *o = json_loads(value ? value : "", 0, NULL);
    json_t *pid = json_object_get(o, "pid");
    bool ok = json_is_object(o) && copy_field(o, "node", r.node, sizeof(r.node), true) && r.node[0] &&
              json_is_integer(pid) && json_integer_value(pid) > 0 && json_integer_value(pid) < INT32_MAX;
    if (ok)
        r.pid = (int)json_integer_value(pid);
    json_decref(o);
    if (!ok)
        return false;
    r.present = true;
    r.mod_revision = rev;
    *d = r;
    return true;
}

static bool take_ddl_done(AaDdlDone *d, const char *value, int64_t rev)
{
    AaDdlDone r;
    memset(&r, 0, sizeof(r));
    json_t *o = json_loads(value ? value : "", 0, NULL);
    bool ok = json_is_object(o);
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (!ok || !json_is_string(v)) {
            ok = false;
            break;
        }
        /* (more nodes than a view holds, or a name too long: left out, the key still counts) */
        if (r.n >= AA_MAX_GROUP_NODES || strlen(k) >= AA_NAME_LEN || strlen(json_string_value(v)) >= sizeof(r.lsn[0]))
            continue;
        str_copy(r.node[r.n], AA_NAME_LEN, k);
        str_copy(r.lsn[r.n], sizeof(r.lsn[0]), json_string_value(v));
        r.n++;
    }
    json_decref(o);
    if (!ok)
        return false;
    r.present = true;
    r.mod_revision = rev;
    *d = r;
    return true;
}

bool aa_group_take(AaGroupView *v, const char *key, const char *value, int64_t mod_revision, int64_t lease,
                   char *bad, size_t badsz)
{
    if (bad && badsz)
        bad[0] = '\0';
    if (strncmp(key, "aa/", 3) != 0)
        return false;
    const char *rest = key + 3;
    bool ok;
    if (strcmp(rest, "leader") == 0) {
        ok = take_leader(v, "", value, mod_revision, lease);
    } else if (strncmp(rest, "location/", 9) == 0) {
        const char *loc = rest + 9, *slash = strchr(loc, '/');
        if (!slash || slash == loc || strcmp(slash, "/leader") != 0)
            return false;
        char name[AA_NAME_LEN];
        size_t n = (size_t)(slash - loc);
        if (n >= sizeof(name)) {
            ok = false;
        } else {
            memcpy(name, loc, n);
            name[n] = '\0';
            ok = take_leader(v, name, value, mod_revision, lease);
        }
    } else if (strncmp(rest, "nodes/", 6) == 0) {
        const char *name = rest + 6;
        if (!*name || strchr(name, '/'))
            return false;
        ok = take_node(v, name, value);
    } else if (strncmp(rest, "drain/", 6) == 0) {
        const char *name = rest + 6;
        if (!*name || strchr(name, '/'))
            return false;
        ok = v->n_drained < AA_MAX_GROUP_NODES && str_copy(v->drained[v->n_drained], AA_NAME_LEN, name);
        if (ok) {
            v->n_drained++;
            for (int i = 0; i < v->n_nodes; i++)
                if (strcmp(v->nodes[i].name, name) == 0)
                    v->nodes[i].drained = true;
        }
    } else if (strcmp(rest, "switchover") == 0) {
        ok = take_switchover(v, value, mod_revision);
    } else if (strcmp(rest, "ddl_lock") == 0) {
        ok = take_ddl_lock(&v->ddl_lock, value, mod_revision);
    } else if (strcmp(rest, "ddl_last") == 0) {
        ok = take_ddl_done(&v->ddl_last, value, mod_revision);
    } else {
        return false;
    }
    if (!ok && bad && badsz)
        str_fmt(bad, badsz, "%s: not a record of pgvigil's (or too many of them), left out", key);
    return ok;
}

const AaLeaderRec *aa_group_leader(const AaGroupView *v, const char *location)
{
    const char *loc = location ? location : "";
    for (int i = 0; v && i < v->n_leaders; i++)
        if (strcmp(v->leaders[i].location, loc) == 0)
            return &v->leaders[i];
    return NULL;
}

const AaNodeRec *aa_group_node(const AaGroupView *v, const char *name)
{
    for (int i = 0; v && i < v->n_nodes; i++)
        if (strcmp(v->nodes[i].name, name) == 0)
            return &v->nodes[i];
    return NULL;
}

void aa_leader_key(const char *location, char *buf, size_t sz)
{
    if (str_empty(location))
        str_copy(buf, sz, "aa/leader");
    else
        str_fmt(buf, sz, "aa/location/%s/leader", location);
}

static char *dump(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!s) {
        fputs("pgvigil: out of memory\n", stderr);   /* (jansson's way of saying it) */
        abort();
    }
    return s;
}

char *aa_leader_json(const char *node, const char *conn_url, const char *handover_to, const char *mark, int ttl)
{
    json_t *o = json_pack("{s:s, s:s, s:i}", "node", node, "conn_url", conn_url ? conn_url : "", "ttl", ttl);
    if (!str_empty(handover_to))
        json_object_set_new(o, "handover_to", json_string(handover_to));
    if (!str_empty(mark))
        json_object_set_new(o, "mark", json_string(mark));
    return dump(o);
}

bool aa_group_is_drained(const AaGroupView *v, const char *name)
{
    for (int i = 0; v && i < v->n_drained; i++)
        if (strcmp(v->drained[i], name) == 0)
            return true;
    return false;
}

char *aa_node_json(const char *conn_url, const char *location, bool writable, const char *api_url)
{
    json_t *o = json_pack("{s:s, s:b}", "conn_url", conn_url ? conn_url : "", "writable", writable);
    if (!str_empty(api_url))
        json_object_set_new(o, "api_url", json_string(api_url));
    if (!str_empty(location))
        json_object_set_new(o, "location", json_string(location));
    return dump(o);
}

char *aa_ddl_json(const char *node, int pid)
{
    return dump(json_pack("{s:s, s:i}", "node", node, "pid", pid));
}

char *aa_ddl_done_json(const AaDdlDone *d, const char *node, const char *lsn)
{
    json_t *o = json_object();
    for (int i = 0; d && i < d->n; i++)
        json_object_set_new(o, d->node[i], json_string(d->lsn[i]));
    json_object_set_new(o, node, json_string(lsn));
    return dump(o);
}

char *aa_switchover_json(const char *to, const char *location, int drain_ms, const char *state, const char *error)
{
    json_t *o = json_pack("{s:s, s:s, s:i}", "to", to, "location", location ? location : "", "drain_ms", drain_ms);
    if (!str_empty(state))
        json_object_set_new(o, "state", json_string(state));
    if (!str_empty(error))
        json_object_set_new(o, "error", json_string(error));
    return dump(o);
}
