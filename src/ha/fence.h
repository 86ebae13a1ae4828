/* The fencing process: a tiny separate process that removes the floating IP (when configured)
 * and kills the local postgres, backends included, when the agent misses its heartbeat deadline
 * (agent frozen by SIGSTOP, killed, or stuck), or when the agent dies while postgres runs as a
 * primary. The deadline is a CLOCK_BOOTTIME time (mono_ms), shared by all processes of the host.
 * It runs as `pgvigil fence` (exec'd, so it can be started again while the agent has threads)
 * and reads 8-byte messages from a pipe. */
#ifndef PGVIGIL_FENCE_H
#define PGVIGIL_FENCE_H

#include "common/common.h"
#include "config/config.h"
#include "ha/commit_guard.h"

#include <sys/types.h>

typedef struct Fence {
    pid_t pid;           /* 0 when none runs */
    int fd;              /* write end of the pipe to the fencing process (non-blocking), -1 none */
    int64_t armed_until; /* last deadline sent, 0 = disarmed */
    bool paused;         /* last pause state sent */
    bool failed;         /* a message could not be written: the fence is dead or stuck */
    CommitGuard guard;   /* the deadline, published to postgres's commit guard */
    uint64_t lease_gen;  /* the agent's lease generation (see fence_new_lease) */
    /* what a restart needs (owned copies) */
    char *name;
    char *data_dir;
    char *vip_address;
    char *vip_interface;
    int vip_arp_count;
} Fence;

/* Start the fencing process. vip (NULL = none) is the floating IP it removes, before killing
 * postgres, when a deadline passes. */
bool fence_start(Fence *f, const char *name, const char *data_dir, const VipConfig *vip, Err *err);
/* From now on publish every deadline in lease_file for postgres's commit guard (see
 * commit_guard.h), starting with the current one. Only once the agent knows the postgres is its
 * own (identity checked): the file is that postgres's. A file that cannot be made is logged and
 * made again on every fence_check. */
void fence_guard_commits(Fence *f, const char *lease_file);
/* The agent holds a new lease (its first, or one granted after the last expired): a commit the
 * guard holds under the old one is never acknowledged. */
void fence_new_lease(Fence *f, uint64_t lease_gen);
/* The fences of earlier agents of this postgres are gone (fence_kill_strays ran): the guard
 * stops publishing the deadline it inherited from them. */
void fence_strays_gone(Fence *f);
/* Postgres must be killed (and the VIP removed) unless the agent calls again before
 * deadline_ms (monotonic). */
void fence_arm(Fence *f, int64_t deadline_ms);
void fence_disarm(Fence *f);
/* The cluster is paused: an agent that dies with no deadline set leaves a primary running
 * (nothing can promote another node). */
void fence_set_paused(Fence *f, bool paused);
/* Is the fencing process alive, and did every message reach it? When not, replace it (killing
 * a stuck one) and send it the current deadline again. False + err when no fence could be
 * started: the caller must not let postgres run as a primary. */
bool fence_check(Fence *f, Err *err);
/* Clean agent exit, postgres stopped (or left running on purpose while paused): the fencing
 * process exits without acting, and the commit guard lets commits through. */
void fence_stop(Fence *f);
/* The agent exits while postgres may still run as a primary: close the pipe without the exit
 * message, so the fence acts as for a dead agent (at the deadline, or at once when none is set
 * and postgres runs without standby.signal). */
void fence_abandon(Fence *f);
/* Kill the fencing processes an earlier agent of this data directory left behind (it was
 * killed; its fence waits for that agent's lease deadline). Only once this agent's own fence
 * guards postgres: as the leader with its fence armed, or with postgres a standby. Returns how
 * many. */
int fence_kill_strays(const Fence *f);
/* The binary that runs `pgvigil fence` (default: the running program itself). */
void fence_set_program(const char *path);
/* Free the copies fence_start made and unmap the lease file (after fence_stop or
 * fence_abandon). */
void fence_free(Fence *f);

/* `pgvigil fence --name N --data-dir D --fd FD [--vip A --vip-interface I --vip-arp-count N]`:
 * the fencing process itself, started by fence_start. */
int cmd_fence(int argc, char **argv);

#endif
