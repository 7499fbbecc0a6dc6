/*
 * The connection cap of the admin listener.
 *
 * libevent 2.1's evhttp has no connection limit. Every connection it
 * accepts stays open until the client closes it or the idle timeout
 * passes. A local client that opens thousands of idle connections then
 * takes every descriptor, and the workers can no longer accept clients or
 * open upstream connections. The set below counts the connections of one
 * evhttp and keeps at most max of them. When a new connection would make max + 1,
 * the oldest one is closed. An idle flood then costs max descriptors, and a
 * scraper's new connection still gets in: it pushes out the flood's oldest
 * connection instead of waiting behind it.
 *
 * evhttp 2.1 tells no one about a new connection, and has no public call
 * that takes an accepted socket. The set learns of each from the
 * bufferevent callback (evhttp_set_bevcb), which runs before evhttp has made
 * the connection. Once evhttp has made it, within the same turn of the
 * event loop, the set finds the connection as the argument of the
 * bufferevent's callbacks and hooks its close callback, which tells the set
 * when evhttp frees it.
 *
 * The bufferevent callback also sets up the text error pages of
 * admin-pages.h on each connection.
 *
 * Thread: the set belongs to the thread of its event base.
 */
#ifndef TOLLGATE_ADMIN_CONNS_H
#define TOLLGATE_ADMIN_CONNS_H

#include <stddef.h>

struct event_base;
struct evconnlistener;
struct evhttp;
struct tg_accept_pause;
struct tg_admin_conns;

/*
 * Create the set of http's connections on base, at most max (at least 1)
 * at a time, and install its bufferevent callback on http. While the set is
 * at max + 1, *listener stops accepting, and it accepts again once a
 * connection closes. A close also ends a pause of the listener after an
 * accept error early (tg_accept_pause_closed of pause). owner names the
 * listener at the start of log lines; it is copied. Returns NULL when out
 * of memory.
 */
struct tg_admin_conns *tg_admin_conns_new(struct event_base *base, struct evhttp *http,
                                          struct evconnlistener **listener,
                                          struct tg_accept_pause *pause, size_t max,
                                          const char *owner);

/* Stop touching the listener and the pause state, which evhttp_free() and
 * the caller are about to free. Call before evhttp_free(), which closes the
 * remaining connections through the set. c may be NULL. */
void tg_admin_conns_detach(struct tg_admin_conns *c);

/* Free c, after evhttp_free(). c may be NULL. */
void tg_admin_conns_free(struct tg_admin_conns *c);

#endif
