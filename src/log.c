/*
 * Error log writer.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
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

/* The date and time of one second as "2026-12-04T19:43:57", kept because
 * formatting it costs about 2,500 instructions a stamp (callgrind, glibc
 * 2.36), and a busy worker stamps many requests within one second. */
struct stamp_cache {
	time_t second;
	size_t len;                     /* of text; 0 until the first stamp */
	char text[32];
};

/* One cache per thread, so that workers take no lock. */
static _Thread_local struct stamp_cache thread_stamp_cache;

/* Format now as tg_log_timestamp() documents, formatting the date and time
 * again only when the second differs from the one in cache. */
static void
format_timestamp(struct stamp_cache *cache, const struct timespec *now, char *buf,
                 unsigned long size)
{
	char stamp[sizeof(cache->text) + 8];
	long ms = now->tv_nsec / 1000000;
	size_t len;

	if (cache->len == 0 || cache->second != now->tv_sec) {
		struct tm tm;

		gmtime_r(&now->tv_sec, &tm);
		cache->len = strftime(cache->text, sizeof(cache->text), "%Y-%m-%dT%H:%M:%S", &tm);
		cache->second = now->tv_sec;
	}

	memcpy(stamp, cache->text, cache->len);
	len = cache->len;
	stamp[len++] = '.';
	stamp[len++] = (char)('0' + ms / 100);
	stamp[len++] = (char)('0' + ms / 10 % 10);
	stamp[len++] = (char)('0' + ms % 10);
	stamp[len++] = 'Z';

	/* Cut to size as snprintf() would. */
	if (size == 0)
		return;
	if (len > size - 1)
		len = size - 1;
	memcpy(buf, stamp, len);
	buf[len] = '\0';
}

void
tg_log_timestamp(char *buf, unsigned long size)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	format_timestamp(&thread_stamp_cache, &now, buf, size);
}

void
tg_log_timestamp_at(uint64_t wall_ns, char *buf, unsigned long size)
{
	struct timespec at = {.tv_sec = (time_t)(wall_ns / TG_NS_PER_S),
	                      .tv_nsec = (long)(wall_ns % TG_NS_PER_S)};

	format_timestamp(&thread_stamp_cache, &at, buf, size);
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

static void
on_libevent_log(int severity, const char *message)
{
	enum tg_log_level level = severity == EVENT_LOG_DEBUG ? TG_LOG_DEBUG
	                          : severity == EVENT_LOG_MSG  ? TG_LOG_INFO
	                          : severity == EVENT_LOG_WARN ? TG_LOG_WARN
	                                                       : TG_LOG_ERROR;

	tg_log(level, "libevent: %s", message);
}

void
tg_log_capture_libevent(void)
{
	event_set_log_callback(on_libevent_log);
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

int
tg_log_limit_take(struct tg_log_limit *l, uint64_t interval_ms, uint64_t *skipped)
{
	uint64_t now = tg_now_ms();
	uint64_t last = atomic_load_explicit(&l->logged_ms, memory_order_relaxed);

	/* Of threads that find the interval over, the one that moves the
	 * time on logs; the others count as left out. */
	if ((last != 0 && now - last < interval_ms) ||
	    !atomic_compare_exchange_strong(&l->logged_ms, &last, now)) {
		atomic_fetch_add_explicit(&l->skipped, 1, memory_order_relaxed);
		return 0;
	}
	*skipped = atomic_exchange_explicit(&l->skipped, 0, memory_order_relaxed);
	return 1;
}

int
tg_log_burst_take(struct tg_log_burst *b, uint64_t max, uint64_t now_ms, uint64_t *skipped)
{
	uint64_t second = now_ms / 1000;
	uint64_t counted = atomic_load_explicit(&b->second, memory_order_relaxed);

	/* The thread that moves the second on starts its count again. */
	if (counted != second &&
	    atomic_compare_exchange_strong(&b->second, &counted, second))
		atomic_store_explicit(&b->used, 0, memory_order_relaxed);
	if (atomic_fetch_add_explicit(&b->used, 1, memory_order_relaxed) >= max) {
		atomic_fetch_add_explicit(&b->skipped, 1, memory_order_relaxed);
		return 0;
	}
	*skipped = atomic_exchange_explicit(&b->skipped, 0, memory_order_relaxed);
	return 1;
}
