/* The history key after a promotion: one entry per timeline change, [old timeline, switch
 * point, reason, time, new leader], as Patroni writes it. The timeline guards of ha_decide read
 * it (a member whose timeline is behind it must not lead), so it is written with
 * compare-and-set, retried until it succeeds, and before the new leader announces itself. */
#include "common/common.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "ha/agent.h"

#include <jansson.h>

bool agent_fork_lsn(const char *data_dir, int tli, int *parent_tli, Lsn *lsn, Err *err)
{
    char path[4200];
    str_fmt(path, sizeof(path), "%s/pg_wal/%08X.history", data_dir, (unsigned)tli);
    char *txt = file_read_all(path, NULL, err);
    if (!txt)
        return false;
    /* lines "parent_tli<TAB>switchpoint<TAB>reason"; the last one is where tli forked */
    bool found = false;
    char *save = NULL;
    for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        unsigned t = 0;
        char pos[LSN_BUFSZ];
        Lsn l = 0;
        if (line[0] == '#' || sscanf(line, "%u %23s", &t, pos) != 2 || !lsn_parse(pos, &l))
            continue;
        *parent_tli = (int)t;
        *lsn = l;
        found = true;
    }
    free(txt);
    if (!found)
        err_set(err, "%s: no switch point in it", path);
    return found;
}

/* Does the history already hold an entry for the timeline we left (a retry after a write whose
 * answer was lost, or a history written by another tool)? */
static bool history_has(const char *json, int tli)
{
    json_error_t je;
    json_t *h = json ? json_loads(json, 0, &je) : NULL;
    bool has = false;
    if (json_is_array(h)) {
        size_t i;
        json_t *e;
        json_array_foreach(h, i, e) {
            json_t *t = json_is_array(e) ? json_array_get(e, 0) : NULL;
            if (json_is_integer(t) && json_integer_value(t) == tli)
                has = true;
        }
    }
    json_decref(h);
    return has;
}

/* A leader running on a timeline the history does not reach yet: its promotion was not
 * recorded (the agent died between pg_promote and the write, and its restart kept the key).
 * Record it now from the timeline's history file. */
static void find_missing_entry(Agent *a)
{
    const Cluster *c = &a->cluster;
    const PgState *st = &a->pgst;
    /* a promotion or a bootstrap from a backup under way records its own entry when it ends */
    if (a->history_pending || strcmp(c->leader, a->cfg->name) != 0 || !st->running || !st->accepting ||
        st->in_recovery || st->timeline <= 1 || st->timeline <= c->history_timeline ||
        st->timeline == a->history_checked_tli || agent_job_running(a))
        return;
    Err err = {{0}};
    int parent = st->timeline - 1;
    Lsn fork = 0;
    if (!agent_fork_lsn(a->cfg->pg_data_dir, st->timeline, &parent, &fork, &err)) {
        log_warn("history: timeline %d is not in the history key, and %s", st->timeline, err.msg);
        a->history_checked_tli = st->timeline; /* said once */
        return;
    }
    /* a reserved timeline skips numbers: the history key's entries name the timeline each
     * promotion left, so look for ours by its parent */
    if (history_has(c->history_json, parent)) {
        a->history_checked_tli = st->timeline;
        return;
    }
    log_warn("history: timeline %d is not in the history key yet; recording its fork", st->timeline);
    a->history_pending = true;
    a->history_tli = parent;
    a->history_lsn = fork;
    str_copy(a->history_reason, sizeof(a->history_reason), "failover");
}

void agent_write_history(Agent *a)
{
    if (!a->dcs_ok)
        return;
    find_missing_entry(a);
    if (!a->history_pending)
        return;
    const Cluster *c = &a->cluster;
    if (strcmp(c->leader, a->cfg->name) != 0) {
        /* the key moved on (lease lost): the next leader writes its own entry */
        log_warn("history: no longer the leader; the entry for timeline %d is left to the next leader", a->history_tli);
        a->history_pending = false;
        return;
    }
    if (history_has(c->history_json, a->history_tli)) {
        a->history_pending = false;
        return;
    }
    char *hist = history_append(c->history_json, a->history_tli, a->history_lsn,
                                a->history_reason, a->cfg->name);
    Err err = {{0}};
    bool swapped = false;
    if (!a->dcs->ops->cas(a->dcs, "history", c->history_json, hist, false, &swapped, &err))
        log_warn("history: cannot write the entry for timeline %d (retrying): %s", a->history_tli, err.msg);
    else if (!swapped)
        log_warn("history: the key changed meanwhile; retrying on the next read");
    else {
        char lb[LSN_BUFSZ];
        log_info("history: timeline %d forked at %s (%s)", a->history_tli, lsn_format(a->history_lsn, lb),
                 a->history_reason);
        a->history_pending = false;
        /* published as primary at once: the proxies wait for it */
        a->last_member_shape[0] = '\0';
    }
    free(hist);
}
