/*
 * Counters and the request log behind /_mock/stats and /_mock/requests.
 *
 * The log keeps a flat copy of each request and builds its JSON only when
 * /_mock/requests is read. Building a JSON record for every request took
 * about a third of the instructions the mock spent on a repeated small
 * chat completion, and bench/ sends thousands of those a second without
 * reading the log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "mock.h"

/* One request as logged. text contains the method, the target and each
 * header's name and value, each NUL-terminated, then the body's bytes. */
struct logged_request {
	uint64_t connection;
	size_t n_headers;
	size_t body_len;
	char text[];
};

/* Copy s and its NUL to p, and return a pointer past them. */
static char *
put_string(char *p, const char *s)
{
	size_t n = strlen(s) + 1;

	memcpy(p, s, n);
	return p + n;
}

static struct logged_request *
logged_request_new(const struct mock_request *req)
{
	size_t body_len = evbuffer_get_length(req->body);
	size_t size = strlen(req->method) + 1 + strlen(req->target) + 1 + body_len;
	struct logged_request *l;
	char *p;

	for (size_t i = 0; i < req->n_headers; i++)
		size += strlen(req->headers[i].name) + 1 + strlen(req->headers[i].value) + 1;
	l = malloc(sizeof(*l) + size);
	if (l == NULL)
		return NULL;

	l->connection = req->connection;
	l->n_headers = req->n_headers;
	l->body_len = body_len;
	p = put_string(l->text, req->method);
	p = put_string(p, req->target);
	for (size_t i = 0; i < req->n_headers; i++) {
		p = put_string(p, req->headers[i].name);
		p = put_string(p, req->headers[i].value);
	}
	evbuffer_copyout(req->body, p, body_len);
	return l;
}

/* Whether JSON can carry the path of target: a request whose path is not
 * UTF-8 has no record in /_mock/requests. */
static int
path_is_utf8(const char *target)
{
	json_t *path = json_stringn(target, strcspn(target, "?"));

	json_decref(path);
	return path != NULL;
}

void
mock_log_request(struct mock *m, const struct mock_request *req)
{
	struct logged_request *l;
	size_t slot;

	if (!path_is_utf8(req->target) || (l = logged_request_new(req)) == NULL)
		return;
	if (m->log_count == MOCK_LOG_MAX) {
		free(m->log[m->log_start]);
		m->log[m->log_start] = l;
		m->log_start = (m->log_start + 1) % MOCK_LOG_MAX;
		return;
	}
	slot = (m->log_start + m->log_count) % MOCK_LOG_MAX;
	m->log[slot] = l;
	m->log_count++;
}

/* Add the header name: value to headers. Repeated headers join with ", ",
 * as HTTP allows. */
static void
add_header(json_t *headers, const char *name, const char *value)
{
	const char *old = json_string_value(json_object_get(headers, name));
	char *joined = NULL;

	if (old == NULL) {
		json_object_set_new(headers, name, json_string(value));
		return;
	}
	if (asprintf(&joined, "%s, %s", old, value) >= 0) {
		json_object_set_new(headers, name, json_string(joined));
		free(joined);
	}
}

/* The body as a JSON string. A body that is not UTF-8 cannot be one, so
 * the log gives its size instead. */
static json_t *
body_json(const char *body, size_t len)
{
	json_t *s = json_stringn(body, len);
	char note[64];

	if (s != NULL)
		return s;
	snprintf(note, sizeof(note), "<%zu bytes, not UTF-8>", len);
	return json_string(note);
}

/* {"method", "path", "headers", "body", "connection"}, and "query" when
 * the target has one. */
static json_t *
logged_request_json(const struct logged_request *l)
{
	const char *method = l->text;
	const char *target = method + strlen(method) + 1;
	const char *p = target + strlen(target) + 1;
	size_t path_len = strcspn(target, "?");
	json_t *headers = json_object();
	json_t *record;

	for (size_t i = 0; i < l->n_headers; i++) {
		const char *name = p;
		const char *value = name + strlen(name) + 1;

		add_header(headers, name, value);
		p = value + strlen(value) + 1;
	}

	record = json_pack("{s:s, s:s%, s:o, s:o, s:I}", "method", method,
	                   "path", target, path_len, "headers", headers,
	                   "body", body_json(p, l->body_len),
	                   "connection", (json_int_t)l->connection);
	if (record != NULL && target[path_len] == '?')
		json_object_set_new(record, "query", json_string(target + path_len + 1));
	return record;
}

json_t *
mock_log_dump(const struct mock *m)
{
	json_t *list = json_array();

	for (size_t i = 0; list != NULL && i < m->log_count; i++) {
		const struct logged_request *l = m->log[(m->log_start + i) % MOCK_LOG_MAX];
		json_t *record = logged_request_json(l);

		if (record == NULL || json_array_append_new(list, record) < 0) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

void
mock_reset(struct mock *m)
{
	for (size_t i = 0; i < m->log_count; i++)
		free(m->log[(m->log_start + i) % MOCK_LOG_MAX]);
	m->log_start = 0;
	m->log_count = 0;
	memset(&m->stats, 0, sizeof(m->stats));
}
