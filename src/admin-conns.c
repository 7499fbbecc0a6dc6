/*
 * The connections of the admin listener; see admin-conns.h.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "accept-pause.h"
#include "admin-conns.h"
#include "client.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "request-t.h"
#include "worker.h"

struct tg_admin_conns {
	struct evconnlistener *listener;
	struct tg_accept_pause *pause;
	struct event *resume;                   /* accepts again after a close */
	struct tg_worker *host;                 /* serves the connections */
	size_t max;
	uint64_t evicted_unlogged;              /* closed since the last log line */
	uint64_t logged_ns;                     /* tg_now_ns of that line; 0: none */
	char owner[96];                         /* "admin listener ADDRESS" */
};

/* Log the first eviction, then at most one line per
 * TG_ACCEPT_LOG_INTERVAL_MS with the count since the line before. */
static void
log_eviction(struct tg_admin_conns *c)
{
	uint64_t now_ns = tg_now_ns();
	char count[64] = "";

	c->evicted_unlogged++;
	if (c->logged_ns != 0 &&
	    now_ns - c->logged_ns < TG_ACCEPT_LOG_INTERVAL_MS * TG_NS_PER_MS)
		return;
	if (c->logged_ns != 0)
		snprintf(count, sizeof(count), ", %" PRIu64 " times since the last message",
		         c->evicted_unlogged);
	tg_warn("%s: closed the oldest connection to accept a new one, at "
	        "admin_max_connections %zu%s", c->owner, c->max, count);
	c->evicted_unlogged = 0;
	c->logged_ns = now_ns;
}

/* Make room for a new connection: close the oldest ones while max are
 * open. The host keeps its connections oldest first. Returns whether it
 * closed one. */
static int
make_room(struct tg_admin_conns *c)
{
	struct tg_client *oldest;
	int closed = 0;

	while (c->host->n_clients >= c->max &&
	       (oldest = TAILQ_FIRST(&c->host->clients)) != NULL) {
		log_eviction(c);
		tg_client_close(oldest, TG_CAUSE_GATEWAY);
		closed = 1;
	}
	return closed;
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_admin_conns *c = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(c->listener);
}

/*
 * Accept a connection, closing the oldest one at max. libevent 2.1 closes
 * the socket of a freed bufferevent later in the same turn of the event
 * loop, while the listener accepts every connection queued in one call.
 * So after a close the listener stops (which ends that call) and accepts
 * again from the next turn on: a flood costs one descriptor past max, not
 * one per connection queued.
 */
static void
accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
          int addrlen, void *arg)
{
	struct tg_admin_conns *c = arg;

	if (make_room(c)) {
		evconnlistener_disable(listener);
		event_active(c->resume, 0, 0);
	}
	tg_client_accept(c->host, fd, addr, addrlen, NULL, NULL);
}

static void
accept_error_cb(struct evconnlistener *listener, void *arg)
{
	struct tg_admin_conns *c = arg;

	(void)listener;
	tg_accept_pause_error(c->pause, EVUTIL_SOCKET_ERROR());
}

/* Bind the listener of c to l on base. Returns 0, or -1 after logging
 * why. */
static int
open_listener(struct tg_admin_conns *c, struct event_base *base, const struct tg_listen *l)
{
	struct evutil_addrinfo *ai = tg_listen_resolve(l, "admin address");

	if (ai == NULL)
		return -1;
	c->listener = evconnlistener_new_bind(base, accept_cb, c,
	                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
	                                      LEV_OPT_REUSEABLE, 128,
	                                      ai->ai_addr, (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	if (c->listener == NULL) {
		tg_error("cannot listen on admin address %s: %s", l->address,
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}
	evconnlistener_set_error_cb(c->listener, accept_error_cb);
	return 0;
}

struct tg_admin_conns *
tg_admin_conns_new(struct event_base *base, struct tg_config *cfg, struct tg_runtime *rt,
                   const struct tg_site *site, size_t max)
{
	struct tg_admin_conns *c = calloc(1, sizeof(*c));

	assert(max >= 1);
	if (c == NULL) {
		tg_error("cannot start the admin server on %s: out of memory", cfg->admin.address);
		return NULL;
	}
	c->max = max;
	snprintf(c->owner, sizeof(c->owner), "admin listener %s", cfg->admin.address);
	if (open_listener(c, base, &cfg->admin) != 0) {
		tg_admin_conns_free(c);
		return NULL;
	}

	c->resume = event_new(base, -1, 0, resume_cb, c);
	c->pause = tg_accept_pause_new(base, &c->listener, 1, c->owner, &rt->accept_errors,
	                               NULL);
	if (c->pause != NULL && c->resume != NULL)
		c->host = tg_worker_host_new(base, cfg, rt, site, c->pause);
	if (c->host == NULL) {
		tg_error("cannot start the admin server on %s: out of memory", cfg->admin.address);
		tg_admin_conns_free(c);
		return NULL;
	}
	return c;
}

void
tg_admin_conns_set_config(struct tg_admin_conns *c, struct tg_config *cfg)
{
	tg_worker_host_set_config(c->host, cfg);
}

void
tg_admin_conns_free(struct tg_admin_conns *c)
{
	if (c == NULL)
		return;
	tg_worker_host_free(c->host);   /* its closes reach the pause */
	tg_accept_pause_free(c->pause);
	if (c->resume != NULL)
		event_free(c->resume);
	if (c->listener != NULL)
		evconnlistener_free(c->listener);
	free(c);
}
