/*
 * Worker threads: listeners, the event loop, configuration swaps, draining.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/rand.h>

#include "accept-pause.h"
#include "cache.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "mailbox.h"
#include "metrics.h"
#include "probe.h"
#include "request.h"
#include "resolve.h"
#include "tls-handshake.h"
#include "trace-context.h"
#include "trace-span.h"
#include "upstream.h"
#include "worker.h"

#define LISTEN_BACKLOG 1024

/* The callback argument of one listener of a worker. tls is the context
 * of new connections, a reference that the worker's thread replaces on
 * reload (take_listener_tls()). Open connections keep the context they
 * started with, because each SSL holds a reference to it. */
struct tg_listener_ctx {
	struct tg_worker *worker;
	SSL_CTX *tls;                   /* NULL for plain HTTP */
	struct tg_tls_listener *listen; /* its address, shared by the workers */
};

/* Count a new connection of w against the connection limit, closing w's
 * longest-idle keep-alive connection when that makes room. Returns 1 when
 * it was counted. */
static int
claim_place(struct tg_worker *w)
{
	if (tg_accept_pause_claim(w->accept_pause))
		return 1;
	return tg_client_close_longest_idle(w) && tg_accept_pause_claim(w->accept_pause);
}

/* Serve a connection whose place is counted. tg_client_accept() closes fd
 * when it fails, without tg_worker_client_opened(), so the place is given
 * back here. */
static void
serve_counted(struct tg_worker *w, evutil_socket_t fd, struct sockaddr *addr, int addrlen,
              struct tg_listener_ctx *ctx)
{
	size_t before = w->n_clients;

	tg_client_accept(w, fd, addr, addrlen, ctx->tls, ctx->listen);
	if (w->n_clients == before)
		tg_accept_pause_closed(w->accept_pause);
}

static void
accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
          struct sockaddr *addr, int addrlen, void *arg)
{
	struct tg_listener_ctx *ctx = arg;
	struct tg_worker *w = ctx->worker;

	(void)listener;
	if (claim_place(w)) {
		serve_counted(w, fd, addr, addrlen, ctx);
		return;
	}

	/* The listeners are off while a connection is held, unless the
	 * resume timer could not be set; then the new one is closed, since
	 * its descriptor is the spare of the limit. */
	if (w->held.fd != -1) {
		evutil_closesocket(fd);
		return;
	}

	/* At the limit: keep the connection unserved, and stop accepting
	 * until start_held() finds room for it. */
	w->held.fd = fd;
	w->held.addrlen = addrlen < (int)sizeof(w->held.addr) ? addrlen : (int)sizeof(w->held.addr);
	memcpy(&w->held.addr, addr, (size_t)w->held.addrlen);
	w->held.listener = ctx;
	tg_accept_pause_hold(w->accept_pause);
}

/* The room callback of w's accept pause: serve the held connection once
 * it has a place. Returns 1 when it was served. */
static int
start_held(void *arg)
{
	struct tg_worker *w = arg;
	evutil_socket_t fd = w->held.fd;

	if (fd == -1)
		return 1;
	if (!claim_place(w))
		return 0;
	w->held.fd = -1;
	serve_counted(w, fd, (struct sockaddr *)&w->held.addr, w->held.addrlen, w->held.listener);
	return 1;
}

/* Close the connection held at the limit, when the listeners close. A
 * client that has sent a request on it gets a reset, as do those still in
 * the listen queue. */
static void
close_held(struct tg_worker *w)
{
	if (w->held.fd == -1)
		return;
	evutil_closesocket(w->held.fd);
	w->held.fd = -1;
}

static void
accept_error_cb(struct evconnlistener *listener, void *arg)
{
	struct tg_listener_ctx *ctx = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)listener;
	tg_accept_pause_error(ctx->worker->accept_pause, err);
}

struct evutil_addrinfo *
tg_listen_resolve(const struct tg_listen *l, const char *role)
{
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                                .ai_flags = EVUTIL_AI_PASSIVE};
	struct evutil_addrinfo *ai = NULL;
	int rc = evutil_getaddrinfo(l->host, l->port, &hints, &ai);

	if (rc != 0) {
		tg_error("cannot resolve %s %s: %s", role, l->address, evutil_gai_strerror(rc));
		return NULL;
	}
	return ai;
}

int
tg_listen_probe(const struct tg_listen *l)
{
	struct evutil_addrinfo *ai = tg_listen_resolve(l, "listen address");
	evutil_socket_t fd;
	int rc = -1;

	if (ai == NULL)
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		tg_error("cannot check listen address %s: %s", l->address, strerror(errno));
		goto done;
	}

	/* SO_REUSEADDR, as the workers set it, so that connections of an
	 * earlier run in TIME_WAIT do not count as a listener. */
	if (evutil_make_listen_socket_reuseable(fd) != 0 ||
	    bind(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) != 0)
		tg_error("cannot listen on %s: %s", l->address, strerror(errno));
	else
		rc = 0;
	evutil_closesocket(fd);

done:
	evutil_freeaddrinfo(ai);
	return rc;
}

/* Bind one listening socket of this worker; SO_REUSEPORT lets every worker
 * bind the same address and the kernel spread connections among them. */
static struct evconnlistener *
open_listener(struct tg_worker *w, const struct tg_listen *l,
              struct tg_listener_ctx *ctx)
{
	struct evutil_addrinfo *ai = tg_listen_resolve(l, "listen address");
	struct evconnlistener *listener;

	if (ai == NULL)
		return NULL;
	listener = evconnlistener_new_bind(w->base, accept_cb, ctx,
	                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
	                                   LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT,
	                                   LISTEN_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	if (listener == NULL) {
		tg_error("cannot listen on %s: %s", l->address, strerror(errno));
		return NULL;
	}
	evconnlistener_set_error_cb(listener, accept_error_cb);
	return listener;
}

/* Free the listeners and the connection held at the limit, and drop a
 * pending resume of a pause, which would enable them. */
static void
close_listeners(struct tg_worker *w)
{
	tg_accept_pause_cancel(w->accept_pause);
	close_held(w);
	for (size_t i = 0; i < w->n_listeners; i++) {
		if (w->listeners[i] == NULL)
			continue;
		evconnlistener_free(w->listeners[i]);
		w->listeners[i] = NULL;
	}
}

/* Create the worker's event base without the lock that libevent otherwise
 * takes around every event once evthread_use_pthreads() was called. Only
 * the worker's thread touches the base, and other threads go through
 * w->mailbox. */
static struct event_base *
new_base(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (cfg == NULL)
		return NULL;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

/* Seed the request ids and the balancers' random numbers of w, whose id
 * is set. */
static void
seed_ids(struct tg_worker *w)
{
	if (RAND_bytes((unsigned char *)&w->id_prefix, sizeof(w->id_prefix)) != 1)
		w->id_prefix = ((uint64_t)getpid() << 32) ^ (uint64_t)w->id;
	w->rng = w->id_prefix | 1;      /* xorshift64 must not start at 0 */
}

/* Free the listeners' callback arguments and their TLS references. */
static void
free_listener_ctxs(struct tg_worker *w)
{
	for (size_t i = 0; w->listener_ctxs != NULL && i < w->n_listeners; i++)
		SSL_CTX_free(w->listener_ctxs[i].tls);
	free(w->listener_ctxs);
	w->listener_ctxs = NULL;
}

struct tg_worker *
tg_worker_new(int id, struct tg_config *cfg, struct tg_runtime *rt)
{
	struct tg_worker *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->id = id;
	w->held.fd = -1;
	w->runtime = rt;
	w->config = tg_config_ref(cfg);
	TAILQ_INIT(&w->clients);
	seed_ids(w);

	w->base = new_base();
	w->mailbox = w->base ? tg_mailbox_new(w->base) : NULL;
	w->resolver = w->base ? tg_resolver_new(w->base, &cfg->resolver) : NULL;
	w->listeners = calloc(cfg->n_listen, sizeof(*w->listeners));
	w->listener_ctxs = calloc(cfg->n_listen, sizeof(*w->listener_ctxs));
	w->metrics = tg_metrics_shard_new(id);
	w->span_pool = tg_span_pool_new();
	if (w->base != NULL) {
		char owner[32];

		w->access_log = tg_accesslog_new(&rt->access_log, w->base, cfg);
		snprintf(owner, sizeof(owner), "worker %d", id);
		w->accept_pause = tg_accept_pause_new(w->base, w->listeners, cfg->n_listen, owner,
		                                      &rt->accept_errors, &rt->clients);
		if (w->accept_pause != NULL)
			tg_accept_pause_set_room_cb(w->accept_pause, start_held, w);
	}
	if (w->base == NULL || w->mailbox == NULL || w->resolver == NULL || w->listeners == NULL ||
	    w->listener_ctxs == NULL || w->metrics == NULL || w->accept_pause == NULL ||
	    w->span_pool == NULL)
		goto fail;

	w->n_listeners = cfg->n_listen;
	for (size_t i = 0; i < cfg->n_listen; i++) {
		w->listener_ctxs[i].worker = w;
		w->listener_ctxs[i].listen = &rt->tls_listeners[i];
		if (cfg->listen[i].tls_ctx != NULL) {
			SSL_CTX_up_ref(cfg->listen[i].tls_ctx);
			w->listener_ctxs[i].tls = cfg->listen[i].tls_ctx;
		}
		w->listeners[i] = open_listener(w, &cfg->listen[i], &w->listener_ctxs[i]);
		if (w->listeners[i] == NULL)
			goto fail;
	}
	return w;

fail:
	close_listeners(w);
	tg_accept_pause_free(w->accept_pause);
	free(w->listeners);
	free_listener_ctxs(w);
	tg_accesslog_free(w->access_log, 0);
	tg_resolver_free(w->resolver);
	tg_mailbox_free(w->mailbox);
	if (w->base != NULL)
		event_base_free(w->base);
	tg_metrics_shard_free(w->metrics);
	tg_span_pool_release(w->span_pool);
	tg_config_unref(w->config);
	free(w);
	return NULL;
}

static void *
worker_main(void *arg)
{
	struct tg_worker *w = arg;

	if (w->id == 0)
		tg_probes_restart(w);
	event_base_dispatch(w->base);
	atomic_store(&w->finished, 1);
	return NULL;
}

int
tg_worker_start(struct tg_worker *w)
{
	int rc = pthread_create(&w->thread, NULL, worker_main, w);

	if (rc != 0)
		tg_error("cannot start worker %d: %s", w->id, strerror(rc));
	return rc == 0 ? 0 : -1;
}

/* Close the connections of w, as after a forced stop. */
static void
close_clients(struct tg_worker *w)
{
	struct tg_client *c;

	while ((c = TAILQ_FIRST(&w->clients)) != NULL)
		tg_client_close(c, TG_CAUSE_DRAIN);
}

/* Free the requests and buffers that w keeps for reuse. */
static void
free_spares(struct tg_worker *w)
{
	for (size_t i = 0; i < w->n_spare_requests; i++)
		free(w->spare_requests[i]);
	for (size_t i = 0; i < w->n_spare_buffers; i++)
		evbuffer_free(w->spare_buffers[i]);
	tg_yj_keys_free(&w->scan_keys);
}

/* Free w and its resources once its thread has ended or never started. */
static void
free_worker(struct tg_worker *w, uint64_t log_deadline_ns)
{
	close_clients(w);
	tg_accesslog_free(w->access_log, log_deadline_ns);  /* writes the last lines */
	close_listeners(w);
	tg_accept_pause_free(w->accept_pause);
	free(w->listeners);
	free_listener_ctxs(w);
	tg_probes_stop(w);
	tg_cache_worker_free(w->cache);
	tg_upstream_pools_free(w);
	tg_metrics_shard_free(w->metrics);
	tg_resolver_free(w->resolver);
	tg_mailbox_free(w->mailbox);    /* drops messages that came too late */
	event_base_free(w->base);
	tg_config_unref(w->config);
	free_spares(w);
	tg_span_pool_release(w->span_pool);     /* its spans may outlive it */
	free(w);
}

void
tg_worker_join_and_free(struct tg_worker *w, uint64_t log_deadline_ns)
{
	pthread_join(w->thread, NULL);
	free_worker(w, log_deadline_ns);
}

void
tg_worker_free(struct tg_worker *w)
{
	free_worker(w, tg_now_ns());
}

struct tg_worker *
tg_worker_host_new(struct event_base *base, struct tg_config *cfg, struct tg_runtime *rt,
                   const struct tg_site *site, struct tg_accept_pause *pause)
{
	struct tg_worker *host = calloc(1, sizeof(*host));

	assert(site != NULL);
	if (host == NULL)
		return NULL;
	host->id = -1;
	host->base = base;
	host->runtime = rt;
	host->config = tg_config_ref(cfg);
	host->site = site;
	host->accept_pause = pause;
	TAILQ_INIT(&host->clients);
	seed_ids(host);
	return host;
}

void
tg_worker_host_set_config(struct tg_worker *host, struct tg_config *cfg)
{
	/* Requests in flight keep their own reference to the old snapshot. */
	tg_config_unref(host->config);
	host->config = tg_config_ref(cfg);
}

void
tg_worker_host_free(struct tg_worker *host)
{
	if (host == NULL)
		return;
	close_clients(host);
	tg_config_unref(host->config);
	free_spares(host);
	free(host);
}

/* --- messages from the main thread ------------------------------------------ */

/* Post deliver(arg) to w's thread, logging what is lost on failure. */
static void
post(struct tg_worker *w, tg_mail_fn *deliver, tg_mail_fn *discard, void *arg,
     const char *what)
{
	if (tg_mailbox_post(w->mailbox, deliver, discard, arg) == 0)
		return;
	tg_error("cannot send worker %d the %s: out of memory", w->id, what);
	if (discard != NULL)
		discard(arg);
}

struct config_message {
	struct tg_worker *worker;
	struct tg_config *config;
};

/* The TLS context that w->config gives the listen address of l, or NULL
 * when it names that address no more or serves it without TLS: a listen
 * address and whether it serves TLS take effect after a restart only. */
static SSL_CTX *
listener_tls_in_config(const struct tg_worker *w, const struct tg_listener_ctx *l)
{
	for (size_t i = 0; i < w->config->n_listen; i++) {
		const struct tg_listen *entry = &w->config->listen[i];

		if (strcmp(entry->address, l->listen->address) == 0)
			return entry->tls_ctx;
	}
	return NULL;
}

/* Give w's TLS listeners the contexts of w->config, made from the
 * certificate and key files as they were at the reload, for new
 * connections. */
static void
take_listener_tls(struct tg_worker *w)
{
	for (size_t i = 0; i < w->n_listeners; i++) {
		struct tg_listener_ctx *l = &w->listener_ctxs[i];
		SSL_CTX *fresh = l->tls != NULL ? listener_tls_in_config(w, l) : NULL;

		if (fresh == NULL || fresh == l->tls)
			continue;
		SSL_CTX_up_ref(fresh);
		SSL_CTX_free(l->tls);
		l->tls = fresh;
	}
}

static void
swap_config(void *arg)
{
	struct config_message *msg = arg;
	struct tg_worker *w = msg->worker;

	/* Requests in flight keep their own reference to the old snapshot. */
	tg_config_unref(w->config);
	w->config = msg->config;
	free(msg);
	tg_accesslog_configure(w->access_log, w->config);
	take_listener_tls(w);
	tg_resolver_set_bounds(w->resolver, &w->config->resolver);
	tg_metrics_config_swapped(w->metrics);
	if (w->id == 0)
		tg_probes_restart(w);
}

static void
discard_config(void *arg)
{
	struct config_message *msg = arg;

	tg_config_unref(msg->config);
	free(msg);
}

void
tg_worker_post_config(struct tg_worker *w, struct tg_config *cfg)
{
	struct config_message *msg = malloc(sizeof(*msg));

	if (msg == NULL) {
		tg_error("cannot send worker %d the new configuration: out of memory", w->id);
		return;
	}
	msg->worker = w;
	msg->config = tg_config_ref(cfg);
	post(w, swap_config, discard_config, msg, "new configuration");
}

static void
maybe_exit(struct tg_worker *w)
{
	if (w->draining && w->n_clients == 0)
		event_base_loopexit(w->base, NULL);
}

static void
drain(void *arg)
{
	struct tg_worker *w = arg;
	struct tg_client *c, *next;

	w->draining = 1;
	w->drain_started_ns = tg_now_ns();
	close_listeners(w);

	/* Idle keep-alive connections close now; busy ones after their
	 * response (relay sends Connection: close while draining). */
	for (c = TAILQ_FIRST(&w->clients); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		tg_client_close_if_idle(c);
	}
	maybe_exit(w);
}

void
tg_worker_post_drain(struct tg_worker *w)
{
	post(w, drain, NULL, w, "drain request");
}

static void
force_stop(struct tg_worker *w, const char *why)
{
	struct tg_client *c;

	if (w->n_clients > 0)
		tg_warn("worker %d: %s; closing %zu connection%s", w->id, why,
		        w->n_clients, w->n_clients == 1 ? "" : "s");
	while ((c = TAILQ_FIRST(&w->clients)) != NULL)
		tg_client_close(c, TG_CAUSE_DRAIN);
	event_base_loopexit(w->base, NULL);
}

static void
deadline_stop(void *arg)
{
	force_stop(arg, "drain deadline reached");
}

static void
signal_stop(void *arg)
{
	force_stop(arg, "second stop signal");
}

void
tg_worker_post_force_stop(struct tg_worker *w, int by_signal)
{
	post(w, by_signal ? signal_stop : deadline_stop, NULL, w, "stop request");
}

/* --- worker thread helpers -------------------------------------------------- */

void
tg_worker_client_opened(struct tg_worker *w)
{
	w->n_clients++;
}

void
tg_worker_client_closed(struct tg_worker *w)
{
	w->n_clients--;
	tg_accept_pause_closed(w->accept_pause);
	maybe_exit(w);
}

struct evbuffer *
tg_worker_buffer_take(struct tg_worker *w)
{
	if (w->n_spare_buffers > 0)
		return w->spare_buffers[--w->n_spare_buffers];
	return evbuffer_new();
}

void
tg_worker_buffer_give(struct tg_worker *w, struct evbuffer *buf)
{
	if (buf == NULL)
		return;
	if (w->n_spare_buffers == TG_SPARE_BUFFERS_MAX ||
	    evbuffer_drain(buf, evbuffer_get_length(buf)) != 0) {
		evbuffer_free(buf);
		return;
	}
	w->spare_buffers[w->n_spare_buffers++] = buf;
}

void
tg_worker_next_request_id(struct tg_worker *w, char *buf, size_t size)
{
	uint64_t parts[2] = {w->id_prefix, ++w->request_seq};
	uint8_t bytes[16];

	assert(size >= 2 * sizeof(bytes) + 1);
	(void)size;
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(parts[i / 8] >> (56 - 8 * (i % 8)));
	tg_hex_encode(buf, bytes, sizeof(bytes));
}
