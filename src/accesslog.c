/*
 * Access log writer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "accesslog.h"
#include "filter.h"
#include "filter-request.h"
#include "log.h"
#include "request.h"
#include "trace.h"

int
tg_accesslog_open(const char *path)
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
tg_accesslog_reopen(int fd, const char *path)
{
	int fresh;

	if (strcmp(path, "-") == 0)
		return 0;
	fresh = tg_accesslog_open(path);
	if (fresh < 0)
		return -1;

	/* dup2 swaps the file under the same descriptor in one step, so
	 * workers writing at that moment go to one file or the other. */
	if (dup2(fresh, fd) < 0) {
		tg_error("cannot reopen access log %s: %s", path, strerror(errno));
		close(fresh);
		return -1;
	}
	close(fresh);
	return 0;
}

#define FIELD_MAX 256  /* bytes of a client-chosen value, such as the model */

/* Length of the well-formed UTF-8 sequence at s (at most left bytes), or
 * 0 when the bytes there are not one. Overlong forms pass; JSON only needs
 * the structure to hold. */
static size_t
utf8_sequence(const unsigned char *s, size_t left)
{
	size_t len = 0;

	if (s[0] < 0x80)
		len = 1;
	else if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4;

	if (len == 0 || len > left)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	}
	return len;
}

/*
 * s as a JSON string, cut to FIELD_MAX bytes so a client cannot make one
 * log line as long as its request body. Bytes that are not UTF-8 (a raw
 * byte in a request path, say) become U+FFFD, because jansson refuses
 * invalid UTF-8 and the request's line must still be written.
 */
static json_t *
string_or_null(const char *s)
{
	const unsigned char *in = (const unsigned char *)s;
	char out[FIELD_MAX + 4];
	size_t len, used = 0;

	if (s == NULL)
		return json_null();
	len = strlen(s);
	for (size_t i = 0; i < len && used + 3 <= FIELD_MAX;) {
		size_t n = utf8_sequence(in + i, len - i);

		if (n == 0) {
			memcpy(out + used, "\xEF\xBF\xBD", 3);
			used += 3;
			i++;
			continue;
		}
		if (used + n > FIELD_MAX)
			break;
		memcpy(out + used, in + i, n);
		used += n;
		i += n;
	}
	return json_stringn(out, used);
}

/* string_or_null(s), or, when jansson still refuses it (an overlong form
 * or a surrogate), s with every byte above 0x7F replaced by '?'. */
static json_t *
log_string(const char *s)
{
	json_t *value = string_or_null(s);
	char ascii[FIELD_MAX + 1];
	size_t len = 0;

	if (value != NULL)
		return value;
	for (; s[len] != '\0' && len < FIELD_MAX; len++)
		ascii[len] = (unsigned char)s[len] < 0x80 ? s[len] : '?';
	return json_stringn(ascii, len);
}

void
tg_accesslog_write(int fd, const struct tg_request *req)
{
	char termination[3] = {(char)req->cause, (char)req->phase, '\0'};
	char trace_id[33];
	double duration = (double)(tg_now_ns() - req->start_ns) / 1e9;
	json_t *line;
	char *text;
	size_t len;

	if (fd < 0)
		return;

	line = json_pack("{s:s, s:s, s:s, s:s?, s:o, s:o, s:o, s:o, s:b, s:i, s:o,"
	                 " s:f, s:I, s:I, s:s}",
	                 "time", req->time,
	                 "request_id", req->id,
	                 "client", req->client_addr,
	                 "method", req->method,
	                 "path", req->path ? log_string(req->path) : json_null(),
	                 "route", string_or_null(req->route ? req->route->name : NULL),
	                 "backend", string_or_null(req->backend ? req->backend->name : NULL),
	                 "model", req->model ? log_string(req->model) : json_null(),
	                 "stream", req->stream,
	                 "status", req->response.status,
	                 "upstream_status", req->upstream_status
	                     ? json_integer(req->upstream_status) : json_null(),
	                 "duration", duration,
	                 "bytes_in", (json_int_t)req->bytes_in,
	                 "bytes_out", (json_int_t)req->bytes_out,
	                 "termination", termination);
	if (line == NULL)
		return;
	if (tg_filter_decisions(req) != NULL) {
		json_t *decisions = tg_filter_log_json(tg_filter_decisions(req));

		if (decisions != NULL)
			json_object_set_new(line, "filters", decisions);
	}
	if (tg_trace_id_of(req, trace_id) == 0)
		json_object_set_new(line, "trace_id", json_string(trace_id));
	text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6));
	json_decref(line);
	if (text == NULL)
		return;

	len = strlen(text);
	text[len] = '\n';       /* replaces the terminating NUL */
	if (write(fd, text, len + 1) < 0)
		tg_warn("access log write failed: %s", strerror(errno));
	free(text);
}
