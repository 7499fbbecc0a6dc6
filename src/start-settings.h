/*
 * The settings that take effect at start only, because they belong to the
 * sockets, threads and files made then, as the process runs them. A reload
 * compares the new file with these: the file loaded before it may have
 * changed them already, without effect.
 *
 * tracing.batch.max_queue_size and sessions.max_sessions are kept by the
 * modules that own them (trace-export.c, metrics.c), which warn the same way.
 */
#ifndef TOLLGATE_START_SETTINGS_H
#define TOLLGATE_START_SETTINGS_H

#include <stddef.h>

#include "config-t.h"

/* One listen entry: its socket is made at start, to serve TLS or not.
 * Its certificate and key follow reloads (tls-config.h). */
struct tg_start_listen {
	char *address;
	int tls;
};

struct tg_start_settings {
	struct tg_start_listen *listen;
	size_t n_listen;
	int workers;
	char *admin;
	size_t admin_max_connections;
	tg_msec_t admin_idle_timeout;
	char *access_log;               /* path or "-"; NULL when off */
	char **nameservers;             /* resolver.nameservers */
	size_t n_nameservers;
};

/* Copy the start-only settings of cfg, the config the process starts with,
 * into s. Returns 0, or -1 when out of memory (s is then empty). */
int tg_start_settings_copy(struct tg_start_settings *s, const struct tg_config *cfg);

void tg_start_settings_free(struct tg_start_settings *s);

/* Log one warning for each start-only setting that cfg, loaded by a reload,
 * sets to another value than running, the values the process runs with. */
void tg_start_settings_warn_changes(const struct tg_start_settings *running,
                                    const struct tg_config *cfg);

#endif
