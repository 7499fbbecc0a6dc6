/*
 * The settings that take effect at start only, copied from the config the
 * process started with, and the reload warnings that compare with them.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "start-settings.h"

/* strdup that keeps NULL; sets *failed when out of memory. */
static char *
copy_string(const char *s, int *failed)
{
	char *copy;

	if (s == NULL)
		return NULL;
	copy = strdup(s);
	if (copy == NULL)
		*failed = 1;
	return copy;
}

static int
same_string(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

int
tg_start_settings_copy(struct tg_start_settings *s, const struct tg_config *cfg)
{
	int failed = 0;

	memset(s, 0, sizeof(*s));
	s->listen = calloc(cfg->n_listen, sizeof(*s->listen));
	s->nameservers = calloc(cfg->resolver.n_nameservers, sizeof(*s->nameservers));
	if ((cfg->n_listen > 0 && s->listen == NULL) ||
	    (cfg->resolver.n_nameservers > 0 && s->nameservers == NULL))
		failed = 1;

	for (size_t i = 0; !failed && i < cfg->n_listen; i++) {
		s->listen[i].address = copy_string(cfg->listen[i].address, &failed);
		s->listen[i].tls = cfg->listen[i].tls_cert != NULL;
		s->n_listen = i + 1;
	}
	for (size_t i = 0; !failed && i < cfg->resolver.n_nameservers; i++) {
		s->nameservers[i] = copy_string(cfg->resolver.nameservers[i], &failed);
		s->n_nameservers = i + 1;
	}
	s->workers = cfg->workers;
	s->admin = copy_string(cfg->admin.address, &failed);
	s->admin_max_connections = cfg->admin_max_connections;
	s->admin_idle_timeout = cfg->admin_idle_timeout;
	s->access_log = copy_string(cfg->access_log, &failed);

	if (failed) {
		tg_start_settings_free(s);
		return -1;
	}
	return 0;
}

void
tg_start_settings_free(struct tg_start_settings *s)
{
	for (size_t i = 0; i < s->n_listen; i++) {
		free(s->listen[i].address);
	}
	free(s->listen);
	for (size_t i = 0; i < s->n_nameservers; i++)
		free(s->nameservers[i]);
	free(s->nameservers);
	free(s->admin);
	free(s->access_log);
	memset(s, 0, sizeof(*s));
}

static int
listen_changed(const struct tg_start_settings *running, const struct tg_config *cfg)
{
	if (running->n_listen != cfg->n_listen)
		return 1;
	for (size_t i = 0; i < cfg->n_listen; i++) {
		const struct tg_start_listen *old = &running->listen[i];
		const struct tg_listen *new = &cfg->listen[i];

		if (!same_string(old->address, new->address) || old->tls != (new->tls_cert != NULL))
			return 1;
	}
	return 0;
}

static int
nameservers_changed(const struct tg_start_settings *running, const struct tg_config *cfg)
{
	if (running->n_nameservers != cfg->resolver.n_nameservers)
		return 1;
	for (size_t i = 0; i < running->n_nameservers; i++) {
		if (!same_string(running->nameservers[i], cfg->resolver.nameservers[i]))
			return 1;
	}
	return 0;
}

static void
warn_restart_only(const char *key)
{
	tg_warn("reload: %s changed; it takes effect after a restart", key);
}

void
tg_start_settings_warn_changes(const struct tg_start_settings *running,
                               const struct tg_config *cfg)
{
	if (listen_changed(running, cfg))
		warn_restart_only("listen");
	if (running->workers != cfg->workers)
		warn_restart_only("workers");
	if (!same_string(running->admin, cfg->admin.address))
		warn_restart_only("admin");
	if (running->admin_max_connections != cfg->admin_max_connections)
		warn_restart_only("admin_max_connections");
	if (running->admin_idle_timeout != cfg->admin_idle_timeout)
		warn_restart_only("admin_idle_timeout");
	if (!same_string(running->access_log, cfg->access_log))
		warn_restart_only("access_log");
	if (nameservers_changed(running, cfg))
		warn_restart_only("resolver.nameservers");
}
