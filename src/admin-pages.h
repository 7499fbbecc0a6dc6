/*
 * Text error pages for the requests that evhttp rejects on its own.
 *
 * evhttp (libevent 2.1.12) responds to a request it rejects with an HTML
 * page, before any callback of the admin listener runs. It sends 400 for a
 * malformed request line or header and for a head over TG_ADMIN_MAX_HEAD,
 * and 413 for a body over TG_ADMIN_MAX_BODY. The 2.1 API has no hook for
 * these pages and no way to reach the request first. It does write each page to the output buffer of the connection's
 * bufferevent, and the socket write waits for the next turn of the event
 * loop. The rewriter below watches that buffer. When a response lands in
 * it, an event that runs in the same turn parses the response head with
 * llhttp. If the response is one of evhttp's pages (status 400 or more,
 * Content-Type text/html, which no admin endpoint sends), the event
 * replaces it with a text/plain page of the same status that says what was
 * wrong and what the limit is.
 *
 * Thread: a rewriter belongs to the thread of its event base.
 */
#ifndef TOLLGATE_ADMIN_PAGES_H
#define TOLLGATE_ADMIN_PAGES_H

/* The admin listener's limits, which evhttp enforces and the pages name. */
#define TG_ADMIN_MAX_HEAD (16 * 1024)
#define TG_ADMIN_MAX_BODY 1024

struct bufferevent;
struct event_base;
struct tg_admin_pages;

/* Start rewriting evhttp's error pages on bev, a bufferevent that evhttp
 * writes to. The caller keeps bev alive until tg_admin_pages_free().
 * Returns NULL when out of memory. */
struct tg_admin_pages *tg_admin_pages_new(struct event_base *base, struct bufferevent *bev);

/* Stop watching and free p. p may be NULL. */
void tg_admin_pages_free(struct tg_admin_pages *p);

#endif
