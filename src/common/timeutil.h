/* Monotonic clock (shared by all processes on the host, so the fencing process and the agent
 * agree on deadlines) and wall-clock helpers. */
#ifndef PGVIGIL_TIMEUTIL_H
#define PGVIGIL_TIMEUTIL_H

#include "common/common.h"

#include <pthread.h>
#include <time.h>

int64_t mono_ms(void);              /* CLOCK_BOOTTIME (monotonic, suspend included) in milliseconds */
double wall_now(void);              /* seconds since the epoch */
void sleep_ms(int64_t ms);
/* CLOCK_MONOTONIC now plus ms: the deadline of a pthread_cond_timedwait() on a condition
 * variable made with pthread_condattr_setclock(CLOCK_MONOTONIC). */
void mono_deadline_after(struct timespec *ts, int64_t ms);
/* A condition variable whose timed waits take mono_deadline_after() deadlines. */
void mono_cond_init(pthread_cond_t *cv);
/* ISO 8601 UTC timestamp with milliseconds, e.g. 2026-11-22T05:53:49.123+00:00 */
void wall_iso8601(char *buf, size_t sz);

#endif
