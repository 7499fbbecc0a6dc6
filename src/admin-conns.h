/*
 * The connections of the admin listener: its listening socket, the host
 * that serves them on the main thread with the gateway's connection code
 * (client.c, through a site of worker.h), and their cap.
 *
 * Every connection stays open until the client closes it or
 * admin_idle_timeout passes. A local client that opens thousands of idle
 * connections would then take every descriptor, and the workers could no
 * longer accept clients or open upstream connections. So at most max
 * connections stay open: a new connection that would make max + 1 closes
 * the oldest one first. An idle flood then costs max descriptors, and a
 * scraper's new connection still gets in: it pushes out the flood's
 * oldest connection instead of waiting behind it.
 *
 * Thread: the set belongs to the thread of its event base.
 */
#ifndef TOLLGATE_ADMIN_CONNS_H
#define TOLLGATE_ADMIN_CONNS_H

#include <stddef.h>

struct event_base;
struct tg_admin_conns;
struct tg_config;
struct tg_runtime;
struct tg_site;

/*
 * Bind cfg->admin on base, a host name resolved as for a listen address,
 * and serve its connections with site, which must outlive the set, at most
 * max (at least 1) at a time. Accept errors count in rt->accept_errors and
 * pause the listener as the workers' do (accept-pause.h). Returns NULL
 * after logging why.
 */
struct tg_admin_conns *tg_admin_conns_new(struct event_base *base, struct tg_config *cfg,
                                          struct tg_runtime *rt, const struct tg_site *site,
                                          size_t max);

/* The requests that begin from now on read cfg (tg_worker_host_set_config()). */
void tg_admin_conns_set_config(struct tg_admin_conns *c, struct tg_config *cfg);

/* Close the listener and every connection, and free c, before base is
 * freed. c may be NULL. */
void tg_admin_conns_free(struct tg_admin_conns *c);

#endif
