/* Leveled log lines on stderr: "2026-11-29T21:40:00.123Z parleyd warn: ...".
 * One line per call, written with one write(2) so lines from several
 * processes sharing a terminal do not interleave mid-line. */
#ifndef PARLEY_COMMON_LOG_H
#define PARLEY_COMMON_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_init(const char *program, enum log_level min);
/* "debug", "info", "warn", "error"; -1 if none. */
int log_level_parse(const char *s);
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
