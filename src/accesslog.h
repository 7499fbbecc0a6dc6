/*
 * Access log: one JSON object per request, one line each.
 *
 * Each worker gathers its lines in its own buffer and writes them with one
 * write(2) when they reach access_log_buffer bytes, when the oldest has
 * waited access_log_flush, on a configuration reload, before the file is
 * reopened and when the worker stops. A write carries whole lines only, and
 * the file is opened with O_APPEND, so lines from different workers never
 * split or mix. With access_log_buffer 0, every line is written at once.
 *
 * A log must never stop the gateway. A pipe, socket or terminal is written
 * without blocking: while it takes nothing (its reader stopped reading),
 * each worker keeps its unwritten lines up to a bound and drops newer ones,
 * counting them, and tries again on its flush timer. A regular file is
 * written as before, blocking, since a local disk does not push back.
 * When a write fails, the lines in it are lost and counted; one warning per
 * interval sums the failures.
 */
#ifndef TOLLGATE_ACCESSLOG_H
#define TOLLGATE_ACCESSLOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "config-t.h"
#include "json-writer.h"
#include "metrics.h"

struct event;
struct event_base;
struct evbuffer;
struct tg_request;

/* The way lines reach the descriptor. */
enum tg_accesslog_sink {
	TG_SINK_BLOCKING,               /* a regular file: write(2) blocks */
	TG_SINK_NONBLOCKING,            /* pipe, terminal, device: O_NONBLOCK
	                                   on a file description of our own */
	TG_SINK_SOCKET,                 /* send(2) with MSG_DONTWAIT */
};

/* The open log, shared by every worker. */
struct tg_accesslog_file {
	int fd;                         /* -1 when the access log is off */
	char *path;                     /* as configured; "-" is stdout */
	enum tg_accesslog_sink sink;    /* under write_lock: reopen changes it */
	int shared_nonblock;            /* O_NONBLOCK set on a description we
	                                   share with our parent; cleared at close */
	pthread_mutex_t write_lock;     /* held for each flush: on a pipe, or
	                                   after a short write, two workers'
	                                   bytes could otherwise interleave.
	                                   Never held across a call that blocks,
	                                   except write(2) to a regular file */
	struct tg_json_writer cut;      /* under write_lock: the rest of a line
	                                   a short write cut, which must go out
	                                   before any other byte */
	size_t cut_sent;                /* bytes of cut already written */

	_Atomic uint64_t lines_dropped; /* never written: full buffers, failed
	                                   writes, shutdown */
	_Atomic uint64_t write_errors;  /* write(2) calls that failed */
	_Atomic int last_errno;         /* cause of the latest loss */
	_Atomic uint64_t lost_at_exit;  /* of lines_dropped: left unwritten by
	                                   the shutdown deadline */

	pthread_mutex_t report_lock;    /* the warning state below */
	uint64_t reported_ns;           /* when the latest warning went out */
	uint64_t dropped_reported, errors_reported;
};

/* One worker's lines not yet written. */
struct tg_accesslog {
	struct tg_accesslog_file *file;
	pthread_mutex_t lock;           /* the worker's; the main thread takes
	                                   it only to flush before a reopen */
	struct tg_json_writer lines;
	size_t head;                    /* bytes of lines already written; the
	                                   rest waits for the destination */
	size_t threshold;               /* access_log_buffer */
	tg_msec_t flush_interval;       /* access_log_flush */
	struct event *timer;            /* flushes the oldest line in time, and
	                                   stays pending while lines wait */
};

/* Open path for appending ("-" is stdout) into file. Returns 0, or -1 after
 * logging why. */
int tg_accesslog_open(struct tg_accesslog_file *file, const char *path);

/* For tollgate -t: open path as tg_accesslog_open() does and close it.
 * Returns 0 when startup could open it (or path is NULL or "-"), else the
 * errno of the failed open. */
int tg_accesslog_check(const char *path);

/* Reopen path onto the same descriptor (log rotation); keeps the old file
 * on failure. Flush the workers' buffers first, so that lines of requests
 * that ended before the signal land in the old file. */
int tg_accesslog_reopen(struct tg_accesslog_file *file, const char *path);

/* After the workers' buffers were freed: finish a cut line until
 * deadline_ns (tg_now_ns), then log in one line what shutdown lost. */
void tg_accesslog_finish(struct tg_accesslog_file *file, uint64_t deadline_ns);

void tg_accesslog_close(struct tg_accesslog_file *file);

/* Append the access log's counters to a /metrics scrape. Returns 0, or -1
 * out of memory. */
int tg_accesslog_write_metrics(struct tg_accesslog_file *file, struct evbuffer *out,
                               enum tg_metrics_format format);

/* A worker's buffer on base, sized by cfg; NULL when the log is off or
 * memory runs out (then the worker writes no lines, after a warning). */
struct tg_accesslog *tg_accesslog_new(struct tg_accesslog_file *file,
                                      struct event_base *base,
                                      const struct tg_config *cfg);

/* Write what is buffered, then free the buffer. A pipe or socket is
 * waited for until deadline_ns (tg_now_ns) at the latest, and lines still
 * unwritten then are counted as lost. Call only after the worker stopped. */
void tg_accesslog_free(struct tg_accesslog *log, uint64_t deadline_ns);

/* Write what is buffered, then take cfg's buffer size and interval. Worker
 * thread. */
void tg_accesslog_configure(struct tg_accesslog *log, const struct tg_config *cfg);

/* Format req's line into log's buffer, writing the buffer when it is full.
 * The duration ends at req->done_ns.
 * Drops the line, counting it, when the destination has not taken the
 * lines before it and they fill the bound. Worker thread; log may be NULL. */
void tg_accesslog_write(struct tg_accesslog *log, const struct tg_request *req);

/* Write what is buffered, or as much as the destination takes without
 * blocking. Any thread. */
void tg_accesslog_flush(struct tg_accesslog *log);

#endif
