/*
 * Worker threads. Each worker owns an event base, its own SO_REUSEPORT
 * listening sockets, its client connections and its upstream connection
 * pools; nothing it touches on the request path is shared with another
 * worker, so it takes no lock but its access-log buffer's, which the main
 * thread takes only to flush the buffer before the log is reopened.
 * Otherwise the main thread talks to a worker only through the worker's
 * mailbox (mailbox.h). The event base has no lock (EVENT_BASE_FLAG_NOLOCK),
 * so no other thread may call anything on it, nor on its events,
 * bufferevents and listeners, while the worker runs.
 */
#ifndef TOLLGATE_WORKER_H
#define TOLLGATE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/util.h>
#include <openssl/ssl.h>

#include "accept-pause.h"
#include "accesslog.h"
#include "config-t.h"
#include "errors.h"
#include "log.h"
#include "yajl-jansson.h"

struct event_base;
struct tg_resolver;
struct evconnlistener;
struct tg_client;
struct tg_request;
struct tg_pool;
struct tg_cache_worker;
struct tg_probe;
struct tg_listener_ctx;
struct tg_accept_pause;
struct tg_metrics_shard;
struct tg_tracer;
struct tg_span_pool;
struct tg_mailbox;
struct tg_tls_listener;

/* State shared by all workers, fixed after start-up except where atomic. */
struct tg_runtime {
	atomic_int draining;            /* SIGTERM received */
	atomic_int ready;               /* listeners open, config loaded */
	struct tg_accesslog_file access_log;    /* fd -1 when it is off */
	struct tg_tls_listener *tls_listeners;  /* one per listen address the
	                                           process started with */
	size_t n_tls_listeners;
	struct tg_tracer *tracer;       /* span export; see trace-export.h */
	_Atomic uint64_t accept_errors; /* failed accept() calls, client and
	                                   admin listeners */
	struct tg_accept_limit clients; /* client connections of all workers;
	                                   max set before they start */
};

TAILQ_HEAD(tg_client_list, tg_client);

/*
 * A site: the endpoints that the client connections of a host serve in
 * place of the gateway's routes. The admin listener (admin-conns.c) hosts
 * its connections on a worker struct of the main thread with a site of
 * its own. Its requests are then read, limited, kept alive and rejected by
 * the same code as the gateway's (client.c), and only the handlers differ.
 */
typedef enum tg_error tg_head_refusal_fn(const struct tg_request *req, char *message,
                                         size_t size);

struct tg_site {
	/* Respond to a request read whole, as tg_request_dispatch() does. */
	void (*dispatch)(struct tg_request *req);
	/* The error that the head alone earns a request whose client waits
	 * for 100 Continue, as tg_request_head_refusal() gives it. */
	tg_head_refusal_fn *head_refusal;
	/* Header lines, each ending in CRLF, of a 405 or 501 refused before
	 * the request was read whole: the methods the site takes (Allow). */
	const char *allow_lines;
	/* The bounds of every request, in place of its config's limits. */
	struct tg_limits limits;
	/* The prefix of a bound's name ("max_header") in a message, such
	 * as "limits." on the gateway's listeners. */
	const char *limits_name;
	/* The setting behind every timeout of limits, named in a 408. */
	const char *timeout_name;
};

/* A connection accepted at the connection limit, not yet served. */
struct tg_held_connection {
	evutil_socket_t fd;             /* -1: none */
	struct sockaddr_storage addr;
	int addrlen;
	struct tg_listener_ctx *listener;       /* where it came in; its TLS
	                                           context is read when it is
	                                           served, since a reload may
	                                           replace it meanwhile */
};

/* Ended requests a worker keeps for new ones: at about 2 KiB each, up to
 * 128 KiB per worker, enough for the requests of 64 busy connections. */
#define TG_SPARE_REQUESTS_MAX 64

/* Emptied evbuffers a worker keeps for request and response bodies. */
#define TG_SPARE_BUFFERS_MAX 64

struct tg_worker {
	int id;
	pthread_t thread;
	struct event_base *base;        /* unlocked: the worker's thread only */
	struct tg_mailbox *mailbox;     /* messages from other threads */
	struct tg_resolver *resolver;   /* backend host names (resolve.h) */
	struct tg_runtime *runtime;
	struct tg_config *config;       /* snapshot for new requests (a ref) */

	struct evconnlistener **listeners;
	struct tg_listener_ctx *listener_ctxs;  /* callback argument of each */
	size_t n_listeners;
	struct tg_accept_pause *accept_pause;   /* of the listeners, after
	                                           accept() fails or at the
	                                           connection limit */
	struct tg_held_connection held; /* accepted at the connection limit,
	                                   waiting for room (worker.c) */

	const struct tg_site *site;     /* NULL: the gateway's routes */
	struct tg_client_list clients;  /* oldest first */
	size_t n_clients;
	size_t active_requests;
	int draining;
	uint64_t drain_started_ns;      /* requests begun after it get 503 */

	struct tg_pool *pools;          /* upstream pools, one per backend */
	struct tg_cache_worker *cache;  /* response cache, created on first use */
	struct tg_metrics_shard *metrics;   /* its metric shard */
	struct tg_probe *probes;        /* active health probes (worker 0 only) */
	struct tg_accesslog *access_log; /* its unwritten lines; NULL: log off */
	uint64_t rng;                   /* xorshift64 state for the balancers */
	uint64_t request_seq;           /* for request ids */
	uint64_t id_prefix;             /* random per worker, for request ids */
	struct tg_request *spare_requests[TG_SPARE_REQUESTS_MAX];  /* freed, for reuse */
	size_t n_spare_requests;
	struct evbuffer *spare_buffers[TG_SPARE_BUFFERS_MAX];   /* empty, for reuse */
	size_t n_spare_buffers;
	struct tg_yj_keys scan_keys;    /* scratch of the request body scans */
	struct tg_span_pool *span_pool; /* memory of the spans it makes */
	struct tg_log_limit unreadable_usage_log;       /* metrics-stream.c */

	atomic_int finished;            /* its loop has returned */
};

/* Resolve the address of l for a passive socket; role names it in the
 * message ("listen address"). Returns the list of addresses, of which
 * callers bind the first, to free with evutil_freeaddrinfo(), or NULL after
 * logging "cannot resolve ROLE ADDRESS: REASON". */
struct evutil_addrinfo *tg_listen_resolve(const struct tg_listen *l, const char *role);

/*
 * Check that no other socket listens on l: bind a socket to it without
 * SO_REUSEPORT, then close it. Workers bind with SO_REUSEPORT, so without
 * this check a second process that sets it too would share the port and
 * take part of the connections. Call it at start, before any worker binds
 * l, since the workers' own sockets make it fail. Returns 0, or -1 after
 * logging "cannot listen on ADDRESS: REASON".
 */
int tg_listen_probe(const struct tg_listen *l);

/* Create a worker and open its listeners for cfg. On failure, logs the
 * address that could not be bound and returns NULL. */
struct tg_worker *tg_worker_new(int id, struct tg_config *cfg,
                                struct tg_runtime *rt);
int tg_worker_start(struct tg_worker *w);

/* Wait for w's thread, write its access-log lines until log_deadline_ns
 * (tg_now_ns) at the latest, and free it. */
void tg_worker_join_and_free(struct tg_worker *w, uint64_t log_deadline_ns);

/* Free a worker whose thread never started, as after a failed start. */
void tg_worker_free(struct tg_worker *w);

/*
 * Create a host of client connections on base, the event base of the
 * calling thread, that serve site: a worker struct without a thread,
 * listeners, upstream pools, metric shard or access log, whose
 * connections the caller accepts with tg_client_accept(). Its requests
 * read cfg, to which it takes a reference. pause, which stays the
 * caller's, hears of each connection closed (tg_accept_pause_closed()).
 * Returns NULL when out of memory.
 */
struct tg_worker *tg_worker_host_new(struct event_base *base, struct tg_config *cfg,
                                     struct tg_runtime *rt, const struct tg_site *site,
                                     struct tg_accept_pause *pause);

/* Let the requests that begin on host from now on read cfg, to which it
 * takes a reference, after a reload. */
void tg_worker_host_set_config(struct tg_worker *host, struct tg_config *cfg);

/* Close the connections of host and free it, before its event base is
 * freed. host may be NULL. */
void tg_worker_host_free(struct tg_worker *host);

/* Thread-safe: from the main thread. Each queues a message that w's
 * thread handles in the order posted; one posted after w stopped is
 * dropped when w is freed. */
void tg_worker_post_config(struct tg_worker *w, struct tg_config *cfg);
void tg_worker_post_drain(struct tg_worker *w);
/* Close every connection now: the drain deadline passed, or (by_signal) a
 * second stop signal arrived. The log line names which. */
void tg_worker_post_force_stop(struct tg_worker *w, int by_signal);

/* Worker thread only: a client connection of w was set up, or has closed.
 * The place it took under the connection limit was counted when it was
 * accepted (worker.c), and the close gives it back. */
void tg_worker_client_opened(struct tg_worker *w);
void tg_worker_client_closed(struct tg_worker *w);

/* Write the next request id of w, 32 lowercase hex digits and a NUL, into
 * buf of size bytes (at least 33). */
void tg_worker_next_request_id(struct tg_worker *w, char *buf, size_t size);

/* Return an empty evbuffer, one of w's spares when it has one: a spare
 * saves an evbuffer_new() and an evbuffer_free(), about 500 instructions.
 * Returns NULL when out of memory. */
struct evbuffer *tg_worker_buffer_take(struct tg_worker *w);

/* Give back buf, an evbuffer of w's thread that the caller is done with
 * (NULL is ignored): it is emptied and kept as a spare, or freed. The
 * caller must not have set callbacks on buf or frozen it. Another buffer
 * may still hold buf by reference, as a connection's output holds an
 * upstream request. libevent counts the references to buf and to each of
 * its chains, so that buffer keeps the bytes while buf is reused. */
void tg_worker_buffer_give(struct tg_worker *w, struct evbuffer *buf);

#endif
