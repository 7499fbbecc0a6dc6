/*
 * Error log: one line per message on stderr,
 *   2026-12-04T19:43:57.123Z [warn] req=9f3c... client=127.0.0.1:5123 route=chat backend=a: upstream timed out
 * Each line goes out in one write(2), so lines from several workers never
 * interleave, and no lock is taken.
 */
#ifndef TOLLGATE_LOG_H
#define TOLLGATE_LOG_H

#include <stdint.h>

enum tg_log_level {
	TG_LOG_DEBUG,
	TG_LOG_INFO,
	TG_LOG_WARN,
	TG_LOG_ERROR,
};

struct tg_request;

/* Set the lowest level written; the default is TG_LOG_INFO. */
void tg_log_set_level(enum tg_log_level level);
int tg_log_enabled(enum tg_log_level level);

void tg_log(enum tg_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Log with the request's context (id, client, route, backend) in front, so
 * call sites only say what happened. */
void tg_log_request(const struct tg_request *req, enum tg_log_level level,
                    const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Send libevent's own messages (evdns's "Nameserver ... has failed", for
 * one) to this log, at the matching level, prefixed "libevent: ". */
void tg_log_capture_libevent(void);

/* Format the current UTC time as 2026-12-04T19:43:57.123Z into buf (at
 * least 25 bytes). */
void tg_log_timestamp(char *buf, unsigned long size);

/* The same for wall_ns, nanoseconds since the Unix epoch. */
void tg_log_timestamp_at(uint64_t wall_ns, char *buf, unsigned long size);

/* At most one line per interval for a message that a lasting fault would
 * repeat on every request. Zero-initialise it; threads may share it. */
struct tg_log_limit {
	_Atomic uint64_t logged_ms;     /* tg_now_ms() of the last line; 0: none */
	_Atomic uint64_t skipped;       /* lines left out since */
};

/* Whether a line may go out now under l, one per interval_ms at most.
 * Returns 1 with *skipped set to the lines left out since the last one
 * (which the line should mention), or 0 after counting this one as left
 * out. */
int tg_log_limit_take(struct tg_log_limit *l, uint64_t interval_ms, uint64_t *skipped);

/* At most max lines in each second for a message that clients can cause
 * one per connection, so that a flood cannot fill the log while a few
 * still each get their line. Zero-initialise it; threads may share it
 * (a race lets a line or two more through, never fewer). */
struct tg_log_burst {
	_Atomic uint64_t second;        /* tg_now_ms() / 1000 of the count */
	_Atomic uint64_t used;          /* lines taken in that second */
	_Atomic uint64_t skipped;       /* lines left out since the last one */
};

/* Whether a line may go out at now_ms under b, max per second. Returns 1
 * with *skipped set to the lines left out since the last one (which the
 * line should mention), or 0 after counting this one as left out. The
 * clock is a parameter for the tests; callers pass tg_now_ms(). */
int tg_log_burst_take(struct tg_log_burst *b, uint64_t max, uint64_t now_ms,
                      uint64_t *skipped);

#define tg_debug(...) \
	do { if (tg_log_enabled(TG_LOG_DEBUG)) tg_log(TG_LOG_DEBUG, __VA_ARGS__); } while (0)
#define tg_info(...)  tg_log(TG_LOG_INFO, __VA_ARGS__)
#define tg_warn(...)  tg_log(TG_LOG_WARN, __VA_ARGS__)
#define tg_error(...) tg_log(TG_LOG_ERROR, __VA_ARGS__)

#endif
