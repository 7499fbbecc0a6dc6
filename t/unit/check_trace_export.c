/*
 * Unit tests of span export: the lock-free queue, drop counting, the retry
 * policy, and the exporter thread against an OTLP receiver that this file
 * runs on loopback with scripted responses.
 *
 * No test measures how fast anything happens. Waits poll for an outcome
 * with a generous deadline, and the Retry-After tests are structural: the
 * back-off is set so long that a retry can only come from the header.
 */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>

#include "../../src/config.h"
#include "trace-body.h"
#include "trace-context.h"
#include "trace-export.h"
#include "trace-queue.h"
#include "trace-retry.h"
#include "trace-ring.h"
#include "trace-span.h"

#define WAIT_DEADLINE_S 20

/* --- queue ---------------------------------------------------------------- */

START_TEST(queue_fifo_and_full)
{
	struct tg_span_queue q;
	int items[5];

	ck_assert_int_eq(tg_span_queue_init(&q, 3), 0);
	ck_assert_ptr_null(tg_span_queue_pop(&q));
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(tg_span_queue_push(&q, &items[i]), 0);
	ck_assert_int_eq(tg_span_queue_push(&q, &items[3]), -1);
	ck_assert_uint_eq(tg_span_queue_length(&q), 3);
	ck_assert_ptr_eq(tg_span_queue_pop(&q), &items[0]);
	ck_assert_int_eq(tg_span_queue_push(&q, &items[4]), 0);
	ck_assert_ptr_eq(tg_span_queue_pop(&q), &items[1]);
	ck_assert_ptr_eq(tg_span_queue_pop(&q), &items[2]);
	ck_assert_ptr_eq(tg_span_queue_pop(&q), &items[4]);
	ck_assert_ptr_null(tg_span_queue_pop(&q));
	tg_span_queue_free(&q);
}
END_TEST

START_TEST(queue_many_laps)
{
	struct tg_span_queue q;
	uintptr_t next_in = 1, next_out = 1;

	/* A capacity that is not a power of two, around the ring many times. */
	ck_assert_int_eq(tg_span_queue_init(&q, 7), 0);
	for (int round = 0; round < 1000; round++) {
		int n = round % 7 + 1;

		for (int i = 0; i < n; i++)
			ck_assert_int_eq(tg_span_queue_push(&q, (void *)next_in++), 0);
		for (int i = 0; i < n; i++)
			ck_assert_ptr_eq(tg_span_queue_pop(&q), (void *)next_out++);
	}
	tg_span_queue_free(&q);
}
END_TEST

#define PRODUCERS 4
#define PER_PRODUCER 5000

struct producer {
	struct tg_span_queue *q;
	int id;
	atomic_uint *rejected;
};

static void *
produce(void *arg)
{
	struct producer *p = arg;

	for (uintptr_t i = 0; i < PER_PRODUCER; i++) {
		uintptr_t item = ((uintptr_t)p->id << 24 | i) + 1;

		while (tg_span_queue_push(p->q, (void *)item) != 0) {
			atomic_fetch_add(p->rejected, 1);
			sched_yield();  /* full: let the consumer run */
		}
	}
	return NULL;
}

START_TEST(queue_concurrent_producers)
{
	struct tg_span_queue q;
	pthread_t threads[PRODUCERS];
	struct producer producers[PRODUCERS];
	uintptr_t next[PRODUCERS] = {0};
	atomic_uint rejected = 0;
	unsigned received = 0;

	ck_assert_int_eq(tg_span_queue_init(&q, 64), 0);
	for (int i = 0; i < PRODUCERS; i++) {
		producers[i] = (struct producer){&q, i, &rejected};
		ck_assert_int_eq(pthread_create(&threads[i], NULL, produce, &producers[i]), 0);
	}

	/* Each producer's items arrive once each, in its own order. */
	while (received < PRODUCERS * PER_PRODUCER) {
		uintptr_t item = (uintptr_t)tg_span_queue_pop(&q);
		int id;

		if (item == 0) {
			sched_yield();
			continue;
		}
		item--;
		id = (int)(item >> 24);
		ck_assert_int_lt(id, PRODUCERS);
		ck_assert_uint_eq(item & 0xffffff, next[id]);
		next[id]++;
		received++;
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(threads[i], NULL);
	ck_assert_ptr_null(tg_span_queue_pop(&q));
	tg_span_queue_free(&q);
}
END_TEST

/* --- retry policy ---------------------------------------------------------- */

static const struct tg_retry_policy_params policy = {
	.max_attempts = 5, .initial_backoff_ms = 1000, .max_backoff_ms = 5000,
};

static int
decide(unsigned attempt, int status, const char *retry_after, uint64_t remaining,
       double random, uint64_t *delay)
{
	struct tg_export_result r = { .status = status, .retry_after = retry_after };

	return tg_export_retry_decide(&policy, attempt, &r, remaining, 1700000000, random, delay);
}

START_TEST(retryable_statuses)
{
	static const int retryable[] = {0, 429, 502, 503, 504};
	static const int final[] = {200, 204, 400, 401, 403, 404, 408, 413, 500, 501, 505};

	for (size_t i = 0; i < sizeof(retryable) / sizeof(retryable[0]); i++)
		ck_assert_msg(tg_export_status_retryable(retryable[i]), "%d", retryable[i]);
	for (size_t i = 0; i < sizeof(final) / sizeof(final[0]); i++)
		ck_assert_msg(!tg_export_status_retryable(final[i]), "%d", final[i]);
}
END_TEST

START_TEST(backoff_grows_with_jitter)
{
	uint64_t delay;

	/* The delay lies in the upper half of 1 s, 2 s, 4 s, then 5 s (capped). */
	ck_assert(decide(1, 503, NULL, 60000, 0.0, &delay));
	ck_assert_uint_eq(delay, 500);
	ck_assert(decide(1, 503, NULL, 60000, 0.999, &delay));
	ck_assert_uint_le(delay, 1000);
	ck_assert_uint_ge(delay, 999);
	ck_assert(decide(2, 0, NULL, 60000, 0.0, &delay));
	ck_assert_uint_eq(delay, 1000);
	ck_assert(decide(3, 504, NULL, 60000, 0.0, &delay));
	ck_assert_uint_eq(delay, 2000);
	ck_assert(decide(4, 502, NULL, 60000, 0.0, &delay));
	ck_assert_uint_eq(delay, 2500);
}
END_TEST

START_TEST(retry_stops_at_limits)
{
	uint64_t delay;
	struct tg_export_result timed_out = { .status = 0, .timed_out = 1 };

	ck_assert(!decide(5, 503, NULL, 60000, 0.0, &delay));          /* max_attempts */
	ck_assert(!decide(1, 400, NULL, 60000, 0.0, &delay));          /* final status */
	ck_assert(!decide(1, 500, NULL, 60000, 0.0, &delay));
	ck_assert(!decide(1, 503, NULL, 400, 0.0, &delay));            /* past the deadline */
	ck_assert(!tg_export_retry_decide(&policy, 1, &timed_out, 60000, 0, 0.0, &delay));
}
END_TEST

START_TEST(retry_after_wins)
{
	uint64_t delay;

	ck_assert(decide(1, 429, "3", 60000, 0.0, &delay));
	ck_assert_uint_eq(delay, 3000);
	ck_assert(decide(4, 503, "0", 60000, 0.9, &delay));
	ck_assert_uint_eq(delay, 0);
	/* 1700000000 is Tue, 14 Nov 2023 22:13:20 GMT. */
	ck_assert(decide(1, 503, "Tue, 14 Nov 2023 22:13:27 GMT", 60000, 0.0, &delay));
	ck_assert_uint_eq(delay, 7000);
	/* Longer than the time left: give up rather than wait past it. */
	ck_assert(!decide(1, 429, "120", 60000, 0.0, &delay));
	/* Not a valid value: the back-off applies. */
	ck_assert(decide(1, 429, "soon", 60000, 0.0, &delay));
	ck_assert_uint_eq(delay, 500);
}
END_TEST

/* The values go through tg_export_retry_decide with no deadline in sight,
 * so an invalid one shows as the back-off of 500 ms. */
START_TEST(retry_after_parsing)
{
	uint64_t delay;

	ck_assert(decide(1, 429, "120", UINT64_MAX, 0.0, &delay));
	ck_assert_uint_eq(delay, 120000);
	ck_assert(decide(1, 429, " 5 ", UINT64_MAX, 0.0, &delay));
	ck_assert_uint_eq(delay, 5000);
	ck_assert(decide(1, 429, "Tue, 14 Nov 2023 22:13:00 GMT", UINT64_MAX, 0.0, &delay));
	ck_assert_uint_eq(delay, 0);            /* in the past */
	ck_assert(decide(1, 429, "99999999999999999999", UINT64_MAX, 0.0, &delay));
	ck_assert_uint_eq(delay, 86400000);     /* capped at a day */
	ck_assert(decide(1, 429, "-1", UINT64_MAX, 0.0, &delay));
	ck_assert_uint_eq(delay, 500);
	ck_assert(decide(1, 429, "1.5", UINT64_MAX, 0.0, &delay));
	ck_assert_uint_eq(delay, 500);
	ck_assert(decide(1, 429, "", UINT64_MAX, 0.0, &delay));
	ck_assert_uint_eq(delay, 500);
	ck_assert(decide(1, 429, "Tue, 14 Nov 2023 22:13:00", UINT64_MAX, 0.0, &delay));
	ck_assert_uint_eq(delay, 500);
}
END_TEST

/* --- export bodies ---------------------------------------------------------- */

#define BODY_TEXT "{\"resourceSpans\":[]}"

/* Each attempt's buffer keeps the body until libevent lets go of its
 * bytes, so the tracer never rewrites text that is still to be sent. */
START_TEST(export_body_lent_until_buffers_let_go)
{
	struct tg_export_body *body = tg_export_body_new();
	struct evbuffer *first = evbuffer_new(), *second = evbuffer_new();

	ck_assert_ptr_nonnull(body);
	tg_json_literal(&body->text, BODY_TEXT);
	ck_assert(!tg_export_body_lent(body));
	ck_assert_int_eq(tg_export_body_lend(body, first), 0);
	ck_assert_int_eq(tg_export_body_lend(body, second), 0);
	ck_assert(tg_export_body_lent(body));
	ck_assert_uint_eq(evbuffer_get_length(first), strlen(BODY_TEXT));
	ck_assert_mem_eq(evbuffer_pullup(second, -1), BODY_TEXT, strlen(BODY_TEXT));

	/* Sent, then freed with its request: each buffer lets go. */
	evbuffer_drain(first, evbuffer_get_length(first));
	ck_assert(tg_export_body_lent(body));
	evbuffer_free(second);
	ck_assert(!tg_export_body_lent(body));
	evbuffer_free(first);
	tg_export_body_release(body);
}
END_TEST

/* A buffer may keep the body after the tracer let go of it (a request
 * cut short at shutdown): the buffer's release frees it, as valgrind
 * checks. */
START_TEST(export_body_outlives_tracer)
{
	struct tg_export_body *body = tg_export_body_new();
	struct evbuffer *out = evbuffer_new();

	ck_assert_ptr_nonnull(body);
	tg_json_literal(&body->text, BODY_TEXT);
	ck_assert_int_eq(tg_export_body_lend(body, out), 0);
	tg_export_body_release(body);
	ck_assert_mem_eq(evbuffer_pullup(out, -1), BODY_TEXT, strlen(BODY_TEXT));
	evbuffer_free(out);
}
END_TEST

/* --- a scripted OTLP receiver ---------------------------------------------- */

#define MAX_ANSWERS 8
#define MAX_RECORDED 64

struct answer {
	int status;
	const char *retry_after;
};

struct receiver {
	struct event_base *base;
	struct evhttp *http;
	pthread_t thread;
	int port;

	pthread_mutex_t lock;
	struct answer answers[MAX_ANSWERS];     /* in turn; then 200 */
	size_t body_size;                       /* of each response body; 0: "{}" */
	size_t n_answers, next_answer;
	json_t *bodies[MAX_RECORDED];           /* each request's body, if JSON */
	unsigned char *raw[MAX_RECORDED];       /* each request's body as sent */
	size_t raw_len[MAX_RECORDED];
	char content_type[MAX_RECORDED][64];
	char custom_header[MAX_RECORDED][64];
	size_t n_recorded;
};

static void
receive_cb(struct evhttp_request *r, void *arg)
{
	struct receiver *rc = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(r);
	struct evkeyvalq *headers = evhttp_request_get_input_headers(r);
	const char *type = evhttp_find_header(headers, "Content-Type");
	const char *custom = evhttp_find_header(headers, "X-Test-Tenant");
	struct answer a = {200, NULL};
	struct evbuffer *body = evbuffer_new();
	size_t body_size;

	pthread_mutex_lock(&rc->lock);
	if (rc->n_recorded < MAX_RECORDED) {
		size_t i = rc->n_recorded++;

		rc->raw_len[i] = evbuffer_get_length(in);
		rc->raw[i] = malloc(rc->raw_len[i] + 1);
		ck_assert_ptr_nonnull(rc->raw[i]);
		evbuffer_copyout(in, rc->raw[i], rc->raw_len[i]);
		rc->bodies[i] = json_loadb((const char *)rc->raw[i], rc->raw_len[i], 0, NULL);
		snprintf(rc->content_type[i], 64, "%s", type ? type : "");
		snprintf(rc->custom_header[i], 64, "%s", custom ? custom : "");
	}
	if (rc->next_answer < rc->n_answers)
		a = rc->answers[rc->next_answer++];
	body_size = rc->body_size;
	pthread_mutex_unlock(&rc->lock);

	if (a.retry_after != NULL)
		evhttp_add_header(evhttp_request_get_output_headers(r), "Retry-After", a.retry_after);
	evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
	                  "application/json");
	if (body_size > 0) {
		char *spaces = malloc(body_size);

		ck_assert_ptr_nonnull(spaces);
		memset(spaces, ' ', body_size);
		evbuffer_add(body, spaces, body_size);
		free(spaces);
	} else {
		evbuffer_add_printf(body, "{}");
	}
	evhttp_send_reply(r, a.status, "Scripted", body);
	evbuffer_free(body);
}

static void *
receiver_main(void *arg)
{
	struct receiver *rc = arg;

	event_base_dispatch(rc->base);
	return NULL;
}

static struct receiver *
receiver_start(const struct answer *answers, size_t n)
{
	struct receiver *rc = calloc(1, sizeof(*rc));
	struct evhttp_bound_socket *sock;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	pthread_mutex_init(&rc->lock, NULL);
	if (n > 0)
		memcpy(rc->answers, answers, n * sizeof(*answers));
	rc->n_answers = n;
	rc->base = event_base_new();
	rc->http = evhttp_new(rc->base);
	evhttp_set_cb(rc->http, "/v1/traces", receive_cb, rc);
	sock = evhttp_bind_socket_with_handle(rc->http, "127.0.0.1", 0);
	ck_assert_ptr_nonnull(sock);
	getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&sin, &len);
	rc->port = ntohs(sin.sin_port);
	ck_assert_int_eq(pthread_create(&rc->thread, NULL, receiver_main, rc), 0);
	return rc;
}

static size_t
receiver_count(struct receiver *rc)
{
	size_t n;

	pthread_mutex_lock(&rc->lock);
	n = rc->n_recorded;
	pthread_mutex_unlock(&rc->lock);
	return n;
}

static void
loopbreak_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void
receiver_stop(struct receiver *rc)
{
	event_base_once(rc->base, -1, EV_TIMEOUT, loopbreak_cb, rc->base, NULL);
	pthread_join(rc->thread, NULL);
	evhttp_free(rc->http);
	event_base_free(rc->base);
	for (size_t i = 0; i < rc->n_recorded; i++) {
		json_decref(rc->bodies[i]);
		free(rc->raw[i]);
	}
	pthread_mutex_destroy(&rc->lock);
	free(rc);
}

/* Spans in the request body recorded at index i. */
static size_t
spans_in(struct receiver *rc, size_t i)
{
	json_t *rs = json_array_get(json_object_get(rc->bodies[i], "resourceSpans"), 0);
	json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);

	return json_array_size(json_object_get(ss, "spans"));
}

/* --- the tracer ------------------------------------------------------------ */

static struct tg_config *
config_with(const char *tracing)
{
	char path[] = "/tmp/tg-check-trace-export-XXXXXX";
	char *json = NULL;
	struct tg_config *cfg;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(asprintf(&json, "{\"backends\": {\"b\": {\"url\": \"http://127.0.0.1:9\"}},"
	                          " \"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}],"
	                          " \"tracing\": %s}", tracing), 0);
	ck_assert_int_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);
	cfg = tg_config_load(path, stderr);
	unlink(path);
	free(json);
	ck_assert_ptr_nonnull(cfg);
	return cfg;
}

/* A config exporting to port with the given keys in "otlp", "batch" and
 * "retry" (JSON members, may be ""). Unless given, the schedule delay and
 * the back-off are short, so that tests do not wait for the defaults, and
 * the protocol is http/json, so that the receiver can read the bodies. */
static struct tg_config *
export_config(int port, const char *otlp, const char *batch, const char *retry)
{
	char tracing[1024], otlp_keys[512];
	const char *delay = strstr(batch, "schedule_delay") ? "" : "\"schedule_delay\": \"20ms\"";
	const char *backoff = strstr(retry, "backoff") ? ""
	                      : "\"initial_backoff\": \"20ms\", \"max_backoff\": \"40ms\"";
	const char *json = strstr(otlp, "protocol") ? "" : "\"protocol\": \"http/json\"";

	snprintf(otlp_keys, sizeof(otlp_keys), "%s%s%s", otlp, otlp[0] && json[0] ? ", " : "",
	         json);
	snprintf(tracing, sizeof(tracing),
	         "{\"otlp\": {\"endpoint\": \"http://127.0.0.1:%d/v1/traces\"%s%s},"
	         " \"batch\": {%s%s%s}, \"retry\": {%s%s%s}}",
	         port, otlp_keys[0] ? ", " : "", otlp_keys,
	         delay, delay[0] && batch[0] ? ", " : "", batch,
	         backoff, backoff[0] && retry[0] ? ", " : "", retry);
	return config_with(tracing);
}

static struct tg_span *
ended_span(const uint8_t *trace_id, const char *name)
{
	uint64_t now = tg_wall_ns();
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_SERVER, name, now);

	tg_span_end(s, now + 1000);
	return s;
}

static void
submit_spans(struct tg_tracer *t, size_t n)
{
	uint8_t trace_id[16];

	for (size_t i = 0; i < n; i++) {
		tg_id_random(trace_id, sizeof(trace_id));
		ck_assert_int_eq(tg_tracer_submit(t, ended_span(trace_id, "POST")), 0);
	}
}

static struct tg_tracer_stats
stats_of(struct tg_tracer *t)
{
	struct tg_tracer_stats s;

	tg_tracer_stats(t, &s);
	return s;
}

/* Poll until cond holds; fail with what after the deadline. */
#define WAIT_FOR(cond, what) do { \
	time_t deadline_ = time(NULL) + WAIT_DEADLINE_S; \
	while (!(cond)) { \
		ck_assert_msg(time(NULL) < deadline_, "timed out waiting for %s", what); \
		usleep(10000); \
	} \
} while (0)

/* Without tracing.otlp.protocol, exports are binary protobuf: an
 * ExportTraceServiceRequest whose one field, resource_spans, fills the
 * body. */
START_TEST(export_protobuf_by_default)
{
	struct receiver *rc = receiver_start(NULL, 0);
	char tracing[256];
	struct tg_config *cfg;
	struct tg_tracer *t;
	uint64_t len = 0;
	size_t i = 1;

	snprintf(tracing, sizeof(tracing), "{\"otlp\": {\"endpoint\": "
	         "\"http://127.0.0.1:%d/v1/traces\"}, \"batch\": {\"schedule_delay\": \"20ms\"}}",
	         rc->port);
	cfg = config_with(tracing);
	t = tg_tracer_new(cfg);
	ck_assert_ptr_nonnull(t);
	submit_spans(t, 3);
	ck_assert_int_eq(tg_tracer_start(t), 0);
	WAIT_FOR(stats_of(t).spans_exported == 3, "3 spans exported");

	ck_assert_uint_eq(receiver_count(rc), 1);
	ck_assert_str_eq(rc->content_type[0], "application/x-protobuf");
	ck_assert_ptr_null(rc->bodies[0]);
	ck_assert_uint_gt(rc->raw_len[0], 2);
	ck_assert_uint_eq(rc->raw[0][0], 0x0a);         /* field 1, length-delimited */
	for (int shift = 0; i < rc->raw_len[0]; shift += 7) {
		len |= (uint64_t)(rc->raw[0][i] & 0x7f) << shift;
		if ((rc->raw[0][i++] & 0x80) == 0)
			break;
	}
	ck_assert_uint_eq(len, rc->raw_len[0] - i);
	tg_tracer_stop(t);
	tg_config_unref(cfg);
	receiver_stop(rc);
}
END_TEST

START_TEST(export_in_batches)
{
	struct receiver *rc = receiver_start(NULL, 0);
	struct tg_config *cfg = export_config(rc->port, "\"headers\": {\"X-Test-Tenant\": \"t7\"}",
	                                      "\"max_export_batch_size\": 2", "");
	struct tg_tracer *t = tg_tracer_new(cfg);
	json_t *rs;

	ck_assert_ptr_nonnull(t);
	submit_spans(t, 5);
	ck_assert_int_eq(tg_tracer_start(t), 0);
	WAIT_FOR(stats_of(t).spans_exported == 5, "5 spans exported");

	ck_assert_uint_eq(receiver_count(rc), 3);
	ck_assert_uint_eq(spans_in(rc, 0), 2);
	ck_assert_uint_eq(spans_in(rc, 1), 2);
	ck_assert_uint_eq(spans_in(rc, 2), 1);
	ck_assert_str_eq(rc->content_type[0], "application/json");
	ck_assert_str_eq(rc->custom_header[0], "t7");
	rs = json_array_get(json_object_get(rc->bodies[0], "resourceSpans"), 0);
	ck_assert_ptr_nonnull(json_object_get(rs, "resource"));
	ck_assert_uint_eq(stats_of(t).export_requests, 3);
	ck_assert_uint_eq(stats_of(t).spans_failed, 0);
	tg_tracer_stop(t);
	tg_config_unref(cfg);
	receiver_stop(rc);
}
END_TEST

/* More spans than one drain of the queue takes at a time go out in one
 * export, in the order they were submitted, and all stay in the ring. */
START_TEST(export_many_spans_in_one_batch)
{
	struct receiver *rc = receiver_start(NULL, 0);
	struct tg_config *cfg = export_config(rc->port, "", "", "");
	struct tg_tracer *t = tg_tracer_new(cfg);
	uint8_t trace_id[16] = {7};
	json_t *spans, *list;
	char name[16];

	ck_assert_ptr_nonnull(t);
	for (int i = 0; i < 150; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		ck_assert_int_eq(tg_tracer_submit(t, ended_span(trace_id, name)), 0);
	}
	ck_assert_int_eq(tg_tracer_start(t), 0);
	WAIT_FOR(stats_of(t).spans_exported == 150, "150 spans exported");

	ck_assert_uint_eq(receiver_count(rc), 1);
	spans = json_object_get(json_array_get(json_object_get(json_array_get(
	        json_object_get(rc->bodies[0], "resourceSpans"), 0), "scopeSpans"), 0), "spans");
	ck_assert_uint_eq(json_array_size(spans), 150);
	for (int i = 0; i < 150; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		ck_assert_str_eq(json_string_value(json_object_get(json_array_get(spans, i),
		                                                   "name")), name);
	}
	list = tg_tracer_recent_list(t);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(
	                 json_object_get(list, "traces"), 0), "spans")), 150);
	json_decref(list);
	tg_tracer_stop(t);
	tg_config_unref(cfg);
	receiver_stop(rc);
}
END_TEST

START_TEST(export_retries_retryable_statuses)
{
	static const struct answer answers[] = {{503, NULL}, {502, NULL}, {429, NULL}, {504, NULL}};
	struct receiver *rc = receiver_start(answers, 4);
	struct tg_config *cfg = export_config(rc->port, "", "", "");
	struct tg_tracer *t = tg_tracer_new(cfg);

	submit_spans(t, 3);
	ck_assert_int_eq(tg_tracer_start(t), 0);
	WAIT_FOR(stats_of(t).spans_exported == 3, "3 spans exported after retries");
	ck_assert_uint_eq(receiver_count(rc), 5);
	ck_assert_uint_eq(stats_of(t).export_requests, 5);
	/* The same batch each time. */
	ck_assert(json_equal(rc->bodies[0], rc->bodies[4]));
	tg_tracer_stop(t);
	tg_config_unref(cfg);
	receiver_stop(rc);
}
END_TEST

START_TEST(export_gives_up_after_max_attempts)
{
	static const struct answer answers[] = {{503, NULL}, {503, NULL}, {503, NULL}, {503, NULL}};
	struct receiver *rc = receiver_start(answers, 4);
	struct tg_config *cfg = export_config(rc->port, "", "", "\"max_attempts\": 3");
	struct tg_tracer *t = tg_tracer_new(cfg);

	submit_spans(t, 2);
	ck_assert_int_eq(tg_tracer_start(t), 0);
	WAIT_FOR(stats_of(t).spans_failed == 2, "2 spans failed");
	ck_assert_uint_eq(stats_of(t).export_requests, 3);
	ck_assert_uint_eq(receiver_count(rc), 3);
	tg_tracer_stop(t);
	tg_config_unref(cfg);
	receiver_stop(rc);
}
END_TEST

START_TEST(export_never_retries_other_statuses)
{
	static const int statuses[] = {400, 401, 404, 500, 501};

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		struct answer answer = {statuses[i], NULL};
		struct receiver *rc = receiver_start(&answer, 1);
		struct tg_config *cfg = export_config(rc->port, "", "", "");
		struct tg_tracer *t = tg_tracer_new(cfg);

		submit_spans(t, 1);
		ck_assert_int_eq(tg_tracer_start(t), 0);
		WAIT_FOR(stats_of(t).spans_failed == 1, "the span failed");
		tg_tracer_stop(t);
		ck_assert_msg(receiver_count(rc) == 1, "status %d was sent %zu times",
		              statuses[i], receiver_count(rc));
		tg_config_unref(cfg);
		receiver_stop(rc);
	}
}
END_TEST

START_TEST(export_honours_retry_after)
{
	/* The back-off is longer than the export timeout, so without the
	 * header there would be no retry at all. */
	static const struct answer answers[] = {{429, "0"}, {503, "1"}};
	struct receiver *rc = receiver_start(answers, 2);
	struct tg_config *cfg = export_config(rc->port, "\"timeout\": \"10s\"", "",
	                                      "\"initial_backoff\": \"1m\", \"max_backoff\": \"1m\"");
	struct tg_tracer *t = tg_tracer_new(cfg);

	submit_spans(t, 1);
	ck_assert_int_eq(tg_tracer_start(t), 0);
	WAIT_FOR(stats_of(t).spans_exported == 1, "the span exported");
	ck_assert_uint_eq(receiver_count(rc), 3);
	tg_tracer_stop(t);
	tg_config_unref(cfg);
	receiver_stop(rc);
}
END_TEST

START_TEST(export_retry_after_past_deadline_gives_up)
{
	static const struct answer answers[] = {{429, "3600"}};
	struct receiver *rc = receiver_start(answers, 1);
	struct tg_config *cfg = export_config(rc->port, "\"timeout\": \"5s\"", "", "");
	struct tg_tracer *t = tg_tracer_new(cfg);

	submit_spans(t, 1);
	ck_assert_int_eq(tg_tracer_start(t), 0);
	WAIT_FOR(stats_of(t).spans_failed == 1, "the span failed");
	ck_assert_uint_eq(receiver_count(rc), 1);
	tg_tracer_stop(t);
	tg_config_unref(cfg);
	receiver_stop(rc);
}
END_TEST

START_TEST(export_retries_connection_failures)
{
	/* A port that was free a moment ago: nothing listens there. */
	struct receiver *rc = receiver_start(NULL, 0);
	int port = rc->port;
	struct tg_config *cfg;
	struct tg_tracer *t;

	receiver_stop(rc);
	cfg = export_config(port, "", "", "\"max_attempts\": 3");
	t = tg_tracer_new(cfg);
	submit_spans(t, 4);
	ck_assert_int_eq(tg_tracer_start(t), 0);
	WAIT_FOR(stats_of(t).spans_failed == 4, "4 spans failed");
	ck_assert_uint_eq(stats_of(t).export_requests, 3);
	tg_tracer_stop(t);
	tg_config_unref(cfg);
}
END_TEST

/* The response body is read into memory, so a receiver that responds
 * with a large one must not make the exporter take that much. Past a
 * bound the attempt fails, as when the connection fails. */
START_TEST(export_bounds_response_body)
{
	struct receiver *rc = receiver_start(NULL, 0);
	struct tg_config *cfg = export_config(rc->port, "", "", "\"max_attempts\": 1");
	struct tg_tracer *t = tg_tracer_new(cfg);

	/* The exporter closes the connection while the receiver still writes,
	 * which the daemon ignores as well. */
	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_lock(&rc->lock);
	rc->body_size = 4 << 20;
	pthread_mutex_unlock(&rc->lock);
	submit_spans(t, 2);
	ck_assert_int_eq(tg_tracer_start(t), 0);
	WAIT_FOR(stats_of(t).spans_failed == 2, "2 spans failed");
	ck_assert_uint_eq(stats_of(t).spans_exported, 0);
	tg_tracer_stop(t);
	tg_config_unref(cfg);
	receiver_stop(rc);
}
END_TEST

START_TEST(full_queue_drops_and_counts)
{
	struct tg_config *cfg = config_with("{\"enabled\": true, \"batch\": "
	                                    "{\"max_queue_size\": 4, \"max_export_batch_size\": 2}}");
	struct tg_tracer *t = tg_tracer_new(cfg);
	uint8_t trace_id[16] = {7};
	int accepted = 0;

	/* The thread does not run, so nothing leaves the queue. */
	for (int i = 0; i < 10; i++)
		accepted += tg_tracer_submit(t, ended_span(trace_id, "POST")) == 0;
	ck_assert_int_eq(accepted, 4);
	ck_assert_uint_eq(stats_of(t).spans_dropped, 6);
	ck_assert_uint_eq(stats_of(t).spans_queued, 4);
	tg_tracer_stop(t);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(shutdown_sends_what_is_queued)
{
	struct receiver *rc = receiver_start(NULL, 0);
	struct tg_config *cfg = export_config(rc->port, "", "\"schedule_delay\": \"1h\"", "");
	struct tg_tracer *t = tg_tracer_new(cfg);

	submit_spans(t, 3);
	ck_assert_int_eq(tg_tracer_start(t), 0);
	tg_tracer_stop(t);
	ck_assert_uint_eq(receiver_count(rc), 1);
	ck_assert_uint_eq(spans_in(rc, 0), 3);
	tg_config_unref(cfg);
	receiver_stop(rc);
}
END_TEST

START_TEST(reload_turns_export_on)
{
	struct receiver *rc = receiver_start(NULL, 0);
	struct tg_config *off = config_with("{}");
	struct tg_config *on = export_config(rc->port, "", "", "");
	struct tg_tracer *t = tg_tracer_new(off);
	time_t deadline = time(NULL) + WAIT_DEADLINE_S;

	/* Started with nothing to do, the thread must still take the new
	 * config. The pause lets it reach its loop first, as it has long
	 * done when a reload comes. Spans submitted before the config
	 * arrives only reach the ring, so submit until one is exported. */
	ck_assert_int_eq(tg_tracer_start(t), 0);
	usleep(200000);
	tg_tracer_post_config(t, on);
	while (stats_of(t).spans_exported == 0) {
		ck_assert_msg(time(NULL) < deadline, "timed out waiting for an export");
		submit_spans(t, 1);
		usleep(50000);
	}
	ck_assert_uint_ge(receiver_count(rc), 1);
	tg_tracer_stop(t);
	tg_config_unref(off);
	tg_config_unref(on);
	receiver_stop(rc);
}
END_TEST

/* --- the recent-traces ring -------------------------------------------------- */

/* Spans in the ring's copy of the trace with this id. */
static size_t
ring_spans_of_id(struct tg_trace_ring *r, const uint8_t id[16])
{
	struct tg_otlp_resource resource = {"svc", "1", NULL};
	char hex[33];
	json_t *got;
	size_t n;

	tg_hex_encode(hex, id, 16);
	got = tg_trace_ring_get(r, hex, &resource);
	if (got == NULL)
		return 0;
	n = json_array_size(json_object_get(json_array_get(json_object_get(
	    json_array_get(json_object_get(got, "resourceSpans"), 0), "scopeSpans"), 0), "spans"));
	json_decref(got);
	return n;
}

/* The same for the trace with this first id byte, the others zero. */
static size_t
ring_spans_of(struct tg_trace_ring *r, uint8_t first_byte)
{
	uint8_t id[16] = {first_byte};

	return ring_spans_of_id(r, id);
}

static void
ring_add_span_id(struct tg_trace_ring *r, const uint8_t id[16])
{
	struct tg_span *span = ended_span(id, "POST");

	span->refs = 1;
	tg_trace_ring_add(r, span);
	tg_span_unref(span);            /* the ring's reference is left */
}

static void
ring_add_span(struct tg_trace_ring *r, uint8_t first_byte)
{
	uint8_t id[16] = {first_byte};

	ring_add_span_id(r, id);
}

/* Ids that differ in one byte only, of either 64-bit half, are two traces. */
START_TEST(ring_compares_whole_trace_ids)
{
	uint8_t ids[4][16] = {{1}, {2}, {1}, {1}};
	struct tg_trace_ring r;

	ids[2][15] = 1;
	ids[3][8] = 1;
	ck_assert_int_eq(tg_trace_ring_init(&r, 4), 0);
	for (size_t i = 0; i < 4; i++)
		ring_add_span_id(&r, ids[i]);
	ring_add_span_id(&r, ids[2]);
	for (size_t i = 0; i < 4; i++) {
		size_t want = i == 2 ? 2 : 1;

		ck_assert_uint_eq(ring_spans_of_id(&r, ids[i]), want);
	}
	tg_trace_ring_free(&r);
}
END_TEST

/* In one batch, a span joins the trace of the span before it only when
 * their ids are equal in both halves. */
START_TEST(ring_batch_compares_whole_trace_ids)
{
	uint8_t ids[3][16] = {{1}, {1}, {1}};
	static const size_t order[] = {0, 0, 1, 1, 2, 0, 2};
	struct tg_span *spans[7];
	struct tg_trace_ring r;

	ids[1][15] = 1;
	ids[2][8] = 1;
	ck_assert_int_eq(tg_trace_ring_init(&r, 4), 0);
	for (size_t i = 0; i < 7; i++) {
		spans[i] = ended_span(ids[order[i]], "POST");
		spans[i]->refs = 1;
	}
	tg_trace_ring_add_spans(&r, spans, 7);
	for (size_t i = 0; i < 7; i++)
		tg_span_unref(spans[i]);        /* the ring's references are left */
	ck_assert_uint_eq(ring_spans_of_id(&r, ids[0]), 3);
	ck_assert_uint_eq(ring_spans_of_id(&r, ids[1]), 2);
	ck_assert_uint_eq(ring_spans_of_id(&r, ids[2]), 2);
	tg_trace_ring_free(&r);
}
END_TEST

/* A trace that goes takes nothing with it from a kept trace whose id
 * ends the same way. */
START_TEST(ring_evicts_only_the_oldest_trace)
{
	uint8_t ids[3][16] = {{1}, {2}, {3}};
	struct tg_trace_ring r;

	ids[0][15] = 5;
	ids[1][15] = 5;
	ids[2][15] = 7;
	ck_assert_int_eq(tg_trace_ring_init(&r, 2), 0);
	for (size_t i = 0; i < 3; i++)
		ring_add_span_id(&r, ids[i]);
	ck_assert_uint_eq(ring_spans_of_id(&r, ids[0]), 0);
	ck_assert_uint_eq(ring_spans_of_id(&r, ids[1]), 1);
	ck_assert_uint_eq(ring_spans_of_id(&r, ids[2]), 1);
	ring_add_span_id(&r, ids[1]);
	ck_assert_uint_eq(ring_spans_of_id(&r, ids[1]), 2);
	tg_trace_ring_free(&r);
}
END_TEST

/* A late span joins its trace wherever the ring has wrapped to. */
START_TEST(ring_finds_each_kept_trace)
{
	struct tg_trace_ring r;

	ck_assert_int_eq(tg_trace_ring_init(&r, 3), 0);
	for (uint8_t id = 1; id <= 4; id++)
		ring_add_span(&r, id);          /* 1 goes; 2, 3, 4 stay */
	for (uint8_t id = 2; id <= 4; id++)
		ring_add_span(&r, id);
	ck_assert_uint_eq(ring_spans_of(&r, 1), 0);
	for (uint8_t id = 2; id <= 4; id++)
		ck_assert_uint_eq(ring_spans_of(&r, id), 2);
	tg_trace_ring_free(&r);
}
END_TEST

/* The span names of the ring's copy of the trace with this id, joined
 * by spaces, into out of size bytes. */
static void
ring_names_of_id(struct tg_trace_ring *r, const uint8_t id[16], char *out, size_t size)
{
	struct tg_otlp_resource resource = {"svc", "1", NULL};
	char hex[33];
	json_t *got, *spans;
	size_t used = 0;

	tg_hex_encode(hex, id, 16);
	got = tg_trace_ring_get(r, hex, &resource);
	ck_assert_ptr_nonnull(got);
	spans = json_object_get(json_array_get(json_object_get(
	    json_array_get(json_object_get(got, "resourceSpans"), 0), "scopeSpans"), 0), "spans");
	out[0] = '\0';
	for (size_t i = 0; i < json_array_size(spans); i++) {
		const char *name = json_string_value(json_object_get(json_array_get(spans, i), "name"));

		used += (size_t)snprintf(out + used, size - used, "%s%s", i > 0 ? " " : "", name);
		ck_assert_uint_lt(used, size);
	}
	json_decref(got);
}

/* A trace keeps its first spans in itself and the later ones in an
 * array: they stay in order across that move, and across a resize, which
 * copies the kept traces. */
START_TEST(ring_keeps_spans_in_order_past_the_first)
{
	uint8_t a[16] = {1}, b[16] = {2};
	char want[256] = "", got[256];
	struct tg_trace_ring r;

	ck_assert_int_eq(tg_trace_ring_init(&r, 4), 0);
	for (int i = 0; i < 20; i++) {
		char name[16];
		struct tg_span *span;

		snprintf(name, sizeof(name), "s%d", i);
		span = ended_span(i < 3 ? b : a, name);
		span->refs = 1;
		tg_trace_ring_add(&r, span);
		tg_span_unref(span);
		if (i < 3)
			continue;

		snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%s",
		         i > 3 ? " " : "", name);
		ring_names_of_id(&r, a, got, sizeof(got));
		ck_assert_str_eq(got, want);
	}
	ring_names_of_id(&r, b, got, sizeof(got));
	ck_assert_str_eq(got, "s0 s1 s2");

	tg_trace_ring_resize(&r, 2);
	ring_names_of_id(&r, b, got, sizeof(got));
	ck_assert_str_eq(got, "s0 s1 s2");
	ring_names_of_id(&r, a, got, sizeof(got));
	ck_assert_str_eq(got, want);
	tg_trace_ring_free(&r);
}
END_TEST

START_TEST(recent_traces_ring)
{
	struct tg_config *cfg = config_with("{\"enabled\": true, \"recent_traces\": 2}");
	struct tg_tracer *t = tg_tracer_new(cfg);
	uint8_t ids[3][16] = {{1}, {2}, {3}};
	char hex[33];
	json_t *list, *trace;

	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(tg_tracer_submit(t, ended_span(ids[i], "POST")), 0);
		ck_assert_int_eq(tg_tracer_submit(t, ended_span(ids[i], "chat m")), 0);
	}
	ck_assert_int_eq(tg_tracer_start(t), 0);
	WAIT_FOR(stats_of(t).spans_queued == 0, "the queue drained");

	list = tg_tracer_recent_list(t);
	ck_assert_uint_eq(json_array_size(json_object_get(list, "traces")), 2);
	tg_hex_encode(hex, ids[2], 16);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(
	                 json_object_get(list, "traces"), 0), "trace_id")), hex);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(
	                 json_object_get(list, "traces"), 0), "spans")), 2);
	json_decref(list);

	trace = tg_tracer_recent_get(t, hex);
	ck_assert_ptr_nonnull(trace);
	ck_assert_uint_eq(json_array_size(json_object_get(json_array_get(json_object_get(
	                  json_array_get(json_object_get(trace, "resourceSpans"), 0),
	                  "scopeSpans"), 0), "spans")), 2);
	json_decref(trace);

	tg_hex_encode(hex, ids[0], 16);         /* the oldest went */
	ck_assert_ptr_null(tg_tracer_recent_get(t, hex));
	ck_assert_ptr_null(tg_tracer_recent_get(t, "not-a-trace-id"));
	tg_tracer_stop(t);
	tg_config_unref(cfg);
}
END_TEST

static Suite *
export_suite(void)
{
	Suite *s = suite_create("trace_export");
	TCase *queue = tcase_create("queue");
	TCase *body = tcase_create("body");
	TCase *ring = tcase_create("ring");
	TCase *retry = tcase_create("retry");
	TCase *exporter = tcase_create("exporter");

	/* Threads that spin on a busy machine can take a while. */
	tcase_set_timeout(queue, 60);
	tcase_add_test(queue, queue_fifo_and_full);
	tcase_add_test(queue, queue_many_laps);
	tcase_add_test(queue, queue_concurrent_producers);
	tcase_add_test(body, export_body_lent_until_buffers_let_go);
	tcase_add_test(body, export_body_outlives_tracer);
	tcase_add_test(ring, ring_finds_each_kept_trace);
	tcase_add_test(ring, ring_compares_whole_trace_ids);
	tcase_add_test(ring, ring_batch_compares_whole_trace_ids);
	tcase_add_test(ring, ring_evicts_only_the_oldest_trace);
	tcase_add_test(ring, ring_keeps_spans_in_order_past_the_first);
	tcase_add_test(retry, retryable_statuses);
	tcase_add_test(retry, backoff_grows_with_jitter);
	tcase_add_test(retry, retry_stops_at_limits);
	tcase_add_test(retry, retry_after_wins);
	tcase_add_test(retry, retry_after_parsing);
	tcase_set_timeout(exporter, 60);
	tcase_add_test(exporter, export_in_batches);
	tcase_add_test(exporter, export_protobuf_by_default);
	tcase_add_test(exporter, export_many_spans_in_one_batch);
	tcase_add_test(exporter, export_retries_retryable_statuses);
	tcase_add_test(exporter, export_gives_up_after_max_attempts);
	tcase_add_test(exporter, export_never_retries_other_statuses);
	tcase_add_test(exporter, export_honours_retry_after);
	tcase_add_test(exporter, export_retry_after_past_deadline_gives_up);
	tcase_add_test(exporter, export_retries_connection_failures);
	tcase_add_test(exporter, export_bounds_response_body);
	tcase_add_test(exporter, full_queue_drops_and_counts);
	tcase_add_test(exporter, shutdown_sends_what_is_queued);
	tcase_add_test(exporter, reload_turns_export_on);
	tcase_add_test(exporter, recent_traces_ring);
	suite_add_tcase(s, queue);
	suite_add_tcase(s, body);
	suite_add_tcase(s, ring);
	suite_add_tcase(s, retry);
	suite_add_tcase(s, exporter);
	return s;
}

int
main(void)
{
	SRunner *runner;
	int failed;

	/* Tests stop the tracer from another thread than its own, which
	 * libevent allows only with thread support on. */
	evthread_use_pthreads();
	runner = srunner_create(export_suite());
	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
