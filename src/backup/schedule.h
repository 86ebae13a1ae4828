/* backup.schedule: when the cluster takes its backups, in cron's five fields (minute hour
 * day-of-month month day-of-week; UTC): numbers, '*', lists "1,15", ranges "1-5" and steps
 * "*\/10" or "0-30/5". As in cron, when both day fields are restricted a day matching either
 * one matches. */
#ifndef PGVIGIL_SCHEDULE_H
#define PGVIGIL_SCHEDULE_H

#include "common/common.h"

#include <time.h>

typedef struct Schedule {
    uint64_t minute;     /* bit m: minute m (0-59) */
    uint32_t hour;       /* 0-23 */
    uint32_t mday;       /* 1-31 */
    uint32_t month;      /* 1-12 */
    uint32_t wday;       /* 0-6, Sunday 0 (7 is read as 0) */
    bool mday_any, wday_any;
} Schedule;

/* false + err ("field 2 (hour): 25 is out of range 0-23") */
bool schedule_parse(const char *text, Schedule *out, Err *err);
/* Does the minute of t (UTC, broken down) match? */
bool schedule_matches(const Schedule *s, const struct tm *t);

#endif
