/*
 * Access log: one JSON object per request, one line each.
 *
 * Each worker gathers its lines in its own buffer and writes them with one
 * write(2) when they reach access_log_buffer bytes, when the oldest has
 * waited access_log_flush, on a configuration reload, before the file is
 * reopened and when the worker stops. A write carries whole lines only, and
 * the file is opened with O_APPEND, so lines from different workers never
 * split or mix. With access_log_buffer 0, every line is written at once.
 */
#ifndef TOLLGATE_ACCESSLOG_H
#define TOLLGATE_ACCESSLOG_H

#include <pthread.h>

#include "config-t.h"
#include "json-writer.h"

struct event;
struct event_base;
struct tg_request;

/* The open log, shared by every worker. */
struct tg_accesslog_file {
	int fd;                         /* -1 when the access log is off */
	pthread_mutex_t write_lock;     /* held for each flush: on a pipe, or
	                                   after a short write, two workers'
	                                   bytes could otherwise interleave */
};

/* One worker's lines not yet written. */
struct tg_accesslog {
	struct tg_accesslog_file *file;
	pthread_mutex_t lock;           /* the worker's; the main thread takes
	                                   it only to flush before a reopen */
	struct tg_json_writer lines;
	size_t threshold;               /* access_log_buffer */
	tg_msec_t flush_interval;       /* access_log_flush */
	struct event *timer;            /* flushes the oldest line in time */
};

/* Open path for appending ("-" is stdout) into file. Returns 0, or -1 after
 * logging why. */
int tg_accesslog_open(struct tg_accesslog_file *file, const char *path);

/* Reopen path onto the same descriptor (log rotation); keeps the old file
 * on failure. Flush the workers' buffers first, so that lines of requests
 * that ended before the signal land in the old file. */
int tg_accesslog_reopen(struct tg_accesslog_file *file, const char *path);

void tg_accesslog_close(struct tg_accesslog_file *file);

/* A worker's buffer on base, sized by cfg; NULL when the log is off or
 * memory runs out (then the worker writes no lines, after a warning). */
struct tg_accesslog *tg_accesslog_new(struct tg_accesslog_file *file,
                                      struct event_base *base,
                                      const struct tg_config *cfg);

/* Write what is buffered, then free. Worker thread, or after it stopped. */
void tg_accesslog_free(struct tg_accesslog *log);

/* Write what is buffered, then take cfg's buffer size and interval. Worker
 * thread. */
void tg_accesslog_configure(struct tg_accesslog *log, const struct tg_config *cfg);

/* Format req's line into log's buffer, writing the buffer when it is full.
 * Worker thread; log may be NULL. */
void tg_accesslog_write(struct tg_accesslog *log, const struct tg_request *req);

/* Write what is buffered. Any thread. */
void tg_accesslog_flush(struct tg_accesslog *log);

#endif
