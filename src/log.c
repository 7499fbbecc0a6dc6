/*
 * Error log writer.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "request.h"

#define LOG_LINE_MAX 4096

static atomic_int log_min_level = TG_LOG_INFO;

static const char *const level_names[] = {
	[TG_LOG_DEBUG] = "debug",
	[TG_LOG_INFO] = "info",
	[TG_LOG_WARN] = "warn",
	[TG_LOG_ERROR] = "error",
};

void
tg_log_set_level(enum tg_log_level level)
{
	atomic_store(&log_min_level, level);
}

int
tg_log_enabled(enum tg_log_level level)
{
	return (int)level >= atomic_load(&log_min_level);
}

void
tg_log_timestamp(char *buf, unsigned long size)
{
	struct timespec now;
	struct tm tm;
	char date[32];

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03ldZ", date, now.tv_nsec / 1000000);
}

/* Write prefix, the formatted message and a newline as one line. A message
 * longer than the line buffer is cut, never split over two lines. */
static void
log_write(enum tg_log_level level, const char *context, const char *fmt,
          va_list ap)
{
	char line[LOG_LINE_MAX];
	char stamp[32];
	size_t len;
	int n;

	tg_log_timestamp(stamp, sizeof(stamp));
	n = snprintf(line, sizeof(line), "%s [%s] %s", stamp, level_names[level],
	             context ? context : "");
	len = n < 0 ? 0 : (size_t)n;
	if (len < sizeof(line)) {
		n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
		len += n < 0 ? 0 : (size_t)n;
	}
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';

	/* A short write to stderr has nowhere to be reported. */
	if (write(STDERR_FILENO, line, len) < 0)
		return;
}

void
tg_log(enum tg_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!tg_log_enabled(level))
		return;
	va_start(ap, fmt);
	log_write(level, NULL, fmt, ap);
	va_end(ap);
}

void
tg_log_request(const struct tg_request *req, enum tg_log_level level,
               const char *fmt, ...)
{
	char context[512];
	va_list ap;

	if (!tg_log_enabled(level))
		return;
	snprintf(context, sizeof(context), "req=%s client=%s route=%s backend=%s: ",
	         req->id, req->client_addr,
	         req->route ? req->route->name : "-",
	         req->backend ? req->backend->name : "-");
	va_start(ap, fmt);
	log_write(level, context, fmt, ap);
	va_end(ap);
}
