/*
 * Building response bodies and server-sent event framing.
 */
#include <stdlib.h>
#include <string.h>

#include "response.h"

struct mock_response *
mock_response_new(void)
{
	struct mock_response *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->body = evbuffer_new();
	if (r->body == NULL || mock_response_set_type(r, "application/json") < 0) {
		mock_response_free(r);
		return NULL;
	}
	r->status = 200;
	return r;
}

void
mock_response_free(struct mock_response *r)
{
	if (r == NULL)
		return;
	if (r->body != NULL)
		evbuffer_free(r->body);
	free(r->content_type);
	free(r->event_ends);
	free(r);
}

int
mock_response_set_type(struct mock_response *r, const char *type)
{
	char *copy = strdup(type);

	if (copy == NULL)
		return -1;
	free(r->content_type);
	r->content_type = copy;
	return 0;
}

/* Drop any body and event list built so far. */
static void
clear_body(struct mock_response *r)
{
	evbuffer_drain(r->body, evbuffer_get_length(r->body));
	r->n_events = 0;
	r->stream = 0;
}

int
mock_response_json(struct mock_response *r, int status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9));
	int rc;

	if (text == NULL)
		return -1;
	clear_body(r);
	r->status = status;
	rc = evbuffer_add(r->body, text, strlen(text));
	free(text);
	if (rc == 0)
		rc = mock_response_set_type(r, "application/json");
	return rc;
}

int
mock_response_error(struct mock_response *r, int status, const char *type,
                     const char *param, const char *code, const char *message)
{
	json_t *body = json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error",
	                         "message", message, "type", type,
	                         "param", param, "code", code);
	int rc;

	if (body == NULL)
		return -1;
	rc = mock_response_json(r, status, body);
	json_decref(body);
	return rc;
}

int
mock_response_stream(struct mock_response *r)
{
	clear_body(r);
	r->stream = 1;
	return mock_response_set_type(r, "text/event-stream");
}

/* Record that the event appended last ends at the current body length. */
static int
end_event(struct mock_response *r)
{
	if (r->n_events == r->events_cap) {
		size_t cap = r->events_cap ? r->events_cap * 2 : 16;
		size_t *ends = realloc(r->event_ends, cap * sizeof(*ends));

		if (ends == NULL)
			return -1;
		r->event_ends = ends;
		r->events_cap = cap;
	}
	r->event_ends[r->n_events++] = evbuffer_get_length(r->body);
	return 0;
}

static const char *
line_end(const struct mock_options *o)
{
	if (o->crlf)
		return "\r\n";
	if (o->cr)
		return "\r";
	return "\n";
}

static int
add_keepalives(struct mock_response *r, const struct mock_options *o)
{
	const char *eol = line_end(o);

	for (unsigned i = 0; i < o->keepalive; i++)
		if (evbuffer_add_printf(r->body, ": keepalive%s", eol) < 0)
			return -1;
	return 0;
}

/* Append one line of an event, dropping the space after "data:" when
 * nospace is set. line has no line end. */
static int
add_line(struct mock_response *r, const char *line, size_t len,
         const struct mock_options *o)
{
	const char *eol = line_end(o);

	if (o->nospace && len >= 6 && memcmp(line, "data: ", 6) == 0) {
		if (evbuffer_add(r->body, "data:", 5) < 0)
			return -1;
		line += 6;
		len -= 6;
	}
	if (evbuffer_add(r->body, line, len) < 0)
		return -1;
	return evbuffer_add(r->body, eol, strlen(eol));
}

int
mock_response_add_data_event(struct mock_response *r, const char *data,
                             size_t len, const struct mock_options *o)
{
	const char *prefix = o->nospace ? "data:" : "data: ";
	const char *eol = line_end(o);

	if (add_keepalives(r, o) < 0
	    || evbuffer_add(r->body, prefix, strlen(prefix)) < 0
	    || evbuffer_add(r->body, data, len) < 0
	    || evbuffer_add(r->body, eol, strlen(eol)) < 0
	    || evbuffer_add(r->body, eol, strlen(eol)) < 0)
		return -1;
	return end_event(r);
}

int
mock_response_add_json_event(struct mock_response *r, json_t *json,
                             const struct mock_options *o)
{
	char *text;
	int rc;

	if (o->stamp && json_object_set_new(json, MOCK_STAMP_KEY,
	                                    json_integer(MOCK_STAMP_PLACEHOLDER)) < 0)
		return -1;
	text = json_dumps(json, JSON_COMPACT | JSON_REAL_PRECISION(9));
	if (text == NULL)
		return -1;
	rc = mock_response_add_data_event(r, text, strlen(text), o);
	free(text);
	return rc;
}

int
mock_response_add_raw_event(struct mock_response *r, const char *raw,
                            size_t len, const struct mock_options *o)
{
	const char *p = raw, *end = raw + len;

	if (!mock_options_reframe(o)) {
		if (evbuffer_add(r->body, raw, len) < 0)
			return -1;
		return end_event(r);
	}

	if (add_keepalives(r, o) < 0)
		return -1;

	/* Rewrite each non-empty line; the recorded blank line that ended the
	 * event becomes one blank line in the new framing. */
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *stop = nl != NULL ? nl : end;
		size_t line_len = (size_t)(stop - p);

		if (line_len > 0 && p[line_len - 1] == '\r')
			line_len--;
		if (line_len > 0 && add_line(r, p, line_len, o) < 0)
			return -1;
		p = nl != NULL ? nl + 1 : end;
	}
	if (evbuffer_add(r->body, line_end(o), strlen(line_end(o))) < 0)
		return -1;
	return end_event(r);
}
