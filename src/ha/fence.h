/* The fencing process: a tiny separate process that removes the floating IP (when configured)
 * and stops the local postmaster when the agent misses its heartbeat deadline (agent frozen by
 * SIGSTOP, killed, or stuck). The deadline is a CLOCK_MONOTONIC time, shared by all processes
 * of the host. */
#ifndef PGVIGIL_FENCE_H
#define PGVIGIL_FENCE_H

#include "common/common.h"
#include "config/config.h"

#include <sys/types.h>

typedef struct Fence {
    pid_t pid;
    int fd;              /* write end of the pipe to the fencing process */
    int64_t armed_until; /* last deadline sent, 0 = disarmed */
} Fence;

/* Fork the fencing process. Must be called before any thread is started. vip (NULL = none) is
 * the floating IP the fence removes, before stopping postgres, when a deadline passes; false +
 * err (naming the vip.* key) when it is not valid. */
bool fence_start(Fence *f, const char *data_dir, const VipConfig *vip, Err *err);
/* Postmaster must be stopped (and the VIP removed) unless the agent calls again before
 * deadline_ms (monotonic). */
void fence_arm(Fence *f, int64_t deadline_ms);
void fence_disarm(Fence *f);
/* Clean agent exit: the fencing process exits without acting. */
void fence_stop(Fence *f);

#endif
