/*
 * Access log writer: lines formatted straight into each worker's buffer,
 * written in batches. See accesslog.h for when a batch is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "accesslog.h"
#include "filter.h"
#include "filter-request.h"
#include "log.h"
#include "request.h"
#include "trace.h"

#define FIELD_MAX 256  /* bytes of a client-chosen value, such as the model */

/* --- the shared file ------------------------------------------------------ */

static int
open_path(const char *path)
{
	int fd;

	if (strcmp(path, "-") == 0)
		return dup(STDOUT_FILENO);

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		tg_error("cannot open access log %s: %s", path, strerror(errno));
	return fd;
}

int
tg_accesslog_open(struct tg_accesslog_file *file, const char *path)
{
	file->fd = open_path(path);
	if (file->fd < 0)
		return -1;
	pthread_mutex_init(&file->write_lock, NULL);
	return 0;
}

int
tg_accesslog_reopen(struct tg_accesslog_file *file, const char *path)
{
	int fresh, rc;

	if (strcmp(path, "-") == 0)
		return 0;
	fresh = open_path(path);
	if (fresh < 0)
		return -1;

	/* dup2 swaps the file under the same descriptor in one step. The lock
	 * keeps a flush that is still finishing a short write in one file. */
	pthread_mutex_lock(&file->write_lock);
	rc = dup2(fresh, file->fd);
	pthread_mutex_unlock(&file->write_lock);
	if (rc < 0)
		tg_error("cannot reopen access log %s: %s", path, strerror(errno));
	close(fresh);
	return rc < 0 ? -1 : 0;
}

void
tg_accesslog_close(struct tg_accesslog_file *file)
{
	if (file->fd < 0)
		return;
	close(file->fd);
	file->fd = -1;
	pthread_mutex_destroy(&file->write_lock);
}

/* Write data whole, finishing short writes, under the file's lock so no
 * other worker's bytes land in between. On an error the rest is dropped. */
static void
write_whole(struct tg_accesslog_file *file, const char *data, size_t len)
{
	pthread_mutex_lock(&file->write_lock);
	while (len > 0) {
		ssize_t n = write(file->fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			tg_warn("access log write failed: %s; %zu bytes of lines lost",
			        n < 0 ? strerror(errno) : "nothing written", len);
			break;
		}
		data += n;
		len -= (size_t)n;
	}
	pthread_mutex_unlock(&file->write_lock);
}

/* --- a worker's buffer ---------------------------------------------------- */

/* Caller holds log->lock. */
static void
flush_locked(struct tg_accesslog *log)
{
	if (log->lines.len == 0)
		return;
	write_whole(log->file, log->lines.data, log->lines.len);
	log->lines.len = 0;
}

void
tg_accesslog_flush(struct tg_accesslog *log)
{
	if (log == NULL)
		return;
	pthread_mutex_lock(&log->lock);
	flush_locked(log);
	pthread_mutex_unlock(&log->lock);
}

static void
flush_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	tg_accesslog_flush(arg);
}

struct tg_accesslog *
tg_accesslog_new(struct tg_accesslog_file *file, struct event_base *base,
                 const struct tg_config *cfg)
{
	struct tg_accesslog *log;

	if (file->fd < 0)
		return NULL;
	log = calloc(1, sizeof(*log));
	if (log == NULL)
		goto fail;
	log->timer = evtimer_new(base, flush_timer_cb, log);
	if (log->timer == NULL)
		goto fail;
	log->file = file;
	pthread_mutex_init(&log->lock, NULL);
	log->threshold = cfg->access_log_buffer;
	log->flush_interval = cfg->access_log_flush;
	return log;

fail:
	free(log);
	tg_warn("out of memory for an access log buffer; this worker logs no requests");
	return NULL;
}

void
tg_accesslog_free(struct tg_accesslog *log)
{
	if (log == NULL)
		return;
	flush_locked(log);      /* no lock: its worker has stopped */
	event_free(log->timer);
	pthread_mutex_destroy(&log->lock);
	tg_json_writer_free(&log->lines);
	free(log);
}

void
tg_accesslog_configure(struct tg_accesslog *log, const struct tg_config *cfg)
{
	if (log == NULL)
		return;
	pthread_mutex_lock(&log->lock);
	flush_locked(log);
	log->threshold = cfg->access_log_buffer;
	log->flush_interval = cfg->access_log_flush;
	pthread_mutex_unlock(&log->lock);
}

/* --- the line ------------------------------------------------------------- */

static void
write_filters(struct tg_json_writer *w, const struct tg_filter_log *decisions)
{
	tg_json_literal(w, ",\"filters\":[");
	for (size_t i = 0; i < decisions->n; i++) {
		const struct tg_filter_decision *d = &decisions->items[i];

		if (i > 0)
			tg_json_literal(w, ",");
		tg_json_literal(w, "{\"filter\":");
		tg_json_string(w, d->filter);
		tg_json_literal(w, ",\"rule\":");
		tg_json_string(w, d->rule);
		tg_json_literal(w, ",\"action\":");
		tg_json_string(w, tg_filter_action_name(d->action));
		tg_json_literal(w, ",\"side\":");
		tg_json_string(w, tg_side_name(d->side));
		tg_json_literal(w, ",\"count\":");
		tg_json_uint(w, decisions->counts[i]);
		if (d->error)
			tg_json_literal(w, ",\"error\":true");
		tg_json_literal(w, "}");
	}
	tg_json_literal(w, "]");
}

/*
 * Append req's line, fields in the documented order. Client-chosen values
 * (path, model) are cut to FIELD_MAX bytes, so a client cannot make one
 * line as long as its request body. Bytes that are not UTF-8 become U+FFFD.
 */
static void
format_line(struct tg_json_writer *w, const struct tg_request *req)
{
	char termination[3] = {(char)req->cause, (char)req->phase, '\0'};
	const struct tg_filter_log *decisions = tg_filter_decisions(req);
	double duration = (double)(tg_now_ns() - req->start_ns) / 1e9;
	char trace_id[33];

	tg_json_literal(w, "{\"time\":");
	tg_json_string(w, req->time);
	tg_json_literal(w, ",\"request_id\":");
	tg_json_string(w, req->id);
	tg_json_literal(w, ",\"client\":");
	tg_json_string(w, req->client_addr);
	tg_json_literal(w, ",\"method\":");
	tg_json_string(w, req->method);
	tg_json_literal(w, ",\"path\":");
	tg_json_string_cut(w, req->path, FIELD_MAX);
	tg_json_literal(w, ",\"route\":");
	tg_json_string_cut(w, req->route ? req->route->name : NULL, FIELD_MAX);
	tg_json_literal(w, ",\"backend\":");
	tg_json_string_cut(w, req->backend ? req->backend->name : NULL, FIELD_MAX);
	tg_json_literal(w, ",\"model\":");
	tg_json_string_cut(w, req->model, FIELD_MAX);
	tg_json_literal(w, ",\"stream\":");
	tg_json_bool(w, req->stream);
	tg_json_literal(w, ",\"status\":");
	tg_json_int(w, req->response.status);
	tg_json_literal(w, ",\"upstream_status\":");
	if (req->upstream_status != 0)
		tg_json_int(w, req->upstream_status);
	else
		tg_json_literal(w, "null");
	tg_json_literal(w, ",\"duration\":");
	tg_json_double_precision(w, duration, 6);
	tg_json_literal(w, ",\"bytes_in\":");
	tg_json_uint(w, req->bytes_in);
	tg_json_literal(w, ",\"bytes_out\":");
	tg_json_uint(w, req->bytes_out);
	tg_json_literal(w, ",\"termination\":");
	tg_json_string(w, termination);
	if (decisions != NULL && decisions->n > 0)
		write_filters(w, decisions);
	if (tg_trace_id_of(req, trace_id) == 0) {
		tg_json_literal(w, ",\"trace_id\":");
		tg_json_string(w, trace_id);
	}
	tg_json_literal(w, "}\n");
}

void
tg_accesslog_write(struct tg_accesslog *log, const struct tg_request *req)
{
	struct tg_json_writer *lines;
	size_t start;

	if (log == NULL)
		return;
	pthread_mutex_lock(&log->lock);
	lines = &log->lines;
	start = lines->len;
	format_line(lines, req);
	if (lines->failed) {
		lines->len = start;     /* drop the partial line, keep the rest */
		lines->failed = 0;
		tg_warn("out of memory; access log line of request %s dropped", req->id);
	} else if (lines->len >= log->threshold) {
		flush_locked(log);
	} else if (start == 0) {
		/* The first line since the last write sets the deadline. */
		struct timeval interval = {
			.tv_sec = (time_t)(log->flush_interval / 1000),
			.tv_usec = (suseconds_t)(log->flush_interval % 1000) * 1000,
		};

		evtimer_add(log->timer, &interval);
	}
	pthread_mutex_unlock(&log->lock);
}
