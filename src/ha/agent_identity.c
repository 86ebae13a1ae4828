/* Who this agent is, checked before it acts: its member name must not be held by another live
 * agent (two agents with one name move the leader key between their leases), its data
 * directory must belong to the cluster it joins, and its pid file (agent.pid_file) must not be
 * locked by another agent. */
#include "common/common.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "ha/agent.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

bool agent_identity_ok(Agent *a, Err *err)
{
    const Config *cfg = a->cfg;
    const Cluster *c = &a->cluster;
    /* Our lease is new, so a member key with our name was written by another process: our
     * previous run (its api_url is ours, and we hold that REST address now, so it is gone) or
     * another agent, alive as long as its key is (the key lives on its lease). */
    const Member *m = cluster_member(c, cfg->name);
    char mine[300];
    str_fmt(mine, sizeof(mine), "http://%s/patroni", cfg->restapi_connect_address);
    if (m && strcmp(m->api_url, mine) != 0) {
        err_set(err, "%s: member name \"%s\" is held by another live agent (its member key in etcd gives api_url %s, "
                     "this agent's is %s); if that agent is gone, its key expires within the ttl (%d s)",
                cfg->path, cfg->name, m->api_url, mine, c->config.ttl);
        return false;
    }
    /* A data directory of another cluster is never joined (nor rewound, cloned over or
     * started): the operator must empty it or point postgresql.data_dir elsewhere. */
    char control[4200];
    str_fmt(control, sizeof(control), "%s/global/pg_control", cfg->pg_data_dir);
    if (c->initialized && c->sysid[0] && file_exists(control)) {
        char sysid[32];
        Err e = {{0}};
        if (!pg_read_sysid(&a->pg, sysid, sizeof(sysid), &e)) {
            log_warn("identity: %s", e.msg);
        } else if (strcmp(sysid, c->sysid) != 0) {
            err_set(err, "%s: data directory %s belongs to another cluster (system identifier %s), cluster \"%s\" "
                         "in etcd has %s: empty it or set postgresql.data_dir to this cluster's data",
                    cfg->path, cfg->pg_data_dir, sysid, cfg->scope, c->sysid);
            return false;
        }
    }
    return true;
}

bool agent_pidfile_take(Agent *a, Err *err)
{
    const char *path = a->cfg->pid_file;
    if (str_empty(path))
        return true;
    /* close-on-exec: a postmaster started by us must not inherit the lock */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_set(err, "%s: pid_file %s: %s", a->cfg->path, path, strerror(errno));
        return false;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {0};
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        err_set(err, "%s: another agent (pid %s) runs with pid_file %s", a->cfg->path, buf[0] ? buf : "?", path);
        close(fd);
        return false;
    }
    char buf[32];
    str_fmt(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, strlen(buf), 0) != (ssize_t)strlen(buf)) {
        err_set(err, "%s: writing pid_file %s: %s", a->cfg->path, path, strerror(errno));
        close(fd);
        return false;
    }
    a->pidfile_fd = fd;
    return true;
}

void agent_pidfile_remove(Agent *a)
{
    if (a->pidfile_fd < 0)
        return;
    /* still locked by us: nobody else wrote it */
    unlink(a->cfg->pid_file);
    close(a->pidfile_fd);
    a->pidfile_fd = -1;
}
