/*
 * The connection cap of the admin listener; see admin-conns.h.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/queue.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "accept-pause.h"
#include "admin-conns.h"
#include "admin-pages.h"
#include "clock.h"
#include "log.h"

/* One connection of the set. It holds a reference on the bufferevent, so
 * that the set can still ask the bufferevent whom it belongs to should
 * evhttp ever free the connection without calling the close callback. */
struct admin_conn {
	TAILQ_ENTRY(admin_conn) link;
	struct tg_admin_conns *set;
	struct bufferevent *bev;
	struct tg_admin_pages *pages;           /* text pages in place of evhttp's */
	struct evhttp_connection *evcon;        /* NULL until adopted */
};

TAILQ_HEAD(admin_conn_list, admin_conn);

struct tg_admin_conns {
	struct evconnlistener **listener;       /* NULL once detached */
	struct tg_accept_pause *pause;          /* NULL once detached */
	struct event *adopt;                    /* adopts the new connections */
	struct admin_conn_list fresh;           /* made by evhttp, not yet adopted */
	struct admin_conn_list adopted;         /* oldest first */
	size_t open;                            /* fresh and adopted */
	size_t max;
	int paused;                             /* stopped the listener at max + 1 */
	uint64_t evicted_unlogged;              /* closed since the last log line */
	uint64_t logged_ns;                     /* tg_now_ns of that line; 0: none */
	char owner[64];
};

static void
release(struct tg_admin_conns *c, struct admin_conn *conn, struct admin_conn_list *list)
{
	TAILQ_REMOVE(list, conn, link);
	tg_admin_pages_free(conn->pages);
	bufferevent_decref(conn->bev);
	free(conn);
	assert(c->open > 0);
	c->open--;
}

/* Let the listener accept again once a close brings the set to max. */
static void
note_closed(struct tg_admin_conns *c)
{
	if (c->listener == NULL)
		return;
	if (c->paused && c->open <= c->max && *c->listener != NULL) {
		evconnlistener_enable(*c->listener);
		c->paused = 0;
	}
	tg_accept_pause_closed(c->pause);
}

/* evhttp calls this from evhttp_connection_free(), before it frees the
 * bufferevent. */
static void
closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct admin_conn *conn = arg;
	struct tg_admin_conns *c = conn->set;

	(void)evcon;
	release(c, conn, &c->adopted);
	note_closed(c);
}

/* Return 1 if conn's bufferevent still belongs to evcon: evhttp sets every
 * callback of its bufferevent with the connection as argument, and
 * bufferevent_free() clears them. */
static int
owned_by(const struct admin_conn *conn, const struct evhttp_connection *evcon)
{
	bufferevent_event_cb event_cb;
	void *arg;

	bufferevent_getcb(conn->bev, NULL, NULL, &event_cb, &arg);
	return event_cb != NULL && (evcon == NULL || arg == evcon);
}

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

/* Close the oldest adopted connection. Returns 0, or -1 when there is
 * none. */
static int
evict_oldest(struct tg_admin_conns *c)
{
	struct admin_conn *conn = TAILQ_FIRST(&c->adopted);

	if (conn == NULL)
		return -1;
	if (!owned_by(conn, conn->evcon)) {
		/* evhttp freed the connection without the close callback. */
		release(c, conn, &c->adopted);
		note_closed(c);
		return 0;
	}
	log_eviction(c);
	evhttp_connection_free(conn->evcon);    /* calls closed_cb() */
	return 0;
}

/* Hook the close callback of each connection evhttp made since the last
 * run, then close the oldest connections while there are more than max. */
static void
adopt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_admin_conns *c = arg;
	struct admin_conn *conn;
	void *evcon;

	(void)fd;
	(void)what;
	while ((conn = TAILQ_FIRST(&c->fresh)) != NULL) {
		if (!owned_by(conn, NULL)) {
			/* evhttp failed to set the connection up and freed it. */
			release(c, conn, &c->fresh);
			note_closed(c);
			continue;
		}
		bufferevent_getcb(conn->bev, NULL, NULL, NULL, &evcon);
		conn->evcon = evcon;
		TAILQ_REMOVE(&c->fresh, conn, link);
		TAILQ_INSERT_TAIL(&c->adopted, conn, link);
		evhttp_connection_set_closecb(conn->evcon, closed_cb, conn);
	}

	while (c->open > c->max && evict_oldest(c) == 0)
		continue;
}

/* evhttp's bufferevent callback: a socket bufferevent without a socket,
 * which evhttp sets once it returns. On NULL evhttp makes a bufferevent of
 * its own, and that connection escapes the count. */
static struct bufferevent *
new_bev_cb(struct event_base *base, void *arg)
{
	struct tg_admin_conns *c = arg;
	struct admin_conn *conn = calloc(1, sizeof(*conn));

	if (conn == NULL)
		return NULL;
	conn->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (conn->bev != NULL)
		conn->pages = tg_admin_pages_new(base, conn->bev);
	if (conn->pages == NULL) {
		if (conn->bev != NULL)
			bufferevent_free(conn->bev);
		free(conn);
		return NULL;
	}
	bufferevent_incref(conn->bev);
	conn->set = c;
	TAILQ_INSERT_TAIL(&c->fresh, conn, link);
	c->open++;
	event_active(c->adopt, EV_READ, 0);

	/* libevent's listener stops its accept loop once disabled, so a burst
	 * of connections costs one descriptor past max. */
	if (c->open > c->max && c->listener != NULL && *c->listener != NULL) {
		evconnlistener_disable(*c->listener);
		c->paused = 1;
	}
	return conn->bev;
}

struct tg_admin_conns *
tg_admin_conns_new(struct event_base *base, struct evhttp *http,
                   struct evconnlistener **listener, struct tg_accept_pause *pause,
                   size_t max, const char *owner)
{
	struct tg_admin_conns *c = calloc(1, sizeof(*c));

	assert(max >= 1);
	if (c == NULL)
		return NULL;
	c->adopt = event_new(base, -1, 0, adopt_cb, c);
	if (c->adopt == NULL) {
		free(c);
		return NULL;
	}
	TAILQ_INIT(&c->fresh);
	TAILQ_INIT(&c->adopted);
	c->listener = listener;
	c->pause = pause;
	c->max = max;
	snprintf(c->owner, sizeof(c->owner), "%s", owner);
	evhttp_set_bevcb(http, new_bev_cb, c);
	return c;
}

void
tg_admin_conns_detach(struct tg_admin_conns *c)
{
	if (c == NULL)
		return;
	c->listener = NULL;
	c->pause = NULL;
}

void
tg_admin_conns_free(struct tg_admin_conns *c)
{
	struct admin_conn *conn;

	if (c == NULL)
		return;
	while ((conn = TAILQ_FIRST(&c->fresh)) != NULL)
		release(c, conn, &c->fresh);
	while ((conn = TAILQ_FIRST(&c->adopted)) != NULL)
		release(c, conn, &c->adopted);
	event_free(c->adopt);
	free(c);
}
