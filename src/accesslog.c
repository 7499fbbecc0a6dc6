/*
 * Access log writer: lines formatted straight into each worker's buffer,
 * written in batches. See accesslog.h for when a batch is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "accesslog.h"
#include "cache.h"
#include "clock.h"
#include "filter.h"
#include "filter-request.h"
#include "json-double.h"
#include "log.h"
#include "request.h"
#include "trace.h"

#define FIELD_MAX 256  /* bytes of a client-chosen value, such as the model */

/* While the destination takes nothing, a worker keeps this many times
 * access_log_buffer of unwritten lines, and at least BACKLOG_MIN bytes
 * (the whole bound when the buffer is 0), then drops newer lines. */
#define BACKLOG_FACTOR 4
#define BACKLOG_MIN ((size_t)64 << 10)

/* Lost lines and failed writes are logged at most this often. */
#define REPORT_INTERVAL_NS (10 * TG_NS_PER_S)

/* The outcome of offering bytes to the destination. */
enum send_result {
	SENT_ALL,
	SENT_BLOCKED,           /* the destination takes no more for now */
	SENT_FAILED,            /* an error; errno-like code in *err */
};

/* --- the shared file ------------------------------------------------------ */

static size_t
count_lines(const char *data, size_t len)
{
	size_t n = 0;
	const char *end = data + len, *nl;

	while (data < end && (nl = memchr(data, '\n', (size_t)(end - data))) != NULL) {
		n++;
		data = nl + 1;
	}
	return n;
}

static const char *
loss_reason(int err)
{
	if (err == EAGAIN || err == EWOULDBLOCK)
		return "the destination takes nothing for now (its reader is slow or stopped)";
	return err != 0 ? strerror(err) : "nothing written";
}

/*
 * Standard output as a descriptor of our own that never blocks. A regular
 * file is written as it is. A socket (systemd's journal, a container
 * runtime) is used through send(MSG_DONTWAIT), which changes no flag. For
 * a pipe or a terminal, O_NONBLOCK would be a flag of the file description
 * that a dup shares with the parent shell and with our own stderr when
 * both point at one pipe; opening /proc/self/fd/1 gives a description of
 * our own for the same pipe or device. Only when that fails (no /proc) is
 * the flag set on the shared description, and cleared again at close.
 */
static int
open_stdout(struct tg_accesslog_file *file)
{
	struct stat st;
	int fd, flags;

	if (fstat(STDOUT_FILENO, &st) != 0) {
		tg_error("cannot use standard output as the access log: %s", strerror(errno));
		return -1;
	}
	if (S_ISREG(st.st_mode) || S_ISSOCK(st.st_mode)) {
		file->sink = S_ISREG(st.st_mode) ? TG_SINK_BLOCKING : TG_SINK_SOCKET;
		fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			tg_error("cannot use standard output as the access log: %s", strerror(errno));
		return fd;
	}
	file->sink = TG_SINK_NONBLOCKING;
	fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0)
		return fd;
	fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
	flags = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
		tg_error("cannot use standard output as the access log: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	file->shared_nonblock = 1;
	return fd;
}

/* Open path for appending. Anything but a regular file (a named pipe, a
 * device) is then made non-blocking: the description is ours alone. The
 * open itself of a named pipe still waits for a reader, as before. */
static int
open_path(const char *path, enum tg_accesslog_sink *sink)
{
	struct stat st;
	int fd, flags;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		tg_error("cannot open access log %s: %s", path, strerror(errno));
		return -1;
	}
	*sink = TG_SINK_BLOCKING;
	if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
		flags = fcntl(fd, F_GETFL);
		if (flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0)
			*sink = TG_SINK_NONBLOCKING;
	}
	return fd;
}

int
tg_accesslog_open(struct tg_accesslog_file *file, const char *path)
{
	file->shared_nonblock = 0;
	if (strcmp(path, "-") == 0)
		file->fd = open_stdout(file);
	else
		file->fd = open_path(path, &file->sink);
	if (file->fd < 0)
		return -1;
	file->path = strdup(path);
	if (file->path == NULL) {
		tg_error("cannot open access log %s: out of memory", path);
		close(file->fd);
		file->fd = -1;
		return -1;
	}
	pthread_mutex_init(&file->write_lock, NULL);
	pthread_mutex_init(&file->report_lock, NULL);
	return 0;
}

int
tg_accesslog_check(const char *path)
{
	struct stat st;
	int fd;

	if (path == NULL || strcmp(path, "-") == 0)
		return 0;
	/* O_NONBLOCK: a named pipe without a reader must not hang the check;
	 * that case (ENXIO) is one startup waits out, not an error. */
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno == ENXIO && stat(path, &st) == 0 && S_ISFIFO(st.st_mode))
		return 0;
	return errno;
}

/* Write up to len bytes; the sink decides whether this may block. */
static ssize_t
send_some(struct tg_accesslog_file *file, const char *data, size_t len)
{
	ssize_t n;

	do {
		if (file->sink == TG_SINK_SOCKET)
			n = send(file->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		else
			n = write(file->fd, data, len);
	} while (n < 0 && errno == EINTR);
	return n;
}

static enum send_result
send_failed(ssize_t n, int *err)
{
	*err = n < 0 ? errno : 0;
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? SENT_BLOCKED : SENT_FAILED;
}

/* Write the rest of the line a short write cut. Caller holds write_lock. */
static enum send_result
send_cut(struct tg_accesslog_file *file, int *err)
{
	while (file->cut_sent < file->cut.len) {
		ssize_t n = send_some(file, file->cut.data + file->cut_sent,
		                      file->cut.len - file->cut_sent);

		if (n <= 0)
			return send_failed(n, err);
		file->cut_sent += (size_t)n;
	}
	tg_json_writer_reset(&file->cut);
	file->cut_sent = 0;
	return SENT_ALL;
}

/* A write stopped inside a line: move the rest of that line out of the
 * worker's batch into file->cut, so any worker finishes it before writing
 * its own. *taken grows by the bytes moved. When memory runs out, a lone
 * newline closes the cut line instead, so only that line is broken. */
static void
keep_cut(struct tg_accesslog_file *file, const char *data, size_t len, size_t *taken)
{
	const char *rest = data + *taken;
	const char *nl = memchr(rest, '\n', len - *taken);
	size_t n = nl != NULL ? (size_t)(nl - rest) + 1 : len - *taken;

	tg_json_raw(&file->cut, rest, n);
	if (file->cut.failed) {
		tg_json_writer_free(&file->cut);
		tg_json_literal(&file->cut, "\n");
		atomic_fetch_add(&file->lines_dropped, 1);
	}
	*taken += n;
}

/*
 * Write the whole lines data[0..len) after any cut line, under write_lock.
 * *taken is set to the bytes of data that left the caller's hands: written,
 * or moved into the cut line. A regular file takes everything unless an
 * error comes; a pipe or socket may take part and then block.
 */
static enum send_result
send_lines(struct tg_accesslog_file *file, const char *data, size_t len,
           size_t *taken, int *err)
{
	enum send_result r = SENT_ALL;

	*taken = 0;
	pthread_mutex_lock(&file->write_lock);
	while (r == SENT_ALL) {
		ssize_t n;

		r = send_cut(file, err);
		if (r != SENT_ALL || *taken == len)
			break;
		n = send_some(file, data + *taken, len - *taken);
		if (n <= 0) {
			r = send_failed(n, err);
			break;
		}
		*taken += (size_t)n;
		if (data[*taken - 1] != '\n')
			keep_cut(file, data, len, taken);
	}
	pthread_mutex_unlock(&file->write_lock);
	return r;
}

/* Count lines that will never be written, and why. */
static void
count_lost(struct tg_accesslog_file *file, size_t lines, int err, int failed_write)
{
	if (failed_write)
		atomic_fetch_add(&file->write_errors, 1);
	if (lines > 0)
		atomic_fetch_add(&file->lines_dropped, lines);
	atomic_store(&file->last_errno, err);
}

static const char *
plural(uint64_t n)
{
	return n == 1 ? "" : "s";
}

/* Log the losses since the last warning, at most once per interval unless
 * forced, so a full disk does not fill its own journal with one warning
 * per write. Callers hold no lock, and report_lock is released before the
 * warning, because stderr may be as stuck as stdout. */
static void
report_losses(struct tg_accesslog_file *file, int force)
{
	uint64_t dropped = atomic_load(&file->lines_dropped);
	uint64_t errors = atomic_load(&file->write_errors);
	uint64_t now = tg_now_ns(), new_dropped, new_errors;

	pthread_mutex_lock(&file->report_lock);
	new_dropped = dropped - file->dropped_reported;
	new_errors = errors - file->errors_reported;
	if ((new_dropped == 0 && new_errors == 0) ||
	    (!force && file->reported_ns != 0 && now - file->reported_ns < REPORT_INTERVAL_NS)) {
		pthread_mutex_unlock(&file->report_lock);
		return;
	}
	file->reported_ns = now;
	file->dropped_reported = dropped;
	file->errors_reported = errors;
	pthread_mutex_unlock(&file->report_lock);

	tg_warn("access log %s: %" PRIu64 " line%s dropped and %" PRIu64 " write%s failed "
	        "since the last report (latest cause: %s); reported at most every %llu s",
	        file->path, new_dropped, plural(new_dropped), new_errors, plural(new_errors),
	        loss_reason(atomic_load(&file->last_errno)),
	        (unsigned long long)(REPORT_INTERVAL_NS / TG_NS_PER_S));
}

/* Wait until fd takes bytes or deadline_ns passes. Returns 0 to try again,
 * -1 once the deadline has passed. */
static int
wait_writable(int fd, uint64_t deadline_ns)
{
	uint64_t now = tg_now_ns();
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	uint64_t ms;

	if (now >= deadline_ns)
		return -1;
	ms = (deadline_ns - now + TG_NS_PER_MS - 1) / TG_NS_PER_MS;
	if (poll(&pfd, 1, ms > INT32_MAX ? INT32_MAX : (int)ms) < 0 && errno != EINTR)
		return -1;
	return 0;
}

int
tg_accesslog_reopen(struct tg_accesslog_file *file, const char *path)
{
	enum tg_accesslog_sink sink;
	int fresh, rc, err;

	if (strcmp(path, "-") == 0)
		return 0;
	fresh = open_path(path, &sink);
	if (fresh < 0)
		return -1;

	/* dup2 swaps the file under the same descriptor in one step. The lock
	 * keeps a flush that is finishing a short write in one file. A cut
	 * line that the old file does not take now is lost, so that it does
	 * not end in the new one. */
	pthread_mutex_lock(&file->write_lock);
	if (send_cut(file, &err) != SENT_ALL) {
		count_lost(file, 1, err, 0);
		tg_json_writer_reset(&file->cut);
		file->cut_sent = 0;
	}
	rc = dup2(fresh, file->fd);
	if (rc >= 0)
		file->sink = sink;
	pthread_mutex_unlock(&file->write_lock);
	if (rc < 0)
		tg_error("cannot reopen access log %s: %s", path, strerror(errno));
	close(fresh);
	return rc < 0 ? -1 : 0;
}

void
tg_accesslog_finish(struct tg_accesslog_file *file, uint64_t deadline_ns)
{
	enum send_result r = SENT_ALL;
	uint64_t lost;
	int err = 0;

	if (file->fd < 0)
		return;
	pthread_mutex_lock(&file->write_lock);
	while ((r = send_cut(file, &err)) == SENT_BLOCKED && wait_writable(file->fd, deadline_ns) == 0)
		;
	pthread_mutex_unlock(&file->write_lock);
	if (r != SENT_ALL) {
		count_lost(file, 1, err, r == SENT_FAILED);
		atomic_fetch_add(&file->lost_at_exit, 1);
	}
	lost = atomic_load(&file->lost_at_exit);
	if (lost == 0) {
		report_losses(file, 1);
		return;
	}
	tg_warn("access log %s: %" PRIu64 " line%s not written by the shutdown deadline "
	        "and lost (%s); %" PRIu64 " lines dropped and %" PRIu64 " writes failed "
	        "since start", file->path, lost, plural(lost),
	        loss_reason(atomic_load(&file->last_errno)),
	        atomic_load(&file->lines_dropped), atomic_load(&file->write_errors));
}

void
tg_accesslog_close(struct tg_accesslog_file *file)
{
	int flags;

	if (file->fd < 0)
		return;
	if (file->shared_nonblock && (flags = fcntl(file->fd, F_GETFL)) >= 0)
		fcntl(file->fd, F_SETFL, flags & ~O_NONBLOCK);
	close(file->fd);
	file->fd = -1;
	free(file->path);
	file->path = NULL;
	tg_json_writer_free(&file->cut);
	pthread_mutex_destroy(&file->write_lock);
	pthread_mutex_destroy(&file->report_lock);
}

int
tg_accesslog_write_metrics(struct tg_accesslog_file *file, struct evbuffer *out,
                           enum tg_metrics_format format)
{
	int rc = 0;

	rc |= tg_metrics_write_counter(out, format, "tollgate_access_log_lines_dropped_total",
	                               "Access-log lines never written: buffers full while "
	                               "the destination took nothing, failed writes, shutdown.",
	                               atomic_load(&file->lines_dropped));
	rc |= tg_metrics_write_counter(out, format, "tollgate_access_log_write_errors_total",
	                               "Access-log writes that failed with an error.",
	                               atomic_load(&file->write_errors));
	return rc ? -1 : 0;
}

/* --- a worker's buffer ---------------------------------------------------- */

static size_t
pending(const struct tg_accesslog *log)
{
	return log->lines.len - log->head;
}

/* Unwritten bytes a worker keeps before it drops lines. */
static size_t
backlog_limit(const struct tg_accesslog *log)
{
	size_t limit = log->threshold * BACKLOG_FACTOR;

	return limit > BACKLOG_MIN ? limit : BACKLOG_MIN;
}

/* n more bytes left the buffer. The rest moves to the front once the
 * written part outgrows it, so each byte is moved O(1) times on average. */
static void
consume(struct tg_accesslog *log, size_t n)
{
	log->head += n;
	if (log->head == log->lines.len) {
		log->lines.len = 0;
		log->head = 0;
	} else if (log->head > pending(log)) {
		memmove(log->lines.data, log->lines.data + log->head, pending(log));
		log->lines.len -= log->head;
		log->head = 0;
	}
}

/* Caller holds log->lock. A failed write loses the lines in it, as the
 * bytes of a line the file already took cannot be taken back anyway. With
 * no line pending this still offers the shared cut line, whose rest may be
 * the only thing a worker left waiting. */
static enum send_result
flush_locked(struct tg_accesslog *log)
{
	const char *data = log->lines.data + log->head;
	size_t len = pending(log), taken = 0;
	enum send_result r;
	int err = 0;

	r = send_lines(log->file, data, len, &taken, &err);
	if (r == SENT_FAILED) {
		count_lost(log->file, count_lines(data + taken, len - taken), err, 1);
		taken = len;
	}
	consume(log, taken);
	return r;
}

/* Caller holds log->lock; worker thread. Called when the buffer gained its
 * first line (the deadline of that line), and after a flush (a retry when
 * it left lines behind or was blocked), so bytes never wait without a
 * timer. A blocked flush may leave no line in the buffer yet still have
 * cut one of them, whose rest waits in the shared file state. */
static void
arm_timer(struct tg_accesslog *log, int first_line, enum send_result flushed)
{
	struct timeval interval = tg_timeval_ms(log->flush_interval);
	int waiting = pending(log) > 0 || flushed == SENT_BLOCKED;

	if (first_line || (waiting && !evtimer_pending(log->timer, NULL)))
		evtimer_add(log->timer, &interval);
}

void
tg_accesslog_flush(struct tg_accesslog *log)
{
	if (log == NULL)
		return;
	pthread_mutex_lock(&log->lock);
	flush_locked(log);
	pthread_mutex_unlock(&log->lock);
	report_losses(log->file, 0);
}

static void
flush_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_accesslog *log = arg;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&log->lock);
	arm_timer(log, 0, flush_locked(log));
	pthread_mutex_unlock(&log->lock);
	report_losses(log->file, 0);
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
tg_accesslog_free(struct tg_accesslog *log, uint64_t deadline_ns)
{
	size_t lost;

	if (log == NULL)
		return;
	/* No lock: its worker has stopped. */
	while (flush_locked(log) == SENT_BLOCKED && wait_writable(log->file->fd, deadline_ns) == 0)
		;
	report_losses(log->file, 0);
	lost = count_lines(log->lines.data + log->head, pending(log));
	if (lost > 0) {
		count_lost(log->file, lost, EAGAIN, 0);
		atomic_fetch_add(&log->file->lost_at_exit, lost);
	}
	event_free(log->timer);
	pthread_mutex_destroy(&log->lock);
	tg_json_writer_free(&log->lines);
	free(log);
}

void
tg_accesslog_configure(struct tg_accesslog *log, const struct tg_config *cfg)
{
	enum send_result flushed;

	if (log == NULL)
		return;
	pthread_mutex_lock(&log->lock);
	flushed = flush_locked(log);
	log->threshold = cfg->access_log_buffer;
	log->flush_interval = cfg->access_log_flush;
	arm_timer(log, 0, flushed);
	pthread_mutex_unlock(&log->lock);
	report_losses(log->file, 0);
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
		if (d->unmaskable)
			tg_json_literal(w, ",\"unmaskable\":true");
		tg_json_literal(w, "}");
	}
	tg_json_literal(w, "]");
}

/* Append the ttft field. This and write_reason() write the usual null with
 * the name as one literal, which saves a call of about 20 instructions per
 * line (callgrind). */
static void
write_ttft(struct tg_json_writer *w, const struct tg_request *req)
{
	uint64_t first = req->metrics.first_token_ns;

	if (first == 0) {
		tg_json_literal(w, ",\"ttft\":null");
		return;
	}
	tg_json_literal(w, ",\"ttft\":");
	tg_json_double_precision(w, (double)(first - req->start_ns) / 1e9, TG_JSON_DURATION_DIGITS);
}

static void
write_reason(struct tg_json_writer *w, const struct tg_request *req)
{
	if (req->error == TG_OK) {
		tg_json_literal(w, ",\"reason\":null");
		return;
	}
	tg_json_literal(w, ",\"reason\":");
	tg_json_string(w, tg_error_info(req->error)->reason);
}

/* Append upstream_model when the last attempt sent another model than the
 * client named, because a failover group member renamed it. Metrics label
 * and price the request by that model. The usual line, with both the same,
 * stays without the field. */
static void
write_upstream_model(struct tg_json_writer *w, const struct tg_request *req)
{
	const char *sent = tg_request_sent_model(req);

	if (sent == req->model || sent == NULL ||
	    (req->model != NULL && strcmp(sent, req->model) == 0))
		return;
	tg_json_literal(w, ",\"upstream_model\":");
	tg_json_string_cut(w, sent, FIELD_MAX);
}

/* Append cache, the x-tollgate-cache value of the response, for a request
 * that reached the cache of its route. Other lines have no such field, so
 * a missing field means that the cache was not consulted. */
static void
write_cache(struct tg_json_writer *w, const struct tg_request *req)
{
	const char *status = tg_cache_status(req);

	if (status == NULL)
		return;
	tg_json_literal(w, ",\"cache\":");
	tg_json_string(w, status);
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
	double duration = (double)(req->done_ns - req->start_ns) / 1e9;
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
	if (req->key != NULL) {
		tg_json_literal(w, ",\"key\":");
		tg_json_string(w, req->key->name);
	}
	tg_json_literal(w, ",\"backend\":");
	tg_json_string_cut(w, req->backend ? req->backend->name : NULL, FIELD_MAX);
	tg_json_literal(w, ",\"model\":");
	tg_json_string_cut(w, req->model, FIELD_MAX);
	write_upstream_model(w, req);
	tg_json_literal(w, ",\"stream\":");
	tg_json_bool(w, req->stream);
	tg_json_literal(w, ",\"status\":");
	tg_json_int(w, req->response.status);
	tg_json_literal(w, ",\"upstream_status\":");
	if (req->upstream_status != 0)
		tg_json_int(w, req->upstream_status);
	else
		tg_json_literal(w, "null");
	write_cache(w, req);
	tg_json_literal(w, ",\"duration\":");
	tg_json_double_precision(w, duration, TG_JSON_DURATION_DIGITS);
	write_ttft(w, req);
	tg_json_literal(w, ",\"bytes_in\":");
	tg_json_uint(w, req->bytes_in);
	tg_json_literal(w, ",\"bytes_out\":");
	tg_json_uint(w, req->bytes_out);
	tg_json_literal(w, ",\"termination\":");
	tg_json_string(w, termination);
	write_reason(w, req);
	if (decisions != NULL && decisions->n > 0)
		write_filters(w, decisions);
	if (tg_trace_id_of(req, trace_id) == 0) {
		tg_json_literal(w, ",\"trace_id\":");
		tg_json_string(w, trace_id);
	}
	tg_json_literal(w, "}\n");
}

/* Caller holds log->lock. Whether the line of a request that just ended
 * has room: the destination has not taken the lines before it and they
 * fill the bound. A flush is tried first, as the reader may be back. */
static int
backlog_full(struct tg_accesslog *log)
{
	if (pending(log) < backlog_limit(log))
		return 0;
	if (flush_locked(log) != SENT_BLOCKED || pending(log) < backlog_limit(log))
		return 0;
	count_lost(log->file, 1, EAGAIN, 0);
	return 1;
}

void
tg_accesslog_write(struct tg_accesslog *log, const struct tg_request *req)
{
	enum send_result flushed = SENT_ALL;
	struct tg_json_writer *lines;
	size_t start;
	int was_empty, wrote = 0;

	if (log == NULL)
		return;
	pthread_mutex_lock(&log->lock);
	if (backlog_full(log)) {
		wrote = 1;
		goto out;
	}
	was_empty = pending(log) == 0;
	lines = &log->lines;
	start = lines->len;
	format_line(lines, req);
	if (lines->failed) {
		lines->len = start;     /* drop the partial line, keep the rest */
		lines->failed = 0;
		atomic_fetch_add(&log->file->lines_dropped, 1);
		tg_warn("out of memory; access log line of request %s dropped", req->id);
	} else if (pending(log) >= log->threshold) {
		flushed = flush_locked(log);
		wrote = 1;
	}
	/* The first line since the last write sets the deadline. */
	arm_timer(log, was_empty && pending(log) > 0, flushed);
out:
	pthread_mutex_unlock(&log->lock);
	if (wrote)
		report_losses(log->file, 0);
}
