/*
 * Admin listener, served from the main thread: /metrics, /healthz,
 * /readyz and the recent traces under /api/traces.
 */
#ifndef TOLLGATE_ADMIN_H
#define TOLLGATE_ADMIN_H

struct event_base;
struct tg_admin;
struct tg_config;
struct tg_runtime;

/* Bind config->admin on base, a host name resolved as for a listen address,
 * with the connection cap and idle timeout of config, to which it keeps a
 * reference. Returns NULL after logging why. */
struct tg_admin *tg_admin_start(struct event_base *base, struct tg_config *config,
                                struct tg_runtime *rt);

/* After a reload: the admin requests that begin from now on read config,
 * so that the replaced one can be freed. Its admin settings are read only
 * at start. */
void tg_admin_set_config(struct tg_admin *admin, struct tg_config *config);

/* Close the admin listener and its connections, before base is freed.
 * admin may be NULL. */
void tg_admin_free(struct tg_admin *admin);

#endif
