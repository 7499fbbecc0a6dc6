/*
 * Upstream connections and their per-worker pools.
 *
 * A connection serves one exchange at a time. Its states:
 *
 *   CONNECTING --connected--> WAITING --first byte--> READING --end--> IDLE
 *                                 ^                                     |
 *                                 +-------------- reused ---------------+
 *
 * Each state has one timer: the backend's connect, first_byte (until the
 * whole response head arrived) and idle timeouts, and the pool's
 * idle_timeout while pooled. A response head may be at most
 * UPSTREAM_MAX_HEAD bytes, so a hostile upstream cannot grow it unbounded,
 * and must carry a status from 100 to 599 and no transfer coding but
 * chunked. An idle connection that becomes readable was closed (or spoke
 * out of turn) and is dropped.
 */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <llhttp.h>

#include "clock.h"
#include "log.h"
#include "request-head.h"
#include "resolve.h"
#include "socket-reader.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

#define UPSTREAM_MAX_HEAD (64 * 1024)

/* Closed connections a pool keeps, with their timers, for new ones. Taking
 * one saves a calloc(), an evtimer_new(), an event_free() and a free():
 * about 1,000 instructions under callgrind. A few suffice, because each
 * connection that closes makes room for one that opens. */
#define POOL_SPARES_MAX 16

enum conn_state {
	CONN_CONNECTING,
	CONN_WAITING,           /* request sent, response head not complete */
	CONN_READING,           /* response under way */
	CONN_IDLE,              /* in the pool */
};

struct tg_pool {
	struct tg_pool *next;
	char *key;              /* backend name, URL and TLS settings */
	int tls;                /* https: connections take the TLS context of
	                           their request's config (tg_backend.tls_ctx) */
	TAILQ_HEAD(, tg_upstream_conn) idle;
	size_t n_idle;
	struct tg_upstream_conn *spares;        /* closed, kept for new ones */
	size_t n_spares;
};

struct tg_upstream_conn {
	struct tg_worker *worker;
	struct tg_pool *pool;
	struct bufferevent *bev;
	struct tg_socket_reader reader; /* reads bev: enable and disable through
	                                   it, not the bufferevent */
	struct event *timer;
	llhttp_t parser;
	enum conn_state state;
	TAILQ_ENTRY(tg_upstream_conn) idle_link;
	struct tg_upstream_conn *next_spare;    /* while in the pool's spares */
	struct tg_resolve_wait resolve_wait;    /* linked while a named host's
	                                           answer is awaited */
	unsigned addr_tries;    /* failed connects to a named host's addresses,
	                           for this exchange */
	uint64_t connect_end_ns;        /* a named host's connects share the
	                                   connect timeout up to this time */
	const char *resolve_error;      /* why the name failed at once, or NULL */

	/* The exchange under way; unset while pooled. */
	const struct tg_backend *backend;
	const struct tg_upstream_handler *handler;
	void *arg;
	struct evbuffer *request;       /* the caller's, kept for a resend */
	struct tg_backend_timeouts timeouts;
	size_t max_idle;
	tg_msec_t idle_keepalive;

	int reused;             /* taken from the pool for this exchange */
	int resent;             /* the stale-connection resend was used */
	int got_bytes;          /* some response byte arrived */
	int interim;            /* parsing a 1xx response, which is skipped */
	int head_request;       /* the request is HEAD: the response has no body */
	int keepalive;          /* the response allows reuse */
	int in_parser;          /* inside llhttp_execute */
	int cancelled;          /* cancelled from inside the parser */
	int stopped;            /* the handler returned non-zero */
	int paused;
	int idle_armed;         /* the timer is the idle timeout, see arm_idle() */
	uint64_t last_read_ns;  /* of the response, while idle_armed */
	size_t head_bytes;      /* of the response head so far */
	char head_error[160];   /* why a parser callback rejected the head, or "" */
	int refused_status;     /* the status of a whole head refused, or 0 */

	struct tg_headers headers;
	struct tg_header_part field;   /* header name being assembled */
	struct tg_header_part value;   /* header value being assembled */
};

static void conn_free(struct tg_upstream_conn *c);
static int conn_connect(struct tg_upstream_conn *c);
static int conn_open(struct tg_upstream_conn *c);
static void connect_address(struct tg_upstream_conn *c, const struct sockaddr *addr,
                            int addr_len);
static void connect_named_address(struct tg_upstream_conn *c, const struct sockaddr *addr,
                                  int addr_len);
static int conn_write_request(struct tg_upstream_conn *c);

static void
arm(struct tg_upstream_conn *c, tg_msec_t ms)
{
	struct timeval tv = tg_timeval_ms(ms);

	c->idle_armed = 0;
	event_add(c->timer, &tv);
}

/*
 * Arm the timer of a request just sent or a connection just started, for
 * ms from now. libevent counts a timeout from the time it cached when the
 * loop woke, and the request may come after long work in that same turn
 * (a filter on a large prompt, a slow plugin). Counted from the cached
 * time, the timer would fire at once and blame the backend for the
 * gateway's delay, so the time is read again first. The other arms follow
 * a read of the socket in the turn, or only close an idle pooled
 * connection early, and skip the clock read.
 */
static void
arm_from_now(struct tg_upstream_conn *c, tg_msec_t ms)
{
	event_base_update_cache_time(event_get_base(c->timer));
	arm(c, ms);
}

static void
disarm(struct tg_upstream_conn *c)
{
	c->idle_armed = 0;
	event_del(c->timer);
}

/*
 * Restart the idle timeout after a read. A stream reads once per event, and
 * moving the timer in libevent's heap each time showed in profiles, so the
 * timer stays where it is and only the time of the read is noted. When it
 * fires early, conn_timer_cb() arms it again for the rest of the timeout.
 */
static void
arm_idle(struct tg_upstream_conn *c)
{
	c->last_read_ns = tg_now_ns();
	if (c->idle_armed)
		return;
	arm(c, c->timeouts.idle);
	c->idle_armed = 1;
}

/* Arm the idle timer again when reads came after it was set; returns 1 if
 * it did, 0 when the timeout has passed. */
static int
rearm_idle(struct tg_upstream_conn *c)
{
	uint64_t timeout_ns = (uint64_t)c->timeouts.idle * TG_NS_PER_MS;
	uint64_t quiet_ns = tg_now_ns() - c->last_read_ns;

	if (quiet_ns >= timeout_ns)
		return 0;
	arm(c, (tg_msec_t)((timeout_ns - quiet_ns + TG_NS_PER_MS - 1) / TG_NS_PER_MS));
	c->idle_armed = 1;
	return 1;
}

/* --- pools ---------------------------------------------------------------- */

static char *
pool_key(const struct tg_backend *b)
{
	char *key;

	if (asprintf(&key, "%s|%s|%s|%s", b->name, b->url, b->tls_config.verify ? "1" : "0",
	             b->tls_config.ca_file ? b->tls_config.ca_file : "") < 0)
		return NULL;
	return key;
}

/* Match one "|"-separated field of a pool key at *key and step past it. */
static int
key_field_is(const char **key, const char *field, char end)
{
	size_t len = strlen(field);

	if (strncmp(*key, field, len) != 0 || (*key)[len] != end)
		return 0;
	*key += len + 1;
	return 1;
}

/* 1 when key is pool_key(b); compared field by field, since every
 * request looks its pool up and formatting the key cost 1,700
 * instructions. */
static int
pool_key_is(const char *key, const struct tg_backend *b)
{
	return key_field_is(&key, b->name, '|') && key_field_is(&key, b->url, '|') &&
	       key_field_is(&key, b->tls_config.verify ? "1" : "0", '|') &&
	       key_field_is(&key, b->tls_config.ca_file ? b->tls_config.ca_file : "", '\0');
}

/* The worker's pool for backend, created on first use. Backends keep their
 * pool across reloads as long as name, URL and TLS settings stay the same. */
static struct tg_pool *
pool_get(struct tg_worker *w, const struct tg_backend *b)
{
	char *key;
	struct tg_pool *p;

	for (p = w->pools; p != NULL; p = p->next) {
		if (pool_key_is(p->key, b))
			return p;
	}

	key = pool_key(b);
	if (key == NULL)
		return NULL;

	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		free(key);
		return NULL;
	}
	p->key = key;
	p->tls = b->tls;
	TAILQ_INIT(&p->idle);
	p->next = w->pools;
	w->pools = p;
	return p;
}

/* Take an idle connection out of the pool, or return NULL. Its timer still
 * runs the idle keepalive: the caller arms it anew or frees the connection
 * before the event loop runs, which saves an event_del(). */
static struct tg_upstream_conn *
pool_take(struct tg_pool *p)
{
	struct tg_upstream_conn *c = TAILQ_FIRST(&p->idle);

	if (c == NULL)
		return NULL;
	TAILQ_REMOVE(&p->idle, c, idle_link);
	p->n_idle--;
	return c;
}

static int
pool_put(struct tg_upstream_conn *c)
{
	struct tg_pool *p = c->pool;

	if (p->n_idle >= c->max_idle || c->worker->draining)
		return -1;
	c->state = CONN_IDLE;
	c->backend = NULL;
	c->handler = NULL;
	c->arg = NULL;
	c->request = NULL;
	TAILQ_INSERT_HEAD(&p->idle, c, idle_link);
	p->n_idle++;
	tg_socket_reader_enable(&c->reader);
	arm(c, c->idle_keepalive);
	return 0;
}

void
tg_upstream_pools_free(struct tg_worker *w)
{
	struct tg_pool *p = w->pools;

	while (p != NULL) {
		struct tg_pool *next = p->next;
		struct tg_upstream_conn *c;

		while ((c = pool_take(p)) != NULL)
			conn_free(c);
		while ((c = p->spares) != NULL) {
			p->spares = c->next_spare;
			event_free(c->timer);
			free(c);
		}
		free(p->key);
		free(p);
		p = next;
	}
	w->pools = NULL;
}

/* --- ending an exchange ----------------------------------------------------- */

/* Put c, closed and emptied, among its pool's spares. It is left as
 * conn_new() makes a connection: zeroed but for its worker, pool and
 * timer. */
static void
conn_keep_spare(struct tg_upstream_conn *c)
{
	struct tg_worker *w = c->worker;
	struct tg_pool *p = c->pool;
	struct event *timer = c->timer;

	event_del(timer);
	memset(c, 0, sizeof(*c));
	c->worker = w;
	c->pool = p;
	c->timer = timer;
	tg_headers_init(&c->headers);

	c->next_spare = p->spares;
	p->spares = c;
	p->n_spares++;
}

/* Close c, which must not be in the pool. Its memory is kept as a spare
 * while the pool has room, else freed. No handler call follows. */
static void
conn_free(struct tg_upstream_conn *c)
{
	tg_resolve_cancel(&c->resolve_wait);
	if (c->bev != NULL) {
		tg_socket_reader_release(&c->reader);
		bufferevent_free(c->bev);
	}
	tg_headers_free(&c->headers);
	tg_header_part_free(&c->field);
	tg_header_part_free(&c->value);

	if (c->pool->n_spares < POOL_SPARES_MAX) {
		conn_keep_spare(c);
		return;
	}
	event_free(c->timer);
	free(c);
}

/* Drop a pooled connection that closed or timed out. */
static void
conn_drop_idle(struct tg_upstream_conn *c)
{
	TAILQ_REMOVE(&c->pool->idle, c, idle_link);
	c->pool->n_idle--;
	conn_free(c);
}

static void
conn_fail(struct tg_upstream_conn *c, enum tg_error err, const char *detail)
{
	const struct tg_upstream_handler *handler = c->handler;
	void *arg = c->arg;
	char text[256];

	snprintf(text, sizeof(text), "%s", detail ? detail : "");
	conn_free(c);
	handler->on_error(arg, err, text);
}

/* Fail c for the head its parser refused. A head refused whole has a
 * status, which the handler gets first (upstream.h). */
static void
fail_refused_head(struct tg_upstream_conn *c)
{
	if (c->refused_status != 0 && c->handler->on_head_refused != NULL)
		c->handler->on_head_refused(c->arg, c->refused_status);
	conn_fail(c, TG_E_UPSTREAM_INVALID, c->head_error);
}

static void
conn_complete(struct tg_upstream_conn *c)
{
	const struct tg_upstream_handler *handler = c->handler;
	void *arg = c->arg;

	/* An upstream may respond before it read the whole request. With part
	 * of the request still unsent, the connection is not reused: the rest
	 * would reach the upstream ahead of the next request, which could
	 * then be read as a different one. */
	int reusable = c->keepalive &&
	               evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
	               evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;

	/* pool_put() moves the timer, and conn_free() deletes it. */
	if (!reusable || pool_put(c) != 0)
		conn_free(c);
	handler->on_complete(arg);
}

/* --- response parsing ------------------------------------------------------- */

static int
on_message_begin(llhttp_t *p)
{
	struct tg_upstream_conn *c = p->data;

	tg_headers_free(&c->headers);
	tg_header_part_clear(&c->field);
	tg_header_part_clear(&c->value);
	c->head_bytes = 0;
	return 0;
}

/* Count n more bytes of response head; non-zero stops the parser. */
static int
head_grew(struct tg_upstream_conn *c, size_t n)
{
	c->head_bytes += n;
	if (c->head_bytes <= UPSTREAM_MAX_HEAD)
		return 0;
	snprintf(c->head_error, sizeof(c->head_error), "response head larger than 64 KiB");
	return HPE_USER;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct tg_upstream_conn *c = p->data;

	if (head_grew(c, len) != 0)
		return HPE_USER;
	return tg_header_part_add(&c->field, at, len) ? HPE_USER : 0;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct tg_upstream_conn *c = p->data;

	if (head_grew(c, len) != 0)
		return HPE_USER;
	return tg_header_part_add(&c->value, at, len) ? HPE_USER : 0;
}

static int
on_header_value_complete(llhttp_t *p)
{
	struct tg_upstream_conn *c = p->data;
	int rc;

	rc = tg_headers_add_parts(&c->headers, &c->field, &c->value);
	tg_header_part_clear(&c->field);
	tg_header_part_clear(&c->value);
	return rc ? HPE_USER : 0;
}

static int
on_headers_complete(llhttp_t *p)
{
	struct tg_upstream_conn *c = p->data;
	const char *coding;
	size_t coding_len;
	char coding_error[160];

	/* llhttp 8.1 accepts any status up to 999. RFC 9110 section 15 defines
	 * only 100-599, and a client cannot act on another status, so such a
	 * response is invalid like one llhttp rejects. This check comes first
	 * because a status under 100 would otherwise be skipped as interim. */
	if (p->status_code < 100 || p->status_code > 599) {
		snprintf(c->head_error, sizeof(c->head_error),
		         "status %d is outside 100-599", p->status_code);
		return HPE_USER;
	}

	/* 1xx responses are interim; the real one follows. An interim
	 * response has no body (RFC 9110 section 15.2), even with framing
	 * headers. Returning 1 makes llhttp skip the body, so bytes sent as
	 * one are read as the start of the next response. */
	c->interim = p->status_code < 200;
	if (c->interim)
		return 1;

	/* llhttp decodes chunked and no other transfer coding: a body whose
	 * last coding is another is read until the connection closes, and a
	 * coding before chunked stays on the bytes. Transfer-Encoding is
	 * hop-by-hop, so relaying those bytes would hand the client a coded
	 * body without saying so. The check is the one a request's head
	 * passes, and such a response is invalid. */
	if (tg_request_head_check_transfer_coding(&c->headers, p->http_major, p->http_minor,
	                                          coding_error, sizeof(coding_error)) != TG_OK) {
		snprintf(c->head_error, sizeof(c->head_error),
		         "unsupported Transfer-Encoding \"%.32s\": only chunked is decoded",
		         tg_headers_get(&c->headers, "Transfer-Encoding"));
		c->refused_status = p->status_code;
		return HPE_USER;
	}

	/* A coded body would reach the metrics, filters and cache as bytes
	 * they cannot read, and the client under a header the gateway may
	 * have made false by rewriting the body. */
	if ((coding = tg_headers_content_coding(&c->headers, &coding_len)) != NULL) {
		snprintf(c->head_error, sizeof(c->head_error),
		         "Content-Encoding \"%.*s\" although the gateway asked for "
		         "identity: it reads replies and cannot decode them",
		         (int)(coding_len < 32 ? coding_len : 32), coding);
		c->refused_status = p->status_code;
		return HPE_USER;
	}

	c->state = CONN_READING;

	if (c->handler->on_head(c->arg, p->status_code, &c->headers) != 0) {
		c->stopped = 1;
		return HPE_USER;
	}

	/* A response to HEAD, a 204 and a 304 have no body, whatever
	 * Content-Length or Transfer-Encoding they carry (RFC 9110 sections
	 * 9.3.2, 15.3.5 and 15.4.5), but llhttp 8.1 reads such framing of a 204
	 * or 304 as a body. It would keep the exchange waiting for bytes that
	 * never come, until the idle timeout blamed the backend. */
	return c->head_request || p->status_code == 204 || p->status_code == 304 ? 1 : 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct tg_upstream_conn *c = p->data;

	assert(!c->interim);
	if (c->handler->on_body(c->arg, at, len) != 0) {
		c->stopped = 1;
		return HPE_USER;
	}
	return 0;
}

static int
on_message_complete(llhttp_t *p)
{
	struct tg_upstream_conn *c = p->data;

	if (c->interim) {
		c->interim = 0;
		return 0;
	}
	c->keepalive = llhttp_should_keep_alive(p);
	return HPE_PAUSED;
}

static const llhttp_settings_t response_settings = {
	.on_message_begin = on_message_begin,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* Feed the input to the parser. Returns 1 when the exchange ended (and c
 * may be freed), 0 when more input is needed. */
static int
conn_parse(struct tg_upstream_conn *c)
{
	struct evbuffer *input = bufferevent_get_input(c->bev);

	while (evbuffer_get_length(input) > 0) {
		struct evbuffer_iovec chunk;
		llhttp_errno_t rc;
		size_t consumed;

		evbuffer_peek(input, -1, NULL, &chunk, 1);
		c->in_parser = 1;
		rc = llhttp_execute(&c->parser, chunk.iov_base, chunk.iov_len);
		c->in_parser = 0;
		consumed = rc == HPE_OK ? chunk.iov_len
		         : (size_t)(llhttp_get_error_pos(&c->parser) - (const char *)chunk.iov_base);

		/* A header line that this chunk cut off goes on in the next one,
		 * so its text leaves the chunk before the chunk is drained. A
		 * cancelled exchange reports no error. */
		if (rc == HPE_OK && !c->cancelled &&
		    (tg_header_part_keep(&c->field) != 0 || tg_header_part_keep(&c->value) != 0)) {
			conn_fail(c, TG_E_INTERNAL, "out of memory for a response header");
			return 1;
		}
		evbuffer_drain(input, consumed);

		if (c->cancelled || c->stopped) {
			conn_free(c);
			return 1;
		}
		if (rc == HPE_PAUSED) {
			conn_complete(c);
			return 1;
		}
		if (rc != HPE_OK && c->head_error[0] != '\0') {
			fail_refused_head(c);
			return 1;
		}
		if (rc != HPE_OK) {
			char detail[160];

			snprintf(detail, sizeof(detail), "%s: %s", llhttp_errno_name(rc),
			         llhttp_get_error_reason(&c->parser));
			conn_fail(c, TG_E_UPSTREAM_INVALID, detail);
			return 1;
		}
	}
	return 0;
}

/* --- events ----------------------------------------------------------------- */

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct tg_upstream_conn *c = arg;

	(void)bev;
	if (c->state == CONN_IDLE) {
		/* A pooled connection must stay silent until it is used. */
		conn_drop_idle(c);
		return;
	}

	c->got_bytes = 1;

	/* The first_byte timer runs until the head is whole; then each read
	 * restarts the idle timer. */
	if (conn_parse(c) == 0 && !c->paused && c->state == CONN_READING)
		arm_idle(c);
}

/* 1 for errors of the gateway's own resources, not of the backend: they
 * must not count against its health. */
static int
is_local_shortage(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

static void
describe_connect_error(struct tg_upstream_conn *c, char *buf, size_t size,
                       enum tg_error *err)
{
	/* The error of the failed call: for a deferred callback, libevent 2.1
	 * saves it when the event is raised and sets it again before the call. */
	int sys_error = EVUTIL_SOCKET_ERROR();

	if (c->resolve_error != NULL) {
		*err = TG_E_UPSTREAM_CONNECT;
		snprintf(buf, size, "resolving %s: %s", c->backend->host, c->resolve_error);
	} else if (c->pool->tls && tg_tls_session_error(c->bev, buf, size) != NULL) {
		*err = TG_E_UPSTREAM_TLS;
	} else if (is_local_shortage(sys_error)) {
		*err = TG_E_OVERLOADED;
		snprintf(buf, size, "opening a connection to %s:%s: %s", c->backend->host,
		         c->backend->port, evutil_socket_error_to_string(sys_error));
	} else if (c->pool->tls && c->state == CONN_CONNECTING && sys_error == 0) {
		*err = TG_E_UPSTREAM_TLS;
		snprintf(buf, size, "TLS handshake with %s:%s failed",
		         c->backend->host, c->backend->port);
	} else {
		*err = TG_E_UPSTREAM_CONNECT;
		snprintf(buf, size, "%s:%s: %s", c->backend->host, c->backend->port,
		         sys_error ? evutil_socket_error_to_string(sys_error) : "connection closed");
	}
}

/*
 * After a failed or timed-out connect to a named host, connect to its next
 * address, so that one dead address of several does not count as a
 * backend failure. The next one gets its share of the connect timeout that
 * is left (connect_named_address), so the attempt as a whole still ends
 * within the backend's connect timeout, as attempt.c expects. Returns 1
 * when a connect started, 0 when no address or no time is left (or err is
 * not the backend's), and the caller reports the failure.
 */
static int
conn_connect_next(struct tg_upstream_conn *c, enum tg_error err)
{
	const struct tg_backend *b = c->backend;
	struct sockaddr_storage ss;
	int len;

	/* A timeout while the name is still being resolved tried no address,
	 * and a name that failed to resolve has none. */
	if (b->addr_len > 0 || c->resolve_wait.entry != NULL || c->resolve_error != NULL ||
	    (err != TG_E_UPSTREAM_CONNECT && err != TG_E_UPSTREAM_CONNECT_TIMEOUT))
		return 0;
	if (tg_now_ns() >= c->connect_end_ns)
		return 0;
	len = tg_resolve_fallback(c->worker->resolver, b->host, c->resolve_wait.index,
	                          ++c->addr_tries, b->port_number, &ss);
	if (len == 0 || conn_open(c) != 0)
		return 0;
	tg_debug("backend %s: connect to an address of %s %s; trying the next one",
	         b->name, b->host, err == TG_E_UPSTREAM_CONNECT ? "failed" : "timed out");
	connect_named_address(c, (const struct sockaddr *)&ss, len);
	return 1;
}

/* The connection closed or failed while an exchange was under way. */
static void
conn_lost(struct tg_upstream_conn *c, short events)
{
	char detail[256];
	enum tg_error err = TG_E_UPSTREAM_RESET;

	/* A stale pooled connection: the upstream closed it before reading
	 * the request, so the request is sent once more on a new one. */
	if (c->reused && !c->got_bytes && !c->resent) {
		tg_debug("backend %s: pooled connection was closed; resending on a new one",
		         c->backend->name);
		c->resent = 1;
		if (conn_connect(c) == 0)
			return;
		conn_fail(c, TG_E_UPSTREAM_CONNECT, "cannot open a new connection");
		return;
	}

	if (c->state == CONN_CONNECTING) {
		describe_connect_error(c, detail, sizeof(detail), &err);
		if (conn_connect_next(c, err))
			return;
		conn_fail(c, err, detail);
		return;
	}

	/* A body delimited by the close is complete at EOF. */
	if ((events & BEV_EVENT_EOF) && c->got_bytes) {
		c->in_parser = 1;
		llhttp_errno_t rc = llhttp_finish(&c->parser);
		c->in_parser = 0;

		if (c->cancelled || c->stopped) {
			conn_free(c);
			return;
		}
		if (rc == HPE_PAUSED) {
			c->keepalive = 0;
			conn_complete(c);
			return;
		}
	}

	snprintf(detail, sizeof(detail), "%s after %s",
	         (events & BEV_EVENT_EOF) ? "connection closed" : "connection reset",
	         c->got_bytes ? "part of the response" : "the request was sent");
	conn_fail(c, err, detail);
}

static void
conn_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct tg_upstream_conn *c = arg;

	(void)bev;
	if (events & BEV_EVENT_CONNECTED) {
		int one = 1;

		/* Requests go out in one write; Nagle's algorithm would only
		 * delay the next one on a reused connection. */
		setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (!c->pool->tls && conn_write_request(c) != 0) {
			conn_fail(c, TG_E_OVERLOADED, "no memory to queue the request");
			return;
		}
		tg_socket_reader_connected(&c->reader);
		c->state = CONN_WAITING;
		arm(c, c->timeouts.first_byte);
		if (c->handler->on_connected != NULL)
			c->handler->on_connected(c->arg);
		return;
	}
	if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;

	if (c->state == CONN_IDLE) {
		conn_drop_idle(c);
		return;
	}
	conn_lost(c, events);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_upstream_conn *c = arg;
	int idle_armed = c->idle_armed;
	char detail[128];

	(void)fd;
	(void)what;
	c->idle_armed = 0;
	switch (c->state) {
	case CONN_IDLE:
		conn_drop_idle(c);
		return;
	case CONN_CONNECTING:
		if (conn_connect_next(c, TG_E_UPSTREAM_CONNECT_TIMEOUT))
			return;
		snprintf(detail, sizeof(detail), "no connection to %s:%s after %llu ms",
		         c->backend->host, c->backend->port,
		         (unsigned long long)c->timeouts.connect);
		conn_fail(c, TG_E_UPSTREAM_CONNECT_TIMEOUT, detail);
		return;
	case CONN_WAITING:
		snprintf(detail, sizeof(detail), "no complete response head after %llu ms",
		         (unsigned long long)c->timeouts.first_byte);
		conn_fail(c, TG_E_UPSTREAM_FIRST_BYTE_TIMEOUT, detail);
		return;
	case CONN_READING:
		if (idle_armed && rearm_idle(c))
			return;
		snprintf(detail, sizeof(detail), "no response byte for %llu ms",
		         (unsigned long long)c->timeouts.idle);
		conn_fail(c, TG_E_UPSTREAM_IDLE_TIMEOUT, detail);
		return;
	}
}

/* --- starting an exchange --------------------------------------------------- */

static struct bufferevent *
new_bufferevent(struct tg_upstream_conn *c)
{
	/* Deferred callbacks: no handler call can happen inside
	 * tg_upstream_send(), even when connect fails at once. */
	int options = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	struct bufferevent *bev;
	SSL *ssl;

	if (c->backend->tls_ctx == NULL)
		return bufferevent_socket_new(c->worker->base, -1, options);

	/* The context of the request's config: after a reload, new
	 * connections verify against the CA file as it was then. */
	ssl = tg_tls_client_ssl(c->backend->tls_ctx, c->backend->host,
	                        c->backend->tls_config.verify);
	if (ssl == NULL)
		return NULL;
	bev = bufferevent_openssl_socket_new(c->worker->base, -1, ssl,
	                                     BUFFEREVENT_SSL_CONNECTING, options);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	/* Many servers close without a TLS close_notify, so the HTTP framing
	 * decides whether the response was complete. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/*
 * Send what of the request a connected plain connection takes at once,
 * while nothing is queued before it. Queued bytes would arm the write
 * event, and the bufferevent would disarm it once they are out: an
 * epoll_ctl pair and a turn of the event loop for every request. Returns
 * the bytes sent. On an error nothing is sent, and the queued write meets
 * the error again, where the connection's usual error handling takes it.
 */
static size_t
send_now(struct tg_upstream_conn *c)
{
	struct evbuffer_iovec vec[8];
	struct msghdr msg = {0};
	ssize_t sent;
	int n;

	if (c->backend->tls || evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
		return 0;
	/* The first 8 extents at most: the rest is queued. */
	n = evbuffer_peek(c->request, -1, NULL, vec, 8);
	if (n <= 0)
		return 0;

	/* Where sys/uio.h exists, evbuffer_iovec is struct iovec itself. */
	msg.msg_iov = vec;
	msg.msg_iovlen = (size_t)(n < 8 ? n : 8);
	sent = sendmsg(bufferevent_getfd(c->bev), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	return sent > 0 ? (size_t)sent : 0;
}

/* Queue the request after its first sent bytes. The bufferevent freezes
 * the front of its output, so the sent part is dropped from a reference
 * of the request's own, and what is left moves to the output. */
static int
queue_rest(struct evbuffer *out, struct evbuffer *request, size_t sent)
{
	struct evbuffer *rest = evbuffer_new();
	int rc = -1;

	if (rest != NULL && evbuffer_add_buffer_reference(rest, request) == 0 &&
	    evbuffer_drain(rest, sent) == 0)
		rc = evbuffer_add_buffer(out, rest);
	if (rest != NULL)
		evbuffer_free(rest);
	return rc;
}

/* Make c ready to read the response of a new exchange. */
static void
conn_reset_response(struct tg_upstream_conn *c)
{
	llhttp_init(&c->parser, HTTP_RESPONSE, &response_settings);
	c->parser.data = c;
	c->got_bytes = 0;
	c->head_error[0] = '\0';
	c->refused_status = 0;
	c->interim = 0;
	c->keepalive = 0;
}

/* Write the request on the connection; the timer of its state runs. The
 * request stays whole in c->request, for a resend on a new connection. */
static int
conn_write_request(struct tg_upstream_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t sent = send_now(c);

	if (sent == 0)
		return evbuffer_add_buffer_reference(out, c->request);
	if (sent == evbuffer_get_length(c->request))
		return 0;
	return queue_rest(out, c->request, sent);
}

/*
 * Connect to addr, with no lookup. Every failure, an immediate one included
 * (no descriptor left, a refused connect), reaches conn_event_cb() as
 * BEV_EVENT_ERROR once the event loop runs: the bufferevent defers its
 * callbacks. Numeric hosts and named ones fail alike.
 */
static void
connect_address(struct tg_upstream_conn *c, const struct sockaddr *addr, int addr_len)
{
	if (bufferevent_socket_connect(c->bev, addr, addr_len) != 0)
		bufferevent_trigger_event(c->bev, BEV_EVENT_ERROR, 0);
}

/*
 * Connect to one address of a named host, with its share of the connect
 * timeout left: the time left divided among the addresses of its family
 * still to try. A blackholed address then leaves the others time, and the
 * last one tried ends at connect_end_ns, as one connect would. An address
 * that fails at once leaves its share to the next ones.
 */
static void
connect_named_address(struct tg_upstream_conn *c, const struct sockaddr *addr, int addr_len)
{
	const struct tg_backend *b = c->backend;
	unsigned left = tg_resolve_left_in_family(c->worker->resolver, b->host, c->addr_tries);
	uint64_t now = tg_now_ns();
	uint64_t ms = now < c->connect_end_ns ? (c->connect_end_ns - now) / TG_NS_PER_MS : 0;

	if (left > 1)
		ms /= left;
	arm(c, ms > 0 ? ms : 1);
	connect_address(c, addr, addr_len);
}

/* The answer a connect to a named host waited for. */
static void
resolved_cb(struct tg_resolve_wait *wait, const struct sockaddr *addr, int addr_len,
            const char *error)
{
	struct tg_upstream_conn *c = (struct tg_upstream_conn *)
		(void *)((char *)wait - offsetof(struct tg_upstream_conn, resolve_wait));
	char detail[256];

	if (addr != NULL) {
		connect_named_address(c, addr, addr_len);
		return;
	}
	snprintf(detail, sizeof(detail), "resolving %s: %s", c->backend->host, error);
	conn_fail(c, TG_E_UPSTREAM_CONNECT, detail);
}

/* Connect to an address of c's named host: the worker's cached answer, or
 * the next one when none is usable (resolve.h). The error text of a name
 * that fails at once is a static string of the resolver. */
static void
connect_named(struct tg_upstream_conn *c)
{
	const struct tg_backend *b = c->backend;
	struct sockaddr_storage ss;
	const char *error;
	int len;

	c->resolve_wait.done = resolved_cb;
	len = tg_resolve(c->worker->resolver, b->host, b->port_number, &ss, &c->resolve_wait,
	                 &error);

	/* The failure reaches conn_lost() from the event loop, like that of a
	 * connect, and fails the exchange with the name and the error. */
	if (len < 0) {
		c->resolve_error = error;
		bufferevent_trigger_event(c->bev, BEV_EVENT_ERROR, 0);
		return;
	}
	if (len > 0)
		connect_named_address(c, (const struct sockaddr *)&ss, len);
}

/* Give c a new bufferevent (replacing any it had), not yet connected, and
 * queue the request. */
static int
conn_open(struct tg_upstream_conn *c)
{
	tg_resolve_cancel(&c->resolve_wait);
	if (c->bev != NULL) {
		tg_socket_reader_release(&c->reader);
		bufferevent_free(c->bev);
	}
	c->reused = 0;
	c->state = CONN_CONNECTING;
	c->resolve_error = NULL;
	c->bev = new_bufferevent(c);
	if (c->bev == NULL)
		return -1;
	tg_socket_reader_init(&c->reader, c->bev, !c->pool->tls);
	bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);

	/* The connect completes, or fails, on the write event. A plain
	 * socket's reader starts reading at BEV_EVENT_CONNECTED. */
	bufferevent_enable(c->bev, EV_WRITE);
	tg_socket_reader_enable(&c->reader);
	arm_from_now(c, c->timeouts.connect);

	/* A TLS connection takes the request now and sends it after the
	 * handshake. A plain one sends it once connected, in conn_event_cb(),
	 * straight to the socket as a pooled one does. Queueing it here cost
	 * a reference in the output and libevent's write: about 770
	 * instructions more under callgrind. */
	conn_reset_response(c);
	if (c->pool->tls && conn_write_request(c) != 0)
		return -1;
	return 0;
}

/* Open a new connection for c (replacing any it had) and queue the request. */
static int
conn_connect(struct tg_upstream_conn *c)
{
	const struct tg_backend *b = c->backend;

	if (conn_open(c) != 0)
		return -1;
	c->addr_tries = 0;
	if (b->addr_len > 0) {
		connect_address(c, (const struct sockaddr *)&b->addr, b->addr_len);
		return 0;
	}
	c->connect_end_ns = tg_now_ns() + c->timeouts.connect * TG_NS_PER_MS;
	connect_named(c);
	return 0;
}

/* Return a connection of pool p with nothing open, a spare or a new one,
 * or NULL when out of memory. */
static struct tg_upstream_conn *
conn_new(struct tg_worker *w, struct tg_pool *p)
{
	struct tg_upstream_conn *c = p->spares;

	if (c != NULL) {
		p->spares = c->next_spare;
		p->n_spares--;
		c->next_spare = NULL;
		return c;
	}

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->timer = evtimer_new(w->base, conn_timer_cb, c);
	if (c->timer == NULL) {
		free(c);
		return NULL;
	}
	c->worker = w;
	c->pool = p;
	tg_headers_init(&c->headers);
	return c;
}

static void
conn_attach(struct tg_upstream_conn *c, const struct tg_backend *b,
            struct evbuffer *request, const struct tg_upstream_handler *handler,
            void *arg)
{
	char method[5];

	/* The request line is the gateway's own, so the method is its
	 * first word, followed by one space. */
	c->backend = b;
	c->request = request;
	c->head_request = evbuffer_copyout(request, method, sizeof(method)) == sizeof(method) &&
	                  memcmp(method, "HEAD ", sizeof(method)) == 0;
	c->handler = handler;
	c->arg = arg;
	c->timeouts = b->timeouts;
	c->max_idle = b->max_idle;
	c->idle_keepalive = b->idle_keepalive;
	c->resent = 0;
	c->cancelled = 0;
	c->stopped = 0;
	c->paused = 0;
}

struct tg_upstream_conn *
tg_upstream_send(struct tg_worker *w, const struct tg_backend *backend,
                 struct evbuffer *request, const struct tg_upstream_handler *handler,
                 void *arg, enum tg_error *err)
{
	struct tg_pool *p = pool_get(w, backend);
	struct tg_upstream_conn *c;

	*err = backend->tls ? TG_E_UPSTREAM_TLS : TG_E_INTERNAL;
	if (p == NULL)
		return NULL;

	c = pool_take(p);
	if (c != NULL) {
		conn_attach(c, backend, request, handler, arg);
		c->reused = 1;
		c->state = CONN_WAITING;
		conn_reset_response(c);
		if (conn_write_request(c) != 0) {
			conn_free(c);
			return NULL;
		}
		arm_from_now(c, c->timeouts.first_byte);
		if (handler->on_connected != NULL)
			handler->on_connected(arg);
		return c;
	}

	c = conn_new(w, p);
	if (c == NULL)
		return NULL;
	conn_attach(c, backend, request, handler, arg);
	if (conn_connect(c) != 0) {
		*err = is_local_shortage(errno) ? TG_E_OVERLOADED : TG_E_UPSTREAM_CONNECT;
		conn_free(c);
		return NULL;
	}
	return c;
}

void
tg_upstream_cancel(struct tg_upstream_conn *c)
{
	if (c->in_parser) {
		c->cancelled = 1;
		return;
	}
	conn_free(c);
}

void
tg_upstream_pause(struct tg_upstream_conn *c)
{
	if (c == NULL || c->paused)
		return;
	c->paused = 1;
	tg_socket_reader_disable(&c->reader);

	/* A slow client is not a silent upstream. */
	disarm(c);
}

void
tg_upstream_resume(struct tg_upstream_conn *c)
{
	if (!c->paused)
		return;
	c->paused = 0;
	tg_socket_reader_enable(&c->reader);
	arm(c, c->timeouts.idle);
}
