/*
 * Connections: request parsing with llhttp and scheduled response writing.
 *
 * A response goes out as a list of writes ("units"): the head, then one
 * unit per stream event, or per split= piece, each after its delay. The
 * next unit is written only once the previous one has left the output
 * buffer, so with TCP_NODELAY every unit is its own send() and its own TCP
 * segment, which is what tests of partial reads need. A response without
 * units (the head and a whole body) on plain TCP is written to the socket
 * at once rather than through the bufferevent (see send_at_once()).
 *
 * Reading stays enabled while a response is delayed or being written, so a
 * peer that closes is noticed at once and counted in responses_aborted.
 * Bytes of a pipelined next request wait in the input buffer until the
 * response is done.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <llhttp.h>

#include "conn.h"
#include "handler.h"

#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_BODY_BYTES (64 * 1024 * 1024)
#define SPLIT_GAP_MS 5          /* pause between split= pieces */

/* One write of a response body: len bytes at start, after delay_ms. */
struct unit {
	size_t start, len;
	uint64_t delay_ms;
};

enum phase {
	PHASE_READING,          /* waiting for (the rest of) a request */
	PHASE_DELAY,            /* first_byte_delay before the head */
	PHASE_SENDING,          /* head written, units going out */
};

struct conn {
	struct mock *m;
	struct conn *prev, *next;       /* in m->connections */
	struct bufferevent *bev;
	struct event *timer;
	uint64_t number;
	int counted;                    /* included in connections_opened */
	uint64_t requests;              /* requests parsed on it */
	int reset_next;                 /* drop the connection on next request */

	llhttp_t parser;
	struct mock_request req;
	struct evbuffer *url, *field, *value;
	struct evbuffer *direct;        /* a response written by send_at_once() */
	int in_value;                   /* last header callback was a value */
	size_t header_bytes;
	int error_status;               /* 413 or 431 from a size limit */
	int keep_alive, http_10;

	enum phase phase;
	struct mock_plan plan;
	const char *body;               /* plan body, made contiguous */
	struct unit *units;
	size_t n_units, next_unit;
	uint64_t unit_due_ns;           /* when the last timed unit was due */
	int chunked;
	int abort_at_end;               /* close_after: close, no terminator */
	int stall_at_end;               /* stall_after: go silent, stay open */
};

static void close_conn(struct conn *c);
static void process_input(struct conn *c);
static int end_response(struct conn *c);

/* ---- request parsing ------------------------------------------------- */

static void
empty(struct evbuffer *buf)
{
	if (buf != NULL)
		evbuffer_drain(buf, evbuffer_get_length(buf));
}

static void
clear_request(struct conn *c)
{
	struct mock_request *req = &c->req;

	for (size_t i = 0; i < req->n_headers; i++) {
		free(req->headers[i].name);
		free(req->headers[i].value);
	}
	req->n_headers = 0;
	free(req->method);
	free(req->target);
	req->method = NULL;
	req->target = NULL;
	empty(req->body);
	empty(c->url);
	empty(c->field);
	empty(c->value);
	c->in_value = 0;
	c->header_bytes = 0;
	c->error_status = 0;
}

/* Copy buf out as a NUL-terminated string and empty it. */
static char *
take_string(struct evbuffer *buf)
{
	size_t len = evbuffer_get_length(buf);
	char *s = malloc(len + 1);

	if (s == NULL)
		return NULL;
	evbuffer_remove(buf, s, len);
	s[len] = '\0';
	return s;
}

/* Move the header collected in field and value into the request. */
static int
push_header(struct conn *c)
{
	struct mock_request *req = &c->req;
	struct mock_header *h;
	size_t len;

	if (req->n_headers == req->headers_cap) {
		size_t cap = req->headers_cap ? req->headers_cap * 2 : 16;
		struct mock_header *grown = realloc(req->headers, cap * sizeof(*grown));

		if (grown == NULL)
			return -1;
		req->headers = grown;
		req->headers_cap = cap;
	}

	h = &req->headers[req->n_headers];
	h->name = take_string(c->field);
	h->value = take_string(c->value);
	if (h->name == NULL || h->value == NULL) {
		free(h->name);
		free(h->value);
		return -1;
	}
	for (char *p = h->name; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	len = strlen(h->value);
	while (len > 0 && (h->value[len - 1] == ' ' || h->value[len - 1] == '\t'))
		h->value[--len] = '\0';
	req->n_headers++;
	return 0;
}

static int
count_header_bytes(struct conn *c, size_t len)
{
	c->header_bytes += len;
	if (c->header_bytes <= MAX_HEADER_BYTES)
		return 0;
	c->error_status = 431;
	return HPE_USER;
}

static int
on_message_begin(llhttp_t *p)
{
	clear_request(p->data);
	return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;

	if (count_header_bytes(c, len) != 0)
		return HPE_USER;
	return evbuffer_add(c->url, at, len) == 0 ? 0 : -1;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;

	if (count_header_bytes(c, len) != 0)
		return HPE_USER;
	if (c->in_value && push_header(c) < 0)
		return -1;
	c->in_value = 0;
	return evbuffer_add(c->field, at, len) == 0 ? 0 : -1;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;

	if (count_header_bytes(c, len) != 0)
		return HPE_USER;
	c->in_value = 1;
	return evbuffer_add(c->value, at, len) == 0 ? 0 : -1;
}

static int
on_headers_complete(llhttp_t *p)
{
	struct conn *c = p->data;
	const char *expect;

	if (c->in_value && push_header(c) < 0)
		return -1;
	c->in_value = 0;
	c->req.method = strdup(llhttp_method_name(llhttp_get_method(p)));
	c->req.target = take_string(c->url);
	if (c->req.method == NULL || c->req.target == NULL)
		return -1;
	c->http_10 = llhttp_get_http_major(p) == 1 && llhttp_get_http_minor(p) == 0;

	/* curl waits a second for this before sending a body over 1 KiB. */
	expect = mock_request_header(&c->req, "expect");
	if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && !c->http_10)
		bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	return 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;

	if (evbuffer_get_length(c->req.body) + len > MAX_BODY_BYTES) {
		c->error_status = 413;
		return HPE_USER;
	}
	return evbuffer_add(c->req.body, at, len) == 0 ? 0 : -1;
}

/* Pause after each request, so the next one is parsed only once the
 * response to this one is done. */
static int
on_message_complete(llhttp_t *p)
{
	struct conn *c = p->data;

	c->keep_alive = llhttp_should_keep_alive(p);
	return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- response writing ------------------------------------------------ */

static const char *
reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return status < 400 ? "OK" : "Error";
	}
}

static void
clear_plan(struct conn *c)
{
	mock_response_free(c->plan.response);
	c->plan.response = NULL;
	free(c->units);
	c->units = NULL;
	c->n_units = c->next_unit = 0;
	c->unit_due_ns = 0;
	c->body = NULL;
	c->abort_at_end = 0;
	c->stall_at_end = 0;
}

static void
add_unit(struct conn *c, size_t start, size_t end, uint64_t delay_ms)
{
	if (end <= start)       /* an empty chunk would end the body early */
		return;
	c->units[c->n_units].start = start;
	c->units[c->n_units].len = end - start;
	c->units[c->n_units].delay_ms = c->n_units > 0 ? delay_ms : 0;
	c->n_units++;
}

/*
 * Cut the body into units. close_after=K keeps only the first K events;
 * split= cuts at byte offsets of what is kept; otherwise a stream goes out
 * event by event, and any other body goes out with the head (no units).
 */
static int
plan_units(struct conn *c)
{
	struct mock_response *r = c->plan.response;
	const struct mock_options *o = &c->plan.options;
	size_t end = evbuffer_get_length(r->body), start = 0, limit = r->n_events;

	c->body = (const char *)evbuffer_pullup(r->body, -1);
	if (r->stream && o->close_after >= 0) {
		if ((size_t)o->close_after < limit)
			limit = (size_t)o->close_after;
		end = limit == 0 ? 0 : r->event_ends[limit - 1];
		c->abort_at_end = 1;
	} else if (r->stream && o->stall_after >= 0) {
		if ((size_t)o->stall_after < limit)
			limit = (size_t)o->stall_after;
		end = limit == 0 ? 0 : r->event_ends[limit - 1];
		c->stall_at_end = 1;
	}

	c->units = calloc(o->n_split + r->n_events + 1, sizeof(*c->units));
	if (c->units == NULL)
		return -1;

	if (o->n_split > 0) {
		for (size_t i = 0; i < o->n_split && o->split[i] < end; i++) {
			add_unit(c, start, o->split[i], SPLIT_GAP_MS);
			start = o->split[i];
		}
		add_unit(c, start, end, SPLIT_GAP_MS);
	} else if (r->stream) {
		for (size_t k = 0; k < limit; k++) {
			add_unit(c, start, r->event_ends[k], o->event_delay_ms);
			start = r->event_ends[k];
		}
	}
	return 0;
}

/* Copy len bytes to out, replacing each stamp placeholder with the
 * CLOCK_MONOTONIC time in nanoseconds, right-aligned in its width. */
static void
add_stamped(struct evbuffer *out, const char *p, size_t len)
{
	size_t key_len = strlen(MOCK_STAMP_MARK) - MOCK_STAMP_WIDTH;
	struct timespec now;
	const char *hit;

	clock_gettime(CLOCK_MONOTONIC, &now);
	while ((hit = memmem(p, len, MOCK_STAMP_MARK, strlen(MOCK_STAMP_MARK))) != NULL) {
		size_t head = (size_t)(hit - p) + key_len;

		evbuffer_add(out, p, head);
		evbuffer_add_printf(out, "%*llu", MOCK_STAMP_WIDTH,
		                    (unsigned long long)now.tv_sec * 1000000000ull
		                    + (unsigned long long)now.tv_nsec);
		p += head + MOCK_STAMP_WIDTH;
		len -= head + MOCK_STAMP_WIDTH;
	}
	evbuffer_add(out, p, len);
}

static void
write_unit_bytes(struct conn *c, struct evbuffer *out, const struct unit *u)
{
	if (c->chunked)
		evbuffer_add_printf(out, "%zx\r\n", u->len);
	if (c->plan.options.stamp)
		add_stamped(out, c->body + u->start, u->len);
	else
		evbuffer_add(out, c->body + u->start, u->len);
	if (c->chunked)
		evbuffer_add(out, "\r\n", 2);
}

/* Whether the terminating chunk follows the last unit. */
static int
ends_with_terminator(const struct conn *c)
{
	return c->chunked && !c->abort_at_end && !c->stall_at_end;
}

/* The Date header's value for now, formatted once per second. */
static const char *
http_date(struct mock *m)
{
	time_t now = time(NULL);
	struct tm tm;

	if (now != m->date_time) {
		gmtime_r(&now, &tm);
		strftime(m->date, sizeof(m->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		m->date_time = now;
	}
	return m->date;
}

static void
write_head(struct conn *c, struct evbuffer *out)
{
	const struct mock_response *r = c->plan.response;
	const struct mock_options *o = &c->plan.options;
	size_t body_len = evbuffer_get_length(r->body);

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n"
	                    "Server: tollgate-mock\r\nContent-Type: %s\r\n",
	                    r->status, reason_phrase(r->status), http_date(c->m),
	                    r->content_type);
	if (c->chunked)
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
	else if (!r->stream)
		evbuffer_add_printf(out, "Content-Length: %zu\r\n", body_len);
	if (r->stream)
		evbuffer_add_printf(out, "Cache-Control: no-cache\r\n");
	if (o->retry_after[0] != '\0')
		evbuffer_add_printf(out, "Retry-After: %s\r\n", o->retry_after);
	evbuffer_add_printf(out, "X-Request-Id: req-mock-%llu-%llu\r\n",
	                    (unsigned long long)c->number,
	                    (unsigned long long)c->m->response_seq);
	if (!c->keep_alive)
		evbuffer_add_printf(out, "Connection: close\r\n");
	else if (c->http_10)
		evbuffer_add_printf(out, "Connection: keep-alive\r\n");
	evbuffer_add(out, "\r\n", 2);
}

/* Write the next unit; the write callback schedules the one after. */
static void
send_unit(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	write_unit_bytes(c, out, &c->units[c->next_unit++]);
	if (c->next_unit == c->n_units && ends_with_terminator(c))
		evbuffer_add(out, "0\r\n\r\n", 5);
}

/* Write the head to out, and the body too when it goes out with the head. */
static void
send_head(struct conn *c, struct evbuffer *out)
{
	c->phase = PHASE_SENDING;
	write_head(c, out);
	if (!c->plan.response->stream && c->plan.options.n_split == 0)
		evbuffer_add(out, c->body, evbuffer_get_length(c->plan.response->body));
	else if (c->n_units == 0 && ends_with_terminator(c))
		evbuffer_add(out, "0\r\n\r\n", 5);
}

/* Send the head, or with hangup=1 close the connection instead, as an
 * upstream that fails before its response head. Returns -1 when the
 * connection was closed. */
static int
send_head_or_hang_up(struct conn *c)
{
	if (c->plan.options.hangup) {
		if (!c->m->quiet)
			fprintf(stderr, "tollgate-mock: connection %llu: closed "
			        "without answering, as hangup asked\n",
			        (unsigned long long)c->number);
		close_conn(c);
		return -1;
	}
	send_head(c, bufferevent_get_output(c->bev));
	return 0;
}

static void
arm_timer(struct conn *c, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	evtimer_add(c->timer, &tv);
}

static uint64_t
monotonic_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/*
 * Arm the timer of the next unit for delay_ms after the previous one was
 * due. Counted from the write instead (from the loop's cached time), the
 * streams served in one turn of the loop get the same next time, so the
 * events of many streams gather into bursts that only grow. After a write
 * that left more than delay_ms late (a reader holding the socket back),
 * the unit waits delay_ms from now, so no unit follows another early.
 */
static void
arm_unit_timer(struct conn *c, uint64_t delay_ms)
{
	uint64_t now = monotonic_ns(), delay_ns = delay_ms * 1000000u, wait_ns;
	struct timeval tv;

	if (c->unit_due_ns == 0 || now - c->unit_due_ns >= delay_ns)
		c->unit_due_ns = now + delay_ns;
	else
		c->unit_due_ns += delay_ns;
	wait_ns = c->unit_due_ns - now;
	tv.tv_sec = (time_t)(wait_ns / 1000000000u);
	tv.tv_usec = (suseconds_t)(wait_ns % 1000000000u / 1000u);
	event_base_update_cache_time(c->m->base);
	evtimer_add(c->timer, &tv);
}

static void
log_response(const struct conn *c)
{
	const struct mock_response *r = c->plan.response;

	if (c->m->quiet)
		return;
	fprintf(stderr, "tollgate-mock: connection %llu: %s %s -> %d%s\n",
	        (unsigned long long)c->number, c->req.method, c->req.target,
	        r->status, r->stream ? " (stream)" : "");
}

/* Whether the response goes out in one write (no units follow the head)
 * on a plain TCP connection with nothing else waiting to be written. */
static int
sends_at_once(const struct conn *c)
{
	return c->m->ssl_ctx == NULL && c->n_units == 0
	       && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
}

/*
 * Write the whole response to the socket now instead of through the
 * bufferevent. The bufferevent would arm the write event and disarm it
 * after the write, two more system calls per response on the core that
 * bench/ shares with the load generator. What the socket does not take,
 * and a write error, go to the bufferevent as usual. Returns -1 when the
 * connection was closed, 0 otherwise.
 */
static int
send_at_once(struct conn *c)
{
	send_head(c, c->direct);
	(void)evbuffer_write(c->direct, bufferevent_getfd(c->bev));
	if (evbuffer_get_length(c->direct) > 0) {
		evbuffer_add_buffer(bufferevent_get_output(c->bev), c->direct);
		return 0;
	}
	return end_response(c) < 0 ? -1 : 0;
}

/* Plan and start the response to the request just parsed. */
static int
start_response(struct conn *c)
{
	struct mock *m = c->m;
	int counted = mock_request_counted(&c->req);

	/* A connection whose first request is for /_mock/ is left out of the
	 * counters, so polling /_mock/stats does not change them. It is counted
	 * after all if a counted request follows on it. */
	if (c->requests++ == 0 && !counted && c->counted) {
		c->counted = 0;
		if (m->stats.connections_opened > 0)
			m->stats.connections_opened--;
	} else if (counted && !c->counted) {
		c->counted = 1;
		m->stats.connections_opened++;
	}

	if (mock_handle(m, &c->req, &c->plan) < 0 || plan_units(c) < 0) {
		fprintf(stderr, "tollgate-mock: connection %llu: out of memory, "
		        "closing it\n", (unsigned long long)c->number);
		close_conn(c);
		return -1;
	}

	/* HTTP/1.0 has no chunked encoding: a stream ends when we close. */
	c->chunked = c->plan.response->stream && !c->http_10;
	if (c->plan.response->stream && c->http_10)
		c->keep_alive = 0;

	log_response(c);
	if (c->plan.options.first_byte_delay_ms > 0) {
		c->phase = PHASE_DELAY;
		arm_timer(c, c->plan.options.first_byte_delay_ms);
		return 0;
	}
	if (!c->plan.options.hangup && sends_at_once(c))
		return send_at_once(c);
	return send_head_or_hang_up(c);
}

/*
 * Send an error for a request that could not be parsed, then close.
 * NOTE: request bytes still unread at the close make the kernel send a
 * reset, which can discard the error before the client reads it.
 */
static void
reject_request(struct conn *c, int status, const char *message)
{
	c->plan.response = mock_response_new();
	mock_options_init(&c->plan.options);
	c->plan.counted = 0;
	c->keep_alive = 0;
	c->chunked = 0;
	if (c->plan.response == NULL
	    || mock_response_error(c->plan.response, status,
	                           "invalid_request_error", NULL, NULL, message) < 0
	    || plan_units(c) < 0) {
		close_conn(c);
		return;
	}
	if (!c->m->quiet)
		fprintf(stderr, "tollgate-mock: connection %llu: rejected request: "
		        "%s\n", (unsigned long long)c->number, message);
	send_head(c, bufferevent_get_output(c->bev));
}

/*
 * Count a response whose last byte has left, and close the connection or
 * make it ready for the next request. Returns 1 when it is ready, 0 when
 * it stays open but silent (stall_after), -1 when it was closed.
 */
static int
end_response(struct conn *c)
{
	int keep_alive = c->keep_alive;

	if (c->abort_at_end) {
		close_conn(c);
		return -1;
	}
	if (c->stall_at_end)
		return 0;       /* the peer's close or the mock's exit ends it */
	if (c->plan.counted)
		c->m->stats.responses_completed++;
	c->reset_next = c->plan.options.reset_next;
	clear_plan(c);
	c->phase = PHASE_READING;

	if (!keep_alive) {
		close_conn(c);
		return -1;
	}
	return 1;
}

static void
finish_response(struct conn *c)
{
	if (end_response(c) > 0)
		process_input(c);
}

/* ---- connection events ----------------------------------------------- */

static void
process_input(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	while (c->phase == PHASE_READING && evbuffer_get_length(in) > 0) {
		size_t n = evbuffer_get_contiguous_space(in);
		const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
		llhttp_errno_t err;

		if (c->reset_next) {
			if (!c->m->quiet)
				fprintf(stderr, "tollgate-mock: connection %llu: closed on "
				        "the next request, as reset_next asked\n",
				        (unsigned long long)c->number);
			close_conn(c);
			return;
		}

		err = llhttp_execute(&c->parser, data, n);
		if (err == HPE_OK) {
			evbuffer_drain(in, n);
			continue;
		}
		if (err == HPE_PAUSED) {
			evbuffer_drain(in, (size_t)(llhttp_get_error_pos(&c->parser) - data));
			llhttp_resume(&c->parser);
			if (start_response(c) < 0)
				return;
			continue;
		}

		evbuffer_drain(in, evbuffer_get_length(in));
		if (c->error_status == 431)
			reject_request(c, 431, "The request head is over 64 KiB.");
		else if (c->error_status == 413)
			reject_request(c, 413, "The request body is over 64 MiB.");
		else
			reject_request(c, 400, llhttp_get_error_reason(&c->parser));
		return;
	}
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	process_input(arg);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	uint64_t delay;

	(void)bev;
	if (c->phase != PHASE_SENDING)
		return;
	if (c->next_unit == c->n_units) {
		finish_response(c);
		return;
	}

	delay = c->units[c->next_unit].delay_ms;
	if (delay > 0)
		arm_unit_timer(c, delay);
	else
		send_unit(c);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->phase == PHASE_DELAY)
		send_head_or_hang_up(c);
	else if (c->phase == PHASE_SENDING)
		send_unit(c);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	struct mock_stats *s = &c->m->stats;
	int aborted;

	(void)bev;
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;

	aborted = c->phase != PHASE_READING && c->plan.counted;
	if (c->counted)
		s->connections_closed_by_peer++;
	if (aborted)
		s->responses_aborted++;
	if (aborted && !c->m->quiet)
		fprintf(stderr, "tollgate-mock: connection %llu: peer closed the "
		        "connection before the response was complete\n",
		        (unsigned long long)c->number);
	close_conn(c);
}

static void
close_conn(struct conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (c->m->connections == c)
		c->m->connections = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;

	clear_plan(c);
	clear_request(c);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->req.body != NULL)
		evbuffer_free(c->req.body);
	if (c->url != NULL)
		evbuffer_free(c->url);
	if (c->field != NULL)
		evbuffer_free(c->field);
	if (c->value != NULL)
		evbuffer_free(c->value);
	if (c->direct != NULL)
		evbuffer_free(c->direct);
	free(c->req.headers);
	free(c);
}

static struct bufferevent *
new_bufferevent(struct mock *m, evutil_socket_t fd)
{
	struct bufferevent *bev;
	SSL *ssl;

	if (m->ssl_ctx == NULL)
		return bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);

	ssl = SSL_new(m->ssl_ctx);
	if (ssl == NULL)
		return NULL;
	bev = bufferevent_openssl_socket_new(m->base, fd, ssl,
	                                     BUFFEREVENT_SSL_ACCEPTING,
	                                     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	/* Clients often close without close_notify; that is an EOF too. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

void
conn_accept(struct mock *m, evutil_socket_t fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (c == NULL)
		goto fail;
	c->m = m;
	c->req.body = evbuffer_new();
	c->url = evbuffer_new();
	c->field = evbuffer_new();
	c->value = evbuffer_new();
	c->direct = evbuffer_new();
	if (c->req.body == NULL || c->url == NULL || c->field == NULL
	    || c->value == NULL || c->direct == NULL)
		goto fail;

	c->bev = new_bufferevent(m, fd);
	if (c->bev == NULL)
		goto fail;
	c->timer = evtimer_new(m->base, on_timer, c);
	if (c->timer == NULL)
		goto fail_bev;

	c->number = ++m->connection_seq;
	c->counted = 1;
	m->stats.connections_opened++;
	c->req.connection = c->number;
	llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
	c->parser.data = c;
	c->next = m->connections;
	if (c->next != NULL)
		c->next->prev = c;
	m->connections = c;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return;

fail:
	evutil_closesocket(fd);
fail_bev:
	fprintf(stderr, "tollgate-mock: out of memory accepting a connection\n");
	if (c != NULL)
		close_conn(c);
}

void
conn_close_all(struct mock *m)
{
	while (m->connections != NULL)
		close_conn(m->connections);
}
