/* Scheduled backups (backup.schedule). At each minute the schedule names, every agent may start
 * the cluster's backup; one does, by creating pgvigil_backup_running on its lease (the key says
 * which minute it is for). A standby goes first: the leader waits half a minute when a replica
 * streams. The backup runs as its own process (`pgvigil backup take`), so neither the HA loop
 * nor its job worker waits for it. When it ends, the agent records the minute in
 * pgvigil_backup_last and removes the running key. An agent that dies takes the running key
 * with its lease; its backup process, if it was killed too, leaves no manifest, so nothing
 * incomplete is ever listed. */
#include "ha/agent.h"
#include "backup/schedule.h"
#include "common/log.h"
#include "common/proc.h"
#include "notify/notify.h"

#include <limits.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* a replica that streams could take the backup instead of the primary */
static bool replica_streams(const Agent *a)
{
    for (int i = 0; i < a->cluster.n_members; i++) {
        const Member *m = &a->cluster.members[i];
        if (strcmp(m->name, a->cfg->name) != 0 && strcmp(m->role, "replica") == 0 &&
            strcmp(m->state, "running") == 0 && strcmp(m->replication_state, "streaming") == 0)
            return true;
    }
    return false;
}

static void collect(Agent *a)
{
    int status = 0;
    if (a->backup_pid <= 0 || !proc_reap(a->backup_pid, &status))
        return;
    proc_leave_alone(a->backup_pid, false);
    a->backup_pid = 0;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok)
        log_info("scheduled backup for %s finished", a->backup_slot_text);
    else {
        log_error("scheduled backup for %s failed (exit %d); see its error above", a->backup_slot_text,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        agent_notify(a, EV_BACKUP_FAILED, a->cfg->name, "scheduled backup for %s failed (exit %d); see the agent's log",
                     a->backup_slot_text, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    if (!a->dcs_ok)
        return;
    Err err = {{0}};
    char *last = str_printf("{\"slot\":%lld,\"member\":\"%s\",\"ok\":%s}", (long long)a->backup_slot, a->cfg->name,
                            ok ? "true" : "false");
    if (!a->dcs->ops->put(a->dcs, "pgvigil_backup_last", last, false, &err))
        log_warn("cannot record the scheduled backup: %s", err.msg);
    free(last);
    bool deleted;
    if (!a->dcs->ops->del(a->dcs, "pgvigil_backup_running", a->backup_running_json, &deleted, &err))
        log_warn("cannot remove pgvigil_backup_running: %s", err.msg);
}

static void start(Agent *a, int64_t slot)
{
    char self[PATH_MAX], cfg_abs[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0 || !realpath(a->cfg->path, cfg_abs)) {
        log_error("scheduled backup: cannot find the pgvigil binary or %s", a->cfg->path);
        return;
    }
    self[n] = '\0';
    str_fmt(a->backup_running_json, sizeof(a->backup_running_json), "{\"slot\":%lld,\"member\":\"%s\"}",
            (long long)slot, a->cfg->name);
    Err err = {{0}};
    bool created = false;
    if (!a->dcs->ops->create(a->dcs, "pgvigil_backup_running", a->backup_running_json, true, &created, &err)) {
        log_warn("scheduled backup: %s", err.msg);
        return;
    }
    a->backup_done_slot = slot; /* this minute is handled, here or elsewhere */
    if (!created)
        return; /* another member runs it */
    time_t t = (time_t)slot * 60;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(a->backup_slot_text, sizeof(a->backup_slot_text), "%Y-%m-%d %H:%M UTC", &tm);
    const char *argv[] = {self, "backup", "take", "-c", cfg_abs, "--lock-held", NULL};
    ProcOpts o = {.new_session = true};
    pid_t pid = proc_spawn(argv, &o, &err);
    if (pid < 0) {
        bool deleted;
        log_error("scheduled backup: cannot start it: %s", err.msg);
        a->dcs->ops->del(a->dcs, "pgvigil_backup_running", a->backup_running_json, &deleted, NULL);
        return;
    }
    proc_leave_alone(pid, true);
    a->backup_pid = pid;
    a->backup_slot = slot;
    log_info("scheduled backup for %s started (pid %d)", a->backup_slot_text, (int)pid);
}

void agent_backup_tick(Agent *a)
{
    if (!a->cfg->backup.schedule)
        return;
    collect(a);
    if (a->backup_pid > 0 || !a->dcs_ok || !a->lease_ok)
        return;
    time_t now = time(NULL);
    int64_t slot = (int64_t)now / 60;
    if (slot <= a->backup_done_slot)
        return;
    struct tm tm;
    gmtime_r(&now, &tm);
    if (!schedule_matches(&a->backup_schedule, &tm))
        return;
    if (a->cluster.backup_last_slot >= slot || a->cluster.backup_running_slot >= slot) {
        a->backup_done_slot = slot;
        return;
    }
    if (a->cluster.backup_running_slot != 0 || !(a->pgst.running && a->pgst.accepting) || agent_job_running(a))
        return; /* one backup at a time; a server to back up, not one being set up */
    bool i_lead = strcmp(a->cluster.leader, a->cfg->name) == 0;
    if (i_lead && now % 60 < 30 && replica_streams(a))
        return; /* a standby goes first */
    start(a, slot);
}
