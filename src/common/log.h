/* Leveled logging to stderr with a timestamp and the node name. Role changes are logged as
 * "from -> to: reason". Debug logging costs one integer compare when off. */
#ifndef PGVIGIL_LOG_H
#define PGVIGIL_LOG_H

#include "common/common.h"

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } LogLevel;

extern LogLevel log_min_level;

void log_set_level(LogLevel level);
bool log_parse_level(const char *s, LogLevel *out);
void log_set_name(const char *name); /* e.g. the node name, printed on every line */
void log_write(LogLevel level, const char *fmt, ...) PRINTF_LIKE(2, 3);

#define log_debug(...) do { if (log_min_level <= LOG_DEBUG) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
