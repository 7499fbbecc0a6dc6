/*
 * loadgen: the load generator of bench/run.
 *
 * Two modes, both single-threaded on one libevent base, both talking to one
 * HTTP/1.1 target over keep-alive connections:
 *
 *   stream  keeps N streaming chat completions open at once. tollgate-mock
 *           started with stamp=1 writes "mock_sent_ns" (CLOCK_MONOTONIC at
 *           the moment it queued the event on its socket) into every JSON
 *           event, so receive time minus that stamp is the event's relay
 *           latency: the mock's own send path, plus the gateway when there
 *           is one, plus this process. Run once without a gateway, the same
 *           measurement gives the baseline that bench/run subtracts. Events
 *           with content (tokens) are also reported on their own.
 *
 *   rate    sends non-streaming requests at a fixed rate (open loop, as
 *           wrk2 does, since Debian's wrk only saturates). Latency counts
 *           from the time a request was due, not from when a connection
 *           became free to send it, so a stall of the target is charged to
 *           every request it delayed (no coordinated omission).
 *
 * The result is one JSON object on stdout. In stream mode a line
 * "open N" comes first, as soon as each of the N streams has received an
 * event, so a caller can read the gateway's memory while they are open.
 * Every run stops by itself at --duration.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <jansson.h>
#include <llhttp.h>

#include "sse.h"

#define MAX_CONNECTIONS 100000
#define MAX_HEADERS 16
#define MAX_SAMPLES (64u * 1024 * 1024)     /* per series: 512 MiB at most */
#define READ_BUFFER_BYTES (64 * 1024)
#define RECONNECT_DELAY_MS 10
#define SENDER_REARM_EXPIRATIONS 1000
#define STAMP_FIELD "mock_sent_ns"

enum mode { MODE_STREAM, MODE_RATE };

struct options {
	enum mode mode;
	const char *target;             /* host:port */
	const char *path;
	const char *model;
	const char *headers[MAX_HEADERS];
	size_t n_headers;
	long streams;                   /* stream: concurrent streams */
	long connections;               /* rate: connection pool size */
	double rate;                    /* rate: requests per second */
	double duration;                /* seconds, warm-up included */
	double warmup;                  /* seconds whose samples are dropped */
	long connect_rate;              /* new connections per second */
	const char *trace;              /* stream: file of per-stream times */
};

/* A growable series of latency samples, in nanoseconds. */
struct samples {
	uint64_t *v;
	size_t n, cap;
	uint64_t dropped;               /* past MAX_SAMPLES */
};

struct counters {
	uint64_t connects, connect_errors, status_errors, eof_errors;
	uint64_t parse_errors, requests, completed, events, stamped_events;
	uint64_t cut_at_end;            /* streams open when the run ended */
	uint64_t late;                  /* rate: sent later than due */
	uint64_t measured;              /* responses completed after warm-up */
	uint64_t not_sent;              /* rate: due while the backlog was full */
};

struct bench;

/*
 * One connection, on its own non-blocking socket rather than a bufferevent.
 * At a fixed rate most of the client's CPU time goes to system calls, and
 * a bufferevent makes five per request: the FIONREAD ioctl, the read,
 * arming the write event, the write and disarming it again. Here send()
 * writes a request at once, since an idle keep-alive connection takes it
 * whole, and one recv() reads a response.
 */
struct conn {
	struct bench *b;
	size_t index;
	evutil_socket_t fd;             /* -1 when closed */
	struct event *readable;         /* persistent, once connected */
	struct event *writable;         /* connect finished, or room for the rest */
	int connecting;
	size_t unsent;                  /* bytes of the request not yet sent */
	llhttp_t parser;
	struct tg_sse_parser sse;
	int connected, busy;            /* busy: a request is in flight */
	int idle;                       /* rate: listed in bench.idle */
	int counted_open;               /* stream: counted in streams_open */
	int status;
	uint64_t due_ns, sent_ns;       /* of the request in flight */
	uint64_t first_stamp_ns;        /* stamp of the response's first event */
	int got_event, got_content;
	int sent_before;                /* a request went out on this socket */
	int kept_alive;                 /* the request in flight follows one */
	uint64_t read_ns;               /* time of the read being parsed */
	struct event *retry;
};

struct bench {
	struct options o;
	struct event_base *base;
	struct sockaddr_storage addr;
	int addr_len;
	char *request;                  /* the whole request, head and body */
	size_t request_len;
	char input[READ_BUFFER_BYTES];  /* what one recv() returns, parsed at once */

	struct conn *conns;
	size_t n_conns, n_started;
	struct event *ticker;           /* connection ramp */
	int sender_fd;                  /* rate: periodic timerfd, or -1 */
	struct event *sender;           /* rate: reads sender_fd */
	uint64_t sender_interval_ns;
	uint64_t sender_expirations;    /* since the timer was last armed */
	struct event *stopper;

	uint64_t start_ns, warm_ns, end_ns;
	uint64_t next_due_ns, sent_total;
	size_t *idle;                   /* rate: stack of idle connections */
	size_t n_idle;
	uint64_t *backlog;              /* rate: due times not yet sent */
	size_t backlog_head, backlog_len, backlog_cap, backlog_max;
	int overloaded;

	size_t streams_open;            /* streams that received an event */
	int open_reported;
	double open_after_s;
	int stopping;

	struct counters c;
	struct samples event_latency, token_latency, ttft, latency, service;
	struct samples ttft_kept_alive; /* streams sent on a used connection */
	FILE *trace;                    /* --trace, or NULL */
};

static void conn_start(struct conn *k);
static void conn_send(struct conn *k, uint64_t due_ns);

/* ---- time and samples ------------------------------------------------ */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timeval
ns_to_timeval(uint64_t ns)
{
	struct timeval tv = { (time_t)(ns / 1000000000u),
	                      (suseconds_t)(ns % 1000000000u / 1000u) };

	return tv;
}

static void
samples_add(struct samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 65536;
		uint64_t *grown;

		if (cap > MAX_SAMPLES || (grown = realloc(s->v, cap * sizeof(*grown))) == NULL) {
			s->dropped++;
			return;
		}
		s->v = grown;
		s->cap = cap;
	}
	s->v[s->n++] = ns;
}

static int
compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted series, in microseconds. */
static double
percentile_us(const struct samples *s, double p)
{
	size_t rank;

	if (s->n == 0)
		return 0;
	rank = (size_t)(p / 100.0 * (double)s->n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > s->n)
		rank = s->n;
	return (double)s->v[rank - 1] / 1000.0;
}

/* Sort s and describe it as {"count", "mean", "p50", ..., "max"} in us. */
static json_t *
samples_json(struct samples *s)
{
	static const struct { const char *name; double p; } points[] = {
		{"p50", 50}, {"p75", 75}, {"p90", 90}, {"p95", 95}, {"p99", 99},
		{"p99.9", 99.9}, {"p99.99", 99.99}, {"max", 100},
	};
	json_t *out = json_object();
	double sum = 0;

	qsort(s->v, s->n, sizeof(*s->v), compare_u64);
	for (size_t i = 0; i < s->n; i++)
		sum += (double)s->v[i];
	json_object_set_new(out, "count", json_integer((json_int_t)s->n));
	json_object_set_new(out, "dropped", json_integer((json_int_t)s->dropped));
	json_object_set_new(out, "mean", json_real(s->n ? sum / (double)s->n / 1000.0 : 0));
	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++)
		json_object_set_new(out, points[i].name,
		                    json_real(percentile_us(s, points[i].p)));
	return out;
}

/* ---- the request ----------------------------------------------------- */

static int
build_request(struct bench *b)
{
	json_t *body = json_pack("{s:s, s:[{s:s, s:s}], s:b}",
	                         "model", b->o.model, "messages", "role", "user",
	                         "content", "Say hello", "stream",
	                         b->o.mode == MODE_STREAM);
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct evbuffer *buf = evbuffer_new();
	int rc = -1;

	if (text == NULL || buf == NULL)
		goto out;

	evbuffer_add_printf(buf, "POST %s HTTP/1.1\r\nHost: %s\r\n"
	                    "Content-Type: application/json\r\n"
	                    "Authorization: Bearer sk-bench\r\n",
	                    b->o.path, b->o.target);
	for (size_t i = 0; i < b->o.n_headers; i++)
		evbuffer_add_printf(buf, "%s\r\n", b->o.headers[i]);
	evbuffer_add_printf(buf, "Content-Length: %zu\r\n\r\n%s", strlen(text), text);

	b->request_len = evbuffer_get_length(buf);
	b->request = malloc(b->request_len);
	if (b->request != NULL) {
		evbuffer_remove(buf, b->request, b->request_len);
		rc = 0;
	}
out:
	free(text);
	json_decref(body);
	if (buf != NULL)
		evbuffer_free(buf);
	return rc;
}

/* ---- stream events --------------------------------------------------- */

/* Whether a chunk carries generated text: a non-empty delta.content of a
 * chat chunk or text of a completion chunk, in its first choice. */
static int
has_content(json_t *event)
{
	json_t *choice = json_array_get(json_object_get(event, "choices"), 0);
	json_t *text = json_object_get(json_object_get(choice, "delta"), "content");

	if (text == NULL)
		text = json_object_get(choice, "text");
	return json_is_string(text) && json_string_length(text) > 0;
}

/*
 * Time to first token of one stream, corrected for the mock's event_delay.
 * Every stream counts, warm-up or not, since streams that last longer than
 * the warm-up would otherwise leave few samples:
 * the request path (request written until the mock queued its first event)
 * plus the relay of the first content event (queued until received). The
 * pause the mock makes before its first content event on purpose is left
 * out, since timer jitter of a millisecond would hide microseconds. Streams
 * whose request followed another on the same connection are also counted
 * apart: they leave out the connection's setup, and the burst of new
 * connections at the start of a run.
 */
static void
record_ttft(struct conn *k, uint64_t stamp)
{
	struct bench *b = k->b;
	uint64_t request_path = k->first_stamp_ns - k->sent_ns;
	uint64_t relay = k->read_ns - stamp;

	if (k->first_stamp_ns < k->sent_ns || k->read_ns < stamp) {
		b->c.parse_errors++;
		return;
	}
	samples_add(&b->ttft, request_path + relay);
	if (k->kept_alive)
		samples_add(&b->ttft_kept_alive, request_path + relay);
	if (b->trace != NULL)
		fprintf(b->trace, "%zu %d %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
		        k->index, k->kept_alive, k->sent_ns, k->first_stamp_ns, stamp, k->read_ns);
}

/* Count each connection once, at the first event it receives, and print
 * "open N" when all N streams are open at the same time. */
static void
note_stream_open(struct conn *k)
{
	struct bench *b = k->b;

	if (k->counted_open)
		return;
	k->counted_open = 1;
	if (++b->streams_open != (size_t)b->o.streams || b->open_reported)
		return;
	b->open_reported = 1;
	b->open_after_s = (double)(now_ns() - b->start_ns) / 1e9;
	printf("open %zu\n", b->streams_open);
	fflush(stdout);
}

static int
on_sse_event(void *arg, const struct tg_sse_event *ev)
{
	struct conn *k = arg;
	struct bench *b = k->b;
	json_t *event, *stamp;
	uint64_t sent;
	int content;

	b->c.events++;
	if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
		return 0;

	event = json_loadb(ev->data, ev->data_len, 0, NULL);
	stamp = json_object_get(event, STAMP_FIELD);
	if (!json_is_integer(stamp)) {
		json_decref(event);
		return 0;
	}
	sent = (uint64_t)json_integer_value(stamp);
	content = has_content(event);
	b->c.stamped_events++;

	/* Tokens get a series of their own, because a gateway may hold an
	 * event without content on purpose (a role chunk until the first
	 * token, so that it can still fail over): that delays no token. */
	if (k->read_ns >= sent && k->read_ns >= b->warm_ns) {
		samples_add(&b->event_latency, k->read_ns - sent);
		if (content)
			samples_add(&b->token_latency, k->read_ns - sent);
	}
	if (!k->got_event) {
		k->got_event = 1;
		k->first_stamp_ns = sent;
		note_stream_open(k);
	}
	if (!k->got_content && content) {
		k->got_content = 1;
		record_ttft(k, sent);
	}
	json_decref(event);
	return 0;
}

/* ---- HTTP responses -------------------------------------------------- */

static int
on_headers_complete(llhttp_t *p)
{
	struct conn *k = p->data;

	k->status = llhttp_get_status_code(p);
	return 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct conn *k = p->data;

	if (k->b->o.mode != MODE_STREAM || k->status != 200)
		return 0;
	return tg_sse_feed(&k->sse, at, len) == 0 ? 0 : -1;
}

static void
finish_response(struct conn *k)
{
	struct bench *b = k->b;
	uint64_t now = k->read_ns;

	k->busy = 0;
	if (k->status != 200) {
		b->c.status_errors++;
		return;
	}
	b->c.completed++;
	if (now >= b->warm_ns)
		b->c.measured++;
	if (b->o.mode == MODE_RATE && k->due_ns >= b->warm_ns) {
		samples_add(&b->latency, now - k->due_ns);
		samples_add(&b->service, now - k->sent_ns);
	}
}

/* Pause after each response, so process_input() can start the next request
 * on this connection before parsing any further bytes. */
static int
on_message_complete(llhttp_t *p)
{
	finish_response(p->data);
	return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- connections ----------------------------------------------------- */

static void
conn_close(struct conn *k)
{
	if (k->readable != NULL)
		event_free(k->readable);
	if (k->writable != NULL)
		event_free(k->writable);
	if (k->fd >= 0)
		evutil_closesocket(k->fd);
	k->readable = k->writable = NULL;
	k->fd = -1;
	k->connecting = k->connected = 0;
	k->busy = 0;
	k->unsent = 0;
	tg_sse_free(&k->sse);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_start(arg);
}

/* Drop a failed connection and open another after a pause, so the number
 * of streams (or the pool) stays what was requested. */
static void
conn_fail(struct conn *k, uint64_t *counter)
{
	struct bench *b = k->b;
	struct timeval tv = { 0, RECONNECT_DELAY_MS * 1000 };

	(*counter)++;
	if (b->o.mode == MODE_RATE && k->busy)
		b->c.status_errors++;   /* the request in flight is lost */
	conn_close(k);
	if (b->stopping)
		return;
	if (k->retry == NULL)
		k->retry = evtimer_new(b->base, on_retry, k);
	if (k->retry != NULL)
		evtimer_add(k->retry, &tv);
}

/* rate: hand the connection the oldest due request, or mark it idle. */
static void
conn_take_work(struct conn *k)
{
	struct bench *b = k->b;

	if (b->backlog_len > 0) {
		uint64_t due = b->backlog[b->backlog_head];

		b->backlog_head = (b->backlog_head + 1) % b->backlog_cap;
		b->backlog_len--;
		conn_send(k, due);
		return;
	}
	if (!k->idle) {
		k->idle = 1;
		b->idle[b->n_idle++] = k->index;
	}
}

/* rate: pop a connected idle connection; failed ones are skipped, and
 * listed again once they reconnect. */
static struct conn *
pop_idle(struct bench *b)
{
	while (b->n_idle > 0) {
		struct conn *k = &b->conns[b->idle[--b->n_idle]];

		k->idle = 0;
		if (k->connected && !k->busy)
			return k;
	}
	return NULL;
}

/* Parse the len bytes just read. After a complete response, start the
 * next request (stream mode) or take queued work (rate mode), then parse
 * the rest. Stops when the connection fails, since k is closed then. */
static void
process_input(struct conn *k, const char *data, size_t len)
{
	while (len > 0 && k->connected) {
		llhttp_errno_t err = llhttp_execute(&k->parser, data, len);
		size_t used;

		if (err == HPE_OK)
			return;
		if (err != HPE_PAUSED) {
			conn_fail(k, &k->b->c.parse_errors);
			return;
		}

		used = (size_t)(llhttp_get_error_pos(&k->parser) - data);
		data += used;
		len -= used;
		llhttp_resume(&k->parser);
		if (k->b->o.mode == MODE_STREAM)
			conn_send(k, k->read_ns);
		else
			conn_take_work(k);
	}
}

/* Read once per wake-up. The event stays armed, so bytes that did not fit
 * in the buffer wake the loop again. */
static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *k = arg;
	ssize_t n;

	(void)what;
	n = recv(fd, k->b->input, sizeof(k->b->input), 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_fail(k, &k->b->c.eof_errors);
		return;
	}
	k->read_ns = now_ns();
	process_input(k, k->b->input, (size_t)n);
}

/* Send what is left of the request. When the socket takes only part of
 * it, wait until it is writable again. */
static void
conn_write(struct conn *k)
{
	struct bench *b = k->b;
	ssize_t n = send(k->fd, b->request + b->request_len - k->unsent,
	                 k->unsent, MSG_NOSIGNAL);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		n = 0;
	if (n < 0) {
		conn_fail(k, &b->c.eof_errors);
		return;
	}
	k->unsent -= (size_t)n;
	if (k->unsent > 0)
		event_add(k->writable, NULL);
}

static void
on_connected(struct conn *k)
{
	struct bench *b = k->b;

	k->connecting = 0;
	k->connected = 1;
	b->c.connects++;
	if (event_add(k->readable, NULL) < 0) {
		conn_fail(k, &b->c.connect_errors);
		return;
	}
	if (b->o.mode == MODE_STREAM)
		conn_send(k, now_ns());
	else
		conn_take_work(k);
}

static void
on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *k = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	(void)what;
	if (!k->connecting) {
		conn_write(k);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
		conn_fail(k, &k->b->c.connect_errors);
	else
		on_connected(k);
}

static void
conn_start(struct conn *k)
{
	struct bench *b = k->b;
	int nodelay = 1;

	k->fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (k->fd < 0) {
		conn_fail(k, &b->c.connect_errors);
		return;
	}
	setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
	k->readable = event_new(b->base, k->fd, EV_READ | EV_PERSIST, on_readable, k);
	k->writable = event_new(b->base, k->fd, EV_WRITE, on_writable, k);
	if (k->readable == NULL || k->writable == NULL) {
		conn_fail(k, &b->c.connect_errors);
		return;
	}
	llhttp_init(&k->parser, HTTP_RESPONSE, &parser_settings);
	k->parser.data = k;
	k->sent_before = 0;

	if (connect(k->fd, (struct sockaddr *)&b->addr, (socklen_t)b->addr_len) == 0) {
		on_connected(k);
		return;
	}
	k->connecting = 1;
	if (errno != EINPROGRESS || event_add(k->writable, NULL) < 0)
		conn_fail(k, &b->c.connect_errors);
}

/* Write the request; due_ns is when it was due (rate) or now (stream). */
static void
conn_send(struct conn *k, uint64_t due_ns)
{
	struct bench *b = k->b;

	if (b->stopping)
		return;
	k->busy = 1;
	k->status = 0;
	k->due_ns = due_ns;
	k->got_event = k->got_content = 0;
	k->kept_alive = k->sent_before;
	k->sent_before = 1;
	if (b->o.mode == MODE_STREAM) {
		tg_sse_free(&k->sse);
		tg_sse_init(&k->sse, 0, on_sse_event, NULL, k);
	}
	k->sent_ns = now_ns();
	if (k->sent_ns > due_ns + 1000000)
		b->c.late++;
	b->c.requests++;
	k->unsent = b->request_len;
	conn_write(k);
}

/* ---- schedule -------------------------------------------------------- */

/* Open each connection when it is due, connect_rate per second spread
 * evenly. Streams opened together last equally long, so they would start
 * and send every event together for the whole run, each waiting for the
 * others in the mock and the gateway. */
static void
on_ramp(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	uint64_t interval = 1000000000u / (uint64_t)b->o.connect_rate;
	uint64_t now = now_ns(), next;
	struct timeval wait;

	(void)fd;
	(void)what;
	while (b->n_started < b->n_conns && b->start_ns + b->n_started * interval <= now)
		conn_start(&b->conns[b->n_started++]);
	if (b->n_started == b->n_conns)
		return;

	next = b->start_ns + b->n_started * interval;
	wait = ns_to_timeval(next > now ? next - now : 0);
	evtimer_add(b->ticker, &wait);
}

static void
backlog_push(struct bench *b, uint64_t due)
{
	if (b->backlog_len == b->backlog_cap) {
		b->overloaded = 1;      /* the target cannot keep up: stop adding */
		b->c.not_sent++;
		return;
	}
	b->backlog[(b->backlog_head + b->backlog_len) % b->backlog_cap] = due;
	b->backlog_len++;
	if (b->backlog_len > b->backlog_max)
		b->backlog_max = b->backlog_len;
}

/*
 * rate: start the sender's periodic timer at due_ns, or stop it when
 * due_ns is 0. The timer is periodic so that no system call is needed to
 * set each wake-up. libevent's precise timer, which this replaces, called
 * timerfd_settime() before every wait, which took about 5 us per request
 * on the virtual machine where it was measured. The period is 1/rate
 * rounded up to a whole nanosecond, so each wake-up comes at or just
 * after a due time. Setting the timer again at the next due time every
 * SENDER_REARM_EXPIRATIONS periods keeps that lag under a microsecond.
 */
static int
sender_arm(struct bench *b, uint64_t due_ns)
{
	struct itimerspec it = {
		.it_value = { (time_t)(due_ns / 1000000000u), (long)(due_ns % 1000000000u) },
		.it_interval = { (time_t)(b->sender_interval_ns / 1000000000u),
		                 (long)(b->sender_interval_ns % 1000000000u) },
	};

	if (due_ns == 0)
		memset(&it, 0, sizeof(it));
	b->sender_expirations = 0;
	return timerfd_settime(b->sender_fd, TFD_TIMER_ABSTIME, &it, NULL);
}

/* rate: send every request that is due by now. The periodic timer brings
 * the next wake-up. */
static void
on_send_due(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	uint64_t expirations, now;

	(void)what;
	if (read(fd, &expirations, sizeof(expirations)) == (ssize_t)sizeof(expirations))
		b->sender_expirations += expirations;

	now = now_ns();
	while (b->next_due_ns <= now && b->next_due_ns < b->end_ns) {
		struct conn *k = pop_idle(b);

		if (k != NULL)
			conn_send(k, b->next_due_ns);
		else
			backlog_push(b, b->next_due_ns);
		b->sent_total++;
		b->next_due_ns = b->start_ns
		                 + (uint64_t)((double)b->sent_total * 1e9 / b->o.rate);
	}
	if (b->next_due_ns >= b->end_ns)
		sender_arm(b, 0);
	else if (b->sender_expirations >= SENDER_REARM_EXPIRATIONS)
		sender_arm(b, b->next_due_ns);
}

static void
on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	uint64_t now = now_ns();

	(void)fd;
	(void)what;

	/* Without precise timers (rate mode), libevent's timers run on
	 * CLOCK_MONOTONIC_COARSE, which lags by up to a clock tick, so this
	 * can fire a few milliseconds early. */
	if (now < b->end_ns) {
		struct timeval rest = ns_to_timeval(b->end_ns - now);

		evtimer_add(b->stopper, &rest);
		return;
	}
	b->stopping = 1;
	event_base_loopbreak(b->base);
}

/* ---- report ---------------------------------------------------------- */

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
	       + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static json_t *
counters_json(const struct counters *c)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
	                 "connects", (json_int_t)c->connects,
	                 "connect_errors", (json_int_t)c->connect_errors,
	                 "status_errors", (json_int_t)c->status_errors,
	                 "eof_errors", (json_int_t)c->eof_errors,
	                 "parse_errors", (json_int_t)c->parse_errors,
	                 "requests", (json_int_t)c->requests,
	                 "completed", (json_int_t)c->completed,
	                 "events", (json_int_t)c->events,
	                 "stamped_events", (json_int_t)c->stamped_events,
	                 "cut_at_end", (json_int_t)c->cut_at_end,
	                 "late", (json_int_t)c->late,
	                 "measured", (json_int_t)c->measured,
	                 "not_sent", (json_int_t)c->not_sent);
}

static void
report(struct bench *b, double elapsed)
{
	double measured = elapsed - b->o.warmup;
	json_t *out = json_object();

	json_object_set_new(out, "mode", json_string(b->o.mode == MODE_STREAM ? "stream" : "rate"));
	json_object_set_new(out, "target", json_string(b->o.target));
	json_object_set_new(out, "model", json_string(b->o.model));
	json_object_set_new(out, "duration_s", json_real(elapsed));
	json_object_set_new(out, "warmup_s", json_real(b->o.warmup));
	json_object_set_new(out, "cpu_s", json_real(cpu_seconds()));
	json_object_set_new(out, "counters", counters_json(&b->c));

	if (b->o.mode == MODE_STREAM) {
		json_object_set_new(out, "streams", json_integer(b->o.streams));
		json_object_set_new(out, "streams_open", json_integer((json_int_t)b->streams_open));
		json_object_set_new(out, "all_open_after_s",
		                    b->open_reported ? json_real(b->open_after_s) : json_null());
		json_object_set_new(out, "events_per_s", json_real(
		                    measured > 0 ? (double)b->event_latency.n / measured : 0));
		json_object_set_new(out, "event_latency_us", samples_json(&b->event_latency));
		json_object_set_new(out, "token_latency_us", samples_json(&b->token_latency));
		json_object_set_new(out, "ttft_us", samples_json(&b->ttft));
		json_object_set_new(out, "ttft_kept_alive_us", samples_json(&b->ttft_kept_alive));
	} else {
		json_object_set_new(out, "rate", json_real(b->o.rate));
		json_object_set_new(out, "connections", json_integer(b->o.connections));
		json_object_set_new(out, "achieved_rps", json_real(
		                    measured > 0 ? (double)b->c.measured / measured : 0));
		json_object_set_new(out, "max_backlog", json_integer((json_int_t)b->backlog_max));
		json_object_set_new(out, "overloaded", json_boolean(b->overloaded));
		json_object_set_new(out, "latency_us", samples_json(&b->latency));
		json_object_set_new(out, "service_latency_us", samples_json(&b->service));
	}

	json_dumpf(out, stdout, JSON_COMPACT | JSON_REAL_PRECISION(9));
	putchar('\n');
	fflush(stdout);
	json_decref(out);
}

/* ---- setup ----------------------------------------------------------- */

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: loadgen stream --target HOST:PORT --streams N [options]\n"
	        "       loadgen rate --target HOST:PORT --rate R [options]\n"
	        "  --path PATH          request path (default /v1/chat/completions)\n"
	        "  --model MODEL        model, with tollgate-mock options after '@'\n"
	        "                       (default gpt-4o; stream mode needs stamp=1)\n"
	        "  --header 'K: V'      extra request header, up to %d times\n"
	        "  --streams N          stream: concurrent streams, 1 to %d\n"
	        "  --rate R             rate: requests per second\n"
	        "  --connections N      rate: keep-alive connections (default 64)\n"
	        "  --duration S         seconds to run, warm-up included (default 10)\n"
	        "  --warmup S           seconds whose samples are dropped (default 1)\n"
	        "  --connect-rate N     new connections per second (default 2000)\n"
	        "  --trace FILE         stream: write one line per stream's first token:\n"
	        "                       connection, kept-alive (0 or 1), request sent,\n"
	        "                       first event stamped, first token stamped and\n"
	        "                       received, in CLOCK_MONOTONIC nanoseconds\n",
	        MAX_HEADERS, MAX_CONNECTIONS);
}

static int
parse_number(const char *name, const char *text, double min, double max,
             double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "loadgen: invalid value \"%s\" for --%s: expected a "
		        "number from %g to %g\n", text, name, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_options(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"target", required_argument, NULL, 't'},
		{"path", required_argument, NULL, 'p'},
		{"model", required_argument, NULL, 'm'},
		{"header", required_argument, NULL, 'H'},
		{"streams", required_argument, NULL, 's'},
		{"rate", required_argument, NULL, 'r'},
		{"connections", required_argument, NULL, 'c'},
		{"duration", required_argument, NULL, 'd'},
		{"warmup", required_argument, NULL, 'w'},
		{"connect-rate", required_argument, NULL, 'C'},
		{"trace", required_argument, NULL, 'T'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	double v;
	int ch;

	if (argc < 2 || (strcmp(argv[1], "stream") != 0 && strcmp(argv[1], "rate") != 0)) {
		usage(stderr);
		return -1;
	}
	o->mode = strcmp(argv[1], "stream") == 0 ? MODE_STREAM : MODE_RATE;
	o->path = "/v1/chat/completions";
	o->model = "gpt-4o";
	o->connections = 64;
	o->duration = 10;
	o->warmup = 1;
	o->connect_rate = 2000;

	optind = 2;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 't': o->target = optarg; break;
		case 'p': o->path = optarg; break;
		case 'm': o->model = optarg; break;
		case 'H':
			if (o->n_headers == MAX_HEADERS) {
				fprintf(stderr, "loadgen: more than %d --header options\n", MAX_HEADERS);
				return -1;
			}
			o->headers[o->n_headers++] = optarg;
			break;
		case 's':
			if (parse_number("streams", optarg, 1, MAX_CONNECTIONS, &v) < 0)
				return -1;
			o->streams = (long)v;
			break;
		case 'r':
			if (parse_number("rate", optarg, 1, 10e6, &o->rate) < 0)
				return -1;
			break;
		case 'c':
			if (parse_number("connections", optarg, 1, MAX_CONNECTIONS, &v) < 0)
				return -1;
			o->connections = (long)v;
			break;
		case 'd':
			if (parse_number("duration", optarg, 0.1, 3600, &o->duration) < 0)
				return -1;
			break;
		case 'w':
			if (parse_number("warmup", optarg, 0, 3600, &o->warmup) < 0)
				return -1;
			break;
		case 'C':
			if (parse_number("connect-rate", optarg, 1, 1e6, &v) < 0)
				return -1;
			o->connect_rate = (long)v;
			break;
		case 'T': o->trace = optarg; break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}

	if (o->target == NULL || (o->mode == MODE_STREAM && o->streams == 0)
	    || (o->mode == MODE_RATE && o->rate == 0) || optind != argc) {
		fprintf(stderr, "loadgen: --target and --streams (stream) or --rate "
		        "(rate) are required; see --help\n");
		return -1;
	}
	if (o->warmup >= o->duration) {
		fprintf(stderr, "loadgen: --warmup %g must be shorter than --duration %g\n",
		        o->warmup, o->duration);
		return -1;
	}
	return 0;
}

/* Raise the open-file limit to what the connections need, within the hard
 * limit (bench/run raises the hard limit with ulimit -n). */
static int
raise_fd_limit(size_t n_conns)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)n_conns + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	if (rl.rlim_cur >= need)
		return 0;
	if (rl.rlim_max < need) {
		fprintf(stderr, "loadgen: %zu connections need %llu open files, but "
		        "the hard limit is %llu; raise it with ulimit -n\n", n_conns,
		        (unsigned long long)need, (unsigned long long)rl.rlim_max);
		return -1;
	}
	rl.rlim_cur = need;
	return setrlimit(RLIMIT_NOFILE, &rl);
}

/* rate: the sender's timer, a timerfd rather than a libevent timer,
 * since libevent's timers have millisecond granularity unless made
 * precise, and precise ones cost a system call per wait (sender_arm()). */
static int
setup_sender(struct bench *b)
{
	b->sender_interval_ns = (uint64_t)(1e9 / b->o.rate);
	if ((double)b->sender_interval_ns * b->o.rate < 1e9)
		b->sender_interval_ns++;        /* round up, see sender_arm() */
	b->sender_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (b->sender_fd < 0)
		return -1;
	b->sender = event_new(b->base, b->sender_fd, EV_READ | EV_PERSIST, on_send_due, b);
	return b->sender != NULL ? 0 : -1;
}

static int
setup(struct bench *b)
{
	struct event_config *cfg = event_config_new();
	double warm_ns = b->o.warmup * 1e9, dur_ns = b->o.duration * 1e9;

	b->addr_len = sizeof(b->addr);
	if (evutil_parse_sockaddr_port(b->o.target, (struct sockaddr *)&b->addr,
	                               &b->addr_len) < 0) {
		fprintf(stderr, "loadgen: invalid --target \"%s\": expected "
		        "IP:PORT, such as 127.0.0.1:8080\n", b->o.target);
		return -1;
	}

	b->n_conns = (size_t)(b->o.mode == MODE_STREAM ? b->o.streams : b->o.connections);
	if (raise_fd_limit(b->n_conns) < 0 || build_request(b) < 0)
		return -1;

	/* Stream mode keeps libevent's precise timers, which pace the
	 * connection ramp to the microsecond instead of the clock tick. Rate
	 * mode has its own send timer (setup_sender()) and does without them,
	 * since they cost a system call before every wait. */
	if (cfg != NULL && b->o.mode == MODE_STREAM)
		event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	b->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	b->conns = calloc(b->n_conns, sizeof(*b->conns));
	b->idle = calloc(b->n_conns, sizeof(*b->idle));
	/* rate: at most one second of requests waits for a free connection.
	 * Past that the target is overloaded, so further due requests are
	 * counted in not_sent instead of queued without bound. */
	b->backlog_cap = b->o.mode == MODE_RATE ? (size_t)(b->o.rate) + 1 : 1;
	b->backlog = calloc(b->backlog_cap, sizeof(*b->backlog));
	if (b->base == NULL || b->conns == NULL || b->idle == NULL || b->backlog == NULL)
		return -1;
	for (size_t i = 0; i < b->n_conns; i++) {
		b->conns[i].b = b;
		b->conns[i].index = i;
		b->conns[i].fd = -1;
	}

	b->start_ns = now_ns();
	b->warm_ns = b->start_ns + (uint64_t)warm_ns;
	b->end_ns = b->start_ns + (uint64_t)dur_ns;
	b->next_due_ns = b->start_ns;
	b->ticker = evtimer_new(b->base, on_ramp, b);
	b->stopper = evtimer_new(b->base, on_stop, b);
	if (b->ticker == NULL || b->stopper == NULL)
		return -1;
	return b->o.mode == MODE_RATE ? setup_sender(b) : 0;
}

static void
teardown(struct bench *b)
{
	for (size_t i = 0; i < b->n_conns; i++) {
		struct conn *k = &b->conns[i];

		conn_close(k);
		if (k->retry != NULL)
			event_free(k->retry);
	}
	if (b->ticker)
		event_free(b->ticker);
	if (b->sender)
		event_free(b->sender);
	if (b->sender_fd >= 0)
		close(b->sender_fd);
	if (b->stopper)
		event_free(b->stopper);
	free(b->conns);
	free(b->idle);
	free(b->backlog);
	free(b->request);
	free(b->event_latency.v);
	free(b->token_latency.v);
	free(b->ttft.v);
	free(b->ttft_kept_alive.v);
	free(b->latency.v);
	free(b->service.v);
	if (b->trace != NULL && fclose(b->trace) != 0)
		fprintf(stderr, "loadgen: writing %s failed: %s\n", b->o.trace, strerror(errno));
	if (b->base)
		event_base_free(b->base);
}

int
main(int argc, char **argv)
{
	struct bench b;
	struct timeval zero = { 0, 0 }, run;
	int rc = 1;

	memset(&b, 0, sizeof(b));
	b.sender_fd = -1;
	if (parse_options(&b.o, argc, argv) < 0)
		return 2;
	if (b.o.trace != NULL && (b.trace = fopen(b.o.trace, "w")) == NULL) {
		fprintf(stderr, "loadgen: cannot open --trace %s: %s\n", b.o.trace, strerror(errno));
		return 2;
	}
	if (setup(&b) < 0) {
		fprintf(stderr, "loadgen: setup failed: %s\n", strerror(errno));
		goto out;
	}

	run = ns_to_timeval(b.end_ns - b.start_ns);
	evtimer_add(b.ticker, &zero);
	evtimer_add(b.stopper, &run);
	if (b.o.mode == MODE_RATE
	    && (sender_arm(&b, b.start_ns) < 0 || event_add(b.sender, NULL) < 0)) {
		fprintf(stderr, "loadgen: starting the send timer failed: %s\n", strerror(errno));
		goto out;
	}
	event_base_dispatch(b.base);

	for (size_t i = 0; i < b.n_conns; i++)
		if (b.conns[i].busy && b.o.mode == MODE_STREAM)
			b.c.cut_at_end++;
	report(&b, (double)(now_ns() - b.start_ns) / 1e9);
	rc = 0;
out:
	teardown(&b);
	return rc;
}
