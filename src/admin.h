/*
 * Admin listener, served from the main thread: /metrics, /healthz,
 * /readyz and the recent traces under /api/traces.
 */
#ifndef TOLLGATE_ADMIN_H
#define TOLLGATE_ADMIN_H

struct event_base;
struct tg_runtime;
struct evhttp;

/* Bind address ("host:port") on base. Returns NULL after logging why. */
struct evhttp *tg_admin_start(struct event_base *base, const char *address,
                              struct tg_runtime *rt);

#endif
