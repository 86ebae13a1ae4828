/* The agent's side of the REST API: status snapshot, cluster documents, and the actions
 * (switchover, restart, reinitialize, reload, config patch). Runs on the HTTP thread, so it
 * touches only `mu`-protected fields and its own etcd handle. */
#include "common/common.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "ha/agent.h"

#include <jansson.h>

static void get_status(void *ctx, NodeStatus *out)
{
    Agent *a = ctx;
    pthread_mutex_lock(&a->mu);
    *out = a->status;
    pthread_mutex_unlock(&a->mu);
}

static bool load(Agent *a, Cluster *c, Err *err)
{
    cluster_init(c);
    pthread_mutex_lock(&a->api_mu);
    bool ok = a->api_dcs->ops->load(a->api_dcs, c, err);
    pthread_mutex_unlock(&a->api_mu);
    return ok;
}

static char *cluster_json(void *ctx)
{
    Agent *a = ctx;
    Cluster c;
    Err err = {{0}};
    if (!load(a, &c, &err)) {
        cluster_free(&c);
        return NULL;
    }
    json_t *root = json_object();
    json_t *arr = json_array();
    const Member *lm = cluster_member(&c, c.leader);
    for (int i = 0; i < c.n_members; i++) {
        const Member *m = &c.members[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(m->name));
        const char *role = strcmp(m->name, c.leader) == 0 ? "leader" : sync_has(&c.sync, m->name) ? "sync_standby" : "replica";
        json_object_set_new(o, "role", json_string(role));
        json_object_set_new(o, "state", json_string(strcmp(role, "leader") != 0 && strcmp(m->replication_state, "streaming") == 0 ? "streaming" : m->state));
        json_object_set_new(o, "api_url", json_string(m->api_url));
        char host[128] = "";
        int port = 0;
        if (agent_member_pg_addr(&c, m->name, host, sizeof(host), &port)) {
            json_object_set_new(o, "host", json_string(host));
            json_object_set_new(o, "port", json_integer(port));
        }
        json_object_set_new(o, "timeline", json_integer(m->timeline));
        if (strcmp(role, "leader") != 0 && lm)
            json_object_set_new(o, "lag", json_integer(lm->xlog_location > m->xlog_location ?
                                                        (json_int_t)(lm->xlog_location - m->xlog_location) : 0));
        if (m->tags.nofailover || m->tags.noloadbalance || m->tags.nosync) {
            json_t *t = json_object();
            if (m->tags.nofailover) json_object_set_new(t, "nofailover", json_true());
            if (m->tags.noloadbalance) json_object_set_new(t, "noloadbalance", json_true());
            if (m->tags.nosync) json_object_set_new(t, "nosync", json_true());
            json_object_set_new(o, "tags", t);
        }
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "members", arr);
    json_object_set_new(root, "scope", json_string(a->cfg->scope));
    if (c.config.pause)
        json_object_set_new(root, "pause", json_true());
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    cluster_free(&c);
    return s;
}

static char *history_json(void *ctx)
{
    Agent *a = ctx;
    pthread_mutex_lock(&a->mu);
    char *s = str_dup(a->history_json ? a->history_json : "[]");
    pthread_mutex_unlock(&a->mu);
    return s;
}

static char *config_json(void *ctx)
{
    Agent *a = ctx;
    pthread_mutex_lock(&a->mu);
    char *s = a->config_json ? str_dup(a->config_json) : NULL;
    pthread_mutex_unlock(&a->mu);
    return s;
}

static int switchover(void *ctx, const char *leader, const char *candidate, bool is_failover, char **body)
{
    Agent *a = ctx;
    Cluster c;
    Err err = {{0}};
    if (!load(a, &c, &err)) {
        *body = str_printf("etcd unreachable: %s", err.msg);
        cluster_free(&c);
        return 503;
    }
    int code = 200;
    if (!is_failover) {
        if (!c.leader[0]) {
            *body = str_dup("no leader: use failover");
            code = 412;
            goto done;
        }
        if (leader && leader[0] && strcmp(leader, c.leader) != 0) {
            *body = str_printf("leader name does not match: the leader is %s", c.leader);
            code = 412;
            goto done;
        }
    } else if (str_empty(candidate)) {
        *body = str_dup("failover needs a candidate");
        code = 400;
        goto done;
    }
    if (!str_empty(candidate)) {
        const Member *m = cluster_member(&c, candidate);
        if (!m) {
            *body = str_printf("candidate %s is not a member", candidate);
            code = 412;
            goto done;
        }
        if (strcmp(candidate, c.leader) == 0) {
            *body = str_printf("candidate %s is already the leader", candidate);
            code = 412;
            goto done;
        }
        if (m->tags.nofailover) {
            *body = str_printf("candidate %s has the nofailover tag", candidate);
            code = 412;
            goto done;
        }
    }
    FailoverReq f;
    memset(&f, 0, sizeof(f));
    f.present = true;
    str_copy(f.leader, sizeof(f.leader), is_failover ? "" : c.leader);
    str_copy(f.candidate, sizeof(f.candidate), candidate ? candidate : "");
    char *json = failover_to_json(&f);
    pthread_mutex_lock(&a->api_mu);
    bool ok = a->api_dcs->ops->put(a->api_dcs, "failover", json, false, &err);
    pthread_mutex_unlock(&a->api_mu);
    free(json);
    if (!ok) {
        *body = str_printf("cannot write the failover key: %s", err.msg);
        code = 503;
        goto done;
    }
    /* wait for the outcome like Patroni does */
    char old[NAME_MAX_LEN];
    str_copy(old, sizeof(old), c.leader);
    int64_t deadline = mono_ms() + 30000;
    while (mono_ms() < deadline) {
        sleep_ms(200);
        Cluster n;
        if (load(a, &n, &err) && n.leader[0] && strcmp(n.leader, old) != 0 &&
            (str_empty(candidate) || strcmp(n.leader, candidate) == 0)) {
            *body = str_printf("Successfully %s over to \"%s\"", is_failover ? "failed" : "switched", n.leader);
            cluster_free(&n);
            goto done;
        }
        cluster_free(&n);
    }
    *body = str_dup("switchover did not complete in 30 s");
    code = 503;
done:
    cluster_free(&c);
    return code;
}

static int restart(void *ctx, char **body)
{
    Agent *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->req_restart = true;
    pthread_mutex_unlock(&a->mu);
    *body = str_dup("restart scheduled");
    return 202;
}

static int reinitialize(void *ctx, bool force, char **body)
{
    Agent *a = ctx;
    pthread_mutex_lock(&a->mu);
    bool leader = a->status.is_leader;
    if (!leader)
        a->req_reinit = true;
    pthread_mutex_unlock(&a->mu);
    if (leader) {
        *body = str_dup("I am the leader, can not reinitialize");
        return 503;
    }
    *body = str_dup("reinitialize scheduled");
    return 202;
}

static int rescue(void *ctx, const char *target_time, char **body)
{
    Agent *a = ctx;
    pthread_mutex_lock(&a->mu);
    bool standby = a->status.standby_cluster && a->status.in_recovery && a->status.pg_running;
    bool busy = a->req_rescue[0] != '\0';
    if (standby && !busy)
        str_copy(a->req_rescue, sizeof(a->req_rescue), target_time);
    pthread_mutex_unlock(&a->mu);
    if (!standby) {
        *body = str_dup("only a running member of a standby cluster (a delayed DR site) is rescued");
        return 409;
    }
    if (busy) {
        *body = str_dup("a rescue is already scheduled");
        return 409;
    }
    *body = str_printf("rescue to %s scheduled", target_time);
    return 202;
}

static int reload(void *ctx, char **body)
{
    Agent *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->req_reload = true;
    pthread_mutex_unlock(&a->mu);
    *body = str_dup("reload scheduled");
    return 202;
}

static int patch_config(void *ctx, const char *patch, char **body)
{
    Agent *a = ctx;
    Cluster c;
    Err err = {{0}};
    if (!load(a, &c, &err)) {
        *body = str_printf("etcd unreachable: %s", err.msg);
        cluster_free(&c);
        return 503;
    }
    char *merged = dynconfig_json_merge(c.config_json ? c.config_json : "{}", patch, &err);
    int code = 200;
    DynConfig check;
    memset(&check, 0, sizeof(check));
    if (!merged || !dynconfig_from_json(merged, &check, &err)) {
        *body = str_printf("invalid configuration: %s", err.msg);
        code = 400;
    } else {
        bool swapped = false;
        pthread_mutex_lock(&a->api_mu);
        bool ok = a->api_dcs->ops->cas_rev(a->api_dcs, "config", c.has_config ? c.config_mod_revision : 0, merged,
                                           &swapped, NULL, &err);
        pthread_mutex_unlock(&a->api_mu);
        if (!ok) {
            *body = str_printf("etcd: %s", err.msg);
            code = 503;
        } else if (!swapped) {
            *body = str_dup("config changed concurrently; retry");
            code = 409;
        } else {
            *body = str_dup(merged);
        }
    }
    dynconfig_free(&check);
    free(merged);
    cluster_free(&c);
    return code;
}

static int aa_ddl_lock(void *ctx, int pid, int timeout_ms, char **body)
{
    Agent *a = ctx;
    return aa_leader_ddl_lock(&a->aa_leader, pid, timeout_ms, body);
}

static int aa_ddl_unlock(void *ctx, int pid, const char *lsn, char **body)
{
    Agent *a = ctx;
    return aa_leader_ddl_unlock(&a->aa_leader, pid, lsn, body);
}

RestBackend agent_rest_backend(Agent *a)
{
    RestBackend b = {
        .ctx = a,
        .get_status = get_status,
        .cluster_json = cluster_json,
        .history_json = history_json,
        .config_json = config_json,
        .switchover = switchover,
        .restart = restart,
        .reinitialize = reinitialize,
        .rescue = rescue,
        .reload = reload,
        .patch_config = patch_config,
        .aa_ddl_lock = aa_ddl_lock,
        .aa_ddl_unlock = aa_ddl_unlock,
    };
    return b;
}
