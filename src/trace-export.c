/*
 * The exporter thread: batching, OTLP/HTTP requests, retries.
 *
 * Spans move in one direction: worker -> queue -> send list (and ring) ->
 * one export in flight -> freed. The atomic counter "queued", which a
 * worker increments before pushing, keeps the spans of the queue and the
 * send list together at or below max_queue_size. The batch in flight no
 * longer counts, as in the OpenTelemetry SDK.
 *
 * Exports go over one keep-alive connection, plain or TLS. A connection
 * that closed or failed is not used again. libevent would reconnect it
 * over the same bufferevent, and so the same SSL object, which must then
 * start a new session on a new socket. That works with the libevent 2.1.12
 * used here, but configure accepts any 2.1 release, so the next attempt
 * makes a new connection with a new SSL instead. The old one is freed
 * from an event of its own, because it may close inside one of its
 * callbacks.
 *
 * NOTE: with libevent 2.1.12 the reconnect tests also pass when the closed
 * connection is reused, so no test here shows what this guards against.
 */
#include "clock.h"
#include "autoconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/rand.h>

#include "config.h"
#include "log.h"
#include "tls.h"
#include "trace-body.h"
#include "trace-context.h"
#include "trace-export.h"
#include "trace-otlp.h"
#include "trace-otlp-proto.h"
#include "trace-otlp-reply.h"
#include "trace-queue.h"
#include "trace-retry.h"
#include "trace-ring.h"
#include "trace-span.h"

/* How often the thread moves spans from the queue to the send list and
 * the ring, so that GET /api/traces shows a trace soon after it ended. */
#define TICK_MS 100

/* Repeated warnings (drops, failing exports) at most this often. */
#define WARN_INTERVAL_MS 10000

/* Room for why an attempt failed, OpenSSL's reason included. */
#define FAILURE_LEN 320

/* The largest response body the exporter reads. An OTLP response is an
 * ExportTraceServiceResponse of a few bytes, or an error status with a
 * short message. libevent reads a body into memory whole, so the bound
 * keeps a faulty receiver from making the exporter take more. */
#define RESPONSE_BODY_MAX (64 * 1024)

/* One connection to the endpoint, with what it was made for. */
struct endpoint_conn {
	struct evhttp_connection *evcon;
	char *host, *port;
	SSL_CTX *tls;                   /* a reference, or NULL for http:// */
	int closed;                     /* closed or failed: never used again */
	struct endpoint_conn *next;     /* in the tracer's retired list */
};

/* One batch being sent, with its attempts. */
struct export {
	struct tg_tracer *tracer;
	struct tg_span **spans;
	size_t n_spans;
	struct tg_export_body *body;    /* the tracer's, lent to each attempt */
	unsigned attempt;               /* 1 for the first */
	uint64_t deadline_ms;           /* monotonic; no attempt after it */
	struct evhttp_request *request; /* the attempt in flight, or NULL */
	struct event *timer;            /* retry delay, or the attempt's deadline */
	uint64_t attempt_timeout_ms;    /* what the attempt in flight was given */
	int timed_out;
	int connect_timed_out;          /* the deadline came before the connect */
	int too_large;                  /* the response body passed RESPONSE_BODY_MAX */
	char failure[FAILURE_LEN];      /* why the last attempt failed, or "" */
};

struct tg_tracer {
	/* Shared with the workers. */
	struct tg_span_queue queue;
	size_t max_queue;
	atomic_size_t queued;
	atomic_uint_fast64_t spans_dropped;
	atomic_uint_fast64_t spans_exported;
	atomic_uint_fast64_t spans_failed;
	atomic_uint_fast64_t export_requests;

	/* Shared with the admin thread, under ring.lock. */
	struct tg_trace_ring ring;
	char *service_name;
	char instance_id[37];

	/* The exporter thread's own. */
	pthread_t thread;
	int started;
	struct event_base *base;
	struct event *tick;
	struct tg_config *config;
	const struct tg_tracing_config *tracing;        /* config->tracing */
	struct tg_span *send_head, *send_tail;
	size_t n_send;
	struct export *export;          /* in flight, or NULL */
	/* The request body of the export in flight. It is kept between
	 * exports, so its memory grows to a batch's size only once, unless
	 * libevent still reads the last one when the next export starts. */
	struct tg_export_body *body;
	struct endpoint_conn *conn;     /* the current one, or NULL */
	struct endpoint_conn *retired;  /* to free from the reaper event */
	struct event *reaper;
	uint64_t next_export_ms;
	int stopping;
	uint64_t stop_deadline_ms;
	struct event *stop_timer;
	uint64_t failed_before_stop;    /* spans_failed when stopping began */

	/* Warnings, rate-limited. */
	uint64_t dropped_reported;
	uint64_t last_drop_warning_ms;
	int failing;                    /* the last export failed */
	uint64_t failed_exports_in_row;
};

static void export_send(struct export *e);
static void tracer_maybe_finish(struct tg_tracer *t);


static double
random_unit(void)
{
	uint32_t r;

	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		return 0.5;
	return (double)r / 4294967296.0;
}

/* A random UUID (version 4) that names this process in service.instance.id. */
static void
make_instance_id(char out[37])
{
	uint8_t b[16];
	char hex[33];

	tg_id_random(b, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	tg_hex_encode(hex, b, sizeof(b));
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
	         hex + 16, hex + 20);
}

/* --- workers' side ------------------------------------------------------- */

static void
count_drop(struct tg_tracer *t, struct tg_span *span)
{
	atomic_fetch_add_explicit(&t->spans_dropped, 1, memory_order_relaxed);
	tg_span_free(span);
}

int
tg_tracer_submit(struct tg_tracer *t, struct tg_span *span)
{
	if (atomic_fetch_add_explicit(&t->queued, 1, memory_order_relaxed) >= t->max_queue) {
		atomic_fetch_sub_explicit(&t->queued, 1, memory_order_relaxed);
		count_drop(t, span);
		return -1;
	}
	if (tg_span_queue_push(&t->queue, span) != 0) {
		/* Cannot happen while "queued" bounds the ring; kept as a
		 * drop rather than an assertion, since losing a span is
		 * harmless. */
		atomic_fetch_sub_explicit(&t->queued, 1, memory_order_relaxed);
		count_drop(t, span);
		return -1;
	}
	return 0;
}

void
tg_tracer_stats(struct tg_tracer *t, struct tg_tracer_stats *out)
{
	out->spans_queued = atomic_load(&t->queued);
	out->spans_dropped = atomic_load(&t->spans_dropped);
	out->spans_exported = atomic_load(&t->spans_exported);
	out->spans_failed = atomic_load(&t->spans_failed);
	out->export_requests = atomic_load(&t->export_requests);
}

/* --- the send list ------------------------------------------------------- */

static void
send_list_append(struct tg_tracer *t, struct tg_span *span)
{
	span->next = NULL;
	if (t->send_tail != NULL)
		t->send_tail->next = span;
	else
		t->send_head = span;
	t->send_tail = span;
	t->n_send++;
}

static struct tg_span *
send_list_take(struct tg_tracer *t)
{
	struct tg_span *span = t->send_head;

	t->send_head = span->next;
	if (t->send_head == NULL)
		t->send_tail = NULL;
	t->n_send--;
	span->next = NULL;
	return span;
}

/* Spans moved from the queue to the ring under one lock of the ring: a
 * lock and an unlock per span cost about 90 instructions. */
#define DRAIN_BATCH 64

/* Move every queued span to the ring, and to the send list when there is
 * an endpoint. Without an endpoint, the ring is the only place spans go. */
static void
drain_queue(struct tg_tracer *t)
{
	struct tg_span *batch[DRAIN_BATCH];
	size_t n;

	do {
		for (n = 0; n < DRAIN_BATCH; n++) {
			batch[n] = tg_span_queue_pop(&t->queue);
			if (batch[n] == NULL)
				break;
			batch[n]->refs = 1;
		}
		tg_trace_ring_add_spans(&t->ring, batch, n);
		for (size_t i = 0; i < n; i++) {
			if (t->tracing->endpoint != NULL) {
				send_list_append(t, batch[i]);
			} else {
				atomic_fetch_sub_explicit(&t->queued, 1, memory_order_relaxed);
				tg_span_unref(batch[i]);
			}
		}
	} while (n == DRAIN_BATCH);
}

/* --- exports ------------------------------------------------------------- */

static void
export_free(struct export *e)
{
	for (size_t i = 0; i < e->n_spans; i++)
		tg_span_unref(e->spans[i]);
	if (e->timer != NULL)
		event_free(e->timer);
	free(e->spans);
	free(e);
}

static void
warn_failure(struct tg_tracer *t, struct export *e, const char *why)
{
	t->failed_exports_in_row++;
	if (t->failing)
		return;
	t->failing = 1;
	tg_warn("OTLP export of %zu spans to %s failed: %s; later failures are "
	        "logged once exports work again", e->n_spans, t->tracing->endpoint, why);
}

static void
export_succeeded(struct tg_tracer *t, struct export *e)
{
	atomic_fetch_add_explicit(&t->spans_exported, e->n_spans, memory_order_relaxed);
	if (t->failing) {
		tg_info("OTLP exports to %s work again after %" PRIu64 " failed export%s",
		        t->tracing->endpoint, t->failed_exports_in_row,
		        t->failed_exports_in_row == 1 ? "" : "s");
		t->failing = 0;
		t->failed_exports_in_row = 0;
	}
}

/* The export is over, for good: account for it and start the next. */
static void
export_finish(struct tg_tracer *t, struct export *e, int ok, const char *why)
{
	if (ok) {
		export_succeeded(t, e);
	} else {
		atomic_fetch_add_explicit(&t->spans_failed, e->n_spans, memory_order_relaxed);
		warn_failure(t, e, why);
	}
	t->export = NULL;
	export_free(e);
	tracer_maybe_finish(t);
}

/* Copy the len bytes of an endpoint's message into out, of size bytes,
 * with control bytes as '?', so that one log line stays one line. */
static void
printable_message(const char *message, size_t len, char *out, size_t size)
{
	size_t n = len < size - 1 ? len : size - 1;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)message[i];

		out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	out[n] = '\0';
}

/* A 2xx response may still report spans the endpoint rejected. OTLP says
 * not to send them again, but the reason is worth a warning. The response
 * comes in the encoding of the request; its own Content-Type decides. */
static void
check_partial_success(struct tg_tracer *t, struct export *e, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *type = evhttp_find_header(evhttp_request_get_input_headers(req),
	                                      "Content-Type");
	char message_buf[TG_OTLP_REPLY_MESSAGE_MAX];
	char message[TG_OTLP_REPLY_MESSAGE_MAX + 1];
	struct tg_otlp_partial partial;

	if (len == 0)
		return;
	if (tg_otlp_reply_read(type != NULL ? type : e->body->content_type,
	                       evbuffer_pullup(in, -1), len, message_buf, &partial) != 0 ||
	    partial.rejected_spans <= 0)
		return;
	printable_message(partial.message, partial.message_len, message, sizeof(message));
	tg_warn("OTLP endpoint %s rejected %" PRId64 " spans: %s", t->tracing->endpoint,
	        partial.rejected_spans, message[0] != '\0' ? message : "no reason given");
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	export_send(arg);
}

/* Judge one attempt: done, retry later, or give up. */
static void
attempt_ended(struct export *e, const struct tg_export_result *result)
{
	struct tg_tracer *t = e->tracer;
	const struct tg_tracing_config *tc = t->tracing;
	struct tg_retry_policy_params policy = {
		.max_attempts = t->stopping ? 1 : (unsigned)tc->max_attempts,
		.initial_backoff_ms = tc->initial_backoff,
		.max_backoff_ms = tc->max_backoff,
	};
	uint64_t now = tg_now_ms();
	uint64_t delay;
	char why[FAILURE_LEN + 32];

	if (result->status >= 200 && result->status < 300) {
		export_finish(t, e, 1, NULL);
		return;
	}

	if (result->timed_out && e->connect_timed_out)
		snprintf(why, sizeof(why), "the connection timed out: not connected after %"
		         PRIu64 " ms", e->attempt_timeout_ms);
	else if (result->timed_out)
		snprintf(why, sizeof(why), "no response within %" PRIu64 " ms",
		         e->attempt_timeout_ms);
	else if (result->status == 0)
		snprintf(why, sizeof(why), "%s", e->failure[0] ? e->failure : "connection failed");
	else
		snprintf(why, sizeof(why), "HTTP status %d", result->status);

	if (!tg_export_retry_decide(&policy, e->attempt, result,
	                            e->deadline_ms > now ? e->deadline_ms - now : 0,
	                            time(NULL), random_unit(), &delay)) {
		export_finish(t, e, 0, why);
		return;
	}

	struct timeval tv = tg_timeval_ms(delay);

	tg_debug("OTLP export attempt %u to %s failed (%s); retrying in %" PRIu64 " ms",
	         e->attempt, tc->endpoint, why, delay);
	e->attempt++;
	evtimer_assign(e->timer, t->base, retry_cb, e);
	evtimer_add(e->timer, &tv);
}

static void
request_error_cb(enum evhttp_request_error error, void *arg)
{
	struct export *e = arg;

	if (error == EVREQ_HTTP_TIMEOUT)
		e->timed_out = 1;
	else if (error == EVREQ_HTTP_DATA_TOO_LONG)
		e->too_large = 1;
}

/* Note why the attempt on c failed without a response: OpenSSL's reason
 * when it recorded one. errno is not used, because after a plain EOF it
 * may be left over from an earlier call. */
static void
describe_failure(struct export *e, struct endpoint_conn *c)
{
	if (c->tls != NULL &&
	    tg_tls_session_error(evhttp_connection_get_bufferevent(c->evcon), e->failure,
	                         sizeof(e->failure)) != NULL)
		return;
	snprintf(e->failure, sizeof(e->failure), "connection failed");
}

static void
request_done_cb(struct evhttp_request *req, void *arg)
{
	struct export *e = arg;
	struct tg_tracer *t = e->tracer;
	struct tg_export_result result = { .timed_out = e->timed_out };
	char *retry_after = NULL;

	evtimer_del(e->timer);
	e->request = NULL;
	if (req != NULL) {
		const char *value = evhttp_find_header(evhttp_request_get_input_headers(req),
		                                       "Retry-After");

		result.status = evhttp_request_get_response_code(req);
		if (value != NULL)
			retry_after = strdup(value);
		if (result.status >= 200 && result.status < 300)
			check_partial_success(t, e, req);
	}
	/* No response: the connection failed, and with it its SSL. */
	if (result.status == 0 && t->conn != NULL) {
		describe_failure(e, t->conn);
		t->conn->closed = 1;
	}
	if (result.status == 0 && e->too_large)
		snprintf(e->failure, sizeof(e->failure), "the response body is larger than %d bytes",
		         RESPONSE_BODY_MAX);
	result.retry_after = retry_after;
	attempt_ended(e, &result);
	free(retry_after);
}

/* Whether c's socket has connected to the endpoint. A socket still
 * connecting has no peer yet. */
static int
connection_established(const struct endpoint_conn *c)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	evutil_socket_t fd;

	if (c == NULL)
		return 0;
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(c->evcon));
	return fd >= 0 && getpeername(fd, (struct sockaddr *)&peer, &len) == 0;
}

/* The attempt ran past the export's deadline: cancel it. libevent calls no
 * callback for a cancelled request, so the outcome is judged here. */
static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct export *e = arg;
	struct tg_export_result result = { .timed_out = 1 };

	(void)fd;
	(void)what;
	if (e->request != NULL) {
		/* Asked before the cancel, which closes the socket. */
		e->connect_timed_out = !connection_established(e->tracer->conn);
		evhttp_cancel_request(e->request);
		e->request = NULL;
		/* Cancelling reset the connection. */
		if (e->tracer->conn != NULL)
			e->tracer->conn->closed = 1;
	}
	attempt_ended(e, &result);
}

static void
connection_free(struct endpoint_conn *c)
{
	if (c->evcon != NULL)
		evhttp_connection_free(c->evcon);
	SSL_CTX_free(c->tls);
	free(c->host);
	free(c->port);
	free(c);
}

static void
free_retired(struct tg_tracer *t)
{
	while (t->retired != NULL) {
		struct endpoint_conn *c = t->retired;

		t->retired = c->next;
		connection_free(c);
	}
}

static void
reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	free_retired(arg);
}

/* Stop using the current connection. It may be inside one of its own
 * callbacks, so the reaper event frees it once they have returned. */
static void
retire_connection(struct tg_tracer *t)
{
	if (t->conn == NULL)
		return;
	t->conn->next = t->retired;
	t->retired = t->conn;
	t->conn = NULL;
	event_active(t->reaper, EV_TIMEOUT, 0);
}

/* libevent calls this when the endpoint or tollgate closes a connection
 * that was open, idle or not. It may also run inside
 * evhttp_connection_free, so it only marks the connection. */
static void
connection_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct endpoint_conn *c = arg;

	(void)evcon;
	c->closed = 1;
}

/* A bufferevent that speaks TLS to the endpoint, with a new SSL that
 * verifies it; NULL when out of memory. */
static struct bufferevent *
tls_bufferevent(struct tg_tracer *t)
{
	const struct tg_tracing_config *tc = t->tracing;
	SSL *ssl = tg_tls_client_ssl(tc->tls_ctx, tc->endpoint_host, tc->tls.verify);
	struct bufferevent *bev;

	if (ssl == NULL)
		return NULL;
	bev = bufferevent_openssl_socket_new(t->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	/* Collectors may close without a TLS close_notify, so the HTTP
	 * framing decides whether a response was complete. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* A new connection to the endpoint of the current settings, not yet
 * connected; NULL when out of memory. */
static struct endpoint_conn *
connection_new(struct tg_tracer *t)
{
	const struct tg_tracing_config *tc = t->tracing;
	struct endpoint_conn *c = calloc(1, sizeof(*c));
	struct bufferevent *bev = NULL;

	if (c == NULL)
		return NULL;
	c->host = strdup(tc->endpoint_host);
	c->port = strdup(tc->endpoint_port);
	if (c->host == NULL || c->port == NULL)
		goto fail;
	if (tc->tls_ctx != NULL) {
		bev = tls_bufferevent(t);
		if (bev == NULL)
			goto fail;
		SSL_CTX_up_ref(tc->tls_ctx);
		c->tls = tc->tls_ctx;
	}

	/* With bev NULL libevent makes a plain socket bufferevent. It takes
	 * ours only when it succeeds (libevent 2.1.12). */
	c->evcon = evhttp_connection_base_bufferevent_new(t->base, NULL, bev, c->host,
	                                                  (unsigned short)atoi(c->port));
	if (c->evcon == NULL) {
		if (bev != NULL)
			bufferevent_free(bev);
		goto fail;
	}
	/* Retries are this file's business, with their own policy. */
	evhttp_connection_set_retries(c->evcon, 0);
	evhttp_connection_set_max_body_size(c->evcon, RESPONSE_BODY_MAX);
	evhttp_connection_set_closecb(c->evcon, connection_closed_cb, c);
	return c;

fail:
	connection_free(c);
	return NULL;
}

/* The connection for the next attempt: the current one while it is open
 * and made for the current endpoint and TLS context, else a new one.
 * Holding a reference on the context keeps its address from being reused
 * by the context of a later config. */
static struct evhttp_connection *
endpoint_connection(struct tg_tracer *t)
{
	const struct tg_tracing_config *tc = t->tracing;
	struct endpoint_conn *c = t->conn;

	if (c != NULL && !c->closed && strcmp(c->host, tc->endpoint_host) == 0 &&
	    strcmp(c->port, tc->endpoint_port) == 0 && c->tls == tc->tls_ctx)
		return c->evcon;

	retire_connection(t);
	t->conn = connection_new(t);
	return t->conn != NULL ? t->conn->evcon : NULL;
}

static int
add_request_headers(struct tg_tracer *t, struct evhttp_request *req,
                    const struct tg_export_body *body)
{
	const struct tg_tracing_config *tc = t->tracing;
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	char host[300];
	int rc = 0;

	if (strchr(tc->endpoint_host, ':') != NULL)    /* an IPv6 address */
		snprintf(host, sizeof(host), "[%s]:%s", tc->endpoint_host, tc->endpoint_port);
	else
		snprintf(host, sizeof(host), "%s:%s", tc->endpoint_host, tc->endpoint_port);
	rc |= evhttp_add_header(headers, "Host", host);
	rc |= evhttp_add_header(headers, "Content-Type", body->content_type);
	rc |= evhttp_add_header(headers, "User-Agent", "tollgate/" PACKAGE_VERSION);
	for (size_t i = 0; i < tc->n_headers; i++)
		rc |= evhttp_add_header(headers, tc->headers[i].name, tc->headers[i].value);
	return rc;
}

/* Send the next attempt of e. */
static void
export_send(struct export *e)
{
	struct tg_tracer *t = e->tracer;
	uint64_t now = tg_now_ms();
	struct tg_export_result failed = { .status = 0 };
	struct evhttp_connection *conn;
	struct evhttp_request *req;
	struct timeval tv;

	if (now >= e->deadline_ms) {
		export_finish(t, e, 0, "export timeout reached before the attempt");
		return;
	}
	/* A retry, or an export at shutdown, gets what is left of the
	 * export's time, which may be less than tracing.otlp.timeout. */
	e->attempt_timeout_ms = e->deadline_ms - now;
	tv = tg_timeval_ms(e->attempt_timeout_ms);
	e->timed_out = 0;
	e->connect_timed_out = 0;
	e->too_large = 0;
	e->failure[0] = '\0';

	conn = endpoint_connection(t);
	req = conn ? evhttp_request_new(request_done_cb, e) : NULL;
	if (req == NULL) {
		attempt_ended(e, &failed);
		return;
	}
	evhttp_request_set_error_cb(req, request_error_cb);
	/* libevent's own timeout comes a second after deadline_cb, which can
	 * still tell a connect that timed out from a response that did not
	 * come (libevent reports both alike, or not at all). */
	evhttp_connection_set_timeout_tv(conn, &(struct timeval){tv.tv_sec + 1, tv.tv_usec});
	if (add_request_headers(t, req, e->body) != 0 ||
	    tg_export_body_lend(e->body, evhttp_request_get_output_buffer(req)) != 0) {
		evhttp_request_free(req);
		attempt_ended(e, &failed);
		return;
	}

	atomic_fetch_add_explicit(&t->export_requests, 1, memory_order_relaxed);
	/* No callback follows a failure here (no socket could be made), so
	 * the attempt is judged at once. */
	if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, t->tracing->endpoint_path) != 0) {
		attempt_ended(e, &failed);
		return;
	}
	e->request = req;
	evtimer_assign(e->timer, t->base, deadline_cb, e);
	evtimer_add(e->timer, &tv);
}

static void
resource_of(struct tg_tracer *t, struct tg_otlp_resource *r)
{
	r->service_name = t->tracing->service_name;
	r->service_version = PACKAGE_VERSION;
	r->instance_id = t->instance_id;
}

/* Empty the tracer's body for the next export. A body that a buffer
 * still reads (of a request that was cut short) is left to that buffer,
 * and a new one takes its place. Returns 0, or -1 when out of memory. */
static int
fresh_body(struct tg_tracer *t)
{
	if (t->body != NULL && !tg_export_body_lent(t->body)) {
		tg_json_writer_reset(&t->body->text);
		return 0;
	}
	tg_export_body_release(t->body);
	t->body = tg_export_body_new();
	return t->body != NULL ? 0 : -1;
}

/* Encode the spans of e into the tracer's body in the configured
 * protocol. The body keeps its Content-Type for the retries, because a
 * reload may change the protocol meanwhile. Returns 0, or -1 when out of
 * memory. */
static int
encode_batch(struct tg_tracer *t, struct export *e)
{
	struct tg_export_body *body;
	struct tg_otlp_resource resource;

	if (fresh_body(t) != 0)
		return -1;
	body = t->body;
	resource_of(t, &resource);
	if (t->tracing->protocol == TG_OTLP_HTTP_JSON) {
		body->start = 0;
		body->content_type = "application/json";
		tg_otlp_write(&body->text, e->spans, e->n_spans, &resource);
	} else {
		body->content_type = "application/x-protobuf";
		body->start = tg_otlp_proto_write(&body->text, e->spans, e->n_spans, &resource);
	}
	return body->text.failed ? -1 : 0;
}

/* Take up to one batch off the send list and send it. */
static void
export_start(struct tg_tracer *t)
{
	const struct tg_tracing_config *tc = t->tracing;
	size_t n = t->n_send < tc->max_export_batch_size ? t->n_send : tc->max_export_batch_size;
	struct export *e = calloc(1, sizeof(*e));

	if (e != NULL) {
		/* Not zeroed, since the loop below fills it. n is at most
		 * max_export_batch_size, which the configuration bounds to
		 * 2^20, so the product cannot overflow. */
		e->spans = malloc(n * sizeof(*e->spans));
		e->timer = evtimer_new(t->base, deadline_cb, e);
	}
	if (e == NULL || e->spans == NULL || e->timer == NULL) {
		if (e != NULL)
			export_free(e);
		return;         /* out of memory: try again at the next tick */
	}

	for (size_t i = 0; i < n; i++)
		e->spans[e->n_spans++] = send_list_take(t);
	atomic_fetch_sub_explicit(&t->queued, n, memory_order_relaxed);

	e->tracer = t;
	e->attempt = 1;
	e->deadline_ms = tg_now_ms() + (t->stopping && t->stop_deadline_ms < tg_now_ms() + tc->export_timeout
	                             ? t->stop_deadline_ms - tg_now_ms() : tc->export_timeout);
	if (encode_batch(t, e) != 0) {
		atomic_fetch_add_explicit(&t->spans_failed, e->n_spans, memory_order_relaxed);
		tg_warn("cannot encode %zu spans for export: out of memory", e->n_spans);
		export_free(e);
		return;
	}
	e->body = t->body;
	t->export = e;
	export_send(e);
}

/* Export when a batch is full, the schedule delay has passed, or the
 * tracer is stopping; never with an export in flight. */
static void
maybe_export(struct tg_tracer *t)
{
	uint64_t now = tg_now_ms();

	if (t->export != NULL || t->n_send == 0)
		return;
	if (!t->stopping && t->n_send < t->tracing->max_export_batch_size &&
	    now < t->next_export_ms)
		return;
	t->next_export_ms = now + t->tracing->schedule_delay;
	export_start(t);
}

/* Warn of the spans dropped since the last warning, at most once per
 * WARN_INTERVAL_MS unless final. The final call, at shutdown, reports the
 * rest, so the warnings add up to tollgate_spans_dropped_total. */
static void
warn_drops(struct tg_tracer *t, int final)
{
	uint64_t dropped = atomic_load(&t->spans_dropped);
	uint64_t now = tg_now_ms();

	if (dropped == t->dropped_reported)
		return;
	if (!final && now - t->last_drop_warning_ms < WARN_INTERVAL_MS)
		return;
	tg_warn("tracing queue full (tracing.batch.max_queue_size = %zu): %" PRIu64
	        " spans dropped since the last warning, %" PRIu64 " since start",
	        t->max_queue, dropped - t->dropped_reported, dropped);
	t->dropped_reported = dropped;
	t->last_drop_warning_ms = now;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_tracer *t = arg;

	(void)fd;
	(void)what;
	drain_queue(t);
	maybe_export(t);
	warn_drops(t, 0);
}

/* --- configuration ------------------------------------------------------- */

static void
set_service_name(struct tg_tracer *t, const char *name)
{
	char *copy = strdup(name);

	if (copy == NULL)
		return;
	pthread_mutex_lock(&t->ring.lock);
	free(t->service_name);
	t->service_name = copy;
	pthread_mutex_unlock(&t->ring.lock);
}

/* Exporter thread (or before it starts): switch to cfg, which the caller
 * has taken a reference on for the tracer. */
static void
apply_config(struct tg_tracer *t, struct tg_config *cfg)
{
	const struct tg_tracing_config *tc = cfg->tracing;
	struct timeval tick = tg_timeval_ms(TICK_MS);

	if (tc->max_queue_size != t->max_queue)
		tg_warn("reload: tracing.batch.max_queue_size changed; it takes effect "
		        "after a restart");
	if (t->config != NULL)
		tg_config_unref(t->config);
	t->config = cfg;
	t->tracing = tc;
	set_service_name(t, tc->service_name);
	if (t->next_export_ms > tg_now_ms() + tc->schedule_delay)
		t->next_export_ms = tg_now_ms() + tc->schedule_delay;     /* a shorter delay */
	tg_trace_ring_resize(&t->ring, tc->recent_traces);

	/* Without tracing there is nothing to move, but spans submitted under
	 * the previous snapshot are still sent by the last ticks. */
	if (t->tick != NULL &&
	    (tc->enabled || t->n_send > 0 || tg_span_queue_length(&t->queue) > 0))
		evtimer_add(t->tick, &tick);
}

struct config_message {
	struct tg_tracer *tracer;
	struct tg_config *config;
};

static void
config_cb(evutil_socket_t fd, short what, void *arg)
{
	struct config_message *msg = arg;

	(void)fd;
	(void)what;
	drain_queue(msg->tracer);       /* under the settings they were made for */
	apply_config(msg->tracer, msg->config);
	free(msg);
}

static int make_loop(struct tg_tracer *t);

/* Main thread, while the exporter has no loop: switch to cfg at once, and
 * start the loop when cfg turns tracing on. */
static void
apply_config_unstarted(struct tg_tracer *t, struct tg_config *cfg)
{
	if (!cfg->tracing->enabled) {
		apply_config(t, tg_config_ref(cfg));
		return;
	}
	if (make_loop(t) != 0)
		return;
	apply_config(t, tg_config_ref(cfg));
	tg_tracer_start(t);
}

void
tg_tracer_post_config(struct tg_tracer *t, struct tg_config *cfg)
{
	struct config_message *msg;

	if (t->base == NULL) {
		apply_config_unstarted(t, cfg);
		return;
	}
	msg = malloc(sizeof(*msg));
	if (msg == NULL)
		return;
	msg->tracer = t;
	msg->config = tg_config_ref(cfg);
	if (event_base_once(t->base, -1, EV_TIMEOUT, config_cb, msg, NULL) != 0) {
		tg_config_unref(cfg);
		free(msg);
	}
}

/* --- life cycle ---------------------------------------------------------- */

/*
 * Make the exporter's event loop. It is made only once tracing is on: with
 * tracing off the loop would have nothing to do, yet take descriptors (its
 * epoll and notification pipe) and a thread. Returns 0, or -1 after
 * logging why, with no loop made.
 */
static int
make_loop(struct tg_tracer *t)
{
	t->base = event_base_new();
	t->tick = t->base ? event_new(t->base, -1, EV_PERSIST, tick_cb, t) : NULL;
	t->reaper = t->base ? event_new(t->base, -1, 0, reaper_cb, t) : NULL;
	if (t->tick != NULL && t->reaper != NULL)
		return 0;

	tg_error("cannot set up the tracing exporter's event loop");
	if (t->tick != NULL)
		event_free(t->tick);
	if (t->base != NULL)
		event_base_free(t->base);
	t->tick = NULL;
	t->base = NULL;
	return -1;
}

struct tg_tracer *
tg_tracer_new(struct tg_config *cfg)
{
	struct tg_tracer *t = calloc(1, sizeof(*t));
	size_t max_queue = cfg->tracing->max_queue_size;

	if (t == NULL)
		goto oom;
	if (tg_span_queue_init(&t->queue, max_queue) != 0) {
		free(t);
		goto oom;
	}
	if (tg_trace_ring_init(&t->ring, 0) != 0) {
		tg_span_queue_free(&t->queue);
		free(t);
		goto oom;
	}
	t->max_queue = max_queue;
	make_instance_id(t->instance_id);
	t->next_export_ms = UINT64_MAX;

	if (cfg->tracing->enabled && make_loop(t) != 0) {
		tg_tracer_stop(t);
		return NULL;
	}
	apply_config(t, tg_config_ref(cfg));
	return t;

oom:
	tg_error("cannot create the tracer: out of memory");
	return NULL;
}

static void *
tracer_main(void *arg)
{
	struct tg_tracer *t = arg;

	/* With tracing off no event is pending, yet a reload may turn it on
	 * and the stop request must find the loop running. */
	event_base_loop(t->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

int
tg_tracer_start(struct tg_tracer *t)
{
	int rc;

	if (t->base == NULL || t->started)
		return 0;       /* tracing is off: a reload that turns it on starts it */
	rc = pthread_create(&t->thread, NULL, tracer_main, t);
	if (rc != 0) {
		tg_error("cannot start the tracing exporter thread: %s", strerror(rc));
		return -1;
	}
	t->started = 1;
	return 0;
}

/* While stopping: leave the loop once everything is sent. */
static void
tracer_maybe_finish(struct tg_tracer *t)
{
	if (!t->stopping) {
		maybe_export(t);
		return;
	}
	drain_queue(t);
	if (t->export == NULL && t->n_send > 0)
		export_start(t);
	if (t->export == NULL && t->n_send == 0)
		event_base_loopexit(t->base, NULL);
}

static void
stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_tracer *t = arg;

	(void)fd;
	(void)what;
	event_base_loopexit(t->base, NULL);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_tracer *t = arg;
	struct timeval tv = tg_timeval_ms(t->tracing->shutdown_timeout);

	(void)fd;
	(void)what;
	t->stopping = 1;
	t->failed_before_stop = atomic_load(&t->spans_failed);
	t->stop_deadline_ms = tg_now_ms() + t->tracing->shutdown_timeout;
	t->stop_timer = evtimer_new(t->base, stop_deadline_cb, t);
	if (t->stop_timer == NULL) {
		event_base_loopexit(t->base, NULL);
		return;
	}
	evtimer_add(t->stop_timer, &tv);

	/* An export waiting to retry sends its last attempt now. */
	if (t->export != NULL && t->export->request == NULL) {
		evtimer_del(t->export->timer);
		export_send(t->export);
		return;
	}
	tracer_maybe_finish(t);
}

/* After the exporter thread ended: log, in one line, the spans the
 * shutdown did not deliver. Those of failed exports are otherwise silent
 * once an earlier failure was logged, and the unsent ones are freed. */
static void
report_shutdown_losses(struct tg_tracer *t)
{
	uint64_t failed = atomic_load(&t->spans_failed) - t->failed_before_stop;
	uint64_t unsent = t->n_send + (t->export != NULL ? t->export->n_spans : 0);

	/* Without an endpoint queued spans only feed the ring. */
	if (t->tracing->endpoint != NULL)
		unsent += tg_span_queue_length(&t->queue);
	if (failed + unsent == 0)
		return;
	tg_warn("tracing stopped with %" PRIu64 " spans not exported: %" PRIu64 " in exports "
	        "that failed, %" PRIu64 " still unsent (tracing.otlp.shutdown_timeout is %"
	        PRIu64 " ms)", failed + unsent, failed, unsent,
	        (uint64_t)t->tracing->shutdown_timeout);
}

/* Free what is left: spans never sent and the export cut short. */
static void
tracer_free(struct tg_tracer *t)
{
	struct tg_span *span;

	if (t->export != NULL) {
		if (t->export->request != NULL)
			evhttp_cancel_request(t->export->request);
		atomic_fetch_add(&t->spans_failed, t->export->n_spans);
		export_free(t->export);
	}
	while ((span = tg_span_queue_pop(&t->queue)) != NULL)
		tg_span_free(span);
	while (t->send_head != NULL)
		tg_span_unref(send_list_take(t));
	tg_trace_ring_free(&t->ring);
	tg_span_queue_free(&t->queue);
	if (t->conn != NULL)
		connection_free(t->conn);
	free_retired(t);
	if (t->reaper != NULL)
		event_free(t->reaper);
	if (t->stop_timer != NULL)
		event_free(t->stop_timer);
	if (t->tick != NULL)
		event_free(t->tick);
	if (t->base != NULL)
		event_base_free(t->base);
	if (t->config != NULL)
		tg_config_unref(t->config);
	tg_export_body_release(t->body);        /* after the buffers that may hold it */
	free(t->service_name);
	free(t);
}

void
tg_tracer_stop(struct tg_tracer *t)
{
	if (t == NULL)
		return;
	if (t->started) {
		if (event_base_once(t->base, -1, EV_TIMEOUT, stop_cb, t, NULL) != 0) {
			t->failed_before_stop = atomic_load(&t->spans_failed);
			event_base_loopbreak(t->base);
		}
		pthread_join(t->thread, NULL);
		warn_drops(t, 1);
		report_shutdown_losses(t);
	}
	tracer_free(t);
}

/* --- admin --------------------------------------------------------------- */

int
tg_tracer_write_metrics(struct tg_tracer *t, struct evbuffer *out,
                        enum tg_metrics_format format)
{
	struct tg_tracer_stats s;
	int rc = 0;

	tg_tracer_stats(t, &s);
	rc |= tg_metrics_write_counter(out, format, "tollgate_spans_dropped_total",
	                               "Spans dropped because the export queue was full.",
	                               s.spans_dropped);
	rc |= tg_metrics_write_counter(out, format, "tollgate_spans_exported_total",
	                               "Spans the OTLP endpoint accepted.", s.spans_exported);
	rc |= tg_metrics_write_counter(out, format, "tollgate_spans_export_failed_total",
	                               "Spans whose export failed after its retries.",
	                               s.spans_failed);
	rc |= tg_metrics_write_counter(out, format, "tollgate_span_export_requests_total",
	                               "OTLP export requests sent, retries included.",
	                               s.export_requests);
	rc |= tg_metrics_write_gauge(out, format, "tollgate_spans_queued",
	                             "Spans waiting for export.", s.spans_queued);
	return rc ? -1 : 0;
}

json_t *
tg_tracer_recent_list(struct tg_tracer *t)
{
	struct tg_tracer_stats stats;
	json_t *list = tg_trace_ring_list(&t->ring);

	tg_tracer_stats(t, &stats);
	if (list == NULL)
		return NULL;
	json_object_set_new(list, "exporter",
	                    json_pack("{s:I, s:I, s:I, s:I, s:I}",
	                              "spans_queued", (json_int_t)stats.spans_queued,
	                              "spans_dropped", (json_int_t)stats.spans_dropped,
	                              "spans_exported", (json_int_t)stats.spans_exported,
	                              "spans_failed", (json_int_t)stats.spans_failed,
	                              "export_requests", (json_int_t)stats.export_requests));
	return list;
}

json_t *
tg_tracer_recent_get(struct tg_tracer *t, const char *trace_id_hex)
{
	struct tg_otlp_resource resource = {
		.service_version = PACKAGE_VERSION,
		.instance_id = t->instance_id,
	};
	json_t *result;
	char *service_name;

	pthread_mutex_lock(&t->ring.lock);
	service_name = t->service_name ? strdup(t->service_name) : NULL;
	pthread_mutex_unlock(&t->ring.lock);
	resource.service_name = service_name ? service_name : "tollgate";
	result = tg_trace_ring_get(&t->ring, trace_id_hex, &resource);
	free(service_name);
	return result;
}
