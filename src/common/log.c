/* Leveled logging. One write(2) per line so lines from threads and child processes don't mix. */
#include "common/common.h"
#include "common/log.h"

#include <pthread.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

LogLevel log_min_level = LOG_INFO;
static char log_name[64];

void log_set_level(LogLevel level) { log_min_level = level; }

bool log_parse_level(const char *s, LogLevel *out)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (strcasecmp(s, names[i]) == 0 || (i == 2 && strcasecmp(s, "warn") == 0)) {
            *out = (LogLevel)i;
            return true;
        }
    return false;
}

void log_set_name(const char *name) { str_copy(log_name, sizeof(log_name), name); }

void log_write(LogLevel level, const char *fmt, ...)
{
    static const char *tags[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    if (level < log_min_level)
        return;
    char line[2048];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03d %s%s%s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), log_name[0] ? log_name : "", log_name[0] ? " " : "",
                     tags[level]);
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    if ((size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    if (len >= sizeof(line) - 1)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
